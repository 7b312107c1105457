"""Finished artifacts by build key: the same inputs and options give the earlier artifact.

The key (see :mod:`vgpubuild.plan`) is known before any input is read, so a hit costs no
re-reading of hundreds of MB: the inputs were verified when the artifact was built. Layout
under ``<cache root>/artifacts/<key>/``::

    <tree name>/    the artifact folder, as it was placed
    <name>.run      its repacked single file, once one was asked for
    result.json     hash, size, store path and manifest
    placed.json     where copies were put, with a fingerprint of each

``placed.json`` lets a repeated build leave an untouched artifact where it is instead of
copying a driver-sized tree again; it is rewritten on every reuse, so its time is the
entry's last use, which the size cap (:mod:`vgpubuild.housekeeping`) evicts by.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from vgpubuild import log
from vgpubuild.artifact import (
    MANIFEST_NAME,
    ArtifactInfo,
    BuildResult,
    RepackedRun,
    describe_run,
    normalise_tree,
    repack,
)
from vgpubuild.atomic import atomic_dir, atomic_file, copy_tree
from vgpubuild.cache import Cache
from vgpubuild.errors import OutputError
from vgpubuild.nixhash import Hash
from vgpubuild.outfolder import move_run, placing


class ArtifactCache:
    """The ``artifacts/`` part of the vgpubuild cache; every write is best effort."""

    def __init__(self, cache: Cache) -> None:
        self.cache = cache
        self.root = cache.root / "artifacts"

    def entry(self, key: str) -> Path:
        return self.root / key

    def place(
        self, key: str, out: Path, work: Path, *, repack_version: str | None
    ) -> BuildResult | None:
        """Put the artifact cached under ``key`` into ``out``; None when there is none.

        With ``repack_version`` the ``.run`` is placed too (made from the tree if the entry
        has none yet). ``out``'s lock is held meanwhile (:func:`~vgpubuild.outfolder.placing`).
        """
        entry = self.entry(key)
        try:
            record = json.loads((entry / "result.json").read_text(encoding="utf-8"))
            name = record["name"]
            tree = entry / name
            size = int(record["nar_size"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if not (tree / MANIFEST_NAME).is_file():
            return None
        dest = out / name
        repacked = None
        with placing(out, name) as replace_old:
            if _still_placed(entry, dest):
                # The artifact this cache entry put here is untouched: nothing to copy.
                run = out / f"{name}.run"
                if repack_version is not None and _still_placed(entry, run):
                    repacked = describe_run(run)
                elif repack_version is not None:
                    repacked = self.repack(key, dest, work, name, repack_version)
            else:
                with atomic_dir(dest, replace=replace_old, scratch=work, needed=size) as tmp:
                    copy_tree(tree, tmp, needed=size)
                    normalise_tree(tmp)
                    if repack_version is not None:
                        repacked = self.repack(key, tmp, work, name, repack_version)
            repacked = move_run(repacked, out)
            self.remember(key, dest, repacked)
        return BuildResult(
            artifact=dest,
            nar_hash=Hash.parse(record["nar_hash"]),
            nar_size=size,
            store_path=record["store_path"],
            manifest=record["manifest"],
            repacked=repacked,
            cached=True,
        )

    def store(
        self, key: str, tree: Path, name: str, info: ArtifactInfo, manifest: Mapping[str, Any]
    ) -> None:
        """Keep a copy of the finished ``tree`` (to be named ``name``) under ``key``.

        Best effort: a failure only logs, the build itself has succeeded.
        """
        entry = self.entry(key)
        record = {
            "name": name,
            "nar_hash": info.nar_hash.sri,
            "nar_size": info.nar_size,
            "store_path": info.store_path,
            "manifest": manifest,
        }
        try:
            with self.cache.lock(f"artifact-{key}"):  # concurrent builds of one key store once
                if entry.exists():
                    return
                with atomic_dir(entry) as tmp:
                    copy_tree(tree, tmp / name, needed=info.nar_size)
                    with atomic_file(tmp / "result.json") as f:
                        f.write(json.dumps(record, sort_keys=True, indent=2).encode())
        except (OSError, OutputError) as exc:
            log.get_logger(stage="cache").warning("could not cache the artifact", error=str(exc))
            return
        from vgpubuild.housekeeping import enforce_artifact_cap

        enforce_artifact_cap(self.cache, keep=key)

    def repack(self, key: str, tree: Path, work: Path, name: str, version: str) -> RepackedRun:
        """Write ``<name>.run`` into ``work`` (a copy of the cached one when there is one)."""
        entry = self.entry(key)
        made = work / f"{name}.run"
        cached = entry / made.name
        if cached.is_file():
            shutil.copyfile(cached, made)
            return describe_run(made)
        result = repack(tree, made, version=version)
        if entry.is_dir():
            with contextlib.suppress(OSError):
                shutil.copyfile(made, cached)
        return result

    def remember(self, key: str, dest: Path, run: RepackedRun | None) -> None:
        """Note what the entry put at ``dest`` (best effort: a miss only costs a copy)."""
        entry = self.entry(key)
        if not entry.is_dir():
            return
        try:
            placed = json.loads((entry / "placed.json").read_text(encoding="utf-8"))
            if not isinstance(placed, dict):
                placed = {}
        except (OSError, ValueError):
            placed = {}
        try:
            placed[str(dest)] = _fingerprint(dest)
            if run is not None:
                placed[str(run.path)] = _fingerprint(run.path)
            with atomic_file(entry / "placed.json") as f:
                f.write(json.dumps(placed, sort_keys=True, indent=1).encode())
        except (OSError, OutputError):
            pass


def _fingerprint(path: Path) -> str:
    """Identity of a placed file or tree: any write, chmod, rename or swap changes it.

    Inode numbers and change times (ctime, which no user call can set back) of every entry;
    a folder's own times change when an entry is added or removed. Only ``stat`` calls, so a
    driver-sized tree is checked in milliseconds instead of being hashed or copied again.
    """
    digest = hashlib.sha256()

    def visit(p: str, rel: str) -> None:
        st = os.lstat(p)
        digest.update(
            f"{rel}\0{st.st_ino}\0{st.st_mode}\0{st.st_size}\0{st.st_mtime_ns}\0"
            f"{st.st_ctime_ns}\n".encode(errors="surrogateescape")
        )
        if stat.S_ISDIR(st.st_mode):
            for name in sorted(os.listdir(p)):
                visit(os.path.join(p, name), f"{rel}/{name}")

    visit(str(path), "")
    return digest.hexdigest()


def _still_placed(entry: Path, dest: Path) -> bool:
    try:
        placed = json.loads((entry / "placed.json").read_text(encoding="utf-8"))
        return bool(placed.get(str(dest)) == _fingerprint(dest))
    except (OSError, ValueError, AttributeError):
        return False
