"""The Nix builder mode: ``vgpubuild nix-builder`` as a derivation's ``builder``.

Nix runs a builder with an almost empty environment: the derivation's attributes (as
environment variables, or with ``__structuredAttrs`` as ``$NIX_ATTRS_JSON_FILE``), ``$out``
to create, ``$TMPDIR`` to work in, ``$HOME=/homeless-shelter`` and, outside a sandbox,
nothing stopping a process from reaching the network or the user's files. So this mode
holds itself to what a sandbox would enforce:

- inputs come only from the paths in the attributes (``gridZip``, ``patcher``,
  ``generalRun``, ``extraPatches``); the input cache is a fresh folder under ``$TMPDIR``;
- fetching is offline, and a Python audit hook refuses every internet socket, so an input
  that would have to be downloaded fails at once with :class:`OfflineError`, never a hang;
- logs are plain text without colours or progress bars (they end up in ``nix log``);
- ``NIX_BUILD_CORES`` is passed on to the tools that can use more than one core.

The attributes (see docs/nix.md): ``release`` (a version), ``config`` (the build config as
JSON text, or an attribute set with structured attrs: the ``hardware.nvidia.vgpu`` option
tree), ``gridZip`` (path), ``patcher`` (path, the patcher tree with ``unlock/``),
``generalRun`` (path, merged targets), ``extraPatches`` (paths), ``repack`` and
``patcherUnverified`` (booleans).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vgpubuild import log
from vgpubuild.cache import Cache
from vgpubuild.catalog import get_release
from vgpubuild.config import BuildConfig
from vgpubuild.errors import ConfigError, InputError, OfflineError, UsageError
from vgpubuild.fetch import FetchOptions
from vgpubuild.pipeline import build
from vgpubuild.tables import check_depth, parse_table

_PATH_ATTRS = ("gridZip", "patcher", "generalRun")
_BOOL_ATTRS = ("repack", "patcherUnverified")
_INTERNET = (socket.AF_INET, socket.AF_INET6)


@dataclass(frozen=True)
class BuilderInputs:
    """The derivation's attributes, read and checked (every path exists)."""

    out: Path
    run_output: Path | None
    """The derivation's ``run`` output, where ``repack`` puts the single-file .run."""
    tmpdir: Path
    release: str | None
    config: dict[str, Any]
    grid_zip: Path | None
    patcher: Path | None
    general_run: Path | None
    extra_patches: tuple[Path, ...]
    repack: bool
    patcher_unverified: bool
    cores: int
    search_path: str
    """PATH for the tools patch.sh runs (with structured attrs it is an attribute only)."""


def _env_bool(value: str) -> bool:
    # Nix writes true as "1" and false as "" into the environment.
    return value not in ("", "0", "false")


def _attr_source(env: Mapping[str, str]) -> tuple[dict[str, Any], str, bool]:
    """(attributes, where they came from, structured?)."""
    attrs_file = env.get("NIX_ATTRS_JSON_FILE")
    if not attrs_file:
        return dict(env), "the environment", False
    build_top = env.get("NIX_BUILD_TOP")
    if build_top and not os.path.exists(attrs_file):
        # Nix 2.8 names the file by its path outside the sandbox; inside, it is in the build dir.
        attrs_file = os.path.join(build_top, os.path.basename(attrs_file))
    try:
        with open(attrs_file, encoding="utf-8") as f:
            attrs = json.load(f)
    except (OSError, ValueError, RecursionError) as exc:
        raise InputError(f"cannot read $NIX_ATTRS_JSON_FILE {attrs_file!r}: {exc}") from None
    if not isinstance(attrs, dict):
        raise InputError(f"$NIX_ATTRS_JSON_FILE {attrs_file!r} does not hold an object")
    return attrs, "$NIX_ATTRS_JSON_FILE", True


def _path(name: str, value: Any) -> Path | None:
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise UsageError(
            f"derivation attribute {name} must be a path, not {type(value).__name__}",
            hint=f"Pass a path or a derivation as {name}.",
        )
    path = Path(value)
    if not path.exists():
        raise InputError(
            f"derivation attribute {name} names {value!r}, which does not exist",
            hint=f"Pass {name} as a Nix path or derivation so Nix copies it into the store.",
        )
    return path


def _config(value: Any, origin: str) -> dict[str, Any]:
    if value in (None, ""):
        return {}
    if isinstance(value, str):
        return parse_table(value, "derivation attribute config", "json")
    if not isinstance(value, dict):
        raise ConfigError(
            f"derivation attribute config from {origin} is a {type(value).__name__}, "
            "not an attribute set",
            hint="Pass config = builtins.toJSON { ... }.",
        )
    check_depth(value, f"derivation attribute config from {origin}")
    return value


def read_inputs(env: Mapping[str, str]) -> BuilderInputs:
    """Read and check the derivation's attributes; nothing is built yet."""
    attrs, origin, structured = _attr_source(env)
    if structured:
        outputs = attrs.get("outputs") or {}
    else:
        outputs = {name: attrs.get(name) for name in attrs.get("outputs", "out").split()}
    out_value = outputs.get("out")
    if not out_value:
        raise UsageError(
            "$out is not set, so this is not a Nix build",
            hint="nix-builder runs as a derivation's builder; see docs/nix.md.",
        )
    tmp_value = env.get("TMPDIR") or env.get("NIX_BUILD_TOP")
    if not tmp_value or not Path(tmp_value).is_dir():
        raise InputError("$TMPDIR is not set or not a folder", hint="Run nix-builder from Nix.")

    if structured:
        flags = {name: bool(attrs.get(name)) for name in _BOOL_ATTRS}
        patches = attrs.get("extraPatches") or []
    else:
        flags = {name: _env_bool(attrs.get(name, "")) for name in _BOOL_ATTRS}
        patches = attrs.get("extraPatches", "").split()
    if not isinstance(patches, list):
        raise UsageError("derivation attribute extraPatches must be a list of paths")
    extra = tuple(p for i, v in enumerate(patches) if (p := _path(f"extraPatches[{i}]", v)))
    paths = {name: _path(name, attrs.get(name)) for name in _PATH_ATTRS}
    release = attrs.get("release") or None
    if release is not None and not isinstance(release, str):
        raise UsageError('derivation attribute release must be a string such as "17.3"')

    if flags["repack"] and not outputs.get("run"):
        raise UsageError(
            "repack is set but the derivation has no 'run' output for the .run file",
            hint='Add outputs = [ "out" "run" ] to the derivation.',
        )
    cores_text = str(env.get("NIX_BUILD_CORES") or "1")
    cores = int(cores_text) if cores_text.isdigit() else 1
    return BuilderInputs(
        out=Path(out_value),
        run_output=Path(outputs["run"]) if outputs.get("run") else None,
        search_path=str(attrs.get("PATH") or env.get("PATH") or ""),
        tmpdir=Path(tmp_value),
        release=release,
        config=_config(attrs.get("config"), origin),
        grid_zip=paths["gridZip"],
        patcher=paths["patcher"],
        general_run=paths["generalRun"],
        extra_patches=extra,
        repack=flags["repack"],
        patcher_unverified=flags["patcherUnverified"],
        cores=cores if cores > 0 else (os.cpu_count() or 1),
    )


def forbid_network() -> None:
    """Make every internet socket (and name lookup) in this process an :class:`OfflineError`.

    Offline fetch options already keep vgpubuild's own code from the network; this catches
    anything else, the way a build sandbox would, and fails at once instead of waiting for
    a timeout.
    """

    def hook(event: str, args: tuple[Any, ...]) -> None:
        blocked = (
            event == "socket.__new__" and len(args) > 1 and args[1] in _INTERNET
        ) or event in ("socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyname_ex")
        if blocked:
            raise OfflineError(
                f"the Nix builder tried to use the network ({event})",
                hint="Pass every input as a derivation attribute; the builder never downloads.",
            )

    sys.addaudithook(hook)


def build_config(inputs: BuilderInputs) -> BuildConfig:
    """The pipeline's BuildConfig: the ``config`` attribute plus release and zip paths."""
    data = dict(inputs.config)
    if inputs.release is not None:
        given = data.get("release")
        if given not in (None, inputs.release):
            raise ConfigError(
                f"derivation attribute release is {inputs.release!r} but config.release is "
                f"{given!r}",
                hint="Set the release in one place.",
            )
        data["release"] = inputs.release
    if inputs.grid_zip is not None:
        data["zip"] = str(inputs.grid_zip)
    return BuildConfig.from_mapping(
        data, source="derivation attribute config", base_dir=inputs.tmpdir
    )


def _seed_general_run(inputs: BuilderInputs, config: BuildConfig, cache: Cache) -> None:
    """Put ``generalRun`` in the input cache under the name and hash the release pins.

    The pipeline then finds it there like any verified input; a wrong file is a hash
    mismatch naming the attribute's file, not a download attempt.
    """
    if inputs.general_run is None or config.release is None:
        return
    release = get_release(config.release, extra=config.releases)
    expected = release.patcher.general_sha256 if release.patcher else None
    if expected is None:
        raise ConfigError(
            f"release {release.version} pins no consumer driver, so generalRun cannot be checked",
            hint="Leave generalRun out, or define general_sha256 in the release's patcher table.",
        )
    cache.add_file(inputs.general_run, expected, release.general_run_name)


def _install(artifact: Path, out: Path) -> None:
    """Put the artifact at ``$out`` (a rename when ``$TMPDIR`` and the store share a disk)."""
    try:
        shutil.move(os.fspath(artifact), os.fspath(out))
    except OSError as exc:
        raise InputError(f"cannot create $out {str(out)!r}: {exc.strerror}") from None


def run(env: Mapping[str, str]) -> None:
    """Build the artifact described by the derivation's attributes into ``$out``."""
    forbid_network()
    log.configure("console")
    inputs = read_inputs(env)
    config = build_config(inputs)
    logger = log.get_logger()
    logger.info("nix builder", release=config.release, cores=inputs.cores, out=str(inputs.out))

    work = inputs.tmpdir / "vgpubuild"
    cache_root = work / "cache"
    # Explicit, $HOME-independent locations for anything that looks them up itself.
    os.environ["VGPUBUILD_CACHE"] = str(cache_root)
    os.environ["XDG_CACHE_HOME"] = str(work / "xdg-cache")
    os.environ["NIX_BUILD_CORES"] = str(inputs.cores)
    os.environ["MAKEFLAGS"] = f"-j{inputs.cores}"
    os.environ["ZSTD_NBTHREADS"] = str(inputs.cores)
    os.environ["PATH"] = inputs.search_path
    cache = Cache(cache_root)
    _seed_general_run(inputs, config, cache)
    result = build(
        config,
        out=work / "out",
        cache=cache,
        fetch_options=FetchOptions(offline=True, progress=False),
        patcher_dir=inputs.patcher,
        patcher_unverified=inputs.patcher_unverified,
        extra_patches=inputs.extra_patches,
        repack=inputs.repack,
    )
    _install(result.artifact, inputs.out)
    if inputs.run_output is not None and result.repacked is not None:
        _install(result.repacked.path, inputs.run_output)
    sys.stdout.write(
        f"vgpubuild: artifact NAR hash {result.nar_hash.format('nix32', prefix=True)} "
        f"({result.nar_hash.sri})\n"
    )
    sys.stdout.flush()
