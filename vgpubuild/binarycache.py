"""Export an artifact into a binary cache folder that ``nix copy --from file://DIR`` reads.

A Nix binary cache is three kinds of file: ``nix-cache-info`` (which store it serves),
one ``<hash part>.narinfo`` per store path (:mod:`vgpubuild.narinfo`) and the NAR files
under ``nar/``, named after their own sha256 and compressed with zstd (default), xz or not
at all, the compressions Nix 2.8 reads. Building the patched driver once and substituting
it on every other machine is then the same as for any unfree build shared through a cache.

Which store path an artifact gets:

- a folder outside the store: the path ``nix-store --add-fixed --recursive sha256`` gives it
  (what ``vgpubuild patch`` predicts); a file: the flat path ``nix-store --add-fixed sha256``
  gives it (what ``--repack`` predicts for the .run). Both carry a ``CA:`` field, so Nix
  checks the content against the path itself and needs no signature for them;
- a path already in the store (a derivation output such as ``./result``): that store path.
  Nix trusts such an input-addressed path only when it carries a signature from a key in
  its ``trusted-public-keys`` (or with ``--no-check-sigs``): sign with ``secret_key_file``.

The NAR is streamed chunk by chunk through the compressor into its file: a driver tree of
any size is exported with a fixed amount of memory. Nothing already in the cache is ever
rewritten: a NAR file is named after its hash, and a store path that already has a
narinfo keeps it (an export that would change it is refused), so several artifacts and
several machines can add to one cache.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vgpubuild.atomic import atomic_file
from vgpubuild.compression import Compression, compressor
from vgpubuild.errors import InputError, OutputError, UsageError
from vgpubuild.nar import nar_chunks
from vgpubuild.narinfo import NarInfo, NarInfoError, PathInfo
from vgpubuild.nixhash import Hash, hash_file
from vgpubuild.pathinfo import NarScan
from vgpubuild.signing import SecretKey
from vgpubuild.store import store_dir
from vgpubuild.verify import Pinned

CACHE_PRIORITY = 50
"""Below cache.nixos.org's 40: Nix asks the public cache first, which never has our paths
anyway, but a local folder should not shadow it for everything else."""

NAR_SUFFIX: dict[Compression, str] = {"zstd": ".nar.zst", "xz": ".nar.xz", "none": ".nar"}
"""The compressions a cache export offers, and Nix's file name suffix for each."""

XZ_DICT_SIZE = 1 << 20
"""xz's dictionary for NARs: about 16 MiB to compress (preset 6's 8 MiB needs 94 MiB),
for files about 3% larger."""


@dataclass(frozen=True)
class ExportResult:
    """The cache entry for the artifact: written now, or found there and kept (``kept``)."""

    info: NarInfo
    narinfo: Path
    nar: Path
    signed_by: str | None
    public_key: str | None
    kept: bool

    @property
    def store_path(self) -> str:
        return self.info.path.store_path

    def to_json(self) -> dict[str, Any]:
        path = self.info.path
        return {
            "store_path": path.store_path,
            "narinfo": str(self.narinfo),
            "nar": str(self.nar),
            "url": self.info.url,
            "compression": self.info.compression,
            "file_hash": self.info.file_hash.sri,
            "file_size": self.info.file_size,
            "nar_hash": path.nar_hash.sri,
            "nar_size": path.nar_size,
            "content_address": path.content_address,
            "references": list(path.references),
            "signed_by": self.signed_by,
            "public_key": self.public_key,
            "kept": self.kept,
        }


class _HashingSink:
    """Writes the compressed bytes to ``out`` and hashes them on the way (FileHash, FileSize)."""

    def __init__(self, out: Any) -> None:
        self._out = out
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes, /) -> int:
        self.digest.update(data)
        self.size += len(data)
        written: int = self._out.write(data)
        return written


def _publish(staged: Path, final: Path) -> bool:
    """Give the finished file ``staged`` the name ``final`` unless that name is taken.

    Returns False (and drops ``staged``) when ``final`` exists: what is there is never
    replaced. A hard link makes "create if absent" one atomic step, also against another
    export running at the same time.
    """
    try:
        os.link(staged, final)
        return True
    except FileExistsError:
        return False
    except OSError:  # a file system without hard links
        if final.exists():
            return False
        os.replace(staged, final)
        return True
    finally:
        staged.unlink(missing_ok=True)


@dataclass(frozen=True)
class _Staged:
    """A compressed NAR written under a temporary name, with its FileHash and FileSize."""

    path: Path
    file_hash: Hash
    size: int


def _stage_nar(artifact: Path, nar_dir: Path, scan: NarScan, compression: Compression) -> _Staged:
    """Stream the NAR once: into ``scan`` and, compressed, into a staged file in ``nar_dir``."""
    staged = nar_dir / f".nar.{os.getpid()}.staged"
    with atomic_file(staged) as f:
        sink = _HashingSink(f)
        with compressor(sink, compression, xz_dict_size=XZ_DICT_SIZE) as packed:
            for chunk in nar_chunks(artifact):
                scan.feed(chunk)
                packed.write(chunk)
    return _Staged(staged, Hash("sha256", sink.digest.digest()), sink.size)


def _publish_nar(staged: _Staged, compression: Compression) -> Path:
    """Name the staged NAR file after its hash; one already there under that name is kept."""
    final = staged.path.parent / f"{staged.file_hash.format('nix32')}{NAR_SUFFIX[compression]}"
    if not _publish(staged.path, final):
        Pinned(staged.file_hash, f"{str(final)!r}, already in the cache").check(
            hash_file(final),
            note="its content does not match its name",
            hint="The cache is damaged: remove that file (and the narinfo naming it), then export again.",
            error=OutputError,
        )
    return final


def _discard(staged: _Staged | None, created: list[Path]) -> None:
    """Nothing of a refused or failed export stays: not its file, not the folders it made."""
    if staged is not None:
        staged.path.unlink(missing_ok=True)
    for folder in reversed(created):
        with contextlib.suppress(OSError):  # not empty: another export is using it
            folder.rmdir()


def _compression(name: str) -> Compression:
    for kind in NAR_SUFFIX:
        if kind == name:
            return kind
    raise UsageError(f"unknown compression {name!r}", hint=f"Use one of: {', '.join(NAR_SUFFIX)}.")


def _check_cache_info(dest: Path, directory: str) -> bool:
    """True if ``dest`` already is a binary cache; refuse one for another store directory."""
    info = dest / "nix-cache-info"
    try:
        text = info.read_text(errors="replace")
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise OutputError(f"cannot read {str(info)!r}: {exc.strerror}") from None
    found = re.search(r"^StoreDir: (.*)$", text, re.MULTILINE)
    if found and found.group(1).strip() != directory:
        raise OutputError(
            f"{str(dest)!r} is a binary cache for store {found.group(1).strip()!r}, "
            f"not {directory!r}",
            hint="Export into another folder.",
        )
    return True


def _write_new(dest: Path, data: bytes) -> bool:
    """Write ``data`` as the new file ``dest``, atomically; False if ``dest`` appeared meanwhile."""
    staged = dest.with_name(f".{dest.name}.{os.getpid()}.staged")
    with atomic_file(staged) as f:
        f.write(data)
    return _publish(staged, dest)


def _read_narinfo(path: Path) -> NarInfo | None:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise OutputError(f"cannot read {str(path)!r}: {exc.strerror}") from None
    try:
        return NarInfo.parse(text)
    except NarInfoError as exc:
        raise OutputError(
            f"{str(path)!r} is in the cache but is not a valid narinfo: {exc}",
            hint="Remove it if you mean to replace it, or export into another folder.",
        ) from None


def _result(
    info: NarInfo, narinfo: Path, nar: Path, key: SecretKey | None, *, kept: bool
) -> ExportResult:
    return ExportResult(
        info,
        narinfo,
        nar,
        signed_by=key.name if key else None,
        public_key=key.public.text if key else None,
        kept=kept,
    )


def _kept(
    existing: NarInfo, wanted: PathInfo, narinfo: Path, key: SecretKey | None
) -> ExportResult:
    """The entry already in the cache, if it is the one this export would write."""
    replace_hint = (
        f"It is kept as it is: export into another folder, or remove {str(narinfo)!r} "
        "first if you mean to replace it."
    )
    if existing.path != wanted:
        raise OutputError(
            f"the cache already has {wanted.store_path} with other contents "
            f"(NAR hash {existing.path.nar_hash.sri}, not {wanted.nar_hash.sri})"
            if existing.path.nar_hash != wanted.nar_hash
            else f"the cache already has {wanted.store_path} with other references or content address",
            hint=replace_hint,
        )
    fingerprint = wanted.fingerprint()
    if key is not None and not any(key.public.verify_sig(fingerprint, s) for s in existing.sigs):
        raise OutputError(
            f"the cache already has {wanted.store_path} without a signature by {key.name!r}",
            hint=replace_hint,
        )
    nar = narinfo.parent / existing.url
    if not nar.is_file():
        raise OutputError(
            f"the cache's entry for {wanted.store_path} names {existing.url!r}, which is missing",
            hint=replace_hint,
        )
    return _result(existing, narinfo, nar, key, kept=True)


def export(
    artifact: Path,
    dest: Path,
    *,
    name: str | None = None,
    secret_key_file: Path | None = None,
    compression: str = "zstd",
) -> ExportResult:
    """Add ``artifact`` to the binary cache folder ``dest`` (created if needed).

    The NAR is read once: hashed, scanned for references and compressed in one pass, so
    the entry describes exactly the bytes written. Exporting again changes nothing: an
    entry already there for the same store path and contents is kept as it is.
    """
    from vgpubuild.log import get_logger

    kind = _compression(compression)
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
    has_info = _check_cache_info(dest, directory)

    log = get_logger(artifact=str(real))
    created = [p for p in (dest, dest / "nar") if not p.exists()]
    staged: _Staged | None = None
    try:
        log.info("writing NAR", compression=kind)
        scan = NarScan(real, directory)
        staged = _stage_nar(real, dest / "nar", scan, kind)
        wanted = scan.path_info(name)
        narinfo = dest / f"{Path(wanted.store_path).name[:32]}.narinfo"
        existing = _read_narinfo(narinfo)
        if existing is not None:
            log.info("already in the cache; kept as it is", narinfo=str(narinfo))
            return _kept(existing, wanted, narinfo, key)
        nar = _publish_nar(staged, kind)
    except BaseException:
        _discard(staged, created)
        raise
    finally:
        if staged is not None:  # published under its name by now, or not wanted
            staged.path.unlink(missing_ok=True)
    info = NarInfo(
        wanted,
        url=f"nar/{nar.name}",
        compression=kind,
        file_hash=staged.file_hash,
        file_size=staged.size,
        sigs=(key.signature(wanted.fingerprint()),) if key else (),
    )
    if not _write_new(narinfo, info.render()):
        # Another export added this path meanwhile: theirs stays, if it is the same.
        existing = _read_narinfo(narinfo)
        assert existing is not None
        return _kept(existing, wanted, narinfo, key)
    if not has_info:
        _write_new(
            dest / "nix-cache-info",
            f"StoreDir: {directory}\nWantMassQuery: 1\nPriority: {CACHE_PRIORITY}\n".encode(),
        )
    return _result(info, narinfo, nar, key, kept=False)
