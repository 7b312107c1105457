"""``vgpubuild profiles ...`` as a user runs it: outputs, exit codes, atomic writes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import xmlgen
from conftest import run_cli

from vgpubuild.vgpuconfig.model import VgpuConfig

TINY = xmlgen.tiny()
COMMANDS = [
    "list",
    "show",
    "override",
    "clone",
    "remap-p2v",
    "apply",
    "import-unlockrs",
    "export-unlockrs",
]


@pytest.fixture
def xml(tmp_path: Path) -> Path:
    path = tmp_path / "vgpuConfig.xml"
    path.write_bytes(TINY)
    return path


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_an_example(command: str) -> None:
    r = run_cli("profiles", command, "--help")
    assert r.exit_code == 0
    assert "Example: vgpubuild profiles " + command in " ".join(r.stdout.split())


def test_cli_module_does_not_import_lxml() -> None:
    code = "import sys, vgpubuild.cli.profiles; print('lxml' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        errors="backslashreplace",
        check=True,
    )
    assert out.stdout.strip() == "False"


def test_list_json_and_device_filter(xml: Path) -> None:
    r = run_cli("profiles", "list", "--xml", str(xml), "--device", "0x1e30", "--json")
    assert r.exit_code == 0, r.stderr
    rows = json.loads(r.stdout)
    assert [row["id"] for row in rows] == list(range(330, 362))
    assert rows[3]["name"] == "GRID RTX6000-4Q" and rows[3]["pgpus"] == ["1E30:12BA"]
    r = run_cli("profiles", "list", "--xml", str(xml), "--device", "0x1B38:0x0")
    assert r.exit_code == 0 and "GRID P40-24Q" in r.stdout and "RTX6000" not in r.stdout


def test_show_json(xml: Path) -> None:
    r = run_cli("profiles", "show", "333", "--xml", str(xml), "--json")
    data = json.loads(r.stdout)
    assert data["framebuffer_mib"] == 3776 and data["display"] == {"width": 5120, "height": 2880}


def test_override_writes_output_and_leaves_input_alone(xml: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.xml"
    r = run_cli(
        "profiles", "override", "333", "--xml", str(xml), "--vram", "3584", "--heads", "1",
        "--display", "1920x1080", "--frl", "144", "--no-cuda", "--set", "eccSupported=1",
        "--set", "display@extra=1", "--create", "-o", str(out),
    )  # fmt: skip
    assert r.exit_code == 0, r.stderr
    assert "nvidia-333 (GRID RTX6000-4Q): profileSize 0x100000000 -> 0xE0000000" in r.stdout
    assert xml.read_bytes() == TINY
    profile = VgpuConfig.load(out).profile(333)
    assert (profile.profile_size_mib, profile.heads, profile.frame_rate_limit) == (3584, 1, 144)
    assert profile.cuda_enabled is False
    # --set display@extra replaces the display attributes as xmlConfig does (Nix //)
    assert (profile.display_width, profile.max_pixels) == (5120, 2073600)


def test_override_in_place_and_dry_run(xml: Path) -> None:
    r = run_cli("profiles", "override", "333", "--xml", str(xml), "--heads", "2", "--dry-run")
    assert r.exit_code == 0
    assert r.stdout.splitlines()[2:] == [
        "@@ -1439,7 +1439,7 @@",
        "     <fbReservation>0x14000000</fbReservation>",
        "     <profileSize>0x100000000</profileSize>",
        "     <mappableVideoSize>0x400000</mappableVideoSize>",
        "-    <numHeads>4</numHeads>",
        "+    <numHeads>2</numHeads>",
        '     <display width="5120" height="2880"/>',
        "     <maxPixels>29491200</maxPixels>",
        "     <frlConfig>0x3c</frlConfig>",
    ]
    assert xml.read_bytes() == TINY
    r = run_cli("profiles", "override", "333", "--xml", str(xml), "--heads", "2", "--in-place")
    assert r.exit_code == 0
    at = TINY.index(b'<vgpuType id="333"')
    edited = TINY[at:].replace(b"<numHeads>4</numHeads>", b"<numHeads>2</numHeads>", 1)
    assert xml.read_bytes() == TINY[:at] + edited
    assert VgpuConfig.load(xml).profile(333).heads == 2


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (["--heads", "1"], 2, "say where the result goes"),
        (["--heads", "1", "--in-place", "--dry-run"], 2, "exclude each other"),
        (["--vram", "64", "--dry-run"], 2, "out of range"),
        (["--display", "1920", "--dry-run"], 2, "not WIDTHxHEIGHT"),
        (["--dry-run"], 2, "nothing to override"),
    ],
)
def test_override_usage_errors(xml: Path, args: list[str], code: int, words: str) -> None:
    r = run_cli("profiles", "override", "333", "--xml", str(xml), *args)
    assert r.exit_code == code and words in r.stderr
    assert r.stderr.startswith("error: ") and "Traceback" not in r.stderr


def test_unknown_id_exit_8_and_no_output(xml: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.xml"
    r = run_cli("profiles", "override", "150", "--xml", str(xml), "--heads", "1", "-o", str(out))
    assert r.exit_code == 8
    assert "Closest ids: 119, 120, 121, 122, 123" in r.stderr
    assert not out.exists()


def test_unwritable_output_exit_11_and_input_untouched(xml: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    r = run_cli(
        "profiles",
        "override",
        "333",
        "--xml",
        str(xml),
        "--heads",
        "1",
        "-o",
        str(blocker / "out.xml"),
    )
    assert r.exit_code == 11, r.stderr
    assert xml.read_bytes() == TINY


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"<vgpuconfig><version>", "not well-formed"),
        (b"<other/>", "root element <other>"),
        (
            b'<!DOCTYPE v [<!ENTITY x SYSTEM "file:///etc/passwd">]><vgpuconfig>&x;</vgpuconfig>',
            "declares XML entities",
        ),
    ],
)
def test_bad_xml_exit_8(tmp_path: Path, data: bytes, words: str) -> None:
    bad = tmp_path / "bad.xml"
    bad.write_bytes(data)
    r = run_cli("profiles", "list", "--xml", str(bad))
    assert r.exit_code == 8 and words in r.stderr


def test_missing_xml_exit_4(tmp_path: Path) -> None:
    r = run_cli("profiles", "list", "--xml", str(tmp_path / "none.xml"))
    assert r.exit_code == 4


def test_clone_and_patch(xml: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.xml"
    r = run_cli(
        "profiles", "clone", "0x1E07:0x0000=0x1E30:0x12BA", "1b06:0=1b38:0",
        "--xml", str(xml), "-o", str(out), "--json",
    )  # fmt: skip
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["changes"] == [
        "pgpu 1E07:0000: cloned from 1E30:12BA (32 profiles)",
        "pgpu 1B06:0000: cloned from 1B38:0000 (32 profiles)",
    ]
    assert "1E07:0000" in VgpuConfig.load(out).profile(333).pgpus
    r = run_cli(
        "profiles", "clone", "1E07:0000=1E30:12BA", "--patch", "--xml", str(xml), "--in-place"
    )
    assert r.exit_code == 0
    assert VgpuConfig.load(xml).profile(333).pgpus == ("1E07:0000",)


@pytest.mark.parametrize(
    ("pair", "code", "words"),
    [
        ("0x1E07:0x10000=0x1E30:0x12BA", 2, "out of range"),
        ("0x1E07=0x1E30:0x12BA", 2, "not a PCI id pair"),
        ("01E07:0000=0x1E30:0x12BA", 2, "out of range"),
        ("0x1E07:0", 2, "is not NEW=SRC"),
        ("0x1E07:0=0x1E31:0x12BA", 8, "no enabled pGPU 1E31:12BA"),
    ],
)
def test_clone_errors(xml: Path, pair: str, code: int, words: str) -> None:
    r = run_cli("profiles", "clone", pair, "--xml", str(xml), "--dry-run")
    assert r.exit_code == code and words in r.stderr


def test_remap_p2v_json(xml: Path, tmp_path: Path) -> None:
    r = run_cli("profiles", "remap-p2v", "--xml", str(xml), "-o", str(tmp_path / "o.xml"), "--json")
    changes = json.loads(r.stdout)["changes"]
    assert len(changes) == 32 and changes[0].startswith("nvidia-11: GRID P40-1Q -> GRID V40-1Q")


def test_apply_build_config_toml_and_json(xml: Path, tmp_path: Path) -> None:
    toml = tmp_path / "vgpubuild.toml"
    toml.write_text(
        'release = "17.3"\n[patcher]\nenable = true\n[patcher.options]\nextra = []\n'
        '[patcher.copyVGPUProfiles]\n"1E07:0000" = "1E30:12BA"\n'
        '[patcher.profileOverrides."333"]\nvramAllocation = 3584\n'
        'display = { width = 1920, height = 1080 }\n[driverSource]\nurl = ""\n'
    )
    out = tmp_path / "out.xml"
    r = run_cli("profiles", "apply", str(toml), "--xml", str(xml), "-o", str(out))
    assert r.exit_code == 0, r.stderr
    assert r.stdout.splitlines()[0] == "pgpu 1E07:0000: cloned from 1E30:12BA (32 profiles)"
    profile = VgpuConfig.load(out).profile(333)
    assert profile.profile_size_mib == 3584 and "1E07:0000" in profile.pgpus
    dump = tmp_path / "vgpu.json"  # builtins.toJSON config.hardware.nvidia.vgpu
    dump.write_text(
        json.dumps(
            {
                "patcher": {
                    "copyVGPUProfiles": {},
                    "profileOverrides": {
                        "333": {
                            "vramAllocation": None,
                            "heads": 1,
                            "display": {"width": None, "height": None},
                        }
                    },
                }
            }
        )
    )
    r = run_cli("profiles", "apply", str(dump), "--xml", str(xml), "--dry-run")
    assert r.exit_code == 0 and "+    <numHeads>1</numHeads>" in r.stdout


def test_apply_unknown_key_exit_3_names_closest(xml: Path, tmp_path: Path) -> None:
    toml = tmp_path / "c.toml"
    toml.write_text('[pacher.copyVGPUProfiles]\n"1E07:0000" = "1E30:12BA"\n')
    r = run_cli("profiles", "apply", str(toml), "--xml", str(xml), "--dry-run")
    assert r.exit_code == 3 and "Did you mean 'patcher'?" in r.stderr
    toml.write_text('[patcher.profileOverrides."333"]\nvramAlocation = 3584\n')
    r = run_cli("profiles", "apply", str(toml), "--xml", str(xml), "--dry-run")
    assert r.exit_code == 3
    assert "Did you mean 'patcher.profileOverrides.333.vramAllocation'?" in r.stderr


def test_unlockrs_export_then_import(xml: Path, tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(
        '[patcher.profileOverrides."333"]\nheads = 1\nframerateLimit = 0\nenableCuda = true\n'
    )
    exported = tmp_path / "profile_override.toml"
    r = run_cli("profiles", "export-unlockrs", str(config), "--xml", str(xml), "-o", str(exported))
    assert r.exit_code == 0, r.stderr
    assert (
        "[profile.nvidia-333]\nnum_displays = 1\nfrl_config = 0\nfrl_enabled = 0\ncuda_enabled = 1\n"
        in exported.read_text()
    )
    exported.write_text(exported.read_text() + "pci_id = 1\n")
    out = tmp_path / "out.xml"
    r = run_cli("profiles", "import-unlockrs", str(exported), "--xml", str(xml), "-o", str(out))
    assert r.exit_code == 0, r.stderr
    assert "skipped: [profile.nvidia-333] pci_id" in r.stderr
    profile = VgpuConfig.load(out).profile(333)
    assert (profile.heads, profile.frame_rate_limiter, profile.cuda_enabled) == (1, False, True)


def test_example_files_apply_cleanly(xml: Path, repo_root: Path) -> None:
    for name in ("rtx2080ti-desktop.toml", "raw-xml.toml"):
        example = repo_root / "profiles" / "examples" / name
        r = run_cli("profiles", "apply", str(example), "--xml", str(xml), "--dry-run")
        assert r.exit_code == 0, (name, r.stderr)
    example = repo_root / "profiles" / "examples" / "profile_override.toml"
    r = run_cli("profiles", "import-unlockrs", str(example), "--xml", str(xml), "--dry-run")
    assert r.exit_code == 0, r.stderr


def test_apply_with_remap_p2v_runs_it_first(xml: Path, tmp_path: Path) -> None:
    toml = tmp_path / "c.toml"
    toml.write_text('[patcher.copyVGPUProfiles]\n"1BB3:0000" = "1B38:0000"\n')
    r = run_cli(
        "profiles", "apply", str(toml), "--remap-p2v", "--xml", str(xml), "--json", "--dry-run"
    )
    changes = json.loads(r.stdout)["changes"]
    assert changes[0].startswith("nvidia-11: GRID P40-1Q -> GRID V40-1Q")
    assert changes[-1] == "pgpu 1BB3:0000: cloned from 1B38:0000 (32 profiles)"


@pytest.fixture(scope="module")
def stand_in_535(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from vgpubuild.demo import make_demo_inputs

    return make_demo_inputs(tmp_path_factory.mktemp("p535"), shape="535").patcher_dir


def _vendors(xml: Path, device: int) -> list[int | None]:
    return [p.subsystem_vendor_id for p in VgpuConfig.load(xml).pgpus if p.device_id == device]


def test_clone_rule_comes_from_the_chosen_patcher(
    xml: Path, tmp_path: Path, stand_in_535: Path
) -> None:
    """Onto a card the file has: the 550.90 rule (default) disables it, 535's keeps it."""
    newest, old = tmp_path / "newest.xml", tmp_path / "535.xml"
    r = run_cli("profiles", "clone", "1E30:12BA=1B38:0", "--xml", str(xml), "-o", str(newest))
    assert r.exit_code == 0, r.stderr
    assert _vendors(newest, 0x1E30) == [0x10DE, 0x9999]  # the copy after the P40, the old one disabled
    r = run_cli(
        "profiles", "clone", "1E30:12BA=1B38:0", "--patcher", str(stand_in_535),
        "--xml", str(xml), "-o", str(old),
    )  # fmt: skip
    assert r.exit_code == 0, r.stderr
    assert _vendors(old, 0x1E30) == [0x10DE, 0x10DE]


def test_apply_checks_remap_against_the_patcher(
    xml: Path, tmp_path: Path, stand_in_535: Path
) -> None:
    toml = tmp_path / "c.toml"
    toml.write_text('[patcher.copyVGPUProfiles]\n"1BB3:0000" = "1B38:0000"\n')
    r = run_cli(
        "profiles", "apply", str(toml), "--remap-p2v", "--patcher", str(stand_in_535),
        "--xml", str(xml), "--dry-run",
    )  # fmt: skip
    assert r.exit_code == 2 and "has no --remap-p2v" in r.stderr


def test_release_and_patcher_rules(xml: Path, stand_in_535: Path) -> None:
    both = ["--release", "17.3", "--patcher", str(stand_in_535)]
    r = run_cli("profiles", "clone", "1E07:0000=1E30:12BA", *both, "--xml", str(xml), "--dry-run")
    assert r.exit_code == 2 and "give one" in r.stderr
    r = run_cli(
        "profiles",
        "clone",
        "1E07:0000=1E30:12BA",
        "--release",
        "16.8",
        "--xml",
        str(xml),
        "--dry-run",
    )
    assert r.exit_code == 9 and "no vGPU-Unlock-patcher support" in r.stderr
