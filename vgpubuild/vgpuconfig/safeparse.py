"""Parsing vgpuConfig.xml safely: no network, no DTD, no entities, refused not ignored.

lxml with no network, no DTD loading and no entity expansion; and any document that
*declares* entities (internal DTD subset) or references one is refused outright instead of
being parsed with the references left unexpanded. The file comes from a driver package the
user downloaded, so it is treated as untrusted input.
"""

from __future__ import annotations

import re
from typing import Any

from lxml import etree

from vgpubuild.errors import XmlConfigError
from vgpubuild.vgpuconfig.vocabulary import ROOT_TAG

_DOCTYPE = re.compile(rb"<!DOCTYPE\b(?:[^>\"'\[]|\"[^\"]*\"|'[^']*')*(\[)?", re.S)
_WIDE_ENCODINGS = ("UTF-16", "UTF-32", "UCS-2", "UCS-4", "UTF16", "UTF32")


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


def parse_safely(data: bytes, source: str) -> etree._ElementTree:
    """The tree of ``data``; anything unsafe or not a UTF-8 ``<vgpuconfig>`` is refused."""
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
    return tree


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
