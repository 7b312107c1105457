"""Differential tests against the real tools vgpu4nixos and VUP run.

Overrides: the exact ``xmlstarlet ed -P -u ... -v ...`` command vgpu4nixos generates and
vgpubuild's output must parse to equal trees (canonical XML, comments and whitespace
included). Clones: VUP's ``sed`` vcfgclone on a file whose text it can match. Where the
reference tools are silently wrong (unknown id, missing element, hex case) the tests pin
that down next to vgpubuild's loud behaviour.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import xmlgen
from conftest import require_tool
from lxml import etree

from vgpubuild.errors import XmlConfigError
from vgpubuild.profiles.clones import vcfgclone
from vgpubuild.profiles.edits import apply_edits
from vgpubuild.profiles.settings import PciId, parse_overrides
from vgpubuild.vgpuconfig.model import VgpuConfig

DATA = xmlgen.generate(200, 12)


def canonical(data: bytes) -> bytes:
    return etree.tostring(etree.fromstring(data), method="c14n")


def xmlstarlet(xml: Path, overrides: dict[str, Any]) -> bytes:
    tool = require_tool("xmlstarlet")
    args = xmlgen.vgpu4nixos_xmlstarlet(overrides)
    return subprocess.run([tool, *args, str(xml)], capture_output=True, check=True).stdout


def ours(xml: Path, overrides: dict[str, Any], tmp_path: Path) -> bytes:
    config = VgpuConfig.load(xml)
    apply_edits(config, overrides=parse_overrides(overrides), clones=())
    return config.to_bytes()


CASES: dict[str, dict[str, Any]] = {
    "vram-3584": {"333": {"vramAllocation": 3584}},
    "heads": {"333": {"heads": 1}},
    "display": {"333": {"display": {"width": 1920, "height": 1080}}},
    "frl-144": {"333": {"framerateLimit": 144}},
    "frl-off": {"333": {"framerateLimit": 0}},
    "xmlconfig-text-and-attribute": {
        "333": {"xmlConfig": {"eccSupported": "1", "display": {"height": "768"}}}
    },
    "xmlconfig-wins-over-formula": {
        "333": {"vramAllocation": 2048, "xmlConfig": {"framebuffer": "0x70000000"}}
    },
    "everything-on-several-profiles": {
        "333": {
            "vramAllocation": 3584,
            "heads": 1,
            "display": {"width": 1920, "height": 1080},
            "framerateLimit": 144,
        },
        "11": {"vramAllocation": 24576, "framerateLimit": 60},
        "100": {"heads": 2, "display": {"width": 2560, "height": 1600}},
    },
}


@pytest.mark.parametrize("overrides", CASES.values(), ids=CASES.keys())
def test_overrides_equal_vgpu4nixos_xmlstarlet_command(
    overrides: dict[str, Any], tmp_path: Path
) -> None:
    xml = tmp_path / "vgpuConfig.xml"
    xml.write_bytes(DATA)
    reference = xmlstarlet(xml, overrides)
    result = ours(xml, overrides, tmp_path)
    assert canonical(reference) != canonical(DATA), "the case must change something"
    assert canonical(result) == canonical(reference)


def test_the_generated_command_is_vgpu4nixos_shape() -> None:
    args = xmlgen.vgpu4nixos_xmlstarlet(
        {"333": {"vramAllocation": 3584, "display": {"width": 1920, "height": 1080}}}
    )
    assert args[:2] == ["ed", "-P"]
    path = '/vgpuconfig/vgpuType[@id="333"]/profileSize/text()'
    at = args.index(path)
    assert args[at - 1 : at + 3] == ["-u", path, "-v", "0xE0000000"]
    assert '/vgpuconfig/vgpuType[@id="333"]/display/@width' in args


def test_enable_cuda_is_applied_where_vgpu4nixos_ignores_it(tmp_path: Path) -> None:
    xml = tmp_path / "vgpuConfig.xml"
    xml.write_bytes(DATA)
    overrides = {"333": {"enableCuda": False}}
    assert canonical(xmlstarlet(xml, overrides)) == canonical(DATA)  # no -u at all
    assert VgpuConfig.parse(ours(xml, overrides, tmp_path)).profile(333).cuda_enabled is False


def test_unknown_id_is_silent_in_xmlstarlet_and_an_error_here(tmp_path: Path) -> None:
    xml = tmp_path / "vgpuConfig.xml"
    xml.write_bytes(DATA)
    overrides = {"150": {"heads": 1}}
    assert canonical(xmlstarlet(xml, overrides)) == canonical(DATA)
    with pytest.raises(XmlConfigError, match="no profile"):
        ours(xml, overrides, tmp_path)


def test_missing_element_is_skipped_by_xmlstarlet_and_created_here(tmp_path: Path) -> None:
    xml = tmp_path / "vgpuConfig.xml"
    start = DATA.index(b'<vgpuType id="333"')
    data = DATA[:start] + DATA[start:].replace(b"    <numHeads>4</numHeads>\n", b"", 1)
    xml.write_bytes(data)
    overrides = {"333": {"heads": 1}}
    assert canonical(xmlstarlet(xml, overrides)) == canonical(data)
    assert VgpuConfig.parse(ours(xml, overrides, tmp_path)).profile(333).heads == 1


# ----------------------------------------------------------------- VUP's sed vcfgclone


def sed_vcfgclone(xml: Path, src: tuple[str, str], dst: tuple[str, str]) -> bytes:
    tool = require_tool("sed")
    subprocess.run([tool, *xmlgen.vup_vcfgclone_sed(*src, *dst), "-i", str(xml)], check=True)
    return xml.read_bytes()


@pytest.mark.parametrize(
    ("src_text", "dst_text"),
    [(("0x1B38", "0x0"), ("0x1B06", "0x0000")), (("0x13BD", "0x1160"), ("0x13C0", "0x0000"))],
)
def test_clone_equals_vup_sed_where_sed_can_match(
    src_text: tuple[str, str], dst_text: tuple[str, str], tmp_path: Path
) -> None:
    xml = tmp_path / "vgpuConfig.xml"
    xml.write_bytes(DATA)
    reference = sed_vcfgclone(xml, src_text, dst_text)
    config = VgpuConfig.parse(DATA)
    src, dst = (PciId(int(a, 16), int(b, 16)) for a, b in (src_text, dst_text))
    vcfgclone(config, src, dst)
    assert canonical(reference) != canonical(DATA)
    assert config.to_bytes() == reference  # byte for byte, not just the tree


def test_vup_sed_misses_upper_case_vendor_and_we_do_not(tmp_path: Path) -> None:
    xml = tmp_path / "vgpuConfig.xml"
    xml.write_bytes(DATA)
    # The RTX 6000 pgpu reads subsystemVendorId="0x10DE" subsystemId="0x12ba".
    assert sed_vcfgclone(xml, ("0x1E30", "0x12BA"), ("0x1E07", "0x0000")) == DATA
    config = VgpuConfig.parse(DATA)
    vcfgclone(config, PciId(0x1E30, 0x12BA), PciId(0x1E07, 0))
    assert "1E07:0000" in config.profile(333).pgpus


def test_clone_of_duplicate_and_last_entries_equals_vup_sed(tmp_path: Path) -> None:
    """Two source entries, the second one the last child: each copy follows its source."""
    start = DATA.index(b'  <pgpu>\n    <devId vendorId="0x10de" deviceId="0x13BD"')
    block = DATA[start : DATA.index(b"</pgpu>\n", start) + len(b"</pgpu>\n")]
    data = DATA.replace(b"</vgpuconfig>", block.rstrip(b"\n") + b"\n</vgpuconfig>")
    xml = tmp_path / "vgpuConfig.xml"
    xml.write_bytes(data)
    reference = sed_vcfgclone(xml, ("0x13BD", "0x1160"), ("0x13C0", "0x0000"))
    config = VgpuConfig.parse(data)
    vcfgclone(config, PciId(0x13BD, 0x1160), PciId(0x13C0, 0))
    assert reference.count(b'deviceId="0x13C0"') == 2
    assert config.to_bytes() == reference
