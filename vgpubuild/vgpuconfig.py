"""vgpuConfig.xml: a safe parser, a read model, and edits that touch only what they change.

NVIDIA's ``vgpuConfig.xml`` lists the vGPU profiles (``<vgpuType>``) and the physical GPUs
(``<pgpu>``) that may run them. vgpubuild rewrites it (profile overrides, vcfgclone,
remap-p2v) and the result is reviewed as a diff and hashed into a Nix store path, so:

* Parsing is safe: lxml with no network, no DTD loading and no entity expansion, and any
  document that *declares* entities (internal DTD subset) or references one is refused
  outright instead of being parsed with the references left unexpanded.
* Writing is minimal: the output is the original bytes with only the changed spans
  replaced. An untouched document comes back byte-identical; a one-value edit is a one-line
  diff (declaration, DOCTYPE, comments, indentation, attribute order and quote style kept).
  lxml holds the tree that edits act on; a small scanner records where each element sits in
  the original bytes, and :meth:`VgpuConfig.to_bytes` copies every untouched element's
  bytes verbatim and re-creates only the pieces that differ.

Edits go through the ``set_*``/``insert_copy_after`` methods (never through lxml
directly), because they mark the touched elements so serialisation knows what to rebuild.
"""

from __future__ import annotations

import copy
import itertools
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lxml import etree

from vgpubuild.errors import InputError, XmlConfigError

ROOT_TAG = "vgpuconfig"
CUDA_ELEMENT = "cudaEnabled"
"""The ``<vgpuType>`` child that enables CUDA. Not confirmed against an NVIDIA file here:
``cudaEnabled`` is the name public tools that read and generate vgpuConfig.xml use; if a
release spells it differently, this one constant changes."""
DISABLED_SUBSYSTEM_VENDOR = 0x9999
"""VUP 550.x disables a ``<pgpu>`` by setting its ``subsystemVendorId`` to this value."""


def _safe_parser() -> etree.XMLParser:
    """lxml without network, DTD loading or entity expansion, keeping comments and PIs.

    ``collect_ids`` is deliberately left alone: ``collect_ids=False`` makes libxml2 try
    to load the external DTD (which ``no_network`` then refuses).
    """
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_blank_text=False,
        remove_comments=False,
        remove_pis=False,
        strip_cdata=False,
    )


# One markup token inside the root element. CDATA is character data (part of text/tail),
# everything else is a node: comment, processing instruction, start/end/empty element tag.
_TOKEN = re.compile(
    rb"<(?:(!--.*?-->)|(\?.*?\?>)|(!\[CDATA\[.*?\]\]>)|(/?)([^\s/>!?][^\s/>]*)"
    rb"(?:[^>\"']|\"[^\"]*\"|'[^']*')*?(/?)>)",
    re.S,
)
_DOCTYPE = re.compile(rb"<!DOCTYPE\b(?:[^>\"'\[]|\"[^\"]*\"|'[^']*')*(\[)?", re.S)
_ATTRIBUTE = re.compile(rb"(\s+)([^\s=/>]+)(\s*=\s*)(?:\"([^\"]*)\"|'([^']*)')")
_NUMBER = re.compile(r"\s*(0[xX][0-9A-Fa-f]+|[0-9]+)\s*")
_WIDE_ENCODINGS = ("UTF-16", "UTF-32", "UCS-2", "UCS-4", "UTF16", "UTF32")

_MIB = 1024 * 1024


def parse_number(text: str | None) -> int | None:
    """Read an XML value as a number: ``0xE0000000``, ``0x3c`` or ``60``; None if absent.

    NVIDIA's files mix hex case and widths (``0x0``/``0x0000``), so values are compared
    as numbers, never as text.
    """
    if text is None:
        return None
    match = _NUMBER.fullmatch(text)
    if match is None:
        return None
    return int(match.group(1), 0)


@dataclass(frozen=True)
class Profile:
    """One ``<vgpuType>`` (sysfs profile ``nvidia-<id>``), sizes in MiB."""

    id: int
    name: str
    vgpu_class: str
    device_id: int | None
    subsystem_id: int | None
    framebuffer_mib: int | None
    reservation_mib: int | None
    profile_size_mib: int | None
    heads: int | None
    display_width: int | None
    display_height: int | None
    max_pixels: int | None
    frame_rate_limit: int | None
    frame_rate_limiter: bool | None
    cuda_enabled: bool | None
    pgpus: tuple[str, ...]
    """Physical GPUs (``DEV:SUB``) whose ``<pgpu>`` lists this profile."""

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (for ``--json``)."""
        return {
            "id": self.id,
            "name": self.name,
            "class": self.vgpu_class,
            "device_id": _hex16(self.device_id),
            "subsystem_id": _hex16(self.subsystem_id),
            "framebuffer_mib": self.framebuffer_mib,
            "reservation_mib": self.reservation_mib,
            "profile_size_mib": self.profile_size_mib,
            "heads": self.heads,
            "display": (
                {"width": self.display_width, "height": self.display_height}
                if self.display_width is not None
                else None
            ),
            "max_pixels": self.max_pixels,
            "frame_rate_limit": self.frame_rate_limit,
            "frame_rate_limiter": self.frame_rate_limiter,
            "cuda_enabled": self.cuda_enabled,
            "pgpus": list(self.pgpus),
        }


@dataclass(frozen=True)
class Pgpu:
    """One ``<pgpu>``: a physical GPU and the profile ids it supports."""

    vendor_id: int | None
    device_id: int | None
    subsystem_vendor_id: int | None
    subsystem_id: int | None
    supported: tuple[int, ...]

    @property
    def disabled(self) -> bool:
        """True when VUP's vcfgclone turned this entry off (``subsystemVendorId=0x9999``)."""
        return self.subsystem_vendor_id == DISABLED_SUBSYSTEM_VENDOR

    @property
    def key(self) -> str:
        """``DEV:SUB`` as in ``copyVGPUProfiles`` (``1E30:12BA``)."""
        return f"{self.device_id or 0:04X}:{self.subsystem_id or 0:04X}"

    def to_json(self) -> dict[str, Any]:
        return {
            "vendor_id": _hex16(self.vendor_id),
            "device_id": _hex16(self.device_id),
            "subsystem_vendor_id": _hex16(self.subsystem_vendor_id),
            "subsystem_id": _hex16(self.subsystem_id),
            "disabled": self.disabled,
            "supported": list(self.supported),
        }


def _hex16(value: int | None) -> str | None:
    return None if value is None else f"0x{value:04X}"


@dataclass(eq=False)
class _Span:
    """Where one node of the original document sits in its bytes (offsets into ``data``).

    ``text``/``tail``/``attrib`` are the values lxml parsed from those bytes: a node whose
    current value still equals them can reuse the original bytes.
    """

    start: int
    end: int
    tag_end: int = 0
    close_start: int = 0
    self_closing: bool = False
    tail_end: int = 0
    text: str | None = None
    tail: str | None = None
    attrib: dict[str, str] | None = None
    children: list[_Span] | None = None


@dataclass
class _Marks:
    """Which elements carry an original span, and which were touched by an edit."""

    spans: dict[Any, _Span] = field(default_factory=dict)
    dirty: set[Any] = field(default_factory=set)
    mapped: set[Any] = field(default_factory=set)


class VgpuConfig:
    """A parsed vgpuConfig.xml: read through :attr:`profiles`/:attr:`pgpus`, edit, write."""

    def __init__(self, data: bytes, tree: etree._ElementTree, root_span: _Span, source: str):
        self.source = source
        self._data = data
        self._tree = tree
        self._root = tree.getroot()
        self._encoding = tree.docinfo.encoding or "UTF-8"
        self._marks = _Marks()
        self._marks.spans[self._root] = root_span
        self._types: dict[int, etree._Element] | None = None
        self._map_children(self._root)

    # ----------------------------------------------------------------- loading

    @classmethod
    def load(cls, path: Path) -> VgpuConfig:
        """Read and safely parse ``path``; any problem is an :class:`XmlConfigError`."""
        try:
            data = Path(path).read_bytes()
        except FileNotFoundError:
            raise InputError(
                f"vgpuConfig.xml {str(path)!r} does not exist", hint="Check the --xml path."
            ) from None
        except OSError as exc:
            raise InputError(f"cannot read {str(path)!r}: {exc.strerror}") from None
        return cls.parse(data, str(path))

    @classmethod
    def parse(cls, data: bytes, source: str = "<bytes>") -> VgpuConfig:
        """Safely parse ``data``: no network, no DTD, no entities (refused, not ignored)."""
        _refuse_internal_subset(data, source)
        try:
            root = etree.fromstring(data, _safe_parser())
        except etree.XMLSyntaxError as exc:
            raise XmlConfigError(
                f"{source} is not well-formed XML: {exc.msg}",
                hint="Use the vgpuConfig.xml from the driver package, unmodified.",
            ) from None
        tree = root.getroottree()
        dtd: Any = tree.docinfo.internalDTD  # the DOCTYPE; declarations only with a subset
        if dtd is not None and (any(dtd.iterentities()) or any(dtd.iterelements())):
            _refuse_subset(source, any(dtd.iterentities()))
        for node in root.iter(etree.Entity):
            raise XmlConfigError(
                f"{source} references the entity {node.text}",
                hint="vgpuConfig.xml never uses entities; refusing to expand or keep it.",
            )
        if root.tag != ROOT_TAG:
            raise XmlConfigError(
                f"{source} has root element <{root.tag}>, not <{ROOT_TAG}>",
                hint="Pass NVIDIA's vgpuConfig.xml (from the vgpu-kvm driver folder).",
            )
        encoding = (tree.docinfo.encoding or "UTF-8").upper()
        if encoding.startswith(_WIDE_ENCODINGS) or data[:2] in (b"\xff\xfe", b"\xfe\xff"):
            raise XmlConfigError(
                f"{source} is encoded as {encoding}",
                hint="Convert it to UTF-8 first (iconv -f UTF-16 -t UTF-8).",
            )
        return cls(data, tree, _locate_root(data), source)

    # ----------------------------------------------------------------- reading

    @property
    def root(self) -> etree._Element:
        return self._root

    def type_elements(self) -> Iterator[etree._Element]:
        """Every ``<vgpuType>`` element, in document order."""
        return (el for el in self._root if el.tag == "vgpuType")

    def pgpu_elements(self) -> list[etree._Element]:
        """Every ``<pgpu>`` element, in document order."""
        return [el for el in self._root if el.tag == "pgpu"]

    def type_ids(self) -> list[int]:
        return list(self._type_index())

    def find_type(self, profile_id: int) -> etree._Element:
        """The ``<vgpuType id=ID>``; an unknown id is an error naming the closest ids."""
        index = self._type_index()
        found = index.get(profile_id)
        if found is None:
            closest = sorted(index, key=lambda i: (abs(i - profile_id), i))[:5]
            near = ", ".join(str(i) for i in sorted(closest)) or "none"
            raise XmlConfigError(
                f"{self.source} has no profile (vgpuType) with id {profile_id}",
                hint=f"Closest ids: {near}. List them with: vgpubuild profiles list --xml FILE.",
            )
        return found

    def _type_index(self) -> dict[int, etree._Element]:
        if self._types is None:
            self._types = {}
            for el in self.type_elements():
                number = parse_number(el.get("id"))
                if number is not None:
                    self._types.setdefault(number, el)
        return self._types

    @property
    def pgpus(self) -> list[Pgpu]:
        return [_pgpu_model(el) for el in self.pgpu_elements()]

    @property
    def profiles(self) -> list[Profile]:
        supporters = self._supporters()
        return [_profile_model(el, supporters) for el in self.type_elements()]

    def profile(self, profile_id: int) -> Profile:
        return _profile_model(self.find_type(profile_id), self._supporters())

    def _supporters(self) -> dict[int, list[str]]:
        by_id: dict[int, list[str]] = {}
        for pgpu in self.pgpus:
            if pgpu.disabled:
                continue
            for vid in pgpu.supported:
                by_id.setdefault(vid, []).append(pgpu.key)
        return by_id

    # ----------------------------------------------------------------- editing

    def set_text(self, el: etree._Element, text: str) -> str | None:
        """Set an element's text; returns the old text (None if it was empty)."""
        old = el.text
        if old != text:
            self._touch(el)
            el.text = text
        return old

    def set_attr(self, el: etree._Element, name: str, value: str) -> str | None:
        """Set (or add) an attribute; returns the old value (None if it was absent)."""
        old = el.get(name)
        if old != value:
            self._touch(el)
            el.set(name, value)
        return old

    def ensure_child(self, parent: etree._Element, tag: str) -> tuple[etree._Element, bool]:
        """The first ``<tag>`` child of ``parent``, appended if missing (then ``True``).

        A new child goes last, indented like its siblings, so the diff is one added line.
        """
        found = parent.find(tag)
        if found is not None:
            return found, False
        self._touch(parent)
        new = etree.SubElement(parent, tag)
        siblings = [c for c in parent if c is not new]
        if siblings:
            last = siblings[-1]
            before = siblings[-2].tail if len(siblings) > 1 else parent.text
            new.tail, last.tail = last.tail, before
        return new, True

    def insert_copy_after(self, el: etree._Element) -> etree._Element:
        """Insert a deep copy of ``el`` right after it (same indentation) and return it."""
        parent = el.getparent()
        assert parent is not None, "the root element is never copied"
        self._touch(parent)
        self._map_children(el)
        duplicate = copy.deepcopy(el)
        for src, dst in zip(el.iter(), duplicate.iter(), strict=True):
            span = self._marks.spans.get(src)
            if span is not None:
                self._marks.spans[dst] = span
            if src in self._marks.dirty:
                self._marks.dirty.add(dst)
            if src in self._marks.mapped:
                self._marks.mapped.add(dst)
        # The copy sits where el's tail was; el is now followed by the copy, so it takes
        # the whitespace that precedes it (matters for a last child, whose tail is the
        # parent's closing indentation).
        previous = el.getprevious()
        lead = (parent.text if previous is None else previous.tail) or ""
        el.addnext(duplicate)
        duplicate.tail = el.tail
        el.tail = lead[len(lead.rstrip()) :]
        return duplicate

    def _touch(self, el: etree._Element) -> None:
        """Mark ``el`` and its ancestors as changed, recording spans before the change."""
        chain = [el, *el.iterancestors()]
        for node in reversed(chain):
            self._map_children(node)
            self._marks.dirty.add(node)

    def _map_children(self, el: etree._Element) -> None:
        """Pair ``el``'s (still original) children with their spans in the source bytes."""
        marks = self._marks
        if el in marks.mapped:
            return
        marks.mapped.add(el)
        span = marks.spans.get(el)
        if span is None:
            return
        if span.children is None:
            span.children = _scan_children(self._data, span)
        if span.attrib is None:
            span.text = el.text
            span.attrib = _attrib(el)
        for child, child_span in zip(el, span.children, strict=True):
            if child_span.tail is None:
                child_span.tail = child.tail or ""
            marks.spans[child] = child_span

    # ----------------------------------------------------------------- writing

    def original_bytes(self) -> bytes:
        """The bytes the document was parsed from."""
        return self._data

    def to_bytes(self) -> bytes:
        """The document's bytes: the original ones wherever nothing changed."""
        root_span = self._marks.spans[self._root]
        if self._root not in self._marks.dirty:
            return self._data
        out: list[bytes] = [self._data[: root_span.start]]
        self._emit(self._root, out)
        out.append(self._data[root_span.end :])
        return b"".join(out)

    def save(self, path: Path) -> None:
        """Write atomically: ``path`` is replaced only once the whole file is written."""
        from vgpubuild.atomic import atomic_file

        data = self.to_bytes()
        with atomic_file(path) as f:
            f.write(data)

    def _emit(self, el: etree._Element, out: list[bytes]) -> None:
        span = self._marks.spans.get(el)
        data = self._data
        if span is None:
            fresh = etree.tostring(el, encoding=self._encoding, with_tail=False)
            out.append(fresh if isinstance(fresh, bytes) else fresh.encode(self._encoding))
            return
        if el not in self._marks.dirty:
            out.append(data[span.start : span.end])
            return
        assert span.children is not None and span.attrib is not None
        start_tag = self._start_tag(el, span)
        has_content = len(el) > 0 or bool(el.text)
        if span.self_closing:
            if not has_content:
                out.append(start_tag)
                return
            start_tag = start_tag[: start_tag.rindex(b"/")].rstrip() + b">"
        out.append(start_tag)
        if el.text == span.text:
            first = span.children[0].start if span.children else span.close_start
            out.append(data[span.tag_end : first])
        else:
            out.append(self._escape(el.text or ""))
        for child in el:
            self._emit(child, out)
            child_span = self._marks.spans.get(child)
            if child_span is not None and (child.tail or "") == child_span.tail:
                out.append(data[child_span.end : child_span.tail_end])
            else:
                out.append(self._escape(child.tail or ""))
        if span.self_closing:
            out.append(f"</{el.tag}>".encode(self._encoding))
        else:
            out.append(data[span.close_start : span.end])

    def _start_tag(self, el: etree._Element, span: _Span) -> bytes:
        """The original start tag with only changed or added attribute values rewritten."""
        assert span.attrib is not None
        raw = self._data[span.start : span.tag_end]
        current = _attrib(el)
        if current == span.attrib:
            return raw
        if set(span.attrib) - set(current):
            raise AssertionError("vgpubuild never removes attributes")  # pragma: no cover
        pieces: list[bytes] = []
        pos = 0
        for match in _ATTRIBUTE.finditer(raw, len(el.tag) + 1):
            name = match.group(2).decode(self._encoding)
            if name in current and current[name] != span.attrib.get(name):
                quote = b'"' if match.group(4) is not None else b"'"
                pieces += [raw[pos : match.start()], match.group(1), match.group(2)]
                pieces += [match.group(3), quote, self._escape(current[name], quote), quote]
                pos = match.end()
        close = len(raw) - (2 if span.self_closing else 1)
        while raw[close - 1 : close].isspace():
            close -= 1
        pieces.append(raw[pos:close])
        for name, value in current.items():
            if name not in span.attrib:
                pieces.append(f' {name}="'.encode(self._encoding))
                pieces += [self._escape(value, b'"'), b'"']
        pieces.append(raw[close:])
        return b"".join(pieces)

    def _escape(self, text: str, quote: bytes | None = None) -> bytes:
        text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        if quote is not None:
            text = text.replace(quote.decode(), "&quot;" if quote == b'"' else "&apos;")
            text = text.replace("\n", "&#10;").replace("\r", "&#13;").replace("\t", "&#9;")
        return text.encode(self._encoding, errors="xmlcharrefreplace")


def _attrib(el: etree._Element) -> dict[str, str]:
    return {str(k): str(v) for k, v in el.attrib.items()}


def _refuse_internal_subset(data: bytes, source: str) -> None:
    """Refuse a DOCTYPE with an internal subset: the only place entities can be declared.

    lxml would keep the references unexpanded with these parser options; refusing is
    clearer (billion laughs, external entities) and no real vgpuConfig.xml has a subset.
    The scan looks at the prolog (before the root's start tag); the parsed docinfo is
    checked again after parsing in case the prolog was disguised.
    """
    cut = data.find(b"<" + ROOT_TAG.encode())
    match = _DOCTYPE.search(data[: cut if cut >= 0 else len(data)])
    if match is not None and match.group(1) is not None:
        _refuse_subset(source, b"<!ENTITY" in data[match.end() :])


def _refuse_subset(source: str, declares_entities: bool) -> None:
    if declares_entities:
        raise XmlConfigError(
            f"{source} declares XML entities in its DOCTYPE (external entity or "
            "entity-expansion attack)",
            hint="Refusing to read it; use the vgpuConfig.xml from the NVIDIA driver package.",
        )
    raise XmlConfigError(
        f"{source} has an internal DTD subset in its DOCTYPE",
        hint="vgpuConfig.xml never has one; use the file from the NVIDIA driver package.",
    )


def _locate_root(data: bytes) -> _Span:
    """The root element's span (prolog tokens skipped)."""
    pos = 0
    while True:
        match = _TOKEN.search(data, pos)
        if match is None:  # pragma: no cover - lxml parsed a root element
            raise XmlConfigError("no root element found")
        if match.group(5) is not None and match.group(4) == b"":
            break
        pos = match.end()
    span = _Span(start=match.start(), end=0, tag_end=match.end(), self_closing=bool(match.group(6)))
    if span.self_closing:
        span.close_start = span.end = span.tag_end
    span.children = _scan_children(data, span)
    return span


def _scan_children(data: bytes, span: _Span) -> list[_Span]:
    """Spans of the direct children of the element at ``span``; sets its end offsets.

    lxml has already checked well-formedness, so only depth-0 nodes need finding. A
    child's subtree is skipped with one ``find`` of its end tag (C speed: the large file
    has ~60,000 tags but ~1,200 root children) unless something in between could hide or
    fake that end tag (a comment, CDATA, PI, or a same-named element); then its tokens
    are walked.
    """
    children: list[_Span] = []
    if span.self_closing:
        return children
    pos = span.tag_end
    while True:
        match = _TOKEN.search(data, pos)
        assert match is not None, "lxml accepted the document, so the end tag exists"
        if match.group(3) is not None:  # CDATA is character data, not a node
            pos = match.end()
            continue
        name = match.group(5)
        if name is not None and match.group(4):  # the parent's end tag
            span.close_start, span.end = match.start(), match.end()
            break
        child = _Span(start=match.start(), end=match.end(), tag_end=match.end())
        child.close_start = child.end
        children.append(child)
        pos = child.end
        if name is None:
            continue
        if match.group(6):
            child.self_closing = True
            continue
        child.close_start = _find_end_tag(data, name, child.tag_end)
        child.end = pos = data.index(b">", child.close_start) + 1
    for this, after in itertools.pairwise(children):
        this.tail_end = after.start
    if children:
        children[-1].tail_end = span.close_start
    return children


def _find_end_tag(data: bytes, name: bytes, pos: int) -> int:
    """Offset of the end tag closing the element ``name`` whose content starts at ``pos``."""
    close = data.find(b"</" + name, pos)
    inner = data[pos:close]
    if b"<!" not in inner and b"<?" not in inner and b"<" + name not in inner:
        return close
    depth = 0
    for match in _TOKEN.finditer(data, pos):
        if match.group(5) is None:  # comment, PI or CDATA
            continue
        if match.group(4):
            if depth == 0:
                return match.start()
            depth -= 1
        elif not match.group(6):
            depth += 1
    raise AssertionError("lxml accepted the document, so the end tag exists")


# ----------------------------------------------------------------- model builders


def _child_number(el: etree._Element, tag: str) -> int | None:
    child = el.find(tag)
    return None if child is None else parse_number(child.text)


def _mib(value: int | None) -> int | None:
    return None if value is None else value // _MIB


def _flag(value: int | None) -> bool | None:
    return None if value is None else value != 0


def _profile_model(el: etree._Element, supporters: Mapping[int, list[str]]) -> Profile:
    dev = el.find("devId")
    display = el.find("display")
    pid = parse_number(el.get("id")) or 0
    return Profile(
        id=pid,
        name=el.get("name", ""),
        vgpu_class=el.get("class", ""),
        device_id=None if dev is None else parse_number(dev.get("deviceId")),
        subsystem_id=None if dev is None else parse_number(dev.get("subsystemId")),
        framebuffer_mib=_mib(_child_number(el, "framebuffer")),
        reservation_mib=_mib(_child_number(el, "fbReservation")),
        profile_size_mib=_mib(_child_number(el, "profileSize")),
        heads=_child_number(el, "numHeads"),
        display_width=None if display is None else parse_number(display.get("width")),
        display_height=None if display is None else parse_number(display.get("height")),
        max_pixels=_child_number(el, "maxPixels"),
        frame_rate_limit=_child_number(el, "frlConfig"),
        frame_rate_limiter=_flag(_child_number(el, "frame_rate_limiter")),
        cuda_enabled=_flag(_child_number(el, CUDA_ELEMENT)),
        pgpus=tuple(supporters.get(pid, ())),
    )


def _pgpu_model(el: etree._Element) -> Pgpu:
    dev = el.find("devId")

    def attr(name: str) -> int | None:
        return None if dev is None else parse_number(dev.get(name))

    supported = (parse_number(s.get("vgpuId")) for s in el.iter("supportedVgpu"))
    return Pgpu(
        vendor_id=attr("vendorId"),
        device_id=attr("deviceId"),
        subsystem_vendor_id=attr("subsystemVendorId"),
        subsystem_id=attr("subsystemId"),
        supported=tuple(s for s in supported if s is not None),
    )


def apply_edits(
    config: VgpuConfig,
    *,
    overrides: Mapping[str, Mapping[str, Any]],
    clones: Mapping[str, str],
    remap_p2v: bool = False,
) -> list[str]:
    """Validate and apply a build's edits to ``config``: remap-p2v, clones, overrides.

    That is the order patch.sh + vgpu4nixos produce (remap and vcfgclone inside patch.sh,
    the xmlstarlet overrides after it), so an override of a profile also reaches the cards
    cloned to it. Both tables are validated before anything changes.
    """
    from vgpubuild.overrides import apply_overrides, parse_overrides
    from vgpubuild.vcfgclone import copy_profiles, parse_clone_map, remap_p2v_profiles

    parsed_overrides = parse_overrides(overrides)
    parsed_clones = parse_clone_map(clones)
    changes: list[str] = []
    if remap_p2v:
        changes += remap_p2v_profiles(config)
    changes += copy_profiles(config, parsed_clones)
    changes += apply_overrides(config, parsed_overrides)
    return changes


def apply_build_edits(
    xml_path: Path,
    *,
    overrides: Mapping[str, Mapping[str, Any]],
    clones: Mapping[str, str],
    remap_p2v: bool = False,
) -> list[str]:
    """Apply a build's vgpuConfig.xml edits to ``xml_path`` in place (atomically).

    ``overrides`` is vgpu4nixos's ``profileOverrides`` (``{"333": {"vramAllocation":
    3584, ...}}``) and ``clones`` its ``copyVGPUProfiles`` (``{"NEW:SUB": "SRC:SUB"}``).
    Order: remap-p2v, then clones, then overrides (see :func:`apply_edits`). On any error
    the file is untouched. Returns one human-readable line per change, including
    elements that had to be created.
    """
    config = VgpuConfig.load(xml_path)
    changes = apply_edits(config, overrides=overrides, clones=clones, remap_p2v=remap_p2v)
    if changes:
        config.save(xml_path)
    return changes
