"""patch.sh's command line and tools, checked against what the script itself says.

``patch.sh`` is forgiving in ways a reproducible build cannot be: an unknown option is only
printed, a missing tool fails halfway through, and a version mismatch shows up as "package
not found" after minutes of work. So the command line is mapped from the NixOS options as
vgpu4nixos maps them and checked against the contract read from the very ``patch.sh``
that will run (:mod:`vgpubuild.patchercontract`: its targets, options, remap-p2v and
tools, naming its branch in every refusal), every program it calls is found first, and the
GNRL/VGPU/GRID lines at its top must name the release's drivers.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Sequence
from pathlib import Path

from vgpubuild.catalog import Release
from vgpubuild.errors import PatcherError, ToolMissingError, UsageError
from vgpubuild.patchercontract import Contract

GPL_FLAGS = ("--enable-nvidia-gpl-for-experimenting", "--force-nvidia-gpl-I-know-it-is-wrong")
"""Added unless ``doNotForceGPLLicense`` (vgpu4nixos's default is to add them)."""

_LINUX = "NVIDIA-Linux-x86_64-"
_EXPECT_LINE = re.compile(r'^(GNRL|VGPU|GRID|WSYS)=["\']?([^"\'\s]+)["\']?\s*(?:#.*)?$')
_EXPECT_SCAN_LINES = 100

PACKAGES: dict[str, str] = {
    "sh": "dash or bash",
    "awk": "gawk",
    "patch": "GNU patch",
    "xz": "xz-utils",
    "find": "findutils",
    "7z": "p7zip-full",
    "msexpand": "mscompress",
    "makecert": "mono-devel",
    "which": "which (debianutils)",
    "od": "coreutils",
    "dd": "coreutils",
}
"""Where a program comes from, for the hint (coreutils for the rest of the usual ones)."""
_COREUTILS = frozenset(
    [
        "basename",
        "cat",
        "chmod",
        "cp",
        "dirname",
        "head",
        "ls",
        "mkdir",
        "mv",
        "nproc",
        "rm",
        "sha256sum",
        "sort",
        "stat",
        "tail",
        "tr",
        "wc",
    ]
)
ALWAYS = ("bash", "patch")
"""What vgpubuild itself needs around patch.sh: bash to run it, GNU patch for patch series."""


def patch_args(
    target: str, do_not_force_gpl: bool, remap_p2v: bool, extra: Sequence[str]
) -> list[str]:
    """The ``patch.sh`` command line after ``patch.sh``, mapped as vgpu4nixos maps it.

    vgpu4nixos's mapping only; :func:`check_args` checks it against the script.
    """
    args: list[str] = [] if do_not_force_gpl else list(GPL_FLAGS)
    args += ["--remap-p2v"] if remap_p2v else []
    args += list(extra)
    args.append(str(target))
    return args


def check_args(contract: Contract, args: Sequence[str], clones: bool) -> None:
    """Refuse a target, option, remap-p2v or clone the contract's patch.sh does not support.

    patch.sh itself only prints ``Unknown option X`` and carries on (and 535's ``vgpu*)``
    builds plain vgpu-kvm for ``vgpu-kvm-merge``): this stops before it runs.
    """
    if not args:
        raise UsageError("the patch.sh arguments must end with the target", hint="Use patch_args.")
    *options, target = args
    contract.check_target(target)
    if "--remap-p2v" in options:
        contract.check_remap()
    contract.check_options(options)
    if clones:
        contract.check_clones(target)


# -------------------------------------------------------------------------- tools


def _package(tool: str) -> str:
    return PACKAGES.get(tool, "coreutils" if tool in _COREUTILS else tool)


def check_tools(
    contract: Contract, target: str, args: Sequence[str] = (), search_path: str | None = None
) -> str:
    """Find every program ``patch.sh`` will call for ``target`` and ``args``; return a PATH.

    The programs are read from the script (:meth:`Contract.needed_tools`). The PATH returned
    holds only the folders where they were found, so the run sees no stray user tools.
    Every missing program is named at once.
    """
    search = os.environ.get("PATH", os.defpath) if search_path is None else search_path
    needed = list(dict.fromkeys([*ALWAYS, *contract.needed_tools(target, args)]))
    folders: list[str] = []
    missing: list[str] = []
    for tool in needed:
        found = shutil.which(tool, path=search)
        if found is None:
            missing.append(tool)
        elif (folder := os.path.dirname(found)) not in folders:
            folders.append(folder)
    if missing:
        names = ", ".join(f"{tool} ({_package(tool)})" for tool in missing)
        raise ToolMissingError(
            f"patch.sh of branch {contract.branch} needs programs that are not on PATH for "
            f"{' '.join(args) or target}: {names}",
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
