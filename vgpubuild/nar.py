"""NAR serialisation, streamed, byte-for-byte as ``nix-store --dump`` writes it.

A NAR records only what Nix considers content: file bytes, the owner-executable bit,
symlink targets and directory entries sorted by the bytes of their names. Modes, owners and
mtimes are not recorded, which is what makes store paths reproducible.

Everything is a generator of byte chunks so that a NAR of any size is hashed or written
with a fixed, small amount of memory (one read buffer).
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterator
from typing import BinaryIO

from vgpubuild.errors import InputError
from vgpubuild.nixhash import CHUNK_SIZE, Hash

NAR_MAGIC = b"nix-archive-1"


def nar_string(data: bytes) -> bytes:
    """A NAR string: u64 little-endian length, the bytes, zero padding to 8."""
    return len(data).to_bytes(8, "little") + data + b"\0" * (-len(data) % 8)


_OPEN, _CLOSE = nar_string(b"("), nar_string(b")")
_TYPE = nar_string(b"type")
_REGULAR = _OPEN + _TYPE + nar_string(b"regular")
_EXECUTABLE = nar_string(b"executable") + nar_string(b"")
_CONTENTS = nar_string(b"contents")
_SYMLINK = _OPEN + _TYPE + nar_string(b"symlink") + nar_string(b"target")
_DIRECTORY = _OPEN + _TYPE + nar_string(b"directory")
_ENTRY = nar_string(b"entry") + _OPEN + nar_string(b"name")
_NODE = nar_string(b"node")


def _shown(path: bytes) -> str:
    return os.fsdecode(path)


def _file_chunks(path: bytes, st: os.stat_result, buf: bytearray) -> Iterator[bytes | memoryview]:
    header = _REGULAR
    if st.st_mode & stat.S_IXUSR:
        header += _EXECUTABLE
    size = st.st_size
    yield header + _CONTENTS + size.to_bytes(8, "little")
    view = memoryview(buf)
    remaining = size
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except PermissionError:
        raise InputError(
            f"cannot read {_shown(path)!r}: permission denied",
            hint="Make the file readable (chmod u+r) or run as its owner.",
        ) from None
    try:
        with os.fdopen(fd, "rb", buffering=0) as f:
            while remaining:
                n = f.readinto(view[: min(remaining, len(buf))])
                if not n:
                    break
                remaining -= n
                yield view[:n]
            if remaining or f.read(1):
                raise InputError(
                    f"{_shown(path)!r} changed size while it was being read",
                    hint="Run again once nothing is writing to it.",
                )
    except OSError as exc:
        raise InputError(f"cannot read {_shown(path)!r}: {exc.strerror}") from None
    yield b"\0" * (-size % 8) + _CLOSE


def _node_chunks(path: bytes, buf: bytearray) -> Iterator[bytes | memoryview]:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise InputError(
            f"path {_shown(path)!r} does not exist", hint="Check the path and try again."
        ) from None
    except OSError as exc:
        raise InputError(f"cannot stat {_shown(path)!r}: {exc.strerror}") from None
    mode = st.st_mode
    if stat.S_ISREG(mode):
        yield from _file_chunks(path, st, buf)
    elif stat.S_ISLNK(mode):
        yield _SYMLINK + nar_string(os.readlink(path)) + _CLOSE
    elif stat.S_ISDIR(mode):
        yield _DIRECTORY
        try:
            names = sorted(os.listdir(path))
        except PermissionError:
            raise InputError(
                f"cannot list directory {_shown(path)!r}: permission denied",
                hint="Make the directory readable (chmod u+rx) or run as its owner.",
            ) from None
        for name in names:
            yield _ENTRY + nar_string(name) + _NODE
            yield from _node_chunks(os.path.join(path, name), buf)
            yield _CLOSE
        yield _CLOSE
    else:
        kind = (
            "fifo"
            if stat.S_ISFIFO(mode)
            else "socket"
            if stat.S_ISSOCK(mode)
            else "device"
            if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
            else "special file"
        )
        raise InputError(
            f"{_shown(path)!r} is a {kind}, which a NAR cannot contain",
            hint="Remove it from the tree or pick a tree without it.",
        )


def nar_chunks(path: str | os.PathLike[str]) -> Iterator[bytes | memoryview]:
    """Yield the NAR of ``path`` in pieces; a yielded memoryview is valid until the next."""
    buf = bytearray(CHUNK_SIZE)
    yield nar_string(NAR_MAGIC)
    yield from _node_chunks(os.fsencode(path), buf)


def nar_hash(path: str | os.PathLike[str], algo: str = "sha256") -> Hash:
    """The recursive hash Nix gives ``path`` (``nix-hash --type sha256 PATH``)."""
    h = hashlib.new(algo)
    for chunk in nar_chunks(path):
        h.update(chunk)
    return Hash(algo, h.digest())


def nar_hash_and_size(path: str | os.PathLike[str]) -> tuple[Hash, int]:
    """NAR sha256 and byte size in one pass (a narinfo needs both)."""
    h = hashlib.sha256()
    size = 0
    for chunk in nar_chunks(path):
        h.update(chunk)
        size += len(chunk)
    return Hash("sha256", h.digest()), size


def dump(path: str | os.PathLike[str], out: BinaryIO) -> None:
    """Write the NAR of ``path`` to ``out`` (``nix-store --dump PATH``)."""
    for chunk in nar_chunks(path):
        out.write(chunk)
