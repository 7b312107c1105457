"""A build checks its settings against the patch.sh it runs, and orders clones as vgpu4nixos.

Each test builds the demo release with a stand-in patcher of one contract shape (535,
550.90, fork; vgpubuild.demo) through ``vgpubuild patch``: the refusals name the branch and
come before any input is read, and the artifact's vgpuConfig.xml has the user's clones
first and the branch's list after them.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from conftest import run_cli
from test_pipeline import assert_untouched, manifest, ok, write_config

from vgpubuild.demo import DemoInputs, Shape, make_demo_inputs
from vgpubuild.errors import PatcherError, UsageError
from vgpubuild.vgpuconfig.model import VgpuConfig


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, DemoInputs]:
    root = tmp_path_factory.mktemp("build-shapes")
    shapes: tuple[Shape, ...] = ("535", "550.90", "fork")
    return {shape: make_demo_inputs(root / shape, shape=shape) for shape in shapes}


def build(
    demo: DemoInputs, tmp: Path, *args: str, patcher: Path | None = None, **settings: Any
) -> tuple[Any, Path]:
    config = write_config(demo, tmp / "build.json", **settings)
    out = tmp / "out"
    result = run_cli(
        "patch", "--config", str(config), "--patcher", str(patcher or demo.patcher_dir),
        "--out", str(out), "--json", *args, env={"VGPUBUILD_CACHE": str(tmp / "cache")},
    )  # fmt: skip
    return result, out


@pytest.mark.parametrize(
    ("shape", "args", "settings", "message"),
    [
        ("535", [], {"options": {"remapP40ProfilesToV100D": True}}, "has no --remap-p2v"),
        ("535", ["--target", "vgpu-kvm-merge"], {}, "has no target 'vgpu-kvm-merge'"),
        ("550.90", ["--extra", "--zstd"], {}, "does not know the option '--zstd'"),
        ("550.90", ["--extra", "--strip_kernel_open"], {}, "does not know the option"),
    ],
)
def test_refused_by_the_branch_before_inputs(
    shapes: dict[str, DemoInputs], tmp_path: Path, shape: str, args: list[str],
    settings: dict[str, Any], message: str,
) -> None:  # fmt: skip
    result, out = build(shapes[shape], tmp_path, *args, **settings)
    assert result.exit_code == UsageError.exit_code, result.stderr
    assert f"patch.sh of branch 550.999 {message}" in result.stderr
    assert not (tmp_path / "cache" / "downloads").exists()  # no input was obtained
    assert_untouched(out, None)


def test_fork_option_is_accepted_by_the_fork(shapes: dict[str, DemoInputs], tmp_path: Path) -> None:
    data = ok(build(shapes["fork"], tmp_path, "--extra", "--zstd")[0])
    assert "--zstd" in manifest(Path(data["artifact"]))["options"]["patch_sh_args"]


def pgpus(xml: Path, device: int) -> list[tuple[int, list[str]]]:
    config = VgpuConfig.load(xml)
    found = []
    for el in config.pgpu_elements():
        dev = el.find("devId")
        assert dev is not None
        if int(dev.get("deviceId", "0"), 16) == device:
            vendor = int(dev.get("subsystemVendorId", "0"), 16)
            found.append((vendor, [s.get("vgpuId", "") for s in el.findall("supportedVgpu")]))
    return found


@pytest.mark.parametrize(
    ("shape", "expected"),
    [
        ("550.90", [(0x9999, ["40", "41"]), (0x10DE, ["333", "334", "335"])]),
        ("535", [(0x10DE, ["40", "41"]), (0x10DE, ["333", "334", "335"])]),
    ],
)
def test_user_clone_runs_before_the_branch_list(
    shapes: dict[str, DemoInputs], tmp_path: Path, shape: str, expected: list[Any]
) -> None:
    """vgpu4nixos's ``copyVGPUProfiles = { "1E07:0000" = "1DB6:124A"; }``."""
    result, _ = build(shapes[shape], tmp_path, copyVGPUProfiles={"1E07:0000": "1DB6:124A"})
    artifact = Path(ok(result)["artifact"])
    assert pgpus(artifact / "vgpuConfig.xml", 0x1E07) == expected
    changes = manifest(artifact)["vgpuconfig_changes"]
    assert changes == ["pgpu 1E07:0000: cloned from 1DB6:124A (2 profiles)"]


def test_without_user_edits_patch_sh_file_is_kept(
    shapes: dict[str, DemoInputs], tmp_path: Path
) -> None:
    artifact = Path(ok(build(shapes["535"], tmp_path)[0])["artifact"])
    xml = (artifact / "vgpuConfig.xml").read_text()
    assert 'deviceId="0x1f03"' in xml  # as patch.sh's own line spells it


def test_patch_sh_that_differs_from_the_model_stops_the_build(
    shapes: dict[str, DemoInputs], tmp_path: Path
) -> None:
    """A patch.sh that also changes the GTX 1660 copy after its list: the replay of its
    built-in steps no longer gives its file, and the build names the first <pgpu> that differs."""
    patcher = tmp_path / "patcher"
    shutil.copytree(shapes["550.90"].patcher_dir, patcher)
    script = patcher / "patch.sh"
    text = script.read_text()
    marker = "\nif $REPACK; then"
    drop = '\nsed -i -e \'/deviceId="0x2184"/s/subsystemVendorId="0x10de"/subsystemVendorId="0x1234"/\' "${TARGET}/vgpuConfig.xml"\n'
    script.write_text(text.replace(marker, drop + marker, 1))
    result, out = build(shapes["550.90"], tmp_path, "--patcher-unverified", patcher=patcher)
    assert result.exit_code == PatcherError.exit_code, result.stderr
    assert "differs from what it wrote to vgpuConfig.xml" in result.stderr
    assert "patch.sh wrote 2184:0000 (vendor 0x1234" in result.stderr
    assert "devId@subsystemVendorId: '0x1234' instead of '0x10de'" in result.stderr
    assert_untouched(out, None)
