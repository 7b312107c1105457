"""Export an artifact as a binary cache folder that ``nix copy --from file://DIR`` reads.

A Nix binary cache is three kinds of file: ``nix-cache-info`` (which store it serves),
one ``<hash part>.narinfo`` per store path (its NAR's hash, size, location, references and
signatures) and the NARs themselves under ``nar/``. Building the patched driver once and
substituting it elsewhere is then the same as for any unfree build shared through a cache.

Which store path an artifact gets:

- a folder outside the store: the path ``nix-store --add-fixed --recursive sha256`` gives it
  (what ``vgpubuild patch`` predicts); a file: the flat path ``nix-store --add-fixed sha256``
  gives it (what ``--repack`` predicts for the .run). Both carry a ``CA:`` field, so Nix
  checks the content against the path itself and needs no signature for them;
- a path already in the store (a derivation output such as ``./result``): that store path.
  Nix trusts such an input-addressed path only when it carries a signature from a key in
  its ``trusted-public-keys`` (or with ``--no-check-sigs``): sign with ``secret_key_file``.

NARs are written uncompressed and named after their sha256, streamed chunk by chunk: a
driver tree of any size is exported with a fixed amount of memory.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vgpubuild.atomic import atomic_file
from vgpubuild.errors import InputError, OutputError, UsageError
from vgpubuild.nar import nar_chunks
from vgpubuild.nixhash import Hash, hash_file
from vgpubuild.store import check_name, fixed_output_path, store_dir
from vgpubuild.verify import Pinned

CACHE_PRIORITY = 50
"""Below cache.nixos.org's 40: Nix asks the public cache first, which never has our paths
anyway, but a local folder should not shadow it for everything else."""

_NIX32_CHAR = rb"[0-9a-df-np-sv-z]"
_HASH_PART = _NIX32_CHAR + rb"{32}"


@dataclass(frozen=True)
class ExportResult:
    """What was written: the store path it serves and the files that describe it."""

    store_path: str
    narinfo: Path
    nar: Path
    nar_hash: Hash
    nar_size: int
    content_address: str | None
    references: tuple[str, ...]
    signed_by: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "store_path": self.store_path,
            "narinfo": str(self.narinfo),
            "nar": str(self.nar),
            "nar_hash": self.nar_hash.sri,
            "nar_size": self.nar_size,
            "content_address": self.content_address,
            "references": list(self.references),
            "signed_by": self.signed_by,
        }


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
        window = self._tail + bytes(chunk)
        for match in self._pattern.finditer(window):
            if self._candidates is None:
                self.found.add(match.group(1).decode())
                continue
            run = match.group()
            self.found.update(
                run[i : i + 32].decode()
                for i in range(len(run) - 31)
                if run[i : i + 32] in self._candidates
            )
        self._tail = window[-self._keep :]


def _store_hash_parts(directory: str) -> frozenset[bytes]:
    """Hash parts of every path in the local store (what a reference can point to)."""
    return frozenset(
        os.fsencode(name[:32])
        for name in os.listdir(directory)
        if len(name) > 33 and name[32] == "-"
    )


def _scan(artifact: Path, directory: str) -> tuple[Hash, int, set[str]]:
    """NAR sha256, NAR size and the store hash parts the NAR mentions, in one pass."""
    in_store = artifact.parent == Path(directory)
    digest = hashlib.sha256()
    size = 0
    scanner = _ReferenceScanner(directory, _store_hash_parts(directory) if in_store else None)
    for chunk in nar_chunks(artifact):
        digest.update(chunk)
        scanner.feed(chunk)
        size += len(chunk)
    return Hash("sha256", digest.digest()), size, scanner.found


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


def _write_nar(artifact: Path, dest: Path, expected: Hash) -> None:
    """Stream the NAR to ``dest``; refuse it if the tree changed since it was hashed."""
    digest = hashlib.sha256()
    with atomic_file(dest) as f:
        for chunk in nar_chunks(artifact):
            digest.update(chunk)
            f.write(chunk)
        Pinned(expected, f"the NAR of {str(artifact)!r}").check(
            Hash("sha256", digest.digest()),
            note="it changed while it was being exported",
            hint="Run again once nothing is writing to it.",
            error=InputError,
        )


def _write_cache_info(dest: Path, directory: str) -> None:
    info = dest / "nix-cache-info"
    if info.exists():
        text = info.read_text(errors="replace")
        found = re.search(r"^StoreDir: (.*)$", text, re.MULTILINE)
        if found and found.group(1).strip() != directory:
            raise OutputError(
                f"{str(dest)!r} is a binary cache for store {found.group(1).strip()!r}, "
                f"not {directory!r}",
                hint="Export into another folder.",
            )
        return
    with atomic_file(info) as f:
        f.write(f"StoreDir: {directory}\nWantMassQuery: 1\nPriority: {CACHE_PRIORITY}\n".encode())


def fingerprint(store_path: str, nar_hash: Hash, nar_size: int, references: list[str]) -> str:
    """The text Nix signs for a path: ``1;path;sha256:nix32;size;ref,ref``."""
    directory = str(Path(store_path).parent)
    refs = ",".join(f"{directory}/{r}" for r in references)
    return f"1;{store_path};{nar_hash.format('nix32', prefix=True)};{nar_size};{refs}"


def export(
    artifact: Path,
    dest: Path,
    *,
    name: str | None = None,
    secret_key_file: Path | None = None,
) -> ExportResult:
    """Add ``artifact`` to the binary cache folder ``dest`` (created if needed).

    Exporting again is cheap: a NAR already in ``dest/nar`` under its hash is kept.
    """
    from vgpubuild.ed25519 import SecretKey
    from vgpubuild.log import get_logger

    key = SecretKey.load(secret_key_file) if secret_key_file is not None else None
    try:
        mode = os.lstat(artifact).st_mode
    except FileNotFoundError:
        raise InputError(
            f"artifact {str(artifact)!r} does not exist", hint="Check the path."
        ) from None
    real = artifact.resolve() if stat.S_ISLNK(mode) else artifact.absolute()
    directory = store_dir()
    if dest.resolve() == real or dest.resolve().is_relative_to(real):
        raise UsageError(
            "the cache folder cannot be inside the artifact", hint="Use --to elsewhere."
        )

    log = get_logger(artifact=str(real))
    log.info("hashing artifact")
    nar_hash, nar_size, found = _scan(real, directory)
    store_path, content_address = _identify(real, name, nar_hash, directory)
    references = _references(store_path, found, content_address)

    nar32 = nar_hash.format("nix32")
    nar_file = dest / "nar" / f"{nar32}.nar"
    if nar_file.is_file() and nar_file.stat().st_size == nar_size:
        log.info("NAR already in the cache", nar=str(nar_file))
    else:
        log.info("writing NAR", nar=str(nar_file), size=nar_size)
        _write_nar(real, nar_file, nar_hash)

    lines = [
        f"StorePath: {store_path}",
        f"URL: nar/{nar32}.nar",
        "Compression: none",
        f"FileHash: sha256:{nar32}",
        f"FileSize: {nar_size}",
        f"NarHash: sha256:{nar32}",
        f"NarSize: {nar_size}",
        "References: " + " ".join(references),
    ]
    if content_address:
        lines.append(f"CA: {content_address}")
    if key is not None:
        lines.append(
            "Sig: "
            + key.signature(fingerprint(store_path, nar_hash, nar_size, references).encode())
        )
    narinfo = dest / f"{Path(store_path).name[:32]}.narinfo"
    with atomic_file(narinfo) as f:
        f.write(("\n".join(lines) + "\n").encode())
    _write_cache_info(dest, directory)
    return ExportResult(
        store_path=store_path,
        narinfo=narinfo,
        nar=nar_file,
        nar_hash=nar_hash,
        nar_size=nar_size,
        content_address=content_address,
        references=tuple(references),
        signed_by=key.name if key else None,
    )
