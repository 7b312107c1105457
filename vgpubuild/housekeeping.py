"""What the vgpubuild cache holds, and taking it away again (``cache list``, ``cache clean``).

The cache (:mod:`vgpubuild.cache`) has one folder per kind of entry::

    sha256/<hex>/        input    a verified file (its names are hard links of one file)
    patchers/<hex>/      patcher  an assembled vGPU-Unlock-patcher tree
    artifacts/<key>/     artifact a finished build, keyed by its inputs and settings
    logs/<key>-<t>.log   log      patch.sh's output of a build
    partial/<k>-<n>.part partial  an interrupted download and its resume record
    quarantine/<h>-<n>   quarantine  bytes that failed verification

Nothing here trims the cache by itself except the artifact cache's size cap
(``VGPUBUILD_ARTIFACT_CACHE_MAX``, applied after each new artifact): artifacts are the big
entries, and one is rebuilt from cached inputs when needed. Removal first renames an entry
into ``tmp/`` (one atomic step, so no build ever sees half an entry) and then deletes it;
a partial download that a running download holds the lock of is left alone.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vgpubuild import log
from vgpubuild.cache import Cache
from vgpubuild.errors import ConfigError, UsageError

KINDS = ("input", "patcher", "artifact", "log", "partial", "quarantine")
AGED_KINDS = ("input", "patcher", "artifact", "log")
"""What ``--older-than`` removes; partial downloads and quarantine have their own options."""

CAP_ENV = "VGPUBUILD_ARTIFACT_CACHE_MAX"
DEFAULT_CAP = 20 * 2**30
"""About twenty patched driver trees; a missing one is rebuilt from the cached inputs."""

_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
_AGES = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


@dataclass(frozen=True)
class Entry:
    """One removable thing in the cache."""

    kind: str
    path: Path
    size: int
    used: float
    """Last use for artifacts (a reuse rewrites placed.json), else when it was written."""
    what: str
    build_key: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "path": str(self.path),
            "size": self.size,
            "used": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(self.used)),
            "what": self.what,
            "build_key": self.build_key,
        }


# ------------------------------------------------------------------------------ settings


def parse_size(text: str) -> int | None:
    """``500M``, ``20G``, ``1.5T`` (binary units, optional ``iB``/``B``); ``none``: no cap."""
    if text.strip().lower() in ("none", "unlimited"):
        return None
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*", text, re.IGNORECASE)
    if match is None:
        raise UsageError(f"{text!r} is not a size", hint="Write e.g. 500M, 20G or none.")
    return int(float(match.group(1)) * _UNITS[match.group(2).upper()])


def parse_age(text: str) -> float:
    """``30d``, ``12h``, ``2w``, ``90m``, ``45s`` in seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text)
    if match is None:
        raise UsageError(f"{text!r} is not an age", hint="Write e.g. 30d, 12h, 2w or 90m.")
    return float(match.group(1)) * _AGES[match.group(2)]


def artifact_cap() -> int | None:
    """The artifact cache's size cap in bytes (None: no cap), from ``$VGPUBUILD_ARTIFACT_CACHE_MAX``."""
    raw = os.environ.get(CAP_ENV)
    if not raw:
        return DEFAULT_CAP
    try:
        return parse_size(raw)
    except UsageError as exc:
        raise ConfigError(f"{CAP_ENV}: {exc.message}", hint=exc.hint) from None


def human(size: int) -> str:
    """A size as people read it: ``1.9 GiB``."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


# ------------------------------------------------------------------------------- listing


def _size(path: Path) -> int:
    """Bytes under ``path``, each file once (cached names of one input are hard links)."""
    if not path.is_dir():
        return path.lstat().st_size if os.path.lexists(path) else 0
    seen: set[tuple[int, int]] = set()
    total = 0
    for top, dirs, files in os.walk(path):
        for name in (*files, *dirs):
            st = os.lstat(os.path.join(top, name))
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size
    return total


def _children(folder: Path) -> list[Path]:
    """Entries of ``folder``, without the hidden temporaries of writes in progress."""
    try:
        return sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    except FileNotFoundError:
        return []


def _mtime(*paths: Path) -> float:
    return max((p.stat().st_mtime for p in paths if p.exists()), default=0.0)


def _artifact(path: Path) -> Entry:
    try:
        record = json.loads((path / "result.json").read_text(encoding="utf-8"))
        manifest = record["manifest"]
        what = f"{manifest['release']['version']} {manifest['target']} {record['name']}"
    except (OSError, ValueError, KeyError, TypeError):
        what = "(incomplete)"
    used = _mtime(path / "result.json", path / "placed.json", path)
    return Entry("artifact", path, _size(path), used, what, path.name)


def entries(cache: Cache) -> list[Entry]:
    """Everything removable in ``cache``, by kind (in :data:`KINDS` order), then by path."""
    root = cache.root
    found = [
        Entry("input", d, _size(d), _mtime(*d.iterdir()), ", ".join(p.name for p in _children(d)))
        for d in _children(root / "sha256")
    ]
    found += [
        Entry("patcher", d, _size(d), _mtime(d), "vGPU-Unlock-patcher " + d.name[:16])
        for d in _children(root / "patchers")
    ]
    found += [_artifact(d) for d in _children(root / "artifacts")]
    found += [
        Entry("log", f, _size(f), _mtime(f), f.name, f.name.split("-", 1)[0])
        for f in _children(root / "logs")
    ]
    found += [
        Entry(
            "partial",
            f,
            _size(f) + _size(_record(f)),
            _mtime(f),
            f.name.split("-", 1)[-1].removesuffix(".part"),
        )
        for f in _children(cache.partial)
        if f.name.endswith(".part")
    ]
    found += [
        Entry("quarantine", f, _size(f), _mtime(f), f.name) for f in _children(cache.quarantine)
    ]
    return found


def _record(part: Path) -> Path:
    """The resume record beside a ``.part`` file."""
    return part.with_name(part.name + ".json")


# ------------------------------------------------------------------------------ cleaning


def select(
    found: Iterable[Entry],
    *,
    older_than: float | None = None,
    quarantine: bool = False,
    partial: bool = False,
    everything: bool = False,
    now: float | None = None,
) -> list[Entry]:
    """The entries ``cache clean`` with these options removes."""
    cutoff = (now or time.time()) - older_than if older_than is not None else None
    return [
        e
        for e in found
        if everything
        or (quarantine and e.kind == "quarantine")
        or (partial and e.kind == "partial")
        or (cutoff is not None and e.kind in AGED_KINDS and e.used < cutoff)
    ]


def _download_running(cache: Cache, part: Path) -> bool:
    """True when a download holds the lock of this ``.part`` file (its key starts the name)."""
    prefix = part.name.split("-", 1)[0]
    for lock in (cache.root / "locks").glob(f"{prefix}*.lock"):
        with open(lock, "a+b") as f:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)
    return False


def remove(cache: Cache, entry: Entry) -> bool:
    """Remove one entry (see the module doc); False when it is in use or already gone."""
    if entry.kind == "partial" and _download_running(cache, entry.path):
        return False
    (cache.root / "tmp").mkdir(parents=True, exist_ok=True)
    trash = Path(tempfile.mkdtemp(prefix=".removing.", dir=cache.root / "tmp"))
    try:
        moved = [entry.path] + ([_record(entry.path)] if entry.kind == "partial" else [])
        for path in moved:
            with contextlib.suppress(FileNotFoundError):
                os.replace(path, trash / path.name)
        return any((trash / p.name).exists() or (trash / p.name).is_symlink() for p in moved)
    finally:
        shutil.rmtree(trash, ignore_errors=True)


def enforce_artifact_cap(cache: Cache, keep: str) -> list[Entry]:
    """Remove least recently used artifacts until the artifact cache fits its cap.

    ``keep`` is the build key just stored: it stays even when it alone is over the cap.
    """
    cap = artifact_cap()
    if cap is None:
        return []
    artifacts = sorted((e for e in entries(cache) if e.kind == "artifact"), key=lambda e: e.used)
    total = sum(e.size for e in artifacts)
    removed = []
    for entry in artifacts:
        if total <= cap:
            break
        if entry.build_key != keep and remove(cache, entry):
            total -= entry.size
            removed.append(entry)
    if removed:
        log.get_logger(stage="cache").info(
            "artifact cache over its cap: least recently used removed",
            cap=human(cap),
            removed=[e.what for e in removed],
            setting=CAP_ENV,
        )
    return removed
