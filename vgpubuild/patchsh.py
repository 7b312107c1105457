"""patch.sh's contract, checked before it runs: options, the tools it calls, its versions.

``patch.sh`` is forgiving in ways a reproducible build cannot be: an unknown option is only
printed, a missing tool fails halfway through, and a version mismatch shows up as "package
not found" after minutes of work. So the command line is built and checked here (option
names for the patcher's branch, mapped from the NixOS options as vgpu4nixos maps them), every
external program is found first, and the GNRL/VGPU/GRID lines at the top of patch.sh must
name the release's drivers.
"""

from __future__ import annotations

import difflib
import os
import re
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path

from vgpubuild import log
from vgpubuild.catalog import Release
from vgpubuild.errors import PatcherError, ToolMissingError, UsageError
from vgpubuild.patchertree import require_patcher
from vgpubuild.targets import get_target

GPL_FLAGS = ("--enable-nvidia-gpl-for-experimenting", "--force-nvidia-gpl-I-know-it-is-wrong")
"""Added unless ``doNotForceGPLLicense`` (vgpu4nixos's default is to add them)."""

_COMMON_OPTIONS = frozenset(
    {
        "--no-klogtrace",
        "--no-libs-patch",
        "--no-testsign",
        "--create-cert",
        "--spoof-devid",
        "--repack",
        "--force-nvidia-gpl-I-know-it-is-wrong",
        "--enable-nvidia-gpl-for-experimenting",
        "--test-dmabuf-export",
        "--envy-probes",
    }
)
KNOWN_OPTIONS: dict[str, frozenset[str]] = {
    "535": _COMMON_OPTIONS,
    "550": _COMMON_OPTIONS | {"--nvoss", "--nvoss-debug", "--remap-p2v"},
}
"""Options ``patch.sh`` understands, by driver series (the host driver's major version)."""

_LINUX = "NVIDIA-Linux-x86_64-"
_EXPECT_LINE = re.compile(r'^(GNRL|VGPU|GRID|WSYS)=["\']?([^"\'\s]+)["\']?\s*(?:#.*)?$')
_EXPECT_SCAN_LINES = 100

_BASE_TOOLS: tuple[tuple[str, str], ...] = (
    ("bash", "bash"),
    ("sh", "dash or bash"),
    *((tool, "coreutils") for tool in ("cat", "chmod", "cp", "dirname", "head", "ls", "mkdir")),
    *((tool, "coreutils") for tool in ("mv", "rm", "sha256sum", "sort", "tail", "tr", "wc")),
    ("find", "findutils"),
    ("grep", "grep"),
    ("sed", "sed"),
    ("awk", "gawk"),
    ("patch", "GNU patch"),
    ("tar", "tar"),
    ("xz", "xz-utils"),
    ("gzip", "gzip"),
    ("patchelf", "patchelf"),
)
_EXTRA_TOOLS: dict[str, tuple[tuple[str, str], ...]] = {
    "--repack": (("zstd", "zstd"),),
    "--nvoss": (("gcc", "gcc"), ("make", "make")),
    "--nvoss-debug": (("gcc", "gcc"), ("make", "make")),
}
_WSYS_TOOLS: tuple[tuple[str, str], ...] = (
    ("7z", "p7zip-full"),
    ("msexpand", "mscompress"),
    ("mono", "mono-runtime"),
    ("osslsigncode", "osslsigncode"),
)


def _series(release: Release) -> str:
    return release.host_version.split(".", 1)[0]


def validate_options(options: Iterable[str], series: str) -> None:
    """Refuse any option ``patch.sh`` of driver series ``series`` does not know.

    patch.sh itself only prints ``Unknown option X`` and carries on, building something
    other than what was asked for; this stops before it runs.
    """
    known = KNOWN_OPTIONS.get(series)
    if known is None:
        newest = max(KNOWN_OPTIONS, key=int)
        log.get_logger(stage="patcher").warning(
            "unknown driver series; checking options against the newest known",
            series=series,
            using=newest,
        )
        known = KNOWN_OPTIONS[newest]
    for option in options:
        if not option.startswith("--"):
            raise UsageError(
                f"extra patcher option {option!r} does not start with '--'",
                hint="patch.sh would take it as the target; give the target with --target.",
            )
        if option not in known:
            near = difflib.get_close_matches(option, sorted(known), n=1)
            hint = f"Did you mean {near[0]!r}? " if near else ""
            raise UsageError(
                f"patch.sh of the {series}.x series does not know the option {option!r}",
                hint=hint + "Known: " + " ".join(sorted(known)) + ".",
            )


def patch_args(
    target: str,
    do_not_force_gpl: bool,
    remap_p2v: bool,
    extra: Sequence[str],
    release: Release,
) -> list[str]:
    """The ``patch.sh`` command line after ``patch.sh``, mapped as vgpu4nixos maps it."""
    require_patcher(release)
    checked = get_target(target)
    args: list[str] = [] if do_not_force_gpl else list(GPL_FLAGS)
    if remap_p2v:
        if release.grid_series != "17":
            raise UsageError(
                f"--remap-p2v works only on 17.x releases, not on {release.version}",
                hint="Drop --remap-p2v (remapP40ProfilesToV100D) or pick a 17.x release.",
            )
        args.append("--remap-p2v")
    validate_options(extra, _series(release))
    args.extend(extra)
    args.append(checked.value)
    return args


# -------------------------------------------------------------------------- tools


def check_tools(target: str, args: Sequence[str] = (), search_path: str | None = None) -> str:
    """Find every program ``patch.sh`` will call for ``target`` and ``args``; return a PATH.

    The PATH returned holds only the folders where those programs were found, so the run
    sees no stray user tools. Every missing program is named at once.
    """
    search = os.environ.get("PATH", os.defpath) if search_path is None else search_path
    needed = list(_WSYS_TOOLS if target == "wsys" else ())
    needed += _BASE_TOOLS
    for option in args:
        needed += _EXTRA_TOOLS.get(option, ())
    folders: list[str] = []
    missing: dict[str, str] = {}
    for tool, package in needed:
        found = shutil.which(tool, path=search)
        if found is None:
            missing[tool] = package
        elif (folder := os.path.dirname(found)) not in folders:
            folders.append(folder)
    if missing:
        names = ", ".join(f"{tool} ({package})" for tool, package in missing.items())
        raise ToolMissingError(
            f"patch.sh needs programs that are not on PATH: {names}",
            hint="Install them (the package is in brackets) and run again.",
        )
    return os.pathsep.join(folders)


# --------------------------------------------------------------------- expectations


def read_expectations(patch_sh: str | os.PathLike[str]) -> dict[str, str]:
    """The GNRL/VGPU/GRID (and WSYS, when present) lines near the top of ``patch.sh``."""
    patch_sh = Path(patch_sh)
    found: dict[str, str] = {}
    try:
        with patch_sh.open(encoding="utf-8", errors="replace") as f:
            for _, line in zip(range(_EXPECT_SCAN_LINES), f, strict=False):
                if (m := _EXPECT_LINE.match(line.strip())) and m.group(1) not in found:
                    found[m.group(1)] = m.group(2)
    except OSError as exc:
        raise PatcherError(
            f"cannot read {str(patch_sh)!r}: {exc.strerror}",
            hint="Point --patcher at a vGPU-Unlock-patcher checkout (the folder with patch.sh).",
        ) from None
    lacking = [key for key in ("GNRL", "VGPU", "GRID") if key not in found]
    if lacking:
        raise PatcherError(
            f"{patch_sh.name} has no {'/'.join(lacking)} line near its top",
            hint="This does not look like vGPU-Unlock-patcher's patch.sh; check --patcher.",
        )
    return found


def check_expectations(patch_sh: str | os.PathLike[str], release: Release) -> dict[str, str]:
    """Stop when patch.sh was written for other driver versions than ``release``'s."""
    found = read_expectations(patch_sh)
    wanted = {
        "GNRL": (f"{_LINUX}{release.general_version}", "general"),
        "VGPU": (f"{_LINUX}{release.host_version}-vgpu-kvm", "host"),
        "GRID": (f"{_LINUX}{release.guest_version}-grid", "guest"),
    }
    for key, (name, role) in wanted.items():
        if found[key] != name:
            raise PatcherError(
                f"patch.sh expects {key}={found[key]} but release {release.version} has the "
                f"{role} driver {name}",
                hint="Use the patcher revision the catalog names for this release "
                "(or the release this patcher was written for).",
            )
    return found
