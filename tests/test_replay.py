"""User clones first, then the branch's list: the same vgpuConfig.xml as vgpu4nixos.

The reference is vgpu4nixos's method, run for real: GNU sed inserts the user's
``vcfgclone`` lines into the stand-in ``patch.sh`` before its first built-in line (its
``0,/^    vcfgclone \\${TARGET}\\/vgpuConfig.xml /s//...&/`` expression), and the script runs.
vgpubuild's way runs the unedited script with only the snapshot line added, and replays.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from vgpubuild.demo import DemoInputs, make_demo_inputs
from vgpubuild.errors import PatcherError
from vgpubuild.patchercontract import Contract, read_contract
from vgpubuild.profiles.replay import (
    check_builtin,
    first_difference,
    replay,
    snapshot_script,
)
from vgpubuild.profiles.settings import PciId, parse_clone_map
from vgpubuild.vgpuconfig.model import VgpuConfig

DISABLED = 0x9999


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, DemoInputs]:
    root = tmp_path_factory.mktemp("replay")
    return {shape: make_demo_inputs(root / shape, shape=shape) for shape in ("535", "550.90")}


def run_patch_sh(inputs: DemoInputs, work: Path, args: list[str], edit: object = None) -> Path:
    """A copy of the stand-in patcher, edited by ``edit(patch_sh)``, run like patch.sh's README."""
    folder = work / "patcher"
    shutil.copytree(inputs.patcher_dir, folder)
    for run in (inputs.host_run, inputs.guest_run, inputs.general_run):
        (folder / run.name).symlink_to(run)
    if callable(edit):
        edit(folder / "patch.sh")
    proc = subprocess.run(
        ["bash", "patch.sh", *args, "vgpu-kvm"],
        cwd=folder,
        capture_output=True,
        text=True, errors="backslashreplace",
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return folder / f"{inputs.host_run.name.removesuffix('.run')}-patched" / "vgpuConfig.xml"


def vgpu4nixos_lines(table: dict[str, str]) -> str:
    """vgpu4nixos's vgpuProfileCmds: ``vcfgclone ... 0xSRC 0xSRCSUB 0xNEW 0xNEWSUB`` lines."""
    return "".join(
        f"    vcfgclone \\${{TARGET}}\\/vgpuConfig.xml 0x{v[:4]} 0x{v[5:9]} 0x{k[:4]} 0x{k[5:9]}\\n"
        for k, v in table.items()
    )


def vgpu4nixos(inputs: DemoInputs, work: Path, table: dict[str, str], args: list[str]) -> Path:
    def edit(patch_sh: Path) -> None:
        expression = (
            f"0,/^    vcfgclone \\${{TARGET}}\\/vgpuConfig.xml /s//{vgpu4nixos_lines(table)}&/"
        )
        subprocess.run(["sed", "-i", expression, str(patch_sh)], check=True)

    return run_patch_sh(inputs, work / "vgpu4nixos", args, edit)


def vgpubuild(
    inputs: DemoInputs, work: Path, table: dict[str, str], args: list[str]
) -> tuple[VgpuConfig, Contract]:
    contract = read_contract(inputs.patcher_dir / "patch.sh", f"demo-{inputs.shape}")
    snapshot = work / "snapshot.xml"
    written = run_patch_sh(
        inputs, work / "vgpubuild", args, lambda p: snapshot_script(p, contract, snapshot)
    )
    check_builtin(VgpuConfig.load(snapshot), VgpuConfig.load(written), contract, "vgpu-kvm", args)
    final = VgpuConfig.load(snapshot)
    pairs: list[tuple[PciId, PciId]] = parse_clone_map(table)
    replay(final, contract, "vgpu-kvm", args, pairs)
    return final, contract


def ids(config: VgpuConfig, device: int) -> list[tuple[int | None, list[int]]]:
    """(subsystemVendorId, supported profile ids) of every <pgpu> with ``device``."""
    return [
        (p.subsystem_vendor_id, list(p.supported)) for p in config.pgpus if p.device_id == device
    ]


CASES = [
    {"1E07:0000": "1DB6:124A"},  # the card the branch also clones (from the RTX 6000)
    {"1C82:0000": "1E30:12BA", "2204:0000": "1C82:0000"},  # a chain through a built-in card
    {"1E30:12BA": "1B38:0"},  # onto a card the file already has (source written as the file does)
]


BRANCH_ARGS = [("535", []), ("550.90", []), ("550.90", ["--remap-p2v"])]
"""Each branch with the options it has (535's patch.sh has no --remap-p2v)."""


@pytest.mark.parametrize(("shape", "args"), BRANCH_ARGS, ids=["535", "550.90", "550.90-remap"])
@pytest.mark.parametrize("table", CASES, ids=["1E07", "chain", "existing"])
def test_user_clones_first_equal_vgpu4nixos(
    shapes: dict[str, DemoInputs],
    tmp_path: Path,
    shape: str,
    table: dict[str, str],
    args: list[str],
) -> None:
    inputs = shapes[shape]
    reference = VgpuConfig.load(vgpu4nixos(inputs, tmp_path, table, args))
    ours, _ = vgpubuild(inputs, tmp_path, table, args)
    assert first_difference(ours, reference) is None


def test_1e07_from_v100d_on_550_ends_on_rtx6000_profiles(
    shapes: dict[str, DemoInputs], tmp_path: Path
) -> None:
    ours, contract = vgpubuild(shapes["550.90"], tmp_path, CASES[0], [])
    assert contract.clone_disables == DISABLED
    # the user's copy (V100D profiles 40, 41) is disabled by the built-in line that follows
    assert ids(ours, 0x1E07) == [(DISABLED, [40, 41]), (0x10DE, [333, 334, 335])]


def test_1e07_from_v100d_on_535_keeps_both(shapes: dict[str, DemoInputs], tmp_path: Path) -> None:
    ours, contract = vgpubuild(shapes["535"], tmp_path, CASES[0], [])
    assert contract.clone_disables is None
    assert ids(ours, 0x1E07) == [(0x10DE, [40, 41]), (0x10DE, [333, 334, 335])]


def test_535_clones_from_the_m60_its_patch_adds(
    shapes: dict[str, DemoInputs], tmp_path: Path
) -> None:
    ours, _ = vgpubuild(shapes["535"], tmp_path, {}, [])
    original = VgpuConfig.load(tmp_path / "snapshot.xml")
    assert ids(original, 0x13F2) == [(0x10DE, [11])]  # added by the stand-in's vcfg patch
    assert ids(ours, 0x13C0) == [(0x10DE, [11])]  # GTX 980 <- M60 (535's list)


def test_a_model_that_differs_from_patch_sh_is_an_error_naming_the_pgpu(
    shapes: dict[str, DemoInputs], tmp_path: Path
) -> None:
    """550.90 semantics replayed against what the 535 script wrote: the user's and the
    built-in copy of 1E07 differ in the disabled flag."""
    inputs = shapes["535"]
    contract = read_contract(inputs.patcher_dir / "patch.sh", "demo-535")
    wrong = Contract(**{**contract.__dict__, "clone_disables": DISABLED})
    table = CASES[0]
    written = vgpu4nixos(inputs, tmp_path, table, [])
    base = VgpuConfig.load(written)  # already has everything: the replay adds more copies
    with pytest.raises(PatcherError, match=r"branch demo-535.*<pgpu> number \d+: patch.sh wrote"):
        check_builtin(base, VgpuConfig.load(written), wrong, "vgpu-kvm", [])


def test_vgpu4nixos_misses_a_source_written_differently_and_vgpubuild_does_not(
    shapes: dict[str, DemoInputs], tmp_path: Path
) -> None:
    """P40 is ``subsystemId="0x0"`` in the file: vgpu4nixos's ``0x0000`` matches no text and
    the clone silently does nothing; vgpubuild compares numbers (the one intended difference)."""
    table = {"1E30:12BA": "1B38:0000"}
    reference = VgpuConfig.load(vgpu4nixos(shapes["535"], tmp_path, table, []))
    ours, _ = vgpubuild(shapes["535"], tmp_path, table, [])
    p40_profiles = (0x10DE, [11, 12, 13])
    assert p40_profiles not in ids(reference, 0x1E30)
    assert p40_profiles in ids(ours, 0x1E30)
