"""vgpu_unlock-rs profile_override.toml: export and import, checked against its own types.

``unlockrs_reader`` is written from vgpu_unlock-rs's struct, not from vgpubuild: every
exported file must pass it with each value of its field's type, and must come back
unchanged through the import.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import unlockrs_reader
import xmlgen
from conftest import run_cli
from unlockrs_reader import Rejected

from vgpubuild.errors import ConfigError
from vgpubuild.profiles.settings import parse_overrides
from vgpubuild.profiles.unlockrs import (
    FIELD_TYPES,
    apply_type_attributes,
    export_unlockrs,
    import_unlockrs,
)
from vgpubuild.vgpuconfig.model import VgpuConfig

FULL: dict[str, Any] = {
    "333": {
        "vramAllocation": 3584,
        "heads": 1,
        "display": {"width": 1920, "height": 1080},
        "framerateLimit": 0,
        "enableCuda": True,
        "xmlConfig": {
            "license": "GRID-Virtual-Apps,3.0;Quadro-Virtual-DWS,5.0",
            "eccSupported": "0",
            "mappableVideoSize": "0x400000",
            "encoderCapacity": "0x64",
            "bar1Length": "0x100",
            "multiVgpuSupported": "1",
        },
    },
    "11": {"heads": 4, "framerateLimit": 60},
}
ATTRIBUTES = {333: {"name": 'GeForce "RTX" 2070-3', "class": "Geforce"}}


def test_field_types_are_vgpu_unlock_rs_struct() -> None:
    assert {k: v.replace("String", "str") for k, v in unlockrs_reader.TYPES.items()} == FIELD_TYPES


def test_export_passes_the_real_types_and_round_trips() -> None:
    overrides = parse_overrides(FULL)
    text, skipped = export_unlockrs(overrides, ATTRIBUTES)
    sections, ignored = unlockrs_reader.read(text)
    assert ignored == []
    assert sections["profile"]["nvidia-333"] == {
        "card_name": 'GeForce "RTX" 2070-3',
        "vgpu_type": "Geforce",
        "framebuffer": 0xCE000000,
        "framebuffer_reservation": 0x12000000,
        "num_displays": 1,
        "display_width": 1920,
        "display_height": 1080,
        "max_pixels": 2073600,
        "frl_config": 0,
        "frl_enabled": 0,
        "cuda_enabled": 1,
        "features": "GRID-Virtual-Apps,3.0;Quadro-Virtual-DWS,5.0",
        "ecc_supported": 0,
        "mappable_video_size": 0x400000,
        "encoder_capacity": 0x64,
        "bar1_length": 0x100,
        "multi_vgpu_supported": 1,
    }
    assert sections["profile"]["nvidia-11"] == {
        "num_displays": 4,
        "frl_config": 60,
        "frl_enabled": 1,
    }
    assert skipped == ["nvidia-333: profileSize"]  # vgpu_unlock-rs derives it; no field

    imported = import_unlockrs(text)
    assert imported.attributes == ATTRIBUTES
    assert imported.skipped == []
    again = parse_overrides(imported.overrides)
    for pid, override in overrides.items():
        assert again[pid].elements() == override.elements()
    # and exporting the import gives the same values
    assert unlockrs_reader.read(export_unlockrs(again, imported.attributes)[0])[0] == sections


@pytest.mark.parametrize(
    "value", ['"2"', "-1", "1.0", "true", "4294967296", '"two"'], ids=lambda v: v
)
def test_import_rejects_what_vgpu_unlock_rs_rejects(value: str) -> None:
    text = f"[profile.nvidia-1]\nnum_displays = {value}\n"
    with pytest.raises(Rejected):
        unlockrs_reader.read(text)
    with pytest.raises(ConfigError, match="num_displays"):
        import_unlockrs(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('"3584MiB"', 3584 * 2**20),
        ('" 3.5 GiB "', 3584 * 2**20),
        ('"3."', None),  # no unit: must be a plain u64
        ('"1.5kB"', 1500),
        ('".5KiB"', 512),
        ('"1000"', 1000),
        ("1000", 1000),
    ],
)
def test_only_the_three_size_fields_take_quoted_sizes(text: str, expected: int | None) -> None:
    for key in ("framebuffer", "mappable_video_size", "framebuffer_reservation"):
        toml = f"[profile.nvidia-1]\n{key} = {text}\n"
        if expected is None:
            with pytest.raises(Rejected):
                unlockrs_reader.read(toml)
            with pytest.raises(ConfigError, match=key):
                import_unlockrs(toml)
            continue
        assert unlockrs_reader.read(toml)[0]["profile"]["nvidia-1"][key] == expected
        imported = import_unlockrs(toml)
        element = {"framebuffer_reservation": "fbReservation"}.get(key)
        element = element or {"mappable_video_size": "mappableVideoSize"}.get(key, key)
        assert imported.overrides["1"]["xmlConfig"][element] == f"0x{expected:X}"
    for key in ("bar1_length", "encoder_capacity", "max_pixels"):
        toml = f'[profile.nvidia-1]\n{key} = "1000"\n'
        with pytest.raises(Rejected):
            unlockrs_reader.read(toml)
        with pytest.raises(ConfigError, match="bare numbers"):
            import_unlockrs(toml)


@pytest.mark.parametrize("bad", ['"1MB!"', '"MiB"', '"1 mib"', '"1.2.3MiB"', '""'])
def test_bad_quoted_sizes(bad: str) -> None:
    toml = f"[profile.nvidia-1]\nframebuffer = {bad}\n"
    with pytest.raises(Rejected):
        unlockrs_reader.read(toml)
    with pytest.raises(ConfigError, match="framebuffer"):
        import_unlockrs(toml)


def test_strings_must_be_strings() -> None:
    with pytest.raises(ConfigError, match="card_name must be a string"):
        import_unlockrs("[profile.nvidia-1]\ncard_name = 1\n")


def test_import_maps_license_name_and_class_and_lists_the_rest() -> None:
    imported = import_unlockrs(
        "[profile.nvidia-333]\n"
        'framebuffer = "3296MiB"\nframebuffer_reservation = 301989888\n'
        "frl_config = 60\nfrl_enabled = 0\n"
        "card_name = 'GRID Test-3'\nvgpu_type = 'Quadro'\nfeatures = 'QVDWS'\n"
        "pci_id = 0x1E3012BA\nsomething_else = 1\n"
        "[mdev.00000000-0000-0000-0000-000000000000]\nnum_displays = 1\n"
    )
    xml = imported.overrides["333"]["xmlConfig"]
    assert xml["framebuffer"] == "0xCE000000" and xml["fbReservation"] == "0x12000000"
    assert xml["profileSize"] == "0xE0000000"
    assert (xml["frlConfig"], xml["frame_rate_limiter"]) == ("0x3C", "0")
    assert xml["license"] == "QVDWS"
    assert imported.attributes == {333: {"name": "GRID Test-3", "class": "Quadro"}}
    assert "[profile.nvidia-333] pci_id" in imported.skipped
    assert "[profile.nvidia-333] something_else" in imported.skipped
    assert any(item.startswith("[mdev]") for item in imported.skipped)


def test_attributes_are_set_on_the_vgpu_type() -> None:
    config = VgpuConfig.parse(xmlgen.tiny())
    changes = apply_type_attributes(config, {333: {"name": "GRID Test-3", "class": "Compute"}})
    el = config.find_type(333)
    assert (el.get("name"), el.get("class")) == ("GRID Test-3", "Compute")
    assert len(changes) == 2 and changes[0].startswith("nvidia-333: name ")


def test_export_refuses_strings_vgpu_unlock_rs_cannot_store() -> None:
    long = parse_overrides({"1": {"xmlConfig": {"license": "x" * 128}}})
    with pytest.raises(ConfigError, match="at most 127"):
        export_unlockrs(long)
    export_unlockrs(parse_overrides({"1": {"xmlConfig": {"license": "x" * 127}}}))
    with pytest.raises(ConfigError, match="at most 63"):
        export_unlockrs({}, {1: {"name": "n" * 64}})


@pytest.mark.parametrize(
    "bad",
    ["[profile.vgpu-333]\nnum_displays = 1\n", "[profile.nvidia-1]\nnum_displays = -1\n", "x ="],
)
def test_import_rejects_bad_files(bad: str) -> None:
    with pytest.raises(ConfigError):
        import_unlockrs(bad)


def test_cli_import_writes_name_class_and_license(tmp_path: Path) -> None:
    xml = tmp_path / "vgpuConfig.xml"
    xml.write_bytes(xmlgen.tiny())
    toml = tmp_path / "profile_override.toml"
    toml.write_text(
        "[profile.nvidia-333]\ncard_name = 'GRID Mine-3'\nvgpu_type = 'Geforce'\n"
        "features = 'GRID-Virtual-PC,2.0'\nnum_displays = 1\n"
    )
    out = tmp_path / "out.xml"
    r = run_cli("profiles", "import-unlockrs", str(toml), "--xml", str(xml), "-o", str(out))
    assert r.exit_code == 0, r.stderr
    assert "skipped" not in r.stderr
    el = VgpuConfig.load(out).find_type(333)
    assert (el.get("name"), el.get("class")) == ("GRID Mine-3", "Geforce")
    assert el.findtext("license") == "GRID-Virtual-PC,2.0"
    assert el.findtext("numHeads") == "1"
