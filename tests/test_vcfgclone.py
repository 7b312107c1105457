"""vcfgclone / vcfgpatch / copyVGPUProfiles / remap-p2v: numbers, not text."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass

import pytest
import xmlgen
from lxml import etree

from vgpubuild import resources
from vgpubuild.config import BuildConfig
from vgpubuild.errors import ConfigError, UsageError, XmlConfigError
from vgpubuild.profiles.clones import copy_profiles, vcfgclone, vcfgpatch
from vgpubuild.profiles.remap import remap_p2v_profiles
from vgpubuild.profiles.settings import PciId, parse_clone_map, parse_pci_id
from vgpubuild.vgpuconfig.model import VgpuConfig

TINY = xmlgen.tiny()


@dataclass(frozen=True)
class BuiltinClone:
    """One line of VUP's built-in clone list (``profiles/clones.toml``)."""

    card: str
    new: PciId
    source: PciId
    source_card: str
    series: tuple[str, ...]
    remap_p2v: bool


def builtin_clones(series: str, *, remap_p2v: bool = False) -> list[BuiltinClone]:
    """VUP's built-in clones for a driver series (``"550"``), as the data file lists them.

    Lines that VUP runs only with ``--remap-p2v`` are included when ``remap_p2v`` is set.
    """
    with (resources.data_dir("profiles") / "clones.toml").open("rb") as f:
        rows = tomllib.load(f)["clone"]
    table = []
    for row in rows:
        entry = BuiltinClone(
            card=row["card"],
            new=parse_pci_id(row["new"]),
            source=parse_pci_id(row["source"]),
            source_card=row["source_card"],
            series=tuple(row["series"]),
            remap_p2v=bool(row.get("remap_p2v", False)),
        )
        if series in entry.series and (remap_p2v or not entry.remap_p2v):
            table.append(entry)
    return table


def keys(config: VgpuConfig) -> list[str]:
    return [p.key + (" (disabled)" if p.disabled else "") for p in config.pgpus]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1E07:0000", PciId(0x1E07, 0)),
        ("0x1e07:0x0", PciId(0x1E07, 0)),
        ("0X1E30:0x12ba", PciId(0x1E30, 0x12BA)),
    ],
)
def test_pci_ids_parse_as_numbers(text: str, expected: PciId) -> None:
    assert parse_pci_id(text) == expected


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("1E07", "is not a PCI id pair"),
        ("1E07:", "is not a PCI id pair"),
        ("1G07:0000", "is not a PCI id pair"),
        ("-1:0", "is not a PCI id pair"),
        ("1E07:10000", "out of range"),
        ("0x12345:0", "out of range"),
        # More than four hex digits is not a 16-bit id, even when the value would fit; the
        # build config has always refused these, and now every parser does.
        ("01E07:0000", "out of range"),
        ("0x00001E30:12BA", "out of range"),
    ],
)
def test_malformed_or_out_of_range_pci_ids_are_errors(text: str, words: str) -> None:
    with pytest.raises(ConfigError, match=words) as err:
        parse_pci_id(text)
    assert err.value.hint is not None
    with pytest.raises(UsageError):
        parse_pci_id(text, error=UsageError)


@pytest.mark.parametrize("pair", ["01E07:0000", "1E07:00000", "0x01E07:0x0"])
def test_a_five_digit_pci_id_is_refused_by_every_parser(pair: str) -> None:
    """copyVGPUProfiles from a file, --clone, profiles clone: one parser, one rule."""
    with pytest.raises(ConfigError, match="out of range"):
        parse_pci_id(pair)
    with pytest.raises(UsageError, match="out of range"):
        parse_clone_map({pair: "1E30:12BA"}, error=UsageError)
    with pytest.raises(ConfigError, match=r"patcher\.copyVGPUProfiles entry .* out of range"):
        BuildConfig.from_mapping({"patcher": {"copyVGPUProfiles": {"1E30:12BA": pair}}})


def test_clone_matches_mixed_hex_case_and_adds_copy_after_source() -> None:
    # The RTX 6000 entry is written subsystemId="0x12ba", subsystemVendorId="0x10DE":
    # VUP's sed (matching "0x12BA" and "0x10de" as text) would skip it.
    assert b'subsystemVendorId="0x10DE" subsystemId="0x12ba"' in TINY
    config = VgpuConfig.parse(TINY)
    changes = vcfgclone(config, PciId(0x1E30, 0x12BA), PciId(0x1E07, 0x0000))
    assert changes == ["pgpu 1E07:0000: cloned from 1E30:12BA (32 profiles)"]
    order = keys(config)
    assert order[order.index("1E30:12BA") + 1] == "1E07:0000"
    src, new = (p for p in config.pgpus if p.key in ("1E30:12BA", "1E07:0000"))
    assert new.supported == src.supported
    dev = config.pgpu_elements()[order.index("1E07:0000")].find("devId")
    assert dev is not None
    assert (dev.get("deviceId"), dev.get("subsystemId")) == ("0x1E07", "0x0000")
    assert dev.get("subsystemVendorId") == "0x10DE"  # kept from the source


def test_clone_source_written_0x0_matches_0000() -> None:
    assert b'deviceId="0x1B38" subsystemVendorId="0x10de" subsystemId="0x0"' in TINY
    config = VgpuConfig.parse(TINY)
    vcfgclone(config, parse_pci_id("1B38:0000"), parse_pci_id("1B06:0000"))
    assert "1B06:0000" in keys(config)
    assert "1B06:0000" in config.profile(11).pgpus


def test_existing_destination_is_disabled_first_550_semantics() -> None:
    config = VgpuConfig.parse(TINY)
    # M10 (13BD:1160) already exists; clone P40 onto those ids
    changes = vcfgclone(config, PciId(0x1B38, 0), PciId(0x13BD, 0x1160))
    assert changes[0] == "pgpu 13BD:1160: existing entry disabled (subsystemVendorId 0x9999)"
    assert keys(config).count("13BD:1160 (disabled)") == 1
    assert keys(config).count("13BD:1160") == 1
    old, new = sorted(
        (p for p in config.pgpus if p.key == "13BD:1160"), key=lambda p: not p.disabled
    )
    assert old.disabled and old.supported == tuple(range(200, 220))
    assert not new.disabled and new.supported == tuple(range(11, 43))
    assert "13BD:1160" not in config.profile(200).pgpus  # disabled entries offer nothing


def test_disabled_entry_is_never_a_clone_source() -> None:
    config = VgpuConfig.parse(TINY)
    vcfgclone(config, PciId(0x1B38, 0), PciId(0x13BD, 0x1160))
    vcfgclone(config, PciId(0x13BD, 0x1160), PciId(0x17FD, 0))
    assert [p.supported for p in config.pgpus if p.key == "17FD:0000"] == [tuple(range(11, 43))]


def test_cloning_from_a_missing_pgpu_is_an_error_listing_pgpus() -> None:
    config = VgpuConfig.parse(TINY)
    with pytest.raises(XmlConfigError, match="no enabled pGPU 1E31:12BA") as err:
        vcfgclone(config, PciId(0x1E31, 0x12BA), PciId(0x1E07, 0))
    assert err.value.hint is not None and "1E30:12BA" in err.value.hint
    with pytest.raises(XmlConfigError) as err:
        vcfgclone(config, PciId(0x1E30, 0x1234), PciId(0x1E07, 0))
    assert err.value.hint == "pGPUs in the file: 1E30:12BA."
    assert config.to_bytes() == TINY


def test_vcfgpatch_changes_ids_in_place() -> None:
    config = VgpuConfig.parse(TINY)
    before = keys(config)
    assert vcfgpatch(config, PciId(0x1B38, 0), PciId(0x1B06, 0)) == [
        "pgpu 1B38:0000: ids changed to 1B06:0000 (1 entries)"
    ]
    assert keys(config) == [k.replace("1B38:0000", "1B06:0000") for k in before]
    with pytest.raises(XmlConfigError):
        vcfgpatch(config, PciId(0x1B38, 0), PciId(0x1B06, 0))


def test_copy_vgpu_profiles_mapping_runs_in_order_and_chains() -> None:
    config = VgpuConfig.parse(TINY)
    pairs = parse_clone_map({"1E07:0000": "1E30:12BA", "1F03:0000": "1E07:0000"})
    assert pairs == [
        (PciId(0x1E07, 0), PciId(0x1E30, 0x12BA)),
        (PciId(0x1F03, 0), PciId(0x1E07, 0)),
    ]
    copy_profiles(config, pairs)
    assert config.profile(333).pgpus == ("1E30:12BA", "1E07:0000", "1F03:0000")
    round_trip = VgpuConfig.parse(config.to_bytes())
    assert round_trip.profile(333).pgpus == ("1E30:12BA", "1E07:0000", "1F03:0000")
    assert etree.tostring(round_trip.root, method="c14n") == etree.tostring(
        config.root, method="c14n"
    )


@pytest.mark.parametrize(
    ("table", "words"),
    [
        ({"1E30:12BA": "0x1e30:0x12ba"}, "onto itself"),
        ({"1E07:0000": 7}, "must be a"),
        ({"1E07": "1E30:12BA"}, "not a PCI id pair"),
        ({"1E07:0000": "1E30:112BA"}, "out of range"),
    ],
)
def test_clone_map_validation(table: dict[str, object], words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        parse_clone_map(table)  # type: ignore[arg-type]


def test_remap_p2v_renames_and_takes_v100d_ids() -> None:
    config = VgpuConfig.parse(TINY)
    v100d = {p.name: p for p in config.profiles if p.name.startswith("GRID V100D-")}
    changes = remap_p2v_profiles(config)
    by_id = {p.id: p for p in config.profiles}
    p40_1q, p40_12q, p40_3q = by_id[11], by_id[17], by_id[13]
    assert (p40_1q.name, p40_12q.name, p40_3q.name) == (
        "GRID V40-1Q",
        "GRID V40-12Q",
        "GRID V40-3Q",
    )
    twin = v100d["GRID V100D-1Q"]
    assert (p40_1q.device_id, p40_1q.subsystem_id) == (twin.device_id, twin.subsystem_id)
    twin16 = v100d["GRID V100D-16Q"]  # P40-12Q maps to V100D-16Q
    assert (p40_12q.device_id, p40_12q.subsystem_id) == (twin16.device_id, twin16.subsystem_id)
    assert (p40_3q.device_id, p40_3q.subsystem_id) == (0x1DB6, 0x124A)  # no P40-3Q mapping
    assert len(changes) == 32
    assert not any(p.name.startswith("GRID P40-") for p in config.profiles)
    assert remap_p2v_profiles(config) == []  # idempotent


def test_remap_p2v_falls_back_when_the_v100d_twin_is_missing() -> None:
    data = TINY.replace(b'name="GRID V100D-1Q"', b'name="GRID V100D-1Qx"')
    config = VgpuConfig.parse(data)
    changes = remap_p2v_profiles(config)
    assert "nvidia-11: GRID P40-1Q -> GRID V40-1Q (ids of V100D fallback: 0x1DB6 0x124A)" in changes


def test_remap_p2v_is_a_small_diff() -> None:
    config = VgpuConfig.parse(TINY)
    remap_p2v_profiles(config)
    out = config.to_bytes().decode().splitlines()
    before = TINY.decode().splitlines()
    assert len(out) == len(before)
    changed = [i for i, (a, b) in enumerate(zip(before, out, strict=True)) if a != b]
    assert len(changed) == 2 * 32  # the vgpuType line and its devId line, per P40 type


def test_builtin_clone_table() -> None:
    all_550 = builtin_clones("550")
    assert len(all_550) == 18 and len(builtin_clones("535")) == 18
    with_p4 = builtin_clones("550", remap_p2v=True)
    assert len(with_p4) == 19 and with_p4[-1].card == "Tesla P4"
    rtx = next(c for c in all_550 if c.new == PciId(0x1E07, 0))
    assert (rtx.card, rtx.source, rtx.source_card) == (
        "GeForce RTX 2080 Ti",
        PciId(0x1E30, 0x12BA),
        "Quadro RTX 6000",
    )
    config = VgpuConfig.parse(TINY)
    copy_profiles(config, [(c.new, c.source) for c in with_p4])
    assert len(config.pgpus) == 4 + 19
