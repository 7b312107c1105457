"""vgpuConfig.xml parsing: safety, the model, byte-identical round trips, minimal diffs."""

from __future__ import annotations

import difflib
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest
import xmlgen
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from vgpubuild.errors import InputError, XmlConfigError
from vgpubuild.vgpuconfig.model import VgpuConfig
from vgpubuild.vgpuconfig.vocabulary import parse_number

TINY = xmlgen.tiny()


def canonical(data: bytes) -> bytes:
    """The document's tree in canonical form (comments and whitespace text included)."""
    return etree.tostring(etree.fromstring(data), method="c14n")


def changed_lines(before: bytes, after: bytes) -> list[str]:
    diff = difflib.unified_diff(
        before.decode().splitlines(), after.decode().splitlines(), lineterm="", n=0
    )
    return [line for line in diff if line[:1] in "+-" and line[:3] not in ("+++", "---")]


# ----------------------------------------------------------------- round trip


@pytest.mark.parametrize(
    "data",
    [
        TINY,
        xmlgen.large(),
        xmlgen.generate(120, 6, comments=False, doctype=False, declaration=""),
        xmlgen.generate(120, 6, indent="\t", declaration="<?xml version='1.0' encoding='UTF-8'?>"),
    ],
    ids=["tiny", "large", "bare", "tabs-single-quoted-declaration"],
)
def test_untouched_document_is_written_back_byte_identical(data: bytes, tmp_path: Path) -> None:
    src = tmp_path / "vgpuConfig.xml"
    src.write_bytes(data)
    out = tmp_path / "out.xml"
    VgpuConfig.load(src).save(out)
    assert out.read_bytes() == data


def test_setting_a_value_to_its_current_value_changes_nothing() -> None:
    config = VgpuConfig.parse(TINY)
    el = config.find_type(333).find("numHeads")
    assert el is not None
    config.set_text(el, el.text or "")
    assert config.to_bytes() == TINY


def test_one_value_edit_is_a_one_line_diff() -> None:
    config = VgpuConfig.parse(TINY)
    size = config.find_type(333).find("profileSize")
    assert size is not None
    config.set_text(size, "0xE0000000")
    out = config.to_bytes()
    assert changed_lines(TINY, out) == [
        "-    <profileSize>0x100000000</profileSize>",
        "+    <profileSize>0xE0000000</profileSize>",
    ]


def test_attribute_edit_keeps_quote_style_order_spacing_and_open_close_form() -> None:
    data = (
        b"<?xml version='1.0'?>\n<!-- hand edited -->\n<vgpuconfig>\n"
        b"  <vgpuType id='7' name=\"A &amp; B\"  class='Q'>\n"
        b"    <devId  vendorId='0x10DE' deviceId = '0x1E30' subsystemVendorId='0x10de' subsystemId='0x0'></devId>\n"
        b"    <display width='1280' height='1024' />\n"
        b"  </vgpuType>\n</vgpuconfig>\n"
    )
    config = VgpuConfig.parse(data)
    vgpu_type = config.find_type(7)
    dev, display = vgpu_type.find("devId"), vgpu_type.find("display")
    assert dev is not None and display is not None
    config.set_attr(dev, "deviceId", "0x1E07")
    config.set_attr(display, "height", "1080")
    out = config.to_bytes()
    assert changed_lines(data, out) == [
        "-    <devId  vendorId='0x10DE' deviceId = '0x1E30' subsystemVendorId='0x10de' subsystemId='0x0'></devId>",
        "-    <display width='1280' height='1024' />",
        "+    <devId  vendorId='0x10DE' deviceId = '0x1E07' subsystemVendorId='0x10de' subsystemId='0x0'></devId>",
        "+    <display width='1280' height='1080' />",
    ]
    assert canonical(out) == etree.tostring(config.root, method="c14n")


def test_created_element_is_one_added_line_indented_like_its_siblings() -> None:
    config = VgpuConfig.parse(TINY)
    vgpu_type = config.find_type(333)
    new, created = config.ensure_child(vgpu_type, "newElement")
    config.set_text(new, "1")
    assert created
    assert changed_lines(TINY, config.to_bytes()) == ["+    <newElement>1</newElement>"]


def test_text_needing_escapes_is_escaped_and_reads_back() -> None:
    config = VgpuConfig.parse(TINY)
    license_el = config.find_type(333).find("license")
    assert license_el is not None
    config.set_text(license_el, "a<b & c>d")
    again = VgpuConfig.parse(config.to_bytes())
    assert again.find_type(333).findtext("license") == "a<b & c>d"


def test_copy_after_duplicates_the_entry_with_the_same_layout() -> None:
    config = VgpuConfig.parse(TINY)
    pgpu = config.pgpu_elements()[0]
    config.insert_copy_after(pgpu)
    out = config.to_bytes()
    start = TINY.index(b"  <pgpu>")
    block = TINY[start : TINY.index(b"</pgpu>", start) + len(b"</pgpu>\n")]
    assert out == TINY.replace(block, block + block, 1)


_EDIT = st.tuples(
    st.sampled_from(["text", "attr", "create", "copy"]),
    st.integers(min_value=0, max_value=10_000),
    st.text(alphabet="abc<&>\"' 0x1F", max_size=6),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_EDIT, min_size=1, max_size=12))
def test_any_edit_sequence_serialises_to_the_edited_tree(edits: list[tuple[str, int, str]]) -> None:
    """Whatever the edits, the spliced bytes parse to exactly lxml's edited tree."""
    config = VgpuConfig.parse(TINY)
    for kind, pick, value in edits:
        elements = [e for e in config.root.iter() if isinstance(e.tag, str)]
        el = elements[pick % len(elements)]
        if kind == "text" and len(el) == 0:
            config.set_text(el, value)
        elif kind == "attr":
            config.set_attr(el, "a" if pick % 2 else "id", value)
        elif kind == "create":
            config.ensure_child(el, "made")
        elif kind == "copy" and el is not config.root:
            config.insert_copy_after(el)
    assert canonical(config.to_bytes()) == etree.tostring(config.root, method="c14n")


# ----------------------------------------------------------------- the model


def test_profile_model_reads_sizes_in_mib_and_supporting_pgpus() -> None:
    profile = VgpuConfig.parse(TINY).profile(333)
    assert (profile.name, profile.vgpu_class) == ("GRID RTX6000-4Q", "Quadro")
    assert (profile.profile_size_mib, profile.framebuffer_mib, profile.reservation_mib) == (
        4096,
        3776,
        320,
    )
    assert (profile.heads, profile.display_width, profile.display_height) == (4, 5120, 2880)
    assert (profile.max_pixels, profile.frame_rate_limit, profile.frame_rate_limiter) == (
        29491200,
        60,
        True,
    )
    assert profile.cuda_enabled is True
    assert profile.device_id == 0x1E30
    assert profile.pgpus == ("1E30:12BA",)


def test_pgpu_model_normalises_hex_case_and_width() -> None:
    pgpus = {p.key: p for p in VgpuConfig.parse(TINY).pgpus}
    assert set(pgpus) == {"1B38:0000", "1DB6:124A", "13BD:1160", "1E30:12BA"}
    assert pgpus["1E30:12BA"].subsystem_vendor_id == 0x10DE  # written 0x10DE
    assert pgpus["1B38:0000"].subsystem_id == 0  # written 0x0
    assert 333 in pgpus["1E30:12BA"].supported and not pgpus["1E30:12BA"].disabled


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("0xE0000000", 0xE0000000),
        ("0xe0000000", 0xE0000000),
        ("0x0", 0),
        ("60", 60),
        (" 1 ", 1),
        ("04", 4),  # leading zeros in decimal, as in <digest>0011...
        ("0011", 11),
    ],
)
def test_numbers_are_read_as_numbers(text: str, value: int) -> None:
    assert parse_number(text) == value


def test_unknown_profile_id_names_the_closest_ids() -> None:
    with pytest.raises(XmlConfigError) as err:
        VgpuConfig.parse(TINY).find_type(336_000)
    assert "no profile (vgpuType) with id 336000" in err.value.message
    assert err.value.hint is not None and "Closest ids:" in err.value.hint
    with pytest.raises(XmlConfigError) as err:
        VgpuConfig.parse(TINY).find_type(150)  # between V100D (100-123) and M10 (200-219)
    assert err.value.hint is not None and "119, 120, 121, 122, 123" in err.value.hint


# ----------------------------------------------------------------- bad input and safety


def test_malformed_xml_is_an_xml_config_error() -> None:
    with pytest.raises(XmlConfigError, match="not well-formed"):
        VgpuConfig.parse(TINY.replace(b"</vgpuconfig>", b"</vgpuconfg>"))


def test_wrong_root_is_refused() -> None:
    with pytest.raises(XmlConfigError, match="root element <config>"):
        VgpuConfig.parse(b"<?xml version='1.0'?><config><vgpuType id='1'/></config>")


def test_missing_file_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        VgpuConfig.load(tmp_path / "nope.xml")


def test_external_entity_is_refused_not_resolved(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET")
    data = (
        f'<?xml version="1.0"?>\n<!DOCTYPE vgpuconfig [<!ENTITY xxe SYSTEM "file://{secret}">]>\n'
        "<vgpuconfig><version>&xxe;</version></vgpuconfig>"
    ).encode()
    with pytest.raises(XmlConfigError, match="declares XML entities") as err:
        VgpuConfig.parse(data)
    assert "TOP-SECRET" not in str(err.value)


def test_billion_laughs_is_refused() -> None:
    entities = "".join(f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10))
    data = (
        f'<?xml version="1.0"?><!DOCTYPE vgpuconfig [<!ENTITY lol0 "lol">{entities}]>'
        "<vgpuconfig><version>&lol9;</version></vgpuconfig>"
    ).encode()
    with pytest.raises(XmlConfigError, match="declares XML entities"):
        VgpuConfig.parse(data)


def test_internal_subset_without_entities_is_refused() -> None:
    data = b"<!DOCTYPE vgpuconfig [<!ELEMENT vgpuconfig ANY>]><vgpuconfig/>"
    with pytest.raises(XmlConfigError, match="internal DTD subset"):
        VgpuConfig.parse(data)


def test_entity_from_an_external_dtd_is_neither_loaded_nor_kept(tmp_path: Path) -> None:
    dtd = tmp_path / "vgpuConfig.dtd"
    dtd.write_text('<!ENTITY name "EXPANDED">')
    data = (
        f'<?xml version="1.0"?><!DOCTYPE vgpuconfig SYSTEM "file://{dtd}">'
        "<vgpuconfig><version>&name;</version></vgpuconfig>"
    ).encode()
    with pytest.raises(XmlConfigError) as err:
        VgpuConfig.parse(data)
    assert "EXPANDED" not in str(err.value)


class _Recorder(http.server.BaseHTTPRequestHandler):
    requests: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.requests.append(self.path)
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b'<!ENTITY x "fetched">')

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def dtd_server() -> Iterator[str]:
    server = http.server.HTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Recorder.requests = []
    yield f"http://127.0.0.1:{server.server_address[1]}/vgpuConfig.dtd"
    server.shutdown()


def test_the_dtd_is_never_fetched(dtd_server: str) -> None:
    data = TINY.replace(b"http://www.nvidia.com/dtd/vgpuConfig.dtd", dtd_server.encode())
    assert dtd_server.encode() in data
    config = VgpuConfig.parse(data)
    assert config.to_bytes() == data
    assert _Recorder.requests == []


def test_utf16_documents_are_refused_with_a_conversion_hint() -> None:
    data = TINY.decode().replace('encoding="utf-8"', 'encoding="utf-16"').encode("utf-16")
    with pytest.raises(XmlConfigError, match="UTF-16") as err:
        VgpuConfig.parse(data)
    assert err.value.hint is not None and "iconv" in err.value.hint


def test_comment_containing_an_end_tag_does_not_confuse_the_scanner() -> None:
    data = TINY.replace(
        b"  <pgpu>", b"  <pgpu>\n    <!-- </pgpu> <![CDATA[ -->\n    <?note </pgpu>?>", 1
    )
    config = VgpuConfig.parse(data)
    assert config.to_bytes() == data
    first = config.pgpu_elements()[0]
    config.set_attr(first.find("devId"), "deviceId", "0x1111")  # type: ignore[arg-type]
    out = config.to_bytes()
    assert len(changed_lines(data, out)) == 2
    assert canonical(out) == etree.tostring(config.root, method="c14n")
