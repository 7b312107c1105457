"""Where each input comes from, and obtaining it verified.

An input is a file name plus its expected SHA-256. :func:`obtain` looks for it in a fixed
order and returns the first verified copy:

1. the path the user gave explicitly (checked, hashed, cached);
2. the vgpubuild cache;
3. the Nix store path ``nix-store --add-fixed sha256 NAME`` would have given it (computed,
   then checked on disk and hashed), so a file added the requireFile way is found;
4. the configured URL (``http(s)://``, ``file://`` or a plain path).

When all fail, :class:`SourceNotFoundError` says exactly how to supply the file.
:func:`require_on_hand` asks the same question for every input of a build before the
first download (no file read, no socket), so the file only the user can supply (the GRID
zip) is reported at once instead of after minutes spent on the rest.
:func:`driver_sources` applies vgpu4nixos's ``driverSource`` rules to a release.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from vgpubuild import log
from vgpubuild.cache import Cache
from vgpubuild.catalog import LINUX_RUN_PREFIX, Release
from vgpubuild.config import DriverSource
from vgpubuild.credentials import parse_curl_opts
from vgpubuild.errors import (
    ConfigError,
    InputError,
    OfflineError,
    SourceNotFoundError,
    UsageError,
)
from vgpubuild.fetch import FetchOptions, display_url, download, is_url, local_path
from vgpubuild.nixhash import Hash
from vgpubuild.store import fixed_output_path
from vgpubuild.verify import Pinned

NVIDIA_PORTAL = "https://www.nvidia.com/object/vGPU-software-driver.html"
GUEST_URL = "https://storage.googleapis.com/nvidia-drivers-us-public/GRID/vGPU{grid}/{name}"


@dataclass(frozen=True)
class InputSpec:
    """One input file: its name, expected hash and the places it may be found."""

    name: str
    sha256: Hash
    url: str | None = None
    path: Path | None = None
    nix_store: bool = False
    curl_opts: tuple[str, ...] = ()
    """curl options for ``url`` (vgpu4nixos's ``curlOptsList``): credentials, CA bundle."""
    obtain_hint: str | None = None
    """How a person gets the file when it is nowhere (e.g. NVIDIA's licensing portal)."""

    def store_path(self) -> str:
        """Where ``nix-store --add-fixed sha256 NAME`` puts this file."""
        return fixed_output_path(self.sha256, self.name, "flat")

    def record(self) -> dict[str, str]:
        """The input as a build's description names it: what it is, never where from."""
        return {"name": self.name, "sha256": self.sha256.sri}


def obtain(spec: InputSpec, cache: Cache, options: FetchOptions) -> Path:
    """A verified local copy of ``spec``'s file, from the first place that has it."""
    logger = log.get_logger(file=spec.name)
    if spec.path is not None:
        return _from_explicit_path(spec, cache)
    if hit := cache.lookup(spec.sha256, spec.name):
        logger.debug("found in the cache", path=str(hit))
        return hit
    if spec.nix_store and (found := _from_nix_store(spec)):
        logger.info("found in the Nix store", path=str(found))
        return found
    if spec.url:
        if spec.curl_opts:
            creds = parse_curl_opts(spec.curl_opts)
            options = dataclasses.replace(options, credentials=creds)
        return download(spec.url, spec.sha256, cache, options, name=spec.name)
    raise SourceNotFoundError(not_found_message(spec, cache))


def on_hand(spec: InputSpec, cache: Cache) -> bool:
    """True when ``spec``'s file is on this machine (given path, cache, Nix store).

    Nothing is read or hashed: :func:`obtain` verifies the file when the build takes it.
    """
    if spec.path is not None:
        return _given_path(spec).is_file()
    return cache.lookup(spec.sha256, spec.name) is not None or (
        spec.nix_store and Path(spec.store_path()).is_file()
    )


def require_on_hand(specs: list[InputSpec], cache: Cache, options: FetchOptions) -> None:
    """Fail now for an input no download will supply; never touches the network.

    An input that is not on this machine is an error at once when it has no URL (the GRID
    zip: the requireFile message) or when ``options.offline`` forbids the download (the
    message names the one command that supplies it).
    """
    for spec in specs:
        if on_hand(spec, cache):
            continue
        if spec.path is not None:
            _given_path(spec, check=True)
        if not spec.url:
            raise SourceNotFoundError(not_found_message(spec, cache))
        if options.offline and local_path(spec.url) is None:  # file:// needs no network
            raise OfflineError(
                f"{spec.name} is not on this machine (not in the vgpubuild cache, not in the "
                "Nix store) and --offline forbids downloading it",
                hint="Fetch it once online with: vgpubuild prefetch "
                f"{display_url(spec.url)} {spec.sha256.sri} (or vgpubuild add FILE if you "
                "have a copy)",
            )


def _given_path(spec: InputSpec, *, check: bool = False) -> Path:
    assert spec.path is not None
    path = spec.path.expanduser()
    if check and not path.is_file():
        raise InputError(
            f"{str(path)!r} does not exist or is not a file", hint=f"Give the path of {spec.name}."
        )
    return path


def _from_explicit_path(spec: InputSpec, cache: Cache) -> Path:
    path = _given_path(spec, check=True)
    # A cached copy of the same size is the same file: skip hashing hundreds of MB again.
    hit = cache.lookup(spec.sha256, spec.name)
    if hit is not None and hit.stat().st_size == path.stat().st_size:
        return hit
    return cache.add_file(path, spec.sha256, spec.name)


def _from_nix_store(spec: InputSpec) -> Path | None:
    path = Path(spec.store_path())
    if not path.is_file():
        return None
    Pinned(spec.sha256, spec.name).check_file(  # only a corrupted store fails; never use it
        path,
        note=f"the copy at {path} is damaged and was not used",
        hint="Repair the store (nix-store --verify --check-contents --repair) or delete that path.",
    )
    return path


def not_found_message(spec: InputSpec, cache: Cache) -> str:
    """The requireFile message, improved: what is missing, its hash, and how to add it."""
    how = spec.obtain_hint or "Download it"
    places = [
        "no path was given",
        f"it is not in the vgpubuild cache ({cache.root})",
    ]
    if spec.nix_store:
        places.append(f"not at its Nix store path {spec.store_path()}")
    places.append("and no URL is configured")
    return "\n".join(
        [
            f"{spec.name} is needed but was not found: {', '.join(places)}",
            f"  expected sha256: {spec.sha256.sri} (nix32: {spec.sha256.format('nix32')})",
            f"{how}, then add it with either of",
            f"  vgpubuild add /path/to/{spec.name}",
            f"  nix-store --add-fixed sha256 /path/to/{spec.name}",
            "or point vgpubuild at it directly (--zip PATH|URL, or driverSource.url in the "
            "build config)",
        ]
    )


def _zip_hint() -> str:
    return (
        "NVIDIA does not allow redistributing this file: download it from your NVIDIA "
        f"licensing portal ({NVIDIA_PORTAL})"
    )


def driver_sources(
    release: Release,
    driver_source: DriverSource | None,
    *,
    guest: bool,
    zip_path: str | None,
    merged: bool = False,
) -> list[InputSpec]:
    """The driver inputs of a build, by vgpu4nixos's ``driverSource`` rules.

    The first spec is the driver itself: the host takes the GRID zip, the guest the public
    ``-grid.run``; a ``driverSource.sha256`` means a ``.run`` is expected and the name's
    extension decides ``.run`` vs ``.zip``. ``zip_path`` (``--zip PATH|URL``) names where the
    GRID zip is. With ``merged`` the consumer ("general") driver follows.
    """
    ds = driver_source or DriverSource()
    ds_sha = _declared_hash(ds)
    sha = _driver_hash(release, ds, ds_sha, guest=guest, zip_path=zip_path)
    is_zip = sha == release.zip_sha256 and ds_sha is None
    if ds.name:
        name = ds.name
    elif is_zip:
        name = release.zip_name
    else:
        version = release.guest_version if guest else release.host_version
        name = f"{LINUX_RUN_PREFIX}{version}-{'grid' if guest else 'vgpu-kvm'}.run"
    url: str | None = ds.url or None
    if not url and guest and not ds.name and ds_sha is None and not is_zip:
        url = release.guest_url or GUEST_URL.format(grid=release.version, name=name)
    path: Path | None = None
    if zip_path:
        if not is_zip:
            raise UsageError(
                "--zip was given, but driverSource.sha256 says a .run file is used",
                hint="Drop --zip, or remove driverSource.sha256 and name to use the GRID zip.",
            )
        url, path = (zip_path, None) if is_url(zip_path) else (url, Path(zip_path))
    driver = InputSpec(
        name=name,
        sha256=sha,
        url=url,
        path=path,
        nix_store=True,
        curl_opts=ds.curlOptsList,
        obtain_hint=_zip_hint() if is_zip else None,
    )
    return [driver, _general(release)] if merged else [driver]


def _declared_hash(ds: DriverSource) -> Hash | None:
    """``driverSource.sha256``, checked against the name's extension (vgpu4nixos's rule)."""
    if ds.sha256 == "":
        raise ConfigError(
            "driverSource.sha256 is empty",
            hint="Run 'vgpubuild prefetch URL' to learn the file's hash and put it there.",
        )
    ds_sha = Hash.parse(ds.sha256, "sha256") if ds.sha256 is not None else None
    if ds.name and ds_sha is None and not ds.name.endswith(".zip"):
        raise ConfigError(
            f"driverSource.name {ds.name!r} is not a .zip, but no driverSource.sha256 is set",
            hint="Declare driverSource.sha256 for a .run file, or name the GRID .zip.",
        )
    if ds.name and ds_sha is not None and not ds.name.endswith(".run"):
        raise ConfigError(
            f"driverSource.sha256 is set, so a .run is expected, but the name is {ds.name!r}",
            hint="Remove driverSource.sha256 to use a GRID .zip, or name the .run file.",
        )
    return ds_sha


def _driver_hash(
    release: Release, ds: DriverSource, ds_sha: Hash | None, *, guest: bool, zip_path: str | None
) -> Hash:
    """The driver's pinned hash: declared, else the public guest .run's, else the zip's."""
    if ds_sha is not None:
        return ds_sha
    if guest and not ds.name.endswith(".zip") and not zip_path:
        if release.guest_sha256 is None:
            raise ConfigError(
                f"release {release.version} has no guest driver hash",
                hint="Set driverSource.sha256 (and name) for the guest .run file.",
            )
        return release.guest_sha256
    return release.zip_sha256


def _general(release: Release) -> InputSpec:
    """The consumer driver a merged target combines with the vGPU one."""
    p = release.patcher
    if p is None or p.general_sha256 is None:
        raise ConfigError(
            f"release {release.version} has no consumer driver hash for a merged driver",
            hint="Merged drivers need a release with patcher support (vgpubuild releases list).",
        )
    return InputSpec(
        name=release.general_run_name, sha256=p.general_sha256, url=p.general_url, nix_store=True
    )
