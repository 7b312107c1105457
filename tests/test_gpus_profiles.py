"""``vgpubuild gpus``: profiles from real-schema vgpuConfig.xml, suggestions, lspci parity."""

from __future__ import annotations

import json
import re
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import pytest
import xmlgen
from conftest import require_tool, run_cli
from nixenv import decoded
from sysfsgen import DISPLAY_3D, NVIDIA_DEVICES, Dev, gpus_env, pci_ids, run_gpus, write_tree
from test_gpus import GTX1080TI, P40, RTX2070S

from vgpubuild.catalog import get_release
from vgpubuild.config import BuildConfig
from vgpubuild.profiles.clones import vcfgclone
from vgpubuild.profiles.settings import PciId
from vgpubuild.runfile import make_run
from vgpubuild.vgpuconfig.model import VgpuConfig

TINY = xmlgen.tiny()
MIB = 1 << 20


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return gpus_env(tmp_path)


def tree(tmp_path: Path, *devices: Dev) -> Path:
    return write_tree(tmp_path / "sys", list(devices))


def _tool(*args: str) -> str:
    return decoded(subprocess.run(args, capture_output=True, check=True).stdout)


def xmlstarlet_profiles(xml: Path, device: str, subsystem: str) -> list[dict[str, Any]]:
    """The profiles of a <pgpu> read with xmlstarlet: an implementation that is not ours."""
    tool = require_tool("xmlstarlet")
    pgpu = f"/vgpuconfig/pgpu[devId/@deviceId='{device}' and devId/@subsystemId='{subsystem}']"
    out = _tool(tool, "sel", "-t", "-m", f"{pgpu}/supportedVgpu", "-v", "@vgpuId", "-o", " ",
                "-v", "maxVgpus", "-n", str(xml))  # fmt: skip
    rows = []
    for line in out.split("\n"):
        if not line.strip():
            continue
        vgpu_id, max_vgpus = line.split()
        vgpu_type = f"/vgpuconfig/vgpuType[@id='{vgpu_id}']"
        name, heads, framebuffer = _tool(
            tool, "sel", "-t", "-m", vgpu_type, "-v", "@name", "-n", "-v", "numHeads", "-n",
            "-v", "framebuffer", "-n", str(xml),
        ).splitlines()  # fmt: skip
        rows.append(
            {
                "id": int(vgpu_id),
                "type": f"nvidia-{vgpu_id}",
                "name": name,
                "framebuffer_mib": int(framebuffer, 16) // MIB,
                "heads": int(heads),
                "max_instances": int(max_vgpus),
            }
        )
    return rows


def test_profiles_of_a_cloned_card_equal_vup_sed_then_xmlstarlet(
    tmp_path: Path, env: dict[str, str]
) -> None:
    """The in-memory clone lists what patch.sh's own sed vcfgclone gives the card."""
    original = tmp_path / "vgpuConfig.xml"
    original.write_bytes(TINY)
    reference = tmp_path / "patched.xml"
    reference.write_bytes(TINY)
    sed = require_tool("sed")
    args = xmlgen.vup_vcfgclone_sed("0x1B38", "0x0", "0x1B06", "0x0000")
    subprocess.run([sed, *args, "-i", str(reference)], check=True)
    expected = xmlstarlet_profiles(reference, "0x1B06", "0x0000")
    assert len(expected) == 32

    root = tree(tmp_path, GTX1080TI)
    report = run_gpus(env, "--sysfs", str(root), "--release", "16.2", "--xml", str(original))
    profiles = report["gpus"][0]["profiles"]
    assert profiles["release"] == "16.2" and profiles["xml"] == str(original)
    assert profiles["profiles"] == expected
    assert profiles["notes"] == ["cloned from 1B38:0000 in memory, as the build will"]
    assert original.read_bytes() == TINY  # the file given is never written

    text = run_cli("gpus", "--sysfs", str(root), "--release", "16.2", "--xml", str(original),
                   env=env).stdout  # fmt: skip
    assert re.search(r"\n    11 +nvidia-11 +GRID P40-1Q +896 +4 +24\n", text), text


def test_native_card_profiles_and_remap_on_17x(tmp_path: Path, env: dict[str, str]) -> None:
    xml = tmp_path / "vgpuConfig.xml"
    xml.write_bytes(TINY)
    root = tree(tmp_path, P40)
    on_16 = run_gpus(env, "--sysfs", str(root), "--release", "16.2", "--xml", str(xml))["gpus"][0]
    assert on_16["profiles"]["profiles"] == xmlstarlet_profiles(xml, "0x1B38", "0x0")
    assert on_16["profiles"]["notes"] == []
    on_17 = run_gpus(env, "--sysfs", str(root), "--release", "17.3", "--xml", str(xml))["gpus"][0]
    names = [p["name"] for p in on_17["profiles"]["profiles"]]
    assert names == [p["name"].replace("P40", "V40") for p in on_16["profiles"]["profiles"]]
    assert "remap-p2v" in on_17["profiles"]["notes"][0]


def test_artifact_folder_names_its_release_and_user_clones(
    tmp_path: Path, env: dict[str, str]
) -> None:
    artifact = tmp_path / "NVIDIA-Linux-x86_64-535.129.03-vgpu-kvm-patched"
    artifact.mkdir()
    config = VgpuConfig.parse(TINY)
    vcfgclone(config, PciId(0x1E30, 0x12BA), PciId(0x1F08, 0))
    (artifact / "vgpuConfig.xml").write_bytes(config.to_bytes())
    manifest = {"release": {"version": "16.2"}, "copyVGPUProfiles": {"1F08:0000": "1E30:12BA"}}
    (artifact / "vgpubuild-manifest.json").write_text(json.dumps(manifest))
    report = run_gpus(env, "--device", "1F08:3A21", "--xml", str(artifact), "--suggest")
    (gpu,) = report["gpus"]
    (verdict,) = gpu["verdicts"]
    assert verdict["release"] == "16.2" and verdict["status"] == "user-clone"
    assert verdict["source"] == "1E30:12BA" and f"artifact {artifact}" in verdict["reason"]
    assert [p["id"] for p in gpu["profiles"]["profiles"]] == list(range(330, 362))
    assert gpu["profiles"]["notes"] == []  # already cloned in the file
    assert '"1F08:0000" = "1E30:12BA"' in gpu["suggest"]["toml"]


def test_a_plain_xml_needs_a_release(tmp_path: Path, env: dict[str, str]) -> None:
    xml = tmp_path / "vgpuConfig.xml"
    xml.write_bytes(TINY)
    r = run_cli("gpus", "--device", "1E84", "--xml", str(xml), env=env)
    assert r.exit_code == 2 and "--release" in r.stderr and r.stderr.count("\n") == 1


def test_xml_with_entities_is_refused(tmp_path: Path, env: dict[str, str]) -> None:
    xml = tmp_path / "vgpuConfig.xml"
    xml.write_bytes(
        b'<?xml version="1.0"?>\n<!DOCTYPE vgpuconfig [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        b"\n<vgpuconfig><pgpu>&x;</pgpu></vgpuconfig>\n"
    )
    r = run_cli("gpus", "--device", "1E84", "--release", "17.3", "--xml", str(xml), env=env)
    assert r.exit_code == 8 and "declares XML entities" in r.stderr
    assert "root:" not in r.stdout + r.stderr


# ---------------------------------------------------------------- the cached GRID zip


def _grid_zip(tmp_path: Path, env: dict[str, str], builder: str) -> Path:
    """A GRID-shaped zip for 17.3 in the cache, its host .run made by ``builder``."""
    release = get_release("17.3")
    payload = tmp_path / "payload"
    (payload / "kernel").mkdir(parents=True)
    (payload / "kernel" / "nv.c").write_text("/* not NVIDIA's */\n")
    (payload / "vgpuConfig.xml").write_bytes(TINY)
    run = tmp_path / release.host_run_name
    label = f"NVIDIA Accelerated Graphics Driver for Linux-x86_64 {release.host_version}"
    if builder == "makeself":
        subprocess.run(
            [require_tool("makeself"), "--nox11", "--quiet", "--xz", str(payload), str(run),
             label, "./nvidia-installer"],
            check=True, capture_output=True,
        )  # fmt: skip
    else:
        make_run(run, payload, label, release.host_version)
    cached = Path(env["VGPUBUILD_CACHE"]) / "sha256" / release.zip_sha256.hex / release.zip_name
    cached.parent.mkdir(parents=True)
    with zipfile.ZipFile(cached, "w") as zf:
        zf.writestr("README.txt", "generated")
        zf.write(run, f"Host_Drivers/{release.host_run_name}")  # stored: bytes stay findable
    return cached


@pytest.mark.parametrize("builder", ["vgpubuild", "makeself"])
def test_profiles_come_from_the_cached_grid_zip(
    tmp_path: Path, env: dict[str, str], builder: str
) -> None:
    cached = _grid_zip(tmp_path, env, builder)
    before = cached.read_bytes()
    xml = tmp_path / "reference.xml"
    xml.write_bytes(TINY)
    root = tree(tmp_path, RTX2070S)
    # No --release: the recommended release (17.3) is the one whose zip is read.
    (gpu,) = run_gpus(env, "--sysfs", str(root))["gpus"]
    profiles = gpu["profiles"]
    assert profiles["release"] == "17.3" and profiles["xml"].startswith(
        f"the GRID zip {cached.name}"
    )
    assert profiles["profiles"] == xmlstarlet_profiles(xml, "0x1E30", "0x12ba")
    assert cached.read_bytes() == before


@pytest.mark.parametrize("damage", ["truncated", "flipped"])
def test_a_damaged_cached_zip_is_one_line(tmp_path: Path, env: dict[str, str], damage: str) -> None:
    cached = _grid_zip(tmp_path, env, "vgpubuild")
    data = bytearray(cached.read_bytes())
    if damage == "truncated":
        del data[len(data) // 2 :]
    else:  # inside the stored .run's compressed payload: the zip's CRC no longer fits
        start = data.index(b"\xfd7zXZ\x00") + 64
        data[start : start + 32] = bytes(32)
    cached.write_bytes(bytes(data))
    r = run_cli("gpus", "--device", "1E84", "--release", "17.3", env=env)
    errors = [line for line in r.stderr.splitlines() if not line.startswith("[info")]
    assert r.exit_code == 4 and len(errors) == 1 and "Traceback" not in r.stderr
    assert errors[0].startswith("error: cannot read vgpuConfig.xml from the GRID zip")


# ------------------------------------------------------------------------- suggestions


def _nix_eval(snippet: str) -> Any:
    nix = require_tool("nix-instantiate")
    expr = f"let vgpubuild = {{ mkPatchedDriver = args: args; }}; in {snippet}"
    out = subprocess.run([nix, "--eval", "--strict", "--json", "-E", expr],
                         capture_output=True, check=True).stdout  # fmt: skip
    return json.loads(out)


@pytest.mark.parametrize(
    ("device", "release", "remap", "clones"),
    [
        ("1E84", "17.3", False, {}),  # built-in clone: nothing to add
        ("1B06", "17.3", True, {}),  # Pascal on 17.x: the remap
        ("1F08", "16.5", False, {"1F08:0000": "1E30:12BA"}),  # not on the list: a user clone
    ],
)
def test_suggested_toml_and_nix_say_the_same(
    tmp_path: Path,
    env: dict[str, str],
    device: str,
    release: str,
    remap: bool,
    clones: dict[str, str],
) -> None:
    report = run_gpus(env, "--device", device, "--release", release, "--suggest")
    suggest = report["gpus"][0]["suggest"]
    toml_file = tmp_path / "build.toml"
    toml_file.write_text(suggest["toml"])
    from_toml = BuildConfig.load(toml_file)
    evaluated = _nix_eval(suggest["nix"])
    assert evaluated["release"] == release
    json_file = tmp_path / "build.json"
    json_file.write_text(json.dumps({"release": release, **evaluated["config"]}))
    from_nix = BuildConfig.load(json_file)
    for cfg in (from_toml, from_nix):
        assert cfg.release == release and cfg.enable
        assert cfg.options.remapP40ProfilesToV100D is remap
        assert cfg.copyVGPUProfiles == clones
    text = run_cli("gpus", "--device", device, "--release", release, "--suggest", env=env)
    assert "vgpubuild.mkPatchedDriver {" in text.stdout and f'release = "{release}"' in text.stdout


def test_help_teaches_with_examples() -> None:
    r = run_cli("gpus", "--help")
    assert r.exit_code == 0 and "vgpubuild gpus --release 17.3 --suggest" in r.stdout
    listing = run_cli("--help").stdout.split("Commands")[1]
    commands = re.findall(r"^[│ ]+([a-z][a-z-]+)  ", listing, re.M)
    assert commands[:2] == ["gpus", "patch"]  # the journey's first step comes first


# ------------------------------------------------------------------------ lspci parity


def _lspci(root: Path, ids: Path) -> list[dict[str, str]]:
    lspci = require_tool("lspci")
    out = _tool(lspci, "-A", "linux-sysfs", "-O", f"sysfs.path={root}/bus/pci",
                "-O", "hwdb.disable=1", "-i", str(ids), "-vmm", "-nn", "-D", "-k")  # fmt: skip
    return [
        dict(line.split(":\t", 1) for line in block.splitlines())
        for block in out.strip().split("\n\n")
    ]


def _as_lspci(gpu: dict[str, Any], vendor: str) -> dict[str, str]:
    """Our report in lspci's -vmm -nn words (what pci.ids lacks: "Device", "Unknown vendor")."""
    device = gpu["device_id"][2:].lower()
    sub_vendor, sub_id = gpu["subsystem_vendor_id"][2:].lower(), gpu["subsystem_id"][2:].lower()
    return {
        "Slot": gpu["address"],
        "Vendor": f"{vendor} [10de]",
        "Device": f"{gpu['name'] or 'Device'} [{device}]",
        "SVendor": f"{gpu['subsystem_vendor_name'] or 'Unknown vendor'} [{sub_vendor}]",
        "SDevice": f"{gpu['subsystem_name'] or 'Device'} [{sub_id}]",
        "Driver": gpu["driver"],
        "IOMMUGroup": gpu["iommu_group"],
    }


def _parity(tmp_path: Path, devices: list[Dev], ids: Path, vendor: str) -> int:
    root = write_tree(tmp_path / "sys", devices)
    env = {"VGPUBUILD_PCI_IDS": str(ids), "VGPUBUILD_CACHE": str(tmp_path / "cache")}
    ours = run_gpus(env, "--sysfs", str(root), "--release", "17.3")["gpus"]
    theirs = [d for d in _lspci(root, ids) if d["Class"].endswith(("[0300]", "[0302]"))]
    assert len(ours) == len(theirs) == len(devices)
    for gpu, reference in zip(ours, theirs, strict=True):
        assert _as_lspci(gpu, vendor) == {k: reference.get(k) for k in _as_lspci(gpu, vendor)}
    return len(ours)


def test_ids_and_names_equal_lspci_on_the_same_tree(tmp_path: Path) -> None:
    ids = tmp_path / "pci.ids"
    ids.write_text(pci_ids())
    cards = [
        (0x1B38, (0x10DE, 0x11D9)),  # a board pci.ids names
        (0x1E30, (0x10DE, 0x12BA)),
        (0x1E84, (0x1462, 0x3734)),  # a board vendor pci.ids knows, the board not
        (0x2684, (0x10DE, 0x2684)),  # the chip's own ids: named like the chip
        (0x1F08, (0x1043, 0x8734)),  # an unknown board vendor
        (0x1234, (0x10DE, 0x0)),  # an unknown device
    ]
    devices = [
        Dev(f"0000:{n + 1:02x}:00.0", device, subsystem=sub, pci_class=DISPLAY_3D)
        for n, (device, sub) in enumerate(cards)
    ]
    assert _parity(tmp_path, devices, ids, "NVIDIA Corporation") == 6


def test_names_equal_lspci_with_the_systems_pci_ids(tmp_path: Path) -> None:
    """Every NVIDIA device the system's database names (the real file's quirks included)."""
    require_tool("lspci")
    from vgpubuild.pciids import SYSTEM_PATHS, load

    ids = next((p for p in SYSTEM_PATHS if p.is_file()), None)
    if ids is None:
        pytest.skip("no system pci.ids (it comes with pciutils)")
    known = sorted(d for (v, d) in load(ids, [0x10DE]).devices if v == 0x10DE)
    assert len(known) > len(NVIDIA_DEVICES)
    devices = [
        Dev(f"0000:{n // 32 + 1:02x}:{n % 32:02x}.0", device, subsystem=(0x10DE, device))
        for n, device in enumerate(known[:600])
    ]
    assert _parity(tmp_path, devices, ids, "NVIDIA Corporation") == len(devices)
