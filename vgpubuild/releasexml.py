"""Find a release's ``vgpuConfig.xml``: a file, an artifact folder, or the cached GRID zip.

``vgpubuild gpus`` lists the profiles a card gets from the real file, so it takes the file
from wherever the user has it:

* ``--xml FILE``: any vgpuConfig.xml (NVIDIA's, or one already edited);
* ``--xml DIR``: a vgpubuild artifact (the patched tree), whose manifest also names the
  release and the ``copyVGPUProfiles`` it was built with;
* the GRID zip of the release in vgpubuild's cache (``vgpubuild add``/``fetch`` put it
  there): the file is streamed out of the host driver ``.run`` inside the zip (zip member
  -> .run header -> compressed tar -> the one member), never unpacked to disk, so this
  stays read-only and needs no space.

Parsing is :class:`~vgpubuild.vgpuconfig.VgpuConfig`'s safe parser (no DTD, no entities).
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import tarfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any, cast

from vgpubuild import log
from vgpubuild.artifact import read_manifest
from vgpubuild.cache import Cache
from vgpubuild.catalog import Release
from vgpubuild.errors import InputError, XmlConfigError, input_error
from vgpubuild.runfile import read_header
from vgpubuild.vgpuconfig.model import VgpuConfig

XML_NAME = "vgpuConfig.xml"
MAX_XML_BYTES = 64 << 20
"""NVIDIA's file is a few MB; a member larger than this is not it."""


@dataclass(frozen=True)
class ReleaseXml:
    """A vgpuConfig.xml and where it came from."""

    data: bytes
    origin: str
    """Shown to the user: ``the cached GRID zip NAME``, ``FILE``, ``artifact DIR``."""
    release: str | None = None
    """The release an artifact's manifest names (None for a plain file or zip)."""
    user_clones: dict[str, str] = field(default_factory=dict)
    """An artifact's ``copyVGPUProfiles`` (already applied to its file)."""

    def parse(self) -> VgpuConfig:
        """A fresh parsed copy (edits to it stay in memory)."""
        return VgpuConfig.parse(self.data, self.origin)


def from_path(path: Path) -> ReleaseXml:
    """``--xml PATH``: a vgpuConfig.xml file, or an artifact folder holding one."""
    if not path.is_dir():
        return ReleaseXml(_read(path), str(path))
    manifest = read_manifest(path) or {}
    release = manifest.get("release")
    version = release.get("version") if isinstance(release, dict) else None
    clones = manifest.get("copyVGPUProfiles")
    return ReleaseXml(
        _read(path / XML_NAME),
        f"artifact {path}",
        version if isinstance(version, str) else None,
        dict(clones) if isinstance(clones, dict) else {},
    )


def _read(path: Path) -> bytes:
    with input_error(f"cannot read {str(path)!r}"):
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise InputError(
                f"{str(path)!r} does not exist",
                hint="Give a vgpuConfig.xml file or a folder vgpubuild patch wrote.",
            ) from None


def from_cache(release: Release, cache: Cache) -> ReleaseXml | None:
    """From the release's GRID zip if vgpubuild's cache holds it (verified when added)."""
    zip_path = cache.lookup(release.zip_sha256, release.zip_name)
    if zip_path is None:
        return None
    log.get_logger(stage="gpus").info(
        "reading vgpuConfig.xml from the cached GRID zip",
        release=release.version,
        zip=str(zip_path),
    )
    return from_zip(zip_path, release)


def from_zip(zip_path: Path, release: Release) -> ReleaseXml:
    """Stream vgpuConfig.xml out of the host driver .run inside the GRID zip."""
    origin = f"the GRID zip {zip_path.name}"
    try:
        with zipfile.ZipFile(zip_path) as zf:
            member = _host_member(zf, release, zip_path)
            with zf.open(member) as run:
                data = _payload_xml(run, member.filename, release)
    except (OSError, zipfile.BadZipFile, EOFError, lzma.LZMAError, tarfile.TarError) as exc:
        raise InputError(
            f"cannot read {XML_NAME} from {origin}: {exc}",
            hint="Check the zip (vgpubuild add checks it against the catalog), or pass --xml.",
        ) from None
    if data is None:
        raise XmlConfigError(
            f"{origin}: the host driver .run has no {XML_NAME}",
            hint="Use the GRID zip of the release, or pass --xml FILE.",
        )
    return ReleaseXml(data, f"{origin} ({release.host_run_name})")


def from_run(run_path: Path, release: Release) -> ReleaseXml:
    """Stream vgpuConfig.xml out of a host driver .run file (a build reads it before patch.sh)."""
    origin = f"the host driver {run_path.name}"
    try:
        with open(run_path, "rb") as run:
            data = _payload_xml(run, run_path.name, release)
    except (OSError, EOFError, lzma.LZMAError, tarfile.TarError) as exc:
        raise InputError(f"cannot read {XML_NAME} from {origin}: {exc}") from None
    if data is None:
        raise XmlConfigError(f"{origin} has no {XML_NAME}", hint="Is it a vgpu-kvm driver?")
    return ReleaseXml(data, origin)


def _payload_xml(run: IO[bytes], name: str, release: Release) -> bytes | None:
    """The vgpuConfig.xml in a .run's payload (header checked, payload streamed)."""

    info = read_header(run, Path(name), release.host_version)
    run.seek(info.offset)
    return _tar_member(_decompressed(run, info.compression, name))


def _host_member(zf: zipfile.ZipFile, release: Release, zip_path: Path) -> zipfile.ZipInfo:
    for info in zf.infolist():
        if PurePosixPath(info.filename).name == release.host_run_name:
            return info
    raise InputError(
        f"{zip_path.name} has no {release.host_run_name}",
        hint=f"Is it the GRID zip of release {release.version}? vgpubuild releases show "
        f"{release.version} names the files.",
    )


def _decompressed(stream: IO[bytes], kind: str, name: str) -> IO[bytes]:
    readers: dict[str, Callable[[IO[bytes]], Any]] = {
        "xz": lzma.LZMAFile,
        "gzip": lambda s: gzip.GzipFile(fileobj=s),
        "bzip2": bz2.BZ2File,
        "tar": lambda s: s,
    }
    if kind in readers:
        return cast(IO[bytes], readers[kind](stream))
    raise InputError(
        f"{name} is {kind}-compressed, which vgpubuild does not read",
        hint=f"Unpack it (sh {PurePosixPath(name).name} -x) and pass --xml FOLDER/{XML_NAME}.",
    )


def _tar_member(payload: IO[bytes]) -> bytes | None:
    """The vgpuConfig.xml at the top of the driver tree (``./`` or one folder deep)."""
    with tarfile.open(fileobj=payload, mode="r|") as tar:
        for member in tar:
            parts = [p for p in PurePosixPath(member.name).parts if p != "."]
            if parts[-1:] == [XML_NAME] and len(parts) <= 2 and member.isfile():
                if member.size > MAX_XML_BYTES:
                    return None
                extracted = tar.extractfile(member)
                return extracted.read() if extracted is not None else None
    return None
