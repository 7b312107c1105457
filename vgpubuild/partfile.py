"""A download's resume state: the ``.part`` file, its metadata, and the hash so far.

A transfer appends the body to ``<cache>/partial/<key>-<name>.part``, feeding every byte to
SHA-256 as it is written, so the file is never read back to hash it. Next to it,
``.part.json`` keeps the URL's digest (never the URL: it may hold a token), the server's
validator (strong ETag or Last-Modified) and the announced length, which is what a later
``Range``/``If-Range`` request needs. When a new process resumes a ``.part`` left by an
earlier one, the bytes already there are hashed once before the transfer continues.

Nothing here speaks HTTP; :mod:`vgpubuild.fetch` decides what the server's answers mean
for this state.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vgpubuild import log
from vgpubuild.errors import DiskFullError, OutputError, is_disk_full
from vgpubuild.nixhash import Hash, feed


class PartFile:
    """The bytes of one download received so far, and what is known about them."""

    def __init__(self, folder: Path, key: str, name: str, url: str) -> None:
        self.path = folder / f"{key[:32]}-{name}.part"
        self.meta_path = self.path.with_name(self.path.name + ".json")
        self.url_id = hashlib.sha256(url.encode()).hexdigest()
        self._hasher: hashlib._Hash | None = None  # sha256 of path[0:offset]
        self.offset = 0
        self._log = log.get_logger(file=name)

    def meta(self) -> dict[str, Any]:
        """The saved validator and total length, if they belong to this URL."""
        try:
            data: dict[str, Any] = json.loads(self.meta_path.read_text())
        except (OSError, ValueError):
            return {}
        return data if data.get("url") == self.url_id else {}

    def write_meta(self, validator: str | None, total: int | None) -> None:
        data = {"url": self.url_id, "validator": validator, "total": total}
        self.meta_path.write_text(json.dumps(data))

    def reset(self) -> None:
        """Start over from byte 0 (a server that ignored the range, or a wrong one)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_bytes(b"")
        with contextlib.suppress(FileNotFoundError):
            self.meta_path.unlink()
        self._hasher = hashlib.sha256()
        self.offset = 0

    def resume_point(self, final_hash_known: bool) -> int:
        """Bytes already held; a .part from an earlier process is hashed once here.

        Resuming without a validator is safe only when the final hash is known (a wrong
        resume then fails verification instead of storing a spliced file).
        """
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            size = -1
        if self._hasher is not None and size == self.offset:
            return self.offset
        if size <= 0 or not (self.meta().get("validator") or final_hash_known):
            self.reset()
            return 0
        self._log.info("resuming partial download", have_bytes=size)
        h = hashlib.sha256()
        with open(self.path, "rb", buffering=0) as f:
            size = feed(h, f.readinto)
        self._hasher, self.offset = h, size
        return size

    def append(
        self,
        readinto: Callable[[memoryview], int],
        progress: Callable[[int], None],
        total: int | None = None,
    ) -> None:
        """Write and hash what ``readinto`` delivers at the end; bytes before a failure are
        kept and hashed. ``total`` (the announced length) lets a full disk say how much space
        is needed.

        A reader thread (:func:`vgpubuild.nixhash.feed`) takes the body and writes it, as
        curl does, while this thread hashes what was written: hashing costs (almost) no
        wall time on a machine with a core to spare.
        """
        assert self._hasher is not None, "resume_point or reset comes first"
        needed = None if total is None else max(0, total - self.offset)

        def advance(n: int) -> None:
            self.offset += n
            progress(n)

        with open(self.path, "ab", buffering=0) as out:

            def write(view: memoryview) -> None:
                try:
                    while view:
                        view = view[out.write(view) :]
                except OSError as exc:
                    if is_disk_full(exc):
                        raise DiskFullError(self.path.parent, needed) from None
                    raise OutputError(
                        f"cannot write the download to {str(self.path.parent)!r}: {exc.strerror}",
                        hint="Free some space or set VGPUBUILD_CACHE to another folder.",
                    ) from None

            feed(self._hasher, readinto, keep=write, progress=advance)

    def finish(self) -> Hash:
        """The hash of the whole file; the resume metadata is no longer needed."""
        assert self._hasher is not None, "nothing was received"
        with contextlib.suppress(FileNotFoundError):
            self.meta_path.unlink()
        return Hash("sha256", self._hasher.digest())
