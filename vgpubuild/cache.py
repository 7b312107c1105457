"""The content-addressed cache of verified inputs.

Layout under the root (``$VGPUBUILD_CACHE``, else ``$XDG_CACHE_HOME/vgpubuild``, else
``~/.cache/vgpubuild``)::

    sha256/<hex>/<name>   verified files; the name is kept because patch.sh finds inputs by it
    partial/              ``.part`` downloads and their resume metadata
    quarantine/           files that failed verification, kept for inspection
    locks/                one lock file per content hash (fcntl), shared by all processes
    tmp/                  copies in progress (same filesystem, so the final step is a rename)

Only verified bytes ever reach ``sha256/``, and they arrive by ``rename``, so a reader never
sees half a file. Entries are made read-only; the cache trusts its own entries.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from vgpubuild.errors import InputError, disk_full_as_error, input_error, output_error
from vgpubuild.nixhash import Hash, feed
from vgpubuild.store import check_name
from vgpubuild.verify import Pinned

_WRITABLE = "Set VGPUBUILD_CACHE to a folder you can write to."


def default_root() -> Path:
    """Where the cache lives unless a root is given."""
    if env := os.environ.get("VGPUBUILD_CACHE"):
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return Path(base) / "vgpubuild"


def entry_hash(path: Path) -> Hash:
    """The content hash of a cache entry, read from its path (the file is not re-read)."""
    return Hash("sha256", bytes.fromhex(path.parent.name))


class Cache:
    """Verified inputs by content hash, safe for concurrent vgpubuild processes."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root is not None else default_root()

    @property
    def quarantine(self) -> Path:
        return self.root / "quarantine"

    @property
    def partial(self) -> Path:
        return self.root / "partial"

    def _dir(self, name: str) -> Path:
        path = self.root / name
        with output_error(f"cannot create cache folder {str(path)!r}", _WRITABLE, folder=self.root):
            path.mkdir(parents=True, exist_ok=True)
        return path

    def entry(self, sha256: Hash, name: str) -> Path:
        """Where a verified file with this hash and name lives (whether or not it exists)."""
        return self.root / "sha256" / sha256.hex / check_name(name)

    def lookup(self, sha256: Hash, name: str) -> Path | None:
        """The cached file, or None. Content cached under another name is linked to ``name``."""
        path = self.entry(sha256, name)
        if path.is_file():
            return path
        folder = path.parent
        others = sorted(p for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []
        if not others:
            return None
        tmp = folder / f".{name}.{os.getpid()}.link"
        try:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            os.link(others[0], tmp)
            os.replace(tmp, path)
        except OSError:
            return others[0] if others[0].name == name else None
        return path

    @contextlib.contextmanager
    def lock(self, key: str) -> Iterator[None]:
        """Hold an exclusive per-key lock (a content hash in hex, or a URL digest)."""
        path = self._dir("locks") / f"{key}.lock"
        with open(path, "a+b") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)

    def temp_file(self, name: str) -> Path:
        """A fresh, empty file under ``tmp/`` to fill before :meth:`store` or quarantine."""
        folder = self._dir("tmp")
        with output_error(
            f"cannot write to cache folder {str(folder)!r}", _WRITABLE, folder=folder
        ):
            fd, tmp = tempfile.mkstemp(prefix=f"{name}.", suffix=".tmp", dir=folder)
        os.close(fd)
        return Path(tmp)

    def store(self, verified: Path, sha256: Hash, name: str) -> Path:
        """Rename an already verified file (on the cache's filesystem) into place."""
        dest = self.entry(sha256, name)
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(verified, 0o444)
        os.replace(verified, dest)
        return dest

    def quarantine_file(self, path: Path, got: Hash, name: str) -> Path:
        """Move bytes that failed verification out of the way, named by what they hashed to."""
        dest = self._dir("quarantine") / f"{got.hex[:16]}-{name}"
        os.replace(path, dest)
        return dest

    def add_file(self, src: Path, expected: Hash | None, name: str) -> Path:
        """Copy ``src`` in, hashing while copying (one read); verify; return the entry.

        With ``expected`` None the file is stored under whatever it hashes to (prefetch of a
        local file). A mismatch quarantines the copy; ``src`` itself is never touched.
        """
        check_name(name)
        if expected is not None and (hit := self.lookup(expected, name)):
            return hit
        with input_error(f"cannot read {str(src)!r}"):
            try:
                source = open(src, "rb", buffering=0)  # noqa: SIM115 - closed below
            except FileNotFoundError:
                raise InputError(
                    f"file {str(src)!r} does not exist", hint="Check the path."
                ) from None
            except IsADirectoryError:
                raise InputError(f"{str(src)!r} is a directory, not a file") from None
        tmp = self.temp_file(name)
        try:
            size = os.fstat(source.fileno()).st_size
            with source, disk_full_as_error(tmp.parent, size), open(tmp, "wb") as out:
                got = copy_hashing(source, out)
            Pinned(expected, name).check(
                got, set_aside=lambda: self.quarantine_file(tmp, got, name), copied_from=src
            )
            with self.lock(got.hex):
                return self.lookup(got, name) or self.store(tmp, got, name)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()


def copy_hashing(source: io.RawIOBase, out: BinaryIO) -> Hash:
    """Copy a raw binary stream to a file, hashing the bytes on their way through (read
    ahead and written by one thread, hashed by this one: :func:`vgpubuild.nixhash.feed`)."""
    h = hashlib.sha256()
    feed(h, source.readinto, keep=out.write)
    return Hash("sha256", h.digest())
