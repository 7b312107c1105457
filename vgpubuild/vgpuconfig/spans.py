"""Minimal writes of an XML document: only the bytes of what changed are re-created.

A reviewed, hashed file must not change where nothing was edited: no re-indenting, no
reordered attributes, no new quote style, no dropped DOCTYPE. So instead of serialising the
lxml tree, :class:`SpanWriter` records where each element of the original document sits in
its bytes (a small scanner finds the spans lazily, only for elements on the path to an
edit), and :meth:`SpanWriter.to_bytes` copies every untouched element's bytes verbatim and
rebuilds only the start tags, texts and tails that differ. An untouched document comes back
byte-identical; a one-value edit is a one-line diff.

The scanner relies on lxml having accepted the document (well-formed, no entities), so it
only has to find depth-0 nodes.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

from lxml import etree

# One markup token inside the root element. CDATA is character data (part of text/tail),
# everything else is a node: comment, processing instruction, start/end/empty element tag.
_TOKEN = re.compile(
    rb"<(?:(!--.*?-->)|(\?.*?\?>)|(!\[CDATA\[.*?\]\]>)|(/?)([^\s/>!?][^\s/>]*)"
    rb"(?:[^>\"']|\"[^\"]*\"|'[^']*')*?(/?)>)",
    re.S,
)
_ATTRIBUTE = re.compile(rb"(\s+)([^\s=/>]+)(\s*=\s*)(?:\"([^\"]*)\"|'([^']*)')")


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


class SpanWriter:
    """The original bytes of a parsed document, and which of its elements edits touched.

    Every edit of the lxml tree must be announced first (:meth:`touch`, :meth:`copy_marks`),
    so the writer knows which original bytes no longer describe the element.
    """

    def __init__(self, data: bytes, root: etree._Element, encoding: str) -> None:
        self._data = data
        self._root = root
        self._encoding = encoding
        self._spans: dict[etree._Element, _Span] = {root: _locate_root(data)}
        self._dirty: set[etree._Element] = set()
        self._mapped: set[etree._Element] = set()
        self.map_children(root)

    @property
    def original(self) -> bytes:
        return self._data

    def touch(self, el: etree._Element) -> None:
        """Mark ``el`` and its ancestors as changed, recording spans before the change."""
        chain = [el, *el.iterancestors()]
        for node in reversed(chain):
            self.map_children(node)
            self._dirty.add(node)

    def copy_marks(self, src: etree._Element, dst: etree._Element) -> None:
        """Give a deep copy ``dst`` of ``src`` the same spans and marks, node by node."""
        for a, b in zip(src.iter(), dst.iter(), strict=True):
            span = self._spans.get(a)
            if span is not None:
                self._spans[b] = span
            if a in self._dirty:
                self._dirty.add(b)
            if a in self._mapped:
                self._mapped.add(b)

    def map_children(self, el: etree._Element) -> None:
        """Pair ``el``'s (still original) children with their spans in the source bytes."""
        if el in self._mapped:
            return
        self._mapped.add(el)
        span = self._spans.get(el)
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
            self._spans[child] = child_span

    def to_bytes(self) -> bytes:
        """The document's bytes: the original ones wherever nothing changed."""
        if self._root not in self._dirty:
            return self._data
        root_span = self._spans[self._root]
        out: list[bytes] = [self._data[: root_span.start]]
        self._emit(self._root, out)
        out.append(self._data[root_span.end :])
        return b"".join(out)

    def _emit(self, el: etree._Element, out: list[bytes]) -> None:
        span = self._spans.get(el)
        data = self._data
        if span is None:
            fresh = etree.tostring(el, encoding=self._encoding, with_tail=False)
            out.append(fresh if isinstance(fresh, bytes) else fresh.encode(self._encoding))
            return
        if el not in self._dirty:
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
            child_span = self._spans.get(child)
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


def _locate_root(data: bytes) -> _Span:
    """The root element's span (prolog tokens skipped)."""
    pos = 0
    while True:
        match = _TOKEN.search(data, pos)
        if match is None:  # pragma: no cover - lxml parsed a root element
            raise AssertionError("lxml accepted the document, so it has a root element")
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
