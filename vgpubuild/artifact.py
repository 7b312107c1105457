"""The artifact: a patched driver tree made deterministic, described, and addable to Nix.

What ``patch.sh`` leaves behind depends on the machine: the umask decides modes, the clock
decides mtimes, and a stray fifo or an absolute symlink into the build folder would make
the tree unrepeatable or un-NAR-able. :func:`finalise` removes every such difference before
the tree is hashed, so the same inputs give the same NAR hash and store path on any machine,
and writes ``vgpubuild-manifest.json`` (sorted keys, no timestamps, no paths) saying what
went in. Nothing here decides *what* is built; the pipeline hands over a tree and a manifest.
"""

from __future__ import annotations

import json
import os
import shlex
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vgpubuild.atomic import atomic_file
from vgpubuild.errors import InputError
from vgpubuild.nar import nar_hash_and_size
from vgpubuild.nixhash import Hash, hash_file, special_kind
from vgpubuild.runfile import make_run
from vgpubuild.store import check_name, fixed_output_path

MANIFEST_NAME = "vgpubuild-manifest.json"

FIXED_MTIME = 1
"""Every file's mtime after :func:`normalise_tree`: the Nix store's convention (1970, +1 s)."""


@dataclass(frozen=True)
class ArtifactInfo:
    """A finished tree and where ``nix-store --add-fixed --recursive sha256`` would put it."""

    path: Path
    nar_hash: Hash
    nar_size: int
    store_path: str

    @property
    def add_command(self) -> str:
        """The command that adds the tree to the store at :attr:`store_path`."""
        return f"nix-store --add-fixed --recursive sha256 {shlex.quote(str(self.path))}"


@dataclass(frozen=True)
class RepackedRun:
    """A single-file ``.run`` of the artifact, added flat (``nix-store --add-fixed sha256``)."""

    path: Path
    flat_hash: Hash
    store_path: str

    @property
    def add_command(self) -> str:
        return f"nix-store --add-fixed sha256 {shlex.quote(str(self.path))}"


@dataclass(frozen=True)
class BuildResult:
    """What a build produced and where Nix will put it."""

    artifact: Path
    nar_hash: Hash
    nar_size: int
    store_path: str
    manifest: dict[str, Any]
    repacked: RepackedRun | None = None
    cached: bool = False
    """True when the artifact came from the input-keyed cache (nothing was rebuilt)."""
    build_log: Path | None = None

    @property
    def add_command(self) -> str:
        return ArtifactInfo(
            self.artifact, self.nar_hash, self.nar_size, self.store_path
        ).add_command

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` output of ``vgpubuild patch``."""
        data: dict[str, Any] = {
            "artifact": str(self.artifact),
            "nar_hash": self.nar_hash.sri,
            "nar_size": self.nar_size,
            "store_path": self.store_path,
            "add_command": self.add_command,
            "cached": self.cached,
            "build_key": self.manifest.get("build_key"),
            "build_log": str(self.build_log) if self.build_log else None,
            "repacked": None,
        }
        if self.repacked is not None:
            data["repacked"] = {
                "path": str(self.repacked.path),
                "sha256": self.repacked.flat_hash.sri,
                "store_path": self.repacked.store_path,
                "add_command": self.repacked.add_command,
            }
        return data


def normalise_tree(root: Path, *, build_dirs: Sequence[Path] = ()) -> None:
    """Make ``root`` depend only on its content: modes, mtimes, no special files.

    Folders become 0755; files 0755 when their owner could execute them, else 0644 (the
    one bit a NAR records, kept; setuid, group-write and umask leftovers dropped); mtimes
    become :data:`FIXED_MTIME`. A fifo, socket or device is refused (a NAR cannot hold
    one), and so is a symlink pointing into ``build_dirs``: its target would name this
    run's temporary folder and differ on the next run.
    """
    forbidden = [os.fsencode(os.path.abspath(d)) for d in build_dirs]
    _normalise(os.fsencode(root), forbidden)
    os.utime(root, (FIXED_MTIME, FIXED_MTIME))


def _normalise(folder: bytes, forbidden: list[bytes]) -> None:
    os.chmod(folder, 0o755)  # first, so a folder patch.sh left unreadable can be listed
    with os.scandir(folder) as it:
        entries = list(it)
    for entry in entries:
        path = entry.path
        st = entry.stat(follow_symlinks=False)
        if stat.S_ISLNK(st.st_mode):
            target = os.readlink(path)
            if any(target == d or target.startswith(d + b"/") for d in forbidden):
                raise InputError(
                    f"symlink {os.fsdecode(path)!r} points into the build folder "
                    f"({os.fsdecode(target)!r})",
                    hint="Make the link relative in the patch that creates it.",
                )
        elif stat.S_ISDIR(st.st_mode):
            _normalise(path, forbidden)
        elif stat.S_ISREG(st.st_mode):
            os.chmod(path, 0o755 if st.st_mode & stat.S_IXUSR else 0o644)
        else:
            raise InputError(
                f"{os.fsdecode(path)!r} is a {special_kind(st.st_mode)}, "
                "which an artifact cannot contain",
                hint="Remove it from the tree (a patch or patch.sh created it).",
            )
        os.utime(path, (FIXED_MTIME, FIXED_MTIME), follow_symlinks=False)


def manifest_bytes(manifest: Mapping[str, Any]) -> bytes:
    """The manifest's exact bytes: sorted keys, two-space indent, UTF-8, final newline."""
    return (json.dumps(manifest, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode()


def read_manifest(root: Path) -> dict[str, Any] | None:
    """The manifest of an artifact folder, or None when ``root`` has no readable one."""
    try:
        data = json.loads((root / MANIFEST_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def describe(root: Path, name: str | None = None) -> ArtifactInfo:
    """Hash ``root`` as a NAR and compute its store path under ``name`` (default: its own)."""
    name = check_name(name or root.name)
    digest, size = nar_hash_and_size(root)
    return ArtifactInfo(root, digest, size, fixed_output_path(digest, name, "recursive"))


def finalise(
    root: Path, manifest: Mapping[str, Any], *, name: str, build_dirs: Sequence[Path] = ()
) -> ArtifactInfo:
    """Normalise ``root``, write its manifest, and describe it as it will be named.

    ``root`` may still be a temporary folder; ``name`` is the folder name it will have
    (and so its store name), which is what the store path depends on.
    """
    with atomic_file(root / MANIFEST_NAME) as f:
        f.write(manifest_bytes(manifest))
    normalise_tree(root, build_dirs=build_dirs)
    return describe(root, name)


def repack(tree: Path, dest: Path, *, version: str, label: str | None = None) -> RepackedRun:
    """Write ``tree`` as a self-extracting ``.run`` at ``dest`` and describe it (flat).

    The archive is deterministic (see :func:`vgpubuild.runfile.make_run`), so the same tree
    always gives the same file hash and store path. ``sh dest -x`` unpacks to a folder
    named like ``dest`` without ``.run``.
    """
    make_run(
        dest,
        tree,
        label or f"NVIDIA Accelerated Graphics Driver (vgpubuild) {version}",
        version,
        compression="xz",
    )
    return describe_run(dest)


def describe_run(path: Path) -> RepackedRun:
    """Hash a ``.run`` file and compute its flat store path."""
    digest = hash_file(path)
    return RepackedRun(path, digest, fixed_output_path(digest, check_name(path.name), "flat"))
