"""What store path an artifact becomes: its NAR hash and size, references, content address.

A cache entry must say what Nix itself would record for the path. For a folder or file
outside the store that is the content-addressed path ``nix-store --add-fixed`` gives it;
for a path already in the store, that path. References are found as Nix finds them after
a build, by scanning the NAR for store hash parts, in the same streamed pass that hashes it.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable
from pathlib import Path

from vgpubuild.errors import InputError, UsageError
from vgpubuild.narinfo import PathInfo
from vgpubuild.nixhash import NIX32_ALPHABET, Hash, hash_file
from vgpubuild.store import check_name, fixed_output_path

_NIX32_CHAR = b"[" + NIX32_ALPHABET.encode() + b"]"
_HASH_PART = _NIX32_CHAR + rb"{32}"


class _ReferenceScanner:
    """Finds store hash parts in a byte stream, across chunk boundaries.

    With ``candidates`` (the hash parts of the paths in the store) it does what Nix does
    after a build: any 32-character window equal to a candidate is a reference, wherever it
    appears. Without them (an artifact outside the store) it looks for the unambiguous
    ``<store dir>/<hash part>-`` instead.
    """

    def __init__(self, directory: str, candidates: frozenset[bytes] | None) -> None:
        self._candidates = candidates
        if candidates is None:
            prefix = os.fsencode(directory.rstrip("/") + "/")
            self._pattern = re.compile(re.escape(prefix) + b"(" + _HASH_PART + b")-")
            self._keep = len(prefix) + 32
        else:
            self._pattern = re.compile(_NIX32_CHAR + rb"{32,}")
            self._keep = 31
        self._tail = b""
        self.found: set[str] = set()

    def feed(self, chunk: bytes | memoryview) -> None:
        # The chunk is searched in place (a 4 MiB copy per chunk would cost memory); a match
        # across the boundary lies within the kept tail and the chunk's first bytes.
        self._search(self._tail + chunk[: self._keep])
        self._search(chunk)
        rest = chunk if len(chunk) >= self._keep else self._tail + chunk
        self._tail = bytes(rest[-self._keep :])  # a copy: the chunk's buffer is reused

    def _search(self, data: bytes | memoryview) -> None:
        for match in self._pattern.finditer(data):
            if self._candidates is None:
                self.found.add(match.group(1).decode())
                continue
            run = match.group()
            self.found.update(
                run[i : i + 32].decode()
                for i in range(len(run) - 31)
                if run[i : i + 32] in self._candidates
            )


def _store_hash_parts(directory: str) -> frozenset[bytes]:
    """Hash parts of every path in the local store (what a reference can point to)."""
    return frozenset(
        os.fsencode(name[:32])
        for name in os.listdir(directory)
        if len(name) > 33 and name[32] == "-"
    )


class NarScan:
    """NAR sha256, NAR size and the store hash parts a NAR mentions, fed chunk by chunk.

    The caller streams the NAR once (to compress it, say) and feeds every chunk here, so
    what is described is exactly what was written.
    """

    def __init__(self, artifact: Path, directory: str) -> None:
        self._artifact = artifact
        self._directory = directory
        in_store = artifact.parent == Path(directory)
        self._digest = hashlib.sha256()
        self._size = 0
        self._refs = _ReferenceScanner(
            directory, _store_hash_parts(directory) if in_store else None
        )

    def feed(self, chunk: bytes | memoryview) -> None:
        self._digest.update(chunk)
        self._size += len(chunk)
        self._refs.feed(chunk)

    def path_info(self, name: str | None) -> PathInfo:
        """What the fed NAR is as a store path (``name``: store name outside the store).

        Refuses an artifact that mentions other store paths: a one-path cache entry cannot
        carry them.
        """
        nar_hash = Hash("sha256", self._digest.digest())
        store_path, ca = _identify(self._artifact, name, nar_hash, self._directory)
        references = _references(store_path, self._refs.found, ca)
        return PathInfo(store_path, nar_hash, self._size, tuple(references), ca)


def _identify(
    artifact: Path, name: str | None, nar_hash: Hash, directory: str
) -> tuple[str, str | None]:
    """The store path to serve ``artifact`` as, and its content address if it has one."""
    if artifact.parent == Path(directory):
        base = artifact.name
        store_name = base[33:]
        if name is not None and name != store_name:
            raise UsageError(
                f"{str(artifact)!r} is already in the store as {store_name!r}",
                hint="Leave out --name for a store path, or export a copy outside the store.",
            )
        store_path = str(artifact)
        # A path added with nix-store --add[-fixed --recursive] is still content-addressed.
        if fixed_output_path(nar_hash, store_name, "recursive", directory) == store_path:
            return store_path, f"fixed:r:{nar_hash.format('nix32', prefix=True)}"
        if artifact.is_file():
            flat = hash_file(artifact)
            if fixed_output_path(flat, store_name, "flat", directory) == store_path:
                return store_path, f"fixed:{flat.format('nix32', prefix=True)}"
        return store_path, None
    store_name = check_name(name or artifact.name)
    if artifact.is_file():
        flat = hash_file(artifact)
        path = fixed_output_path(flat, store_name, "flat", directory)
        return path, f"fixed:{flat.format('nix32', prefix=True)}"
    path = fixed_output_path(nar_hash, store_name, "recursive", directory)
    return path, f"fixed:r:{nar_hash.format('nix32', prefix=True)}"


def _references(store_path: str, found: Iterable[str], content_address: str | None) -> list[str]:
    """The references a narinfo may list: only the path itself, if it mentions itself."""
    own = Path(store_path).name[:32]
    others = sorted(h for h in found if h != own)
    if others:
        raise InputError(
            f"the artifact mentions other store paths ({', '.join(others[:3])}...), "
            "which this one-path cache would not carry",
            hint=(
                "Export the whole closure with nix copy --to file://DIR PATH, "
                "or rebuild without references to the store."
            ),
        )
    if own in found and content_address is None:
        return [Path(store_path).name]
    return []
