"""Profile overrides: vgpu4nixos's formulas with hand-computed values, validation, creation."""

from __future__ import annotations

from typing import Any

import pytest
import xmlgen

from vgpubuild.errors import ConfigError, UsageError, XmlConfigError
from vgpubuild.profiles.edits import apply_edits
from vgpubuild.profiles.overrides import apply_overrides
from vgpubuild.profiles.settings import parse_clone_map, parse_overrides, vram_values
from vgpubuild.vgpuconfig.model import VgpuConfig
from vgpubuild.vgpuconfig.vocabulary import CUDA_ELEMENT, to_hex

TINY = xmlgen.tiny()


def apply(table: dict[str, Any], data: bytes = TINY) -> tuple[VgpuConfig, list[str]]:
    config = VgpuConfig.parse(data)
    return config, apply_overrides(config, parse_overrides(table))


def text(config: VgpuConfig, pid: int, tag: str) -> str | None:
    return config.find_type(pid).findtext(tag)


@pytest.mark.parametrize(
    ("mib", "size", "reservation", "framebuffer"),
    [
        # 3584*1048576 = 0xE0000000; 134217728 + 2560*65536 = 0x12000000; difference 0xCE000000
        (3584, "0xE0000000", "0x12000000", "0xCE000000"),
        # 1024 MiB: reservation is exactly 128 MiB
        (1024, "0x40000000", "0x8000000", "0x38000000"),
        # 512 MiB: 134217728 - 512*65536 = 100663296 = 0x6000000; 536870912 - that = 0x1A000000
        (512, "0x20000000", "0x6000000", "0x1A000000"),
        # 24576 MiB (24 GiB): 134217728 + 23552*65536 = 1677721600 = 0x64000000
        (24576, "0x600000000", "0x64000000", "0x59C000000"),
    ],
)
def test_vram_formula_matches_hand_computed_values(
    mib: int, size: str, reservation: str, framebuffer: str
) -> None:
    assert vram_values(mib) == {
        "profileSize": size,
        "fbReservation": reservation,
        "framebuffer": framebuffer,
    }
    config, _ = apply({"333": {"vramAllocation": mib}})
    assert [text(config, 333, t) for t in ("profileSize", "fbReservation", "framebuffer")] == [
        size,
        reservation,
        framebuffer,
    ]


def test_hex_is_upper_case_like_nixpkgs_to_hex_string() -> None:
    assert to_hex(60) == "0x3C" and to_hex(144) == "0x90" and to_hex(0) == "0x0"


def test_heads_display_frl_and_cuda() -> None:
    config, changes = apply(
        {
            "333": {
                "heads": 1,
                "display": {"width": 1920, "height": 1080},
                "framerateLimit": 144,
                "enableCuda": False,
            }
        }
    )
    vgpu_type = config.find_type(333)
    display = vgpu_type.find("display")
    assert display is not None
    assert text(config, 333, "numHeads") == "1"
    assert (display.get("width"), display.get("height")) == ("1920", "1080")
    assert text(config, 333, "maxPixels") == "2073600"  # 1920*1080
    assert text(config, 333, "frlConfig") == "0x90"  # 144
    assert text(config, 333, "frame_rate_limiter") == "1"
    assert text(config, 333, CUDA_ELEMENT) == "0"
    assert "nvidia-333 (GRID RTX6000-4Q): numHeads 4 -> 1" in changes
    assert "nvidia-333 (GRID RTX6000-4Q): display@width 5120 -> 1920" in changes


def test_frame_rate_limit_zero_turns_the_limiter_off() -> None:
    config, _ = apply({"333": {"framerateLimit": 0}})
    assert text(config, 333, "frlConfig") == "0x0"
    assert text(config, 333, "frame_rate_limiter") == "0"


def test_xml_config_text_and_attribute_forms_and_it_wins_like_nix_update() -> None:
    config, _ = apply(
        {
            "333": {
                "vramAllocation": 3584,
                "xmlConfig": {
                    "eccSupported": "1",
                    "framebuffer": "0xC0000000",
                    "display": {"width": "800"},
                },
            }
        }
    )
    assert text(config, 333, "eccSupported") == "1"
    assert text(config, 333, "framebuffer") == "0xC0000000"  # xmlConfig overrides the formula
    assert text(config, 333, "profileSize") == "0xE0000000"
    display = config.find_type(333).find("display")
    assert display is not None and display.get("width") == "800"


def test_missing_element_is_created_and_reported() -> None:
    data = TINY.replace(b"    <cudaEnabled>1</cudaEnabled>\n", b"", 1)
    data = data.replace(b"    <numHeads>4</numHeads>\n", b"", 1)
    config = VgpuConfig.parse(data)
    first_id = next(int(el.get("id", "0")) for el in config.type_elements())
    config, changes = apply({str(first_id): {"enableCuda": True, "heads": 2}}, data)
    assert text(config, first_id, CUDA_ELEMENT) == "1"
    assert text(config, first_id, "numHeads") == "2"
    assert any(f"created <{CUDA_ELEMENT}>1</{CUDA_ELEMENT}>" in line for line in changes)
    assert any("created <numHeads>2</numHeads>" in line for line in changes)


def test_unknown_option_names_the_closest_key() -> None:
    with pytest.raises(ConfigError, match=r"vramAlocation") as err:
        parse_overrides({"333": {"vramAlocation": 3584}})
    hint = "Did you mean 'profileOverrides.333.vramAllocation'?"
    assert err.value.hint is not None and hint in err.value.hint
    with pytest.raises(ConfigError) as err:
        parse_overrides({"333": {"display": {"widht": 1}}})
    assert err.value.hint is not None and "'profileOverrides.333.display.width'" in err.value.hint


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"vramAllocation": 64}, "out of range (512 to 262144 MiB)"),
        ({"vramAllocation": 10**7}, "out of range"),
        ({"heads": 0}, "heads = 0 is out of range"),
        ({"display": {"width": 0, "height": 1080}}, "display.width = 0 is out of range"),
        ({"display": {"width": 1920}}, "needs both width and height"),
        ({"framerateLimit": -1}, "framerateLimit = -1 is out of range"),
        ({"vramAllocation": "3584"}, "must be a whole number"),
        ({"heads": True}, "must be a whole number"),
        ({"enableCuda": 1}, "must be true or false"),
        ({"xmlConfig": {"bad name": "1"}}, "invalid element name"),
        ({"xmlConfig": {"a": [1]}}, "must be a string or a number"),
    ],
)
def test_values_are_validated(options: dict[str, Any], words: str) -> None:
    with pytest.raises(ConfigError, match=words.replace("(", r"\(").replace(")", r"\)")):
        parse_overrides({"333": options})


def test_profile_key_must_be_numeric_and_error_class_is_selectable() -> None:
    with pytest.raises(ConfigError, match="numeric profile id"):
        parse_overrides({"nvidia-333": {"heads": 1}})
    with pytest.raises(UsageError):
        parse_overrides({"333": {"heads": 99}}, error=UsageError)


def test_null_values_from_builtins_to_json_mean_not_set() -> None:
    parsed = parse_overrides(
        {
            "333": {
                "vramAllocation": 3584,
                "heads": None,
                "enableCuda": None,
                "display": {"width": None, "height": None},
                "framerateLimit": None,
                "xmlConfig": {},
            }
        }
    )
    assert parsed[333].elements() == vram_values(3584)


def test_framebuffer_must_stay_positive() -> None:
    with pytest.raises(XmlConfigError, match="not a positive size"):
        apply({"333": {"xmlConfig": {"framebuffer": "0x0"}}})


def test_unknown_id_leaves_the_file_untouched_and_names_closest() -> None:
    config = VgpuConfig.parse(TINY)
    with pytest.raises(XmlConfigError, match="no profile") as err:
        apply_edits(
            config,
            overrides=parse_overrides({"333": {"heads": 1}, "150": {"heads": 1}}),
            clones=(),
        )
    assert err.value.hint is not None and "123" in err.value.hint
    assert config.to_bytes() == TINY


def test_apply_edits_runs_clones_then_overrides() -> None:
    config = VgpuConfig.parse(TINY)
    changes = apply_edits(
        config,
        overrides=parse_overrides({"333": {"vramAllocation": 3584}}),
        clones=parse_clone_map({"1E07:0000": "1E30:12BA"}),
    )
    assert changes[0] == "pgpu 1E07:0000: cloned from 1E30:12BA (32 profiles)"
    assert changes[1:4] == [
        "nvidia-333 (GRID RTX6000-4Q): profileSize 0x100000000 -> 0xE0000000",
        "nvidia-333 (GRID RTX6000-4Q): framebuffer 0xec000000 -> 0xCE000000",
        "nvidia-333 (GRID RTX6000-4Q): fbReservation 0x14000000 -> 0x12000000",
    ]
    config = VgpuConfig.parse(config.to_bytes())
    assert "1E07:0000" in config.profile(333).pgpus
    assert text(config, 333, "profileSize") == "0xE0000000"
