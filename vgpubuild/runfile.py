"""NVIDIA ``.run`` files: recognise one (:func:`check_run`) and write one (:func:`make_run`).

A driver ``.run`` is a shell script followed by a compressed tar. The header names the line
where the payload starts (``skip=N``); NVIDIA's makeself variant means "from line N"
(``tail -n +N``), makeself 2.x means "after N lines". :func:`check_run` reads only the header,
so it is cheap on a 400 MB driver, and settles which convention applies by looking for a
compression magic number at each candidate offset. It refuses a file that is not a .run or
whose version is not the release's before ``patch.sh`` gets to it, because patch.sh would
fail much later with a far less helpful message.

:func:`make_run` writes a small but real self-extracting archive of the same shape: a POSIX
``sh`` header supporting ``--extract-only``/``-x`` [``--target DIR``], ``--info``, ``--list``
and ``--lsm``, followed by a gzip- or xz-compressed tar. It is how the demo release and the
tests get driver files without any NVIDIA bytes, and how a patched tree is repacked. The
payload is streamed (never a whole tree in memory) and deterministic: members in byte order
of their names, mtime 0, owner 0/0 without names, modes reduced to 0755/0644, fixed
compressor settings, so the same tree always gives the same bytes.
"""

from __future__ import annotations

import os
import re
import shlex
import stat
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO, Literal

from vgpubuild.atomic import atomic_file
from vgpubuild.compression import compressor
from vgpubuild.errors import InputError, input_error
from vgpubuild.nixhash import CHUNK_SIZE

RunCompression = Literal["xz", "gzip"]

MAX_HEADER_BYTES = 1 << 20
"""A .run header larger than this is not a header (NVIDIA's are about 20 KiB)."""

_MAGIC: tuple[tuple[str, bytes], ...] = (
    ("xz", b"\xfd7zXZ\x00"),
    ("gzip", b"\x1f\x8b"),
    ("bzip2", b"BZh"),
    ("zstd", b"\x28\xb5\x2f\xfd"),
)
_SKIP = re.compile(rb"""^\s*skip=["']?(\d+)["']?\s*$""")
_ASSIGN = re.compile(rb"^(label|version|targetdir)=(.*)$")
_VERSION = re.compile(r"(\d+\.\d+(?:\.\d+)*)")
_NAME_VERSION = re.compile(r"^NVIDIA-Linux-[A-Za-z0-9_]+-(\d+(?:\.\d+)+)")


@dataclass(frozen=True)
class RunInfo:
    """What the header of a .run says, and where its payload starts."""

    path: Path
    version: str
    label: str | None
    targetdir: str | None
    skip: int
    offset: int
    """Byte offset of the compressed payload."""
    compression: str
    """``xz``, ``gzip``, ``bzip2``, ``zstd`` or ``tar`` (uncompressed)."""


def _unquote(raw: bytes) -> str:
    text = raw.decode("utf-8", "replace").strip()
    try:
        parts = shlex.split(text)
    except ValueError:
        return text.strip("\"'")
    return parts[0] if len(parts) == 1 else text


def _payload_kind(head: bytes) -> str | None:
    for name, magic in _MAGIC:
        if head.startswith(magic):
            return name
    if head[257:262] == b"ustar":
        return "tar"
    return None


def _not_a_run(path: Path, why: str) -> InputError:
    return InputError(
        f"{path.name!r} is not a driver .run file: {why}",
        hint="Check that the file is the NVIDIA .run the release names and that it is complete.",
    )


def check_run(path: str | os.PathLike[str], expected_version: str | None = None) -> RunInfo:
    """Read the header of ``path`` and check it is a .run of ``expected_version``.

    Raises :class:`InputError` when the file has no shell header, no ``skip=`` line, no
    payload where ``skip`` points, or a version (in its name or header) other than the one
    expected.
    """
    path = Path(path)
    with input_error(f"cannot read {str(path)!r}", "Check the path and try again."):
        f = path.open("rb")
    with f:
        return read_header(f, path, expected_version)


def read_header(f: IO[bytes], path: Path, expected_version: str | None = None) -> RunInfo:
    """:func:`check_run` on an open, seekable stream (a zip member); ``path`` names it."""
    first = f.readline(256)
    if not (first.startswith(b"#!") and b"sh" in first):
        raise _not_a_run(path, "it does not start with a shell header")
    starts, skip, values = _scan_header(f, len(first))
    if skip is None:
        raise _not_a_run(path, "its header has no 'skip=' line")
    if not 2 <= skip < len(starts):
        raise _not_a_run(path, f"'skip={skip}' does not point at a payload")
    # NVIDIA: payload from line `skip`; makeself 2.x: payload after `skip` lines.
    kind, offset = None, 0
    for offset in starts[skip - 1 : skip + 1]:
        f.seek(offset)
        if kind := _payload_kind(f.read(512)):
            break
    if kind is None:
        raise _not_a_run(path, f"no compressed payload where 'skip={skip}' points")
    label, targetdir = values.get("label"), values.get("targetdir")
    version = _version(path, values, expected_version)
    return RunInfo(path, version, label, targetdir, skip, offset, kind)


def _scan_header(f: IO[bytes], first: int) -> tuple[list[int], int | None, dict[str, str]]:
    """Line offsets up to the payload, the ``skip=`` value and the header's assignments.

    ``starts[i]`` is the byte offset of line ``i + 1``; at most ``MAX_HEADER_BYTES`` are
    read looking for ``skip=``.
    """
    starts = [0, first]
    skip: int | None = None
    values: dict[str, str] = {}
    while skip is None or len(starts) <= skip:
        line = f.readline(MAX_HEADER_BYTES)
        if not line or (skip is None and starts[-1] > MAX_HEADER_BYTES):
            break
        starts.append(starts[-1] + len(line))
        if skip is not None:
            continue
        if m := _SKIP.match(line):
            skip = int(m.group(1))
        elif (m := _ASSIGN.match(line.rstrip(b"\r\n"))) and m.group(1).decode() not in values:
            values[m.group(1).decode()] = _unquote(m.group(2))
    return starts, skip, values


def _version(path: Path, values: dict[str, str], expected: str | None) -> str:
    """The driver version from the header (or its label/targetdir), else from the name.

    Both, where present, must be ``expected``.
    """
    header_version = values.get("version")
    for text in (values.get("label"), values.get("targetdir")):
        if header_version is None and text and (found := _VERSION.findall(text)):
            header_version = found[-1]
    name_match = _NAME_VERSION.match(path.name)
    name_version = name_match.group(1) if name_match else None
    version = header_version or name_version
    if version is None:
        raise _not_a_run(path, "neither its name nor its header gives a driver version")
    for where, found_version in (("name", name_version), ("header", header_version)):
        if expected is not None and found_version is not None and found_version != expected:
            raise InputError(
                f"{path.name!r} is driver {found_version} (from its {where}), but the "
                f"release needs {expected}",
                hint="Use the .run files of the release you asked for, or pick the release "
                "that matches these files.",
            )
    return version


# --------------------------------------------------------------------------------- writer

_HEADER = """\
#!/bin/sh
# Self-extracting archive written by vgpubuild, in the shape of NVIDIA's .run files.
# The payload, a {compress}-compressed tar, starts at line $skip of this file:
#   tail -n +$skip THIS.run | {compress} -dc | tar xf -
label={label}
version={version}
targetdir={targetdir}
compress={compress}
skip=@SKIP@
mode=install
target=
while [ $# -gt 0 ]; do
    case "$1" in
    -x|--extract-only) mode=extract ;;
    --target)
        [ $# -gt 1 ] || {{ echo "$0: --target needs a folder" >&2; exit 1; }}
        shift
        target=$1 ;;
    --info) mode=info ;;
    --list) mode=list ;;
    --lsm) mode=lsm ;;
    -h|--help) mode=help ;;
    *) echo "$0: unknown option $1" >&2; exit 1 ;;
    esac
    shift
done
payload() {{
    tail -n +"$skip" "$0" | "$compress" -dc
}}
case $mode in
help)
    echo "Usage: $0 [--extract-only|-x] [--target DIR] | --info | --list | --lsm"
    exit 0 ;;
info)
    echo "Identification: $label"
    echo "Version: $version"
    echo "Target directory: $targetdir"
    echo "Compression: $compress"
    echo "Payload starts at line: $skip"
    exit 0 ;;
lsm)
    echo "Begin4"
    echo "Title: $label"
    echo "Version: $version"
    echo "End"
    exit 0 ;;
list)
    payload | tar tf - || exit 1
    exit 0 ;;
extract)
    [ -n "$target" ] || target=$targetdir
    mkdir -p "$target" || exit 1
    payload | (cd "$target" && tar xf -) || {{ echo "$0: extraction failed" >&2; exit 1; }}
    echo "Extracted $label to $target"
    exit 0 ;;
esac
echo "$label: this archive only unpacks; run: sh $0 --extract-only [--target DIR]" >&2
exit 1
"""


def _header(label: str, version: str, targetdir: str, compression: RunCompression) -> bytes:
    for what, value in (("label", label), ("version", version), ("targetdir", targetdir)):
        if not value or "\n" in value or "\0" in value:
            raise InputError(f"invalid .run {what} {value!r}", hint="Use a one-line value.")
    text = _HEADER.format(
        label=shlex.quote(label),
        version=shlex.quote(version),
        targetdir=shlex.quote(targetdir),
        compress=compression,
    )
    skip = text.count("\n") + 1
    return text.replace("@SKIP@", str(skip)).encode()


def _walk(root: Path, rel: str = "") -> Iterator[tuple[str, Path, os.stat_result]]:
    """Every entry below ``root`` as (tar name, path, lstat), in byte order of names."""
    folder = root / rel if rel else root
    for name in sorted(os.listdir(folder), key=os.fsencode):
        path = folder / name
        member = f"{rel}/{name}" if rel else name
        st = path.lstat()
        yield member, path, st
        if stat.S_ISDIR(st.st_mode):
            yield from _walk(root, member)


def _tarinfo(member: str, path: Path, st: os.stat_result) -> tarfile.TarInfo:
    info = tarfile.TarInfo(member)
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if stat.S_ISDIR(st.st_mode):
        info.type, info.mode = tarfile.DIRTYPE, 0o755
    elif stat.S_ISLNK(st.st_mode):
        info.type, info.mode, info.linkname = tarfile.SYMTYPE, 0o777, os.readlink(path)
    elif stat.S_ISREG(st.st_mode):
        info.size = st.st_size
        info.mode = 0o755 if st.st_mode & stat.S_IXUSR else 0o644
    else:
        raise InputError(
            f"{str(path)!r} is not a file, folder or symlink and cannot go into a .run",
            hint="Remove it from the folder being packed.",
        )
    return info


def write_tar(payload_dir: Path, out: BinaryIO) -> None:
    """Stream a deterministic tar of the contents of ``payload_dir`` to ``out``."""
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.GNU_FORMAT, bufsize=CHUNK_SIZE) as tar:
        for member, path, st in _walk(payload_dir):
            info = _tarinfo(member, path, st)
            if info.isreg():
                with path.open("rb") as data:
                    tar.addfile(info, data)
            else:
                tar.addfile(info)


def make_run(
    dest: str | os.PathLike[str],
    payload_dir: str | os.PathLike[str],
    label: str,
    version: str,
    *,
    compression: RunCompression = "xz",
    targetdir: str | None = None,
) -> Path:
    """Write a self-extracting ``.run`` of ``payload_dir`` to ``dest`` (atomically).

    ``targetdir`` (default: the file name without ``.run``) is where ``-x`` unpacks to,
    like NVIDIA's, so ``sh NVIDIA-Linux-x86_64-V.run -x`` gives ``NVIDIA-Linux-x86_64-V/``.
    """
    dest = Path(dest)
    payload_dir = Path(payload_dir)
    if not payload_dir.is_dir():
        raise InputError(
            f"{str(payload_dir)!r} is not a folder", hint="Give the folder to pack as a .run."
        )
    header = _header(label, version, targetdir or dest.name.removesuffix(".run"), compression)
    with atomic_file(dest, mode=0o755) as out:
        out.write(header)
        with compressor(out, compression) as packed:
            write_tar(payload_dir, packed)
    return dest
