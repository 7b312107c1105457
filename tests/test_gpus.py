"""``vgpubuild gpus`` as a user runs it, on generated sysfs trees and a generated pci.ids."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import xmlgen
from conftest import run_cli
from sysfsgen import AUDIO, DISPLAY_3D, Dev, by_release, gpus_env, run_gpus, write_tree

RTX2070S = Dev("0000:01:00.0", 0x1E84, subsystem=(0x1462, 0x3734), iommu_group=12)
P40 = Dev("0000:02:00.0", 0x1B38, pci_class=DISPLAY_3D, subsystem=(0x10DE, 0x11D9))
GTX1080TI = Dev("0000:03:00.0", 0x1B06, subsystem=(0x1462, 0x3600))
TESLA_P4 = Dev("0000:04:00.0", 0x1BB3, pci_class=DISPLAY_3D, subsystem=(0x10DE, 0x11D8))
GTX980 = Dev("0000:05:00.0", 0x13C0)
RTX4090 = Dev("0000:06:00.0", 0x2684, subsystem=(0x1462, 0x5103))
A10 = Dev(
    "0000:41:00.0",
    0x2236,
    pci_class=DISPLAY_3D,
    subsystem=(0x10DE, 0x1482),
    sriov=(16, 0),
    iommu_group=30,
)
INTEL = Dev("0000:00:00.0", 0x1237, vendor=0x8086, pci_class=0x060000, driver=None)

A10_FAMILY = xmlgen.Family("A10", "0x2236", "0x1482", (1, 2, 4, 8, 24), 600)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return gpus_env(tmp_path)


def tree(tmp_path: Path, *devices: Dev) -> Path:
    return write_tree(tmp_path / "sys", list(devices))


# ------------------------------------------------------------------ the acceptance cards


def test_native_tesla_p40(tmp_path: Path, env: dict[str, str]) -> None:
    report = run_gpus(env, "--sysfs", str(tree(tmp_path, P40)))
    (gpu,) = report["gpus"]
    assert gpu["name"] == "GP102GL [Tesla P40]" and gpu["subsystem_name"] == "Tesla P40"
    assert (gpu["device_id"], gpu["subsystem_id"], gpu["class"]) == ("0x1B38", "0x11D9", "0x030200")
    verdicts = by_release(gpu)
    for release in ("16.2", "16.5"):
        assert verdicts[release]["status"] == "native" and not verdicts[release]["remap_p2v"]
        assert verdicts[release]["target"] == "vgpu-kvm"
    # 17.x guests need the P40's profiles remapped to V100D ones.
    assert verdicts["17.3"]["status"] == "native" and verdicts["17.3"]["remap_p2v"]
    assert gpu["recommended"]["release"] == "17.3"


def test_unlockable_turing_rtx_2070_super(tmp_path: Path, env: dict[str, str]) -> None:
    root = tree(tmp_path, RTX2070S)
    (gpu,) = run_gpus(env, "--sysfs", str(root))["gpus"]
    assert gpu["architecture"] == "Turing" and gpu["consumer"]
    assert gpu["subsystem_vendor_name"] == "Micro-Star International Co., Ltd. [MSI]"
    verdicts = by_release(gpu)
    for release in ("16.2", "16.5", "17.3"):
        assert verdicts[release]["status"] == "clone"
        assert verdicts[release]["source"] == "1E30:12BA" and not verdicts[release]["remap_p2v"]
    assert verdicts["18.3"]["status"] == "unsupported"  # no patcher branch for it
    assert gpu["recommended"] == verdicts["17.3"]
    r = run_cli("gpus", "--sysfs", str(root), env=env)
    assert r.exit_code == 0 and r.stderr == ""
    assert "0000:01:00.0  TU104 [GeForce RTX 2070 SUPER]" in r.stdout
    assert (
        "16.2, 16.5, 17.3: clone: patch.sh's built-in list clones it from Quadro RTX "
        "6000/8000 (1E30:12BA)" in r.stdout
    )
    assert "use: release 17.3, patch.sh target vgpu-kvm" in r.stdout
    assert "IOMMU group: 12" in r.stdout and "driver: nvidia" in r.stdout


def test_pascal_on_16x_and_17x_with_and_without_remap(tmp_path: Path, env: dict[str, str]) -> None:
    report = run_gpus(env, "--sysfs", str(tree(tmp_path, GTX1080TI, TESLA_P4)))
    ti, p4 = (by_release(g) for g in report["gpus"])
    # GTX 1080 Ti: a built-in clone of the P40 on both branches; 17.x needs the remap.
    assert [ti[r]["status"] for r in ("16.2", "16.5", "17.3")] == ["clone"] * 3
    assert {ti[r]["source"] for r in ("16.2", "16.5", "17.3")} == {"1B38:0000"}
    assert [ti[r]["remap_p2v"] for r in ("16.2", "16.5", "17.3")] == [False, False, True]
    # Tesla P4: patch.sh 550.90 clones it only with --remap-p2v; 535 has no such line.
    assert p4["17.3"]["status"] == "clone" and p4["17.3"]["remap_p2v"]
    assert "only with --remap-p2v" in p4["17.3"]["reason"]
    assert (
        p4["16.2"]["status"] == "unknown"
        and "copyVGPUProfiles from Tesla P40" in (p4["16.2"]["reason"])
    )


def test_maxwell_clone_source_differs_by_branch(tmp_path: Path, env: dict[str, str]) -> None:
    (gpu,) = run_gpus(env, "--sysfs", str(tree(tmp_path, GTX980)))["gpus"]
    verdicts = by_release(gpu)
    assert verdicts["16.2"]["status"] == "clone" and verdicts["16.2"]["source"] == "13F2:0000"
    assert "Tesla M60 (13F2:0000)" in verdicts["16.2"]["reason"]
    assert verdicts["17.3"]["status"] == "clone" and verdicts["17.3"]["source"] == "13BD:1160"


def test_unsupported_ada_rtx_4090(tmp_path: Path, env: dict[str, str]) -> None:
    root = tree(tmp_path, RTX4090)
    (gpu,) = run_gpus(env, "--sysfs", str(root), "--suggest")["gpus"]
    assert {v["status"] for v in gpu["verdicts"]} == {"unsupported"}
    reason = by_release(gpu)["17.3"]["reason"]
    assert reason.startswith("consumer Ada cards cannot be unlocked")
    assert "Maxwell, Pascal, Turing" in reason
    assert gpu["recommended"] is None and gpu["suggest"] is None and gpu["profiles"] is None
    text = run_cli("gpus", "--sysfs", str(root), env=env).stdout
    assert "use:" not in text and "unsupported: consumer Ada cards cannot be unlocked" in text


def test_two_gpus_and_the_functions_that_are_not_gpus(tmp_path: Path, env: dict[str, str]) -> None:
    audio = Dev("0000:01:00.1", 0x10F8, pci_class=AUDIO, driver="snd_hda_intel")
    vf = Dev("0000:41:00.4", 0x2236, pci_class=DISPLAY_3D, physfn="0000:41:00.0")
    root = tree(tmp_path, P40, INTEL, audio, RTX2070S, A10, vf)
    report = run_gpus(env, "--sysfs", str(root))
    assert [g["address"] for g in report["gpus"]] == [
        "0000:01:00.0",
        "0000:02:00.0",
        "0000:41:00.0",
    ]
    assert report["notes"] == []
    text = run_cli("gpus", "--sysfs", str(root), env=env).stdout
    blocks = text.split("\n\n")
    assert len(blocks) == 3 and blocks[1].startswith("0000:02:00.0  GP102GL [Tesla P40]")


def test_no_gpu_at_all(tmp_path: Path, env: dict[str, str]) -> None:
    root = tree(tmp_path, INTEL)
    r = run_cli("gpus", "--sysfs", str(root), env=env)
    assert r.exit_code == 0 and r.stderr == ""
    assert r.stdout == f"no NVIDIA GPU among the 1 PCI devices in {root}/bus/pci/devices\n"
    assert run_gpus(env, "--sysfs", str(root))["gpus"] == []


def test_no_sysfs_is_one_clear_line(tmp_path: Path, env: dict[str, str]) -> None:
    r = run_cli("gpus", "--sysfs", str(tmp_path / "container-sys"), env=env)
    assert r.exit_code == 4 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert "bus/pci/devices does not exist" in r.stderr and "--device" in r.stderr


def test_odd_sysfs_content_is_a_note_never_a_traceback(tmp_path: Path, env: dict[str, str]) -> None:
    devices = [
        Dev("0000:01:00.0", 0x1E84, files={"device": "zz"}),
        Dev("0000:02:00.0", 0x1E84, files={"vendor": None}),
        Dev("0000:03:00.0", 0x1E84, files={"class": "0x1234567890"}),
        Dev("0000:04:00.0", 0x1E84, files={"sriov_numvfs": "many"}),
        Dev("0000:05:00.0", 0x1B38, subsystem=None, iommu_group=None, driver=None),
    ]
    root = tree(tmp_path, *devices)
    r = run_cli("gpus", "--sysfs", str(root), env=env)
    assert r.exit_code == 0 and "Traceback" not in r.stderr + r.stdout
    assert r.stderr.splitlines() == [
        "note: 0000:01:00.0: skipped: its device file holds 'zz', not a 16-bit hex id",
        "note: 0000:02:00.0: skipped: it has no vendor file",
        "note: 0000:03:00.0: skipped: its class file holds '0x1234567890', not a 24-bit hex id",
        "note: 0000:04:00.0: skipped: its sriov_numvfs file holds 'many', not a count",
    ]
    (gpu,) = run_gpus(env, "--sysfs", str(root))["gpus"]
    assert gpu["address"] == "0000:05:00.0" and gpu["subsystem_id"] is None
    assert gpu["iommu_group"] is None and gpu["driver"] is None
    assert by_release(gpu)["16.2"]["status"] == "native"


def _snapshot(root: Path) -> dict[str, tuple[bytes, float, int]]:
    state = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder, name)
            st = path.lstat()
            data = path.read_bytes() if path.is_file() and not path.is_symlink() else b""
            state[str(path)] = (hashlib.sha256(data).digest(), st.st_mtime, st.st_mode)
    return state


def test_sysfs_is_only_read(tmp_path: Path, env: dict[str, str]) -> None:
    root = tree(tmp_path, A10, RTX2070S, P40)
    before = _snapshot(root)
    assert run_cli("gpus", "--sysfs", str(root), "--suggest", env=env).exit_code == 0
    assert _snapshot(root) == before


def test_sriov_card_shows_its_vfs_and_the_command(tmp_path: Path, env: dict[str, str]) -> None:
    enabled = Dev("0000:42:00.0", 0x2236, pci_class=DISPLAY_3D, sriov=(16, 4), iommu_group=31)
    root = tree(tmp_path, A10, enabled)
    off, on = run_gpus(env, "--sysfs", str(root))["gpus"]
    assert off["sriov"] == {
        "total_vfs": 16,
        "enabled_vfs": 0,
        "enable_command": "/usr/lib/nvidia/sriov-manage -e 0000:41:00.0",
    }
    assert on["sriov"] == {"total_vfs": 16, "enabled_vfs": 4, "enable_command": None}
    assert off["architecture"] == "Ampere" and not off["consumer"]
    # Without vgpuConfig.xml a datacenter card's support is not guessed.
    assert {v["status"] for v in off["verdicts"]} == {"unknown"}
    text = run_cli("gpus", "--sysfs", str(root), env=env).stdout
    assert (
        "SR-IOV: 0 of 16 VFs enabled; enable them with: /usr/lib/nvidia/sriov-manage -e "
        "0000:41:00.0" in text
    )
    assert "SR-IOV: 4 of 16 VFs enabled\n" in text
    # With the release's vgpuConfig.xml it is native, with the A10 profiles.
    xml = tmp_path / "vgpuConfig.xml"
    xml.write_bytes(xmlgen.generate(0, 4, extra=(A10_FAMILY,)))
    off = run_gpus(env, "--sysfs", str(root), "--release", "17.4", "--xml", str(xml))["gpus"][0]
    assert off["verdicts"][0]["status"] == "native" and off["verdicts"][0]["target"] is None
    names = [p["name"] for p in off["profiles"]["profiles"]]
    assert names[:3] == ["GRID A10-1Q", "GRID A10-2Q", "GRID A10-4Q"]


def test_device_option_judges_a_card_not_in_the_machine(env: dict[str, str]) -> None:
    report = run_gpus(env, "--device", "2684:0x16F1")
    assert report["sysfs"] is None
    (gpu,) = report["gpus"]
    assert gpu["address"] == "given" and gpu["name"] == "AD102 [GeForce RTX 4090]"
    r = run_cli("gpus", "--device", "RTX4090", env=env)
    assert r.exit_code == 2 and "not a PCI id pair" in r.stderr


def test_without_pci_ids_clone_lists_still_answer(tmp_path: Path, env: dict[str, str]) -> None:
    env = {**env, "VGPUBUILD_PCI_IDS": ""}
    report = run_gpus(env, "--sysfs", str(tree(tmp_path, RTX2070S, RTX4090)))
    assert report["pci_ids"] is None and "no pci.ids database" in report["notes"][0]
    turing, ada = report["gpus"]
    assert turing["name"] is None and by_release(turing)["17.3"]["status"] == "clone"
    assert by_release(ada)["17.3"]["status"] == "unknown"
    assert "no pci.ids database was found" in by_release(ada)["17.3"]["reason"]
    r = run_cli("gpus", "--device", "1E84", "--pci-ids", str(tmp_path / "nope"), env=env)
    assert r.exit_code == 4 and "does not exist" in r.stderr


def test_the_docs_example_is_real_output(tmp_path: Path, env: dict[str, str]) -> None:
    docs = (Path(__file__).resolve().parent.parent / "docs" / "gpus.md").read_text()
    example = docs.split("```\n0000:01:00.0", 1)[1].split("```", 1)[0]
    r = run_cli("gpus", "--sysfs", str(tree(tmp_path, RTX2070S)), env=env)
    assert r.stdout == "0000:01:00.0" + example
