"""The release catalog: every vGPU release vgpubuild knows, and user-defined ones.

The built-in releases live in ``releases.toml`` (package data, the project's own list). A
build config may define more releases with the same fields, the equivalent of vgpu4nixos's
``mkVgpuDriver``/``mkVgpuPatcher``; those are checked just as strictly, so a typo in a key is
an error naming the closest valid key instead of a silently missing value.
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Mapping
from dataclasses import dataclass, fields
from importlib import resources
from pathlib import Path
from typing import Any

from vgpubuild.errors import ConfigError, InvalidHashError, UnknownReleaseError
from vgpubuild.nixhash import Hash
from vgpubuild.tables import parse_table

LINUX_RUN_PREFIX = "NVIDIA-Linux-x86_64-"


def _closest(word: str, choices: list[str], n: int = 1) -> list[str]:
    return difflib.get_close_matches(word, choices, n=n, cutoff=0.5)


def _check_keys(where: str, data: Mapping[str, Any], valid: list[str], required: list[str]) -> None:
    for key in data:
        if key not in valid:
            near = _closest(str(key), valid)
            hint = f"Did you mean {near[0]!r}?" if near else "Valid keys: " + ", ".join(valid) + "."
            raise ConfigError(f"unknown key {key!r} in {where}", hint=hint)
    missing = [k for k in required if data.get(k) in (None, "")]
    if missing:
        raise ConfigError(
            f"{where} lacks required key(s) {', '.join(missing)}",
            hint="Give every field releases.toml gives for a built-in release.",
        )


def _hash(where: str, key: str, value: Any) -> Hash:
    if not isinstance(value, str):
        raise ConfigError(f"{where}.{key} must be a hash string, not {type(value).__name__}")
    try:
        return Hash.parse(value, "sha256")
    except InvalidHashError as exc:
        raise ConfigError(f"{where}.{key}: {exc.message}", hint=exc.hint) from None


def _str(where: str, key: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{where}.{key} must be a string, not {type(value).__name__}")
    return value


def _convert(cls: type[Any], where: str, data: Mapping[str, Any], skip: set[str]) -> dict[str, Any]:
    """Type-check ``data`` against ``cls``'s fields: hashes are parsed, the rest are strings."""
    out: dict[str, Any] = {}
    for f in fields(cls):
        if f.name in skip:
            continue
        value = data.get(f.name)
        if value is None or value == "":
            out[f.name] = None
        elif "sha256" in f.name:
            out[f.name] = _hash(where, f.name, value)
        else:
            out[f.name] = _str(where, f.name, value)
    return out


@dataclass(frozen=True)
class PatcherInfo:
    """vGPU-Unlock-patcher support for one release (``mkVgpuPatcher``'s arguments)."""

    branch: str
    repo: str
    rev: str
    sha256: Hash
    """NAR hash of the patcher tree with the ``unlock`` submodule filled in."""
    unlock_repo: str
    unlock_rev: str
    general_sha256: Hash | None = None
    general_url: str | None = None
    windows_guest_name: str | None = None
    windows_guest_sha256: Hash | None = None

    @classmethod
    def from_mapping(cls, version: str, data: Mapping[str, Any]) -> PatcherInfo:
        where = f"release {version!r} patcher"
        valid = [f.name for f in fields(cls)]
        required = ["branch", "repo", "rev", "sha256", "unlock_repo", "unlock_rev"]
        _check_keys(where, data, valid, required)
        return cls(**_convert(cls, where, data, set()))


@dataclass(frozen=True)
class Release:
    """One vGPU release: the driver versions, the GRID zip and the public guest driver."""

    version: str
    host_version: str
    guest_version: str
    general_version: str
    zip_name: str
    zip_sha256: Hash
    guest_sha256: Hash | None = None
    guest_url: str | None = None
    patcher: PatcherInfo | None = None

    @property
    def grid_series(self) -> str:
        """The major GRID version: ``"17"`` for release ``"17.3"``."""
        return self.version.split(".", 1)[0]

    @property
    def host_run_name(self) -> str:
        """The vgpu-kvm host driver inside the zip's ``Host_Drivers/``."""
        return f"{LINUX_RUN_PREFIX}{self.host_version}-vgpu-kvm.run"

    @property
    def guest_run_name(self) -> str:
        """The Linux guest driver (public download, also in the zip's ``Guest_Drivers/``)."""
        return f"{LINUX_RUN_PREFIX}{self.guest_version}-grid.run"

    @property
    def general_run_name(self) -> str:
        """The consumer driver the merged targets combine with the vGPU one."""
        return f"{LINUX_RUN_PREFIX}{self.general_version}.run"

    def known_files(self) -> dict[str, Hash]:
        """Every file of this release whose flat hash the catalog knows, by file name."""
        files = {self.zip_name: self.zip_sha256}
        if self.guest_sha256 is not None:
            files[self.guest_run_name] = self.guest_sha256
        p = self.patcher
        if p is not None and p.general_sha256 is not None:
            files[self.general_run_name] = p.general_sha256
        if p is not None and p.windows_guest_name and p.windows_guest_sha256 is not None:
            files[p.windows_guest_name] = p.windows_guest_sha256
        return files

    def to_json(self) -> dict[str, Any]:
        """Plain data for ``--json``: hashes in SRI, the derived file names included."""

        def plain(obj: Any) -> dict[str, Any]:
            return {
                f.name: str(v) if isinstance(v, Hash) else v
                for f in fields(obj)
                if not isinstance(v := getattr(obj, f.name), PatcherInfo)
            }

        data = plain(self)
        data.update(
            grid_series=self.grid_series,
            host_run_name=self.host_run_name,
            guest_run_name=self.guest_run_name,
            general_run_name=self.general_run_name,
            patcher=plain(self.patcher) if self.patcher else None,
        )
        return data

    @classmethod
    def from_mapping(cls, version: str, data: Mapping[str, Any]) -> Release:
        """Build a release from a releases.toml-shaped table; unknown keys are errors."""
        where = f"release {version!r}"
        if not isinstance(data, Mapping):
            raise ConfigError(f"{where} must be a table of fields")
        valid = [f.name for f in fields(cls) if f.name != "version"]
        required = ["host_version", "guest_version", "general_version", "zip_name", "zip_sha256"]
        _check_keys(where, data, valid, required)
        values = _convert(cls, where, data, {"version", "patcher"})
        patcher = data.get("patcher")
        if patcher is not None and not isinstance(patcher, Mapping):
            raise ConfigError(f"{where}.patcher must be a table")
        return cls(
            version=version,
            patcher=PatcherInfo.from_mapping(version, patcher) if patcher else None,
            **values,
        )


def parse_releases(text: str, source: str) -> dict[str, Release]:
    """Parse a ``[releases."X"]`` TOML document (the built-in catalog or a user's file)."""
    doc = parse_table(text, source, "toml")
    _check_keys(source, doc, ["releases"], [])
    tables = doc.get("releases", {})
    return {version: Release.from_mapping(version, data) for version, data in tables.items()}


def load_releases_file(path: Path) -> dict[str, Mapping[str, Any]]:
    """Read a user's releases TOML file as raw tables, for :func:`get_release`'s ``extra``."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read releases file {str(path)!r}: {exc.strerror}") from None
    doc = parse_table(text, repr(str(path)), "toml")
    _check_keys(str(path), doc, ["releases"], [])
    releases: dict[str, Mapping[str, Any]] = doc.get("releases", {})
    return releases


@functools.cache
def load_catalog() -> dict[str, Release]:
    """The built-in releases, in file order (oldest first); parsed once per process."""
    text = resources.files("vgpubuild").joinpath("releases.toml").read_text(encoding="utf-8")
    return parse_releases(text, "the built-in releases.toml")


def _version_key(version: str) -> tuple[int | str, ...]:
    return tuple(int(p) if p.isdigit() else p for p in version.split("."))


def all_releases(extra: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, Release]:
    """Built-in plus user-defined releases (a user's definition wins), sorted by version."""
    merged = dict(load_catalog())
    for version, data in (extra or {}).items():
        merged[version] = Release.from_mapping(version, data)
    return {v: merged[v] for v in sorted(merged, key=_version_key)}


def get_release(version: str, extra: Mapping[str, Mapping[str, Any]] | None = None) -> Release:
    """The release ``version`` (e.g. ``"17.3"``), user-defined ones first."""
    if extra and version in extra:
        return Release.from_mapping(version, extra[version])
    catalog = load_catalog()
    if version in catalog:
        return catalog[version]
    known = list(catalog) + [v for v in (extra or {}) if v not in catalog]
    near = _closest(version, known, n=3)
    hint = (
        f"Closest: {', '.join(near)}. " if near else ""
    ) + "Run 'vgpubuild releases list' to see all, or define the release in your build config."
    raise UnknownReleaseError(f"unknown release {version!r}", hint=hint)


def release_for_file(
    name: str, extra: Mapping[str, Mapping[str, Any]] | None = None
) -> tuple[Release, Hash] | None:
    """The release that lists a file called ``name``, with that file's expected hash."""
    for release in reversed(all_releases(extra).values()):
        expected = release.known_files().get(name)
        if expected is not None:
            return release, expected
    return None


def release_for_hash(
    digest: Hash, extra: Mapping[str, Mapping[str, Any]] | None = None
) -> tuple[Release, str] | None:
    """The release with a file of content ``digest``, and that file's catalog name."""
    for release in all_releases(extra).values():
        for name, expected in release.known_files().items():
            if expected == digest:
                return release, name
    return None
