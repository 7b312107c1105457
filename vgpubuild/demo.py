"""The built-in demo release: every input of a real build, generated, none of it NVIDIA's.

A real build needs the user's own GRID zip, which nobody may redistribute. So that ``make
demo`` and the end-to-end tests run every real stage anyway (hash checks, zip unpacking, .run
checks, patcher NAR verification, ``patch.sh``, the vgpuConfig rewrite, the artifact), this
module writes a small GRID-shaped zip holding real self-extracting .run files
(:func:`vgpubuild.runfile.make_run`) of a tiny driver-shaped tree, a consumer .run for the
merged targets, and a stand-in patcher whose ``patch.sh`` has the real one's command-line
contract. The trees are package data under ``demo_data/``; the demo's versions are filled in
here, in one place.

:meth:`DemoInputs.release_mapping` describes the generated files like a releases.toml entry
(hashes computed from the bytes just written), so the pipeline treats the demo exactly like a
catalog release. Everything is deterministic: the same call writes the same bytes.

``failure`` writes a patcher variant that fails in one of the ways the pipeline must detect,
so the tests exercise each detector against a real ``patch.sh`` run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from vgpubuild.atomic import atomic_file
from vgpubuild.config import BuildConfig, DriverSource
from vgpubuild.nar import nar_hash
from vgpubuild.nixhash import CHUNK_SIZE, hash_file
from vgpubuild.runfile import make_run

DATA = Path(__file__).resolve().parent / "demo_data"

DEMO_RELEASE = "17.99"
HOST_VERSION = "550.999.05"
GUEST_VERSION = "550.999.07"
GENERAL_VERSION = "550.999.07"
WINDOWS_VERSION = "552.99"
PATCHER_BRANCH = "550.999"
PATCHER_REPO = "vgpubuild/demo-vgpu-unlock-patcher"
UNLOCK_REPO = "vgpubuild/demo-vgpu-unlock"
ZIP_NAME = f"NVIDIA-GRID-Linux-KVM-{HOST_VERSION}-{GUEST_VERSION}-{WINDOWS_VERSION}.zip"
WINDOWS_NAME = f"{WINDOWS_VERSION}_grid_win10_win11_server2022_dch_64bit_international.exe"

Shape = Literal["550.90", "535", "fork"]
SHAPES: tuple[Shape, ...] = ("550.90", "535", "fork")
"""Contract shapes of the stand-in ``patch.sh``, as the real branches differ: ``550.90``
(the demo's own: its vcfgclone disables an existing destination, ``--nvoss``/``--remap-p2v``,
a ``vgpu-kvm-merge`` target, the 18-line list plus Tesla P4 with ``--remap-p2v``), ``535``
(vcfgclone only copies, no ``--nvoss``/``--remap-p2v``, a ``vgpu*)`` case that takes
``vgpu-kvm-merge`` but builds vgpu-kvm, the 18-line list cloning M40/980/980M from the
M60) and ``fork`` (550.90 plus a ``--zstd`` option and a ``vgpu-kvm-nolibs`` target)."""

Failure = Literal["die", "reject", "nooutput", "versions"]
FAILURES: tuple[Failure, ...] = ("die", "reject", "nooutput", "versions")
"""Patcher variants: ``die`` (a kernel-open patch fails, patch.sh exits 1), ``reject`` (a
kernel/ patch fails non-fatally, leaving a ``.rej`` and exit 0), ``nooutput`` (exit 0 but no
``-patched`` folder), ``versions`` (GNRL/VGPU/GRID lines name other versions)."""

_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


def _run_name(version: str, flavour: str) -> str:
    return f"NVIDIA-Linux-x86_64-{version}{'-' + flavour if flavour != 'general' else ''}.run"


@dataclass(frozen=True)
class DemoInputs:
    """Where :func:`make_demo_inputs` put each generated input."""

    root: Path
    zip_path: Path
    host_run: Path
    guest_run: Path
    general_run: Path
    patcher_dir: Path
    """The patcher tree with ``unlock/`` filled in, as a release's patcher hash covers it."""
    failure: Failure | None = None
    shape: Shape = "550.90"

    @property
    def unlock_dir(self) -> Path:
        return self.patcher_dir / "unlock"

    def patcher_revs(self) -> tuple[str, str]:
        """Git-like revs for the patcher and unlock trees, derived from their content."""
        return (
            hashlib.sha1(nar_hash(self.patcher_dir).digest).hexdigest(),
            hashlib.sha1(nar_hash(self.unlock_dir).digest).hexdigest(),
        )

    def build_config(self) -> BuildConfig:
        """The demo's build config: its release, zip, and one clone and one override."""
        example = BuildConfig.from_mapping(
            {
                "patcher": {
                    "copyVGPUProfiles": {"1E07:0000": "1E30:12BA"},
                    "profileOverrides": {
                        "333": {
                            "vramAllocation": 3584,
                            "heads": 1,
                            "display": {"width": 1920, "height": 1080},
                            "framerateLimit": 144,
                        }
                    },
                },
            },
            source="the demo release",
        )
        return self.rehearsal(example)

    def rehearsal(self, cfg: BuildConfig) -> BuildConfig:
        """``cfg``'s patcher settings on the demo release: its zip, its catalog entry.

        Where the real zip comes from (``zip``, ``driverSource``) is the one thing replaced:
        the rest of a real config (target, options, overrides, clones, patches) is what the
        rehearsal is for.
        """
        return dataclasses.replace(
            cfg,
            release=DEMO_RELEASE,
            zip=str(self.zip_path),
            driverSource=DriverSource(),
            releases={**cfg.releases, **self.release_mapping()},
        )

    def release_mapping(self) -> dict[str, dict[str, Any]]:
        """``{DEMO_RELEASE: table}`` in releases.toml shape, for ``get_release(.., extra=)``."""
        rev, unlock_rev = self.patcher_revs()
        windows_exe = self.root / "runs" / WINDOWS_NAME
        return {
            DEMO_RELEASE: {
                "host_version": HOST_VERSION,
                "guest_version": GUEST_VERSION,
                "general_version": GENERAL_VERSION,
                "zip_name": ZIP_NAME,
                "zip_sha256": hash_file(self.zip_path).sri,
                "guest_sha256": hash_file(self.guest_run).sri,
                "guest_url": self.guest_run.as_uri(),
                "patcher": {
                    "branch": PATCHER_BRANCH,
                    "repo": PATCHER_REPO,
                    "rev": rev,
                    "sha256": nar_hash(self.patcher_dir).sri,
                    "unlock_repo": UNLOCK_REPO,
                    "unlock_rev": unlock_rev,
                    "general_sha256": hash_file(self.general_run).sri,
                    "general_url": self.general_run.as_uri(),
                    "windows_guest_name": WINDOWS_NAME,
                    "windows_guest_sha256": hash_file(windows_exe).sri,
                },
            }
        }


# ----------------------------------------------------------------------------- helpers


def _fill(text: str, values: Mapping[str, str]) -> str:
    for key, value in values.items():
        text = text.replace(f"@{key}@", value)
    return text


def _copy_tree(src: Path, dest: Path, values: Mapping[str, str]) -> None:
    """Copy package data, filling ``@KEY@`` placeholders; modes from content, not install.

    A file is executable when it starts with ``#!``: a wheel or checkout may have lost the
    bit, and the demo's hashes must not depend on how vgpubuild was installed.
    """
    for path in sorted(src.rglob("*")):
        rel = path.relative_to(src)
        out = dest / rel
        if path.is_dir():
            out.mkdir(parents=True, exist_ok=True)
            continue
        out.parent.mkdir(parents=True, exist_ok=True)
        text = _fill(path.read_text(encoding="utf-8"), values)
        out.write_text(text, encoding="utf-8")
        os.chmod(out, 0o755 if text.startswith("#!") else 0o644)


def _replace_once(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    if text.count(old) != 1:
        raise RuntimeError(f"demo data changed: {old!r} is not in {path.name} exactly once")
    path.write_text(text.replace(old, new), encoding="utf-8")


_BRANCH = """    {name})
        DO_VGPU=true{merged}
        SOURCE="{source}"{target}
        ;;
"""
_MERGED = """
        DO_GRID=true
        DO_MRGD=true
        $SWITCH_GRID_TO_GNRL || GRID="${GNRL}"
"""


def _shape_values(shape: Shape) -> dict[str, str]:
    """The ``@KEY@`` values that make the stand-in ``patch.sh`` one of :data:`SHAPES`."""
    shapes = DATA / "shapes"
    old = shape == "535"
    options = ["--nvoss) NVOSS=true", "--nvoss-debug) DBGNVOSS=true", "--remap-p2v) REMAP_P2V=true"]
    options += ["--zstd) REPACK_ZSTD=true"] if shape == "fork" else []
    targets = _BRANCH.format(
        name="vgpu*" if old else "vgpu-kvm", merged="", source="${VGPU}", target=""
    )
    if shape == "fork":
        nolibs = '\n        TARGET="${VGPU}-nolibs-patched"'
        targets += _BRANCH.format(
            name="vgpu-kvm-nolibs", merged="", source="${VGPU}", target=nolibs
        )
    merge = _BRANCH.format(
        name="vgpu-kvm-merge", merged=_MERGED.rstrip("\n"), source="${VGPU}-merged", target=""
    )
    names = ["vgpu-kvm", "grid", "general", "wsys", "grid-merge", "general-merge"]
    names += [] if old else ["vgpu-kvm-merge", "vcfg", "remap-p2v"]
    remap = '    $REMAP_P2V && remap_p2v "${TARGET}/vgpuConfig.xml"\n'
    utility = """    remap-p2v)
        shift
        [ $# -eq 1 ] && [ -e "$1" ] || die "Usage: $0 remap-p2v xmlfile"
        remap_p2v "$1"
        exit $?
        ;;
"""
    return {
        "VCFGCLONE": (shapes / f"vcfgclone-{'copy' if old else 'disable'}.sh").read_text(),
        "REMAP_FUNCTION": "" if old else (shapes / "remap-function.sh").read_text(),
        "OPTIONS": "" if old else "".join(f"        {o} ;;\n" for o in options),
        "VGPU_TARGETS": targets,
        "MERGE_TARGETS": "" if old else merge,
        "UTILITIES": "" if old else utility,
        "USAGE": " | ".join(names),
        "CONFIG_STEPS": ("" if old else remap)
        + (shapes / f"clones-{'535' if old else '550'}.txt").read_text().rstrip("\n"),
    }


def _make_patcher(dest: Path, failure: Failure | None, shape: Shape = "550.90") -> None:
    versions = {
        "HOST_VERSION": HOST_VERSION,
        "GUEST_VERSION": GUEST_VERSION,
        "GENERAL_VERSION": GENERAL_VERSION,
        "WINDOWS_VERSION": WINDOWS_VERSION,
    }
    if failure == "versions":
        versions = {k: v.replace("999", "998") for k, v in versions.items()}
    if dest.exists():
        shutil.rmtree(dest)
    _copy_tree(DATA / "patcher", dest, {**versions, **_shape_values(shape)})
    _copy_tree(DATA / "unlock", dest / "unlock", versions)
    # Stored without the dot: a .gitignore in package data would act on this repository.
    for name in ("gitignore", "gitmodules"):
        os.replace(dest / name, dest / f".{name}")
    patches = dest / "patches"
    if failure == "die":
        _replace_once(
            patches / "setup-vup-hooks.patch", ' #include "nv-time.h"', ' #include "nv-clock.h"'
        )
    elif failure == "reject":
        _replace_once(patches / "demo-init-hooks.patch", "     return 0;", "     return -1;")
    elif failure == "nooutput":
        _replace_once(
            dest / "patch.sh",
            'echo "patched driver is in ${TARGET}"',
            'rm -rf "${TARGET}"\necho "done"',
        )


def _make_payload(dest: Path, version: str, flavour: str) -> None:
    values = {"VERSION": version, "FLAVOUR": flavour}
    _copy_tree(DATA / "driver" / "common", dest, values)
    if flavour != "general":
        _copy_tree(DATA / "driver" / flavour, dest, values)


def _zip_info(name: str, mode: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
    info.create_system = 3  # unix, so the mode below is meaningful
    info.compress_type = zipfile.ZIP_STORED
    info.external_attr = mode << 16
    if name.endswith("/"):
        info.external_attr |= 0x10
    return info


def _write_zip(dest: Path, members: Mapping[str, Path | bytes]) -> None:
    """A zip of ``members`` (name -> file or bytes) in name order, streamed, fixed metadata."""
    with atomic_file(dest) as out, zipfile.ZipFile(out, "w") as zf:
        folders = sorted({name.rsplit("/", 1)[0] + "/" for name in members if "/" in name})
        for folder in folders:
            zf.writestr(_zip_info(folder, 0o40755), b"")
        for name in sorted(members):
            content = members[name]
            if isinstance(content, bytes):
                zf.writestr(_zip_info(name, 0o100644), content)
                continue
            mode = 0o100755 if os.access(content, os.X_OK) else 0o100644
            with content.open("rb") as src, zf.open(_zip_info(name, mode), "w") as dst:
                shutil.copyfileobj(src, dst, CHUNK_SIZE)


@contextlib.contextmanager
def _scratch(parent: Path) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix=".demo-build.", dir=parent))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# -------------------------------------------------------------------------------- public


def make_demo_inputs(
    dest: str | os.PathLike[str], failure: Failure | None = None, shape: Shape = "550.90"
) -> DemoInputs:
    """Write the demo release's inputs under ``dest`` and say where they are.

    Layout: ``dest/<GRID zip>``, ``dest/runs/`` (the three .run files and the stand-in
    Windows installer, loose), ``dest/patcher/`` (the stand-in patcher with ``unlock/``).
    ``failure`` (one of :data:`FAILURES`) makes the patcher fail in that way; ``shape``
    (one of :data:`SHAPES`) gives its ``patch.sh`` that branch's contract.
    """
    if failure is not None and failure not in FAILURES:
        raise ValueError(f"unknown demo failure {failure!r}; choose from {FAILURES}")
    if shape not in SHAPES:
        raise ValueError(f"unknown patcher shape {shape!r}; choose from {SHAPES}")
    root = Path(dest).resolve()
    runs = root / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    label = "vgpubuild demo driver for Linux-x86_64"
    built: dict[str, Path] = {}
    with _scratch(root) as scratch:
        for flavour, version in (
            ("vgpu-kvm", HOST_VERSION),
            ("grid", GUEST_VERSION),
            ("general", GENERAL_VERSION),
        ):
            payload = scratch / flavour
            _make_payload(payload, version, flavour)
            built[flavour] = make_run(
                runs / _run_name(version, flavour), payload, f"{label} {version}", version
            )
    windows = runs / WINDOWS_NAME
    with atomic_file(windows) as out:
        out.write(b"vgpubuild demo: stand-in for the Windows guest driver installer.\n")
    placeholder = b"vgpubuild demo: a file of the GRID zip that vgpubuild does not use.\n"
    zip_path = root / ZIP_NAME
    _write_zip(
        zip_path,
        {
            f"Host_Drivers/{built['vgpu-kvm'].name}": built["vgpu-kvm"],
            f"Host_Drivers/nvidia-vgpu-ubuntu_{HOST_VERSION}_amd64.deb": placeholder,
            f"Guest_Drivers/{built['grid'].name}": built["grid"],
            f"Guest_Drivers/{WINDOWS_NAME}": windows,
            "Signing_Keys/vgpubuild-demo-signing-key.txt": placeholder,
            "vgpubuild-demo-release-notes.txt": placeholder,
        },
    )
    patcher = root / "patcher"
    _make_patcher(patcher, failure, shape)
    return DemoInputs(
        root=root,
        zip_path=zip_path,
        host_run=built["vgpu-kvm"],
        guest_run=built["grid"],
        general_run=built["general"],
        patcher_dir=patcher,
        failure=failure,
        shape=shape,
    )
