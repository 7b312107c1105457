"""The build configuration: the NixOS module's option tree, read from TOML or JSON.

A vgpu4nixos user already has their settings as ``hardware.nvidia.vgpu`` options, so the
file uses exactly those names (``patcher.options.doNotForceGPLLicense``,
``patcher.copyVGPUProfiles``, ``driverSource.curlOptsList``, ...) and the output of
``builtins.toJSON config.hardware.nvidia.vgpu`` loads unchanged (JSON ``null`` means "not
set", as it does in the module). vgpubuild adds a few keys the module gets elsewhere:
``release`` (the module picks a package instead), ``guest`` (the module's import flag),
``merged`` (the module derives it from ``services.xserver.videoDrivers``),
``patcher.target``, ``zip``, ``patches`` and ``releases`` (user-defined releases, the
equivalent of calling ``mkVgpuDriver``/``mkVgpuPatcher`` yourself).

Every key is checked: a misspelt option would otherwise be silently ignored and the build
would differ from what the user asked for, so an unknown key is a :class:`ConfigError`
naming the key and the closest valid one.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from vgpubuild.errors import ConfigError
from vgpubuild.profiles.settings import (
    CloneMap,
    OverrideMap,
    ProfileOverride,
    parse_clone_map,
    parse_overrides,
)
from vgpubuild.tables import Syntax, parse_table
from vgpubuild.targets import CHOICES

_ANY = object()
"""Schema marker: a table whose content vgpubuild accepts without looking inside."""

_SCHEMA: dict[str, Any] = {
    "release": str,
    "guest": bool,
    "merged": bool,
    "zip": str,
    "patches": [str],
    "releases": "releases",
    "patcher": {
        "enable": bool,
        "target": str,
        "options": {
            "doNotForceGPLLicense": bool,
            "remapP40ProfilesToV100D": bool,
            "extra": [str],
        },
        "copyVGPUProfiles": "table",  # content: profiles.settings.parse_clone_map
        "profileOverrides": "table",  # content: profiles.settings.parse_overrides
        # Options of the running system (modprobe flags, a wrapper on PATH): valid in a
        # module dump, nothing to do with the driver tree.
        "enablePatcherCmd": bool,
        "runtimeOptions": _ANY,
    },
    "driverSource": {
        "name": str,
        "url": str,
        "sha256": str,
        "curlOptsList": [str],
    },
    # gridd-unlock-patcher (guest, 18.x) is a different tool; accepted so that a guest's
    # module dump loads, refused when enabled.
    "griddUnlock": {"enable": bool, "rootCaFile": str},
}


@dataclass(frozen=True)
class PatcherOptions:
    """``patcher.options``: what becomes patch.sh flags (camelCase: the NixOS option names)."""

    doNotForceGPLLicense: bool = False
    remapP40ProfilesToV100D: bool = False
    extra: tuple[str, ...] = ()


@dataclass(frozen=True)
class DriverSource:
    """``driverSource``: where the user's own host driver comes from (vgpu4nixos rules).

    ``sha256`` is ``None`` when unset; with a value the module expects a ``.run`` instead of
    the GRID zip. ``curlOptsList`` may carry credentials: it never reaches logs or manifests.
    """

    name: str = ""
    url: str = ""
    sha256: str | None = None
    curlOptsList: tuple[str, ...] = ()


@dataclass(frozen=True)
class BuildConfig:
    """One build's settings: the file's values with the command line's laid on top.

    ``copyVGPUProfiles`` and ``profileOverrides`` are what the user wrote, merged, in the
    module's own shape (``{"NEW:SUB": "SRC:SUB"}``, ``{"333": {"vramAllocation": ..}}``
    with unset values left out); :attr:`clones` and :attr:`overrides` are the same tables
    parsed (the one validation they get), which is what the rest of vgpubuild takes. Paths
    (``zip``, ``patches``) are absolute: relative ones are resolved against the file's folder.
    """

    release: str | None = None
    enable: bool = True
    target: str = "auto"
    options: PatcherOptions = field(default_factory=PatcherOptions)
    copyVGPUProfiles: dict[str, str] = field(default_factory=dict)
    profileOverrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    driverSource: DriverSource = field(default_factory=DriverSource)
    guest: bool = False
    merged: bool = False
    zip: str | None = None
    patches: tuple[Path, ...] = ()
    releases: dict[str, dict[str, Any]] = field(default_factory=dict)
    source: str = "defaults"
    """Where the settings came from, for error messages ("build.toml", "command line")."""
    clones: CloneMap = field(default=(), compare=False)
    """``copyVGPUProfiles`` parsed."""
    overrides: OverrideMap = field(default_factory=dict, compare=False)
    """``profileOverrides`` parsed."""
    system_options: tuple[str, ...] = field(default=(), compare=False)
    """The running system's options (``patcher.enablePatcherCmd``, ``runtimeOptions``) that
    are switched on: the NixOS module acts on them, a driver build does not."""

    @classmethod
    def from_mapping(
        cls, data: Mapping[str, Any], *, source: str = "config", base_dir: Path | None = None
    ) -> BuildConfig:
        """Validate a parsed file (or ``builtins.toJSON`` dump) and build the config."""
        return cls(source=source).merged_with(data, source=source, base_dir=base_dir)

    @classmethod
    def load(cls, path: Path) -> BuildConfig:
        """Read a TOML or JSON file (JSON when it ends in ``.json`` or starts with ``{``)."""
        return cls.from_mapping(read_table(path), source=str(path), base_dir=path.parent)

    def merged_with(
        self,
        overrides: Mapping[str, Any],
        *,
        source: str = "command line",
        base_dir: Path | None = None,
    ) -> BuildConfig:
        """Return a copy with ``overrides`` (same shape as the file) laid on top.

        Scalars replace; ``copyVGPUProfiles``, ``profileOverrides`` and ``releases`` merge
        key by key (a profile's fields merge too); ``extra`` and ``patches`` are appended,
        so ``--extra X`` adds to the file's list rather than dropping it. ``None`` means
        "not given" and changes nothing.
        """
        _check_table(overrides, _SCHEMA, "", source)
        base = (base_dir or Path.cwd()).absolute()
        new = self
        patcher = overrides.get("patcher") or {}
        opts = patcher.get("options") or {}
        ds = overrides.get("driverSource") or {}
        grid = overrides.get("griddUnlock") or {}
        if grid.get("enable"):
            raise ConfigError(
                f"griddUnlock.enable is set in {source}, but vgpubuild does not run "
                "gridd-unlock-patcher",
                hint="Remove griddUnlock from the configuration, or build that part with vgpu4nixos.",
            )
        scalars = {
            "release": overrides.get("release"),
            "guest": overrides.get("guest"),
            "merged": overrides.get("merged"),
            "enable": patcher.get("enable"),
            "target": patcher.get("target"),
        }
        new = replace(new, **{k: v for k, v in scalars.items() if v is not None})
        runtime = patcher.get("runtimeOptions")
        switched_on = {
            "patcher.enablePatcherCmd": patcher.get("enablePatcherCmd") is True,
            "patcher.runtimeOptions": isinstance(runtime, Mapping) and runtime.get("enable") is True,
        }
        new = replace(
            new,
            system_options=new.system_options
            + tuple(k for k, on in switched_on.items() if on and k not in new.system_options),
        )
        if overrides.get("zip") is not None:
            new = replace(new, zip=_resolve_location(overrides["zip"], base))
        if overrides.get("patches"):
            new = replace(new, patches=new.patches + tuple(base / p for p in overrides["patches"]))
        new = replace(
            new,
            options=PatcherOptions(
                doNotForceGPLLicense=_pick(
                    opts.get("doNotForceGPLLicense"), new.options.doNotForceGPLLicense
                ),
                remapP40ProfilesToV100D=_pick(
                    opts.get("remapP40ProfilesToV100D"), new.options.remapP40ProfilesToV100D
                ),
                extra=new.options.extra
                + tuple(x for x in opts.get("extra") or () if x not in new.options.extra),
            ),
            driverSource=DriverSource(
                name=_pick(ds.get("name"), new.driverSource.name),
                url=_pick(ds.get("url"), new.driverSource.url),
                sha256=_pick(ds.get("sha256"), new.driverSource.sha256),
                curlOptsList=new.driverSource.curlOptsList + tuple(ds.get("curlOptsList") or ()),
            ),
            releases={**new.releases, **(overrides.get("releases") or {})},
            source=source if self.source == "defaults" else f"{self.source} + {source}",
        )
        clones = {**new.copyVGPUProfiles, **(patcher.get("copyVGPUProfiles") or {})}
        overrides_table = _merge_overrides(
            new.profileOverrides, patcher.get("profileOverrides") or {}
        )
        parsed = parse_overrides(overrides_table, where="patcher.profileOverrides", source=source)
        # A profile whose options are all unset (null in a module dump) asks for nothing.
        unset = {pid for pid, o in parsed.items() if o == ProfileOverride()}
        new = replace(
            new,
            copyVGPUProfiles=clones,
            profileOverrides={k: v for k, v in overrides_table.items() if int(k) not in unset},
            clones=tuple(parse_clone_map(clones, where="patcher.copyVGPUProfiles", source=source)),
            overrides=MappingProxyType({k: v for k, v in parsed.items() if k not in unset}),
        )
        if new.target not in CHOICES:
            raise ConfigError(
                f"unknown patcher.target {new.target!r} in {source}",
                hint=_did_you_mean(new.target, CHOICES, "Use one of: " + ", ".join(CHOICES)),
            )
        return new


def read_table(path: Path) -> dict[str, Any]:
    """Parse a TOML or JSON file into a table; any failure is a :class:`ConfigError`."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"configuration file {str(path)!r} does not exist", hint="Check the --config path."
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "it is not UTF-8 text"
        raise ConfigError(f"cannot read configuration file {str(path)!r}: {reason}") from None
    syntax: Syntax = "json" if path.suffix == ".json" or text.lstrip().startswith("{") else "toml"
    return parse_table(text, repr(str(path)), syntax)


def load_overrides_file(path: Path) -> dict[str, Any]:
    """Read a ``--overrides FILE`` as a partial configuration.

    Two shapes are accepted: a table of profile ids (``["333"] vramAllocation = 3584``,
    the value of ``profileOverrides``), or a configuration-shaped file whose
    ``patcher.profileOverrides`` / ``patcher.copyVGPUProfiles`` are taken (the file
    ``vgpubuild profiles apply`` reads).
    """
    data = read_table(path)
    allowed = {"profileOverrides", "copyVGPUProfiles"}
    if "patcher" in data:
        table, others = data["patcher"], set(data) - {"patcher"}
    elif allowed & set(data):
        table, others = data, set()
    else:
        return {"patcher": {"profileOverrides": data}}
    if not isinstance(table, Mapping):
        raise ConfigError(f"'patcher' in {str(path)!r} must be a table")
    unknown = sorted(others | (set(table) - allowed))
    if unknown:
        raise ConfigError(
            f"{str(path)!r} holds {unknown[0]!r}, but an overrides file holds only "
            "profileOverrides and copyVGPUProfiles",
            hint="Put other settings in the --config file.",
        )
    return {"patcher": dict(table)}


def _pick(value: Any, current: Any) -> Any:
    return current if value is None else value


def _merge_overrides(
    old: Mapping[str, dict[str, Any]], new: Mapping[str, Any]
) -> dict[str, dict[str, Any]]:
    merged = {k: dict(v) for k, v in old.items()}
    for pid, fields in new.items():
        if not isinstance(fields, Mapping):
            merged[pid] = fields  # not a table: parse_overrides says so
            continue
        merged.setdefault(pid, {}).update(_drop_nulls(fields))
    return merged


def _drop_nulls(table: Mapping[str, Any]) -> dict[str, Any]:
    """The module's dump has every option, unset ones as null: keep only set values."""
    out: dict[str, Any] = {}
    for key, value in table.items():
        if isinstance(value, Mapping):
            value = _drop_nulls(value)
            if not value and key != "xmlConfig":
                continue
        if value is None or (key == "xmlConfig" and not value):
            continue
        out[key] = value
    return out


def _resolve_location(value: str, base: Path) -> str:
    """A URL stays as it is; a path becomes absolute against the file's folder."""
    if re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", value):
        return value
    return str(base / Path(value).expanduser())


def _did_you_mean(word: str, choices: Any, fallback: str) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.5)
    if close:
        return f"Did you mean {close[0]!r}?"
    return fallback + "."


def _where(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def _type_name(expected: Any) -> str:
    if isinstance(expected, list):
        return f"a list of {_type_name(expected[0])}s"
    if isinstance(expected, dict) or expected in ("table", "releases"):
        return "a table"
    return {bool: "true or false", int: "an integer", str: "a string"}.get(expected, "a table")


def _check_value(value: Any, expected: Any, where: str, source: str) -> None:
    """Raise a ConfigError when ``value`` does not fit ``expected`` (nulls always fit)."""
    if value is None or expected is _ANY:
        return
    bad = False
    if isinstance(expected, dict):
        if not isinstance(value, Mapping):
            bad = True
        else:
            _check_table(value, expected, where, source)
    elif isinstance(expected, list):
        bad = not isinstance(value, list) or not all(isinstance(v, expected[0]) for v in value)
    elif expected is int:
        bad = not isinstance(value, int) or isinstance(value, bool)
    elif isinstance(expected, type):
        bad = not isinstance(value, expected)
    else:
        _check_special(value, expected, where, source)
    if bad:
        raise ConfigError(
            f"{where} in {source} must be {_type_name(expected)}, not {json.dumps(value)[:60]}",
            hint="Fix the value's type (see docs/patch.md for every option).",
        )


def _check_table(
    table: Mapping[str, Any], schema: Mapping[str, Any], prefix: str, source: str
) -> None:
    for key, value in table.items():
        if key not in schema:
            valid = sorted(schema)
            close = difflib.get_close_matches(key, valid, n=1, cutoff=0.4)
            hint = (
                f"Did you mean {_where(prefix, close[0])!r}?"
                if close
                else "Valid keys here: " + ", ".join(valid) + "."
            )
            raise ConfigError(f"unknown option {_where(prefix, key)!r} in {source}", hint=hint)
        _check_value(value, schema[key], _where(prefix, key), source)


def _check_special(value: Any, kind: str, where: str, source: str) -> None:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where} in {source} must be a table", hint="See docs/patch.md.")
    if kind == "releases":
        for name, rel in value.items():
            if not isinstance(rel, Mapping):
                raise ConfigError(
                    f"{where}.{name} in {source} must be a table of release fields",
                    hint="Copy a release from `vgpubuild releases show 17.3 --json` and edit it.",
                )
