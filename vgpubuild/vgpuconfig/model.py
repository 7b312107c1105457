"""vgpuConfig.xml parsed safely into a read model, with edit primitives that stay minimal.

NVIDIA's ``vgpuConfig.xml`` lists the vGPU profiles (``<vgpuType>``) and the physical GPUs
(``<pgpu>``) that may run them. vgpubuild rewrites it (profile overrides, vcfgclone,
remap-p2v) and the result is reviewed as a diff and hashed into a Nix store path, so:

* Parsing is safe (:mod:`vgpubuild.vgpuconfig.safeparse`): no network, no DTD, no entities.
* Writing is minimal (:mod:`vgpubuild.vgpuconfig.spans`): the output is the original bytes
  with only the changed spans replaced, so an untouched document comes back byte-identical.

Edits go through the ``set_*``/``ensure_child``/``insert_copy_after`` methods (never through
lxml directly), because they tell the writer which elements to rebuild.
"""

from __future__ import annotations

import copy
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lxml import etree

from vgpubuild.atomic import atomic_file
from vgpubuild.errors import InputError, XmlConfigError, input_error
from vgpubuild.vgpuconfig.safeparse import parse_safely
from vgpubuild.vgpuconfig.spans import SpanWriter
from vgpubuild.vgpuconfig.vocabulary import (
    CUDA_ELEMENT,
    DISABLED_SUBSYSTEM_VENDOR,
    MIB,
    parse_number,
)


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


class VgpuConfig:
    """A parsed vgpuConfig.xml: read through :attr:`profiles`/:attr:`pgpus`, edit, write."""

    def __init__(self, data: bytes, tree: etree._ElementTree, source: str):
        self.source = source
        self._root = tree.getroot()
        self._writer = SpanWriter(data, self._root, tree.docinfo.encoding or "UTF-8")
        self._types: dict[int, list[etree._Element]] | None = None

    # ----------------------------------------------------------------- loading

    @classmethod
    def load(cls, path: Path, shown: str | None = None) -> VgpuConfig:
        """Read and safely parse ``path``; any problem is an :class:`XmlConfigError`.

        ``shown`` names the file in messages when its path means nothing to the reader
        (a build's work folder is gone by the time an error is read).
        """
        with input_error(f"cannot read {str(path)!r}"):
            try:
                data = Path(path).read_bytes()
            except FileNotFoundError:
                raise InputError(
                    f"vgpuConfig.xml {str(path)!r} does not exist", hint="Check the --xml path."
                ) from None
        return cls.parse(data, shown or str(path))

    @classmethod
    def parse(cls, data: bytes, source: str = "<bytes>") -> VgpuConfig:
        """Safely parse ``data``: no network, no DTD, no entities (refused, not ignored)."""
        return cls(data, parse_safely(data, source), source)

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

    def find_type(self, profile_id: int) -> etree._Element:
        """The ``<vgpuType id=ID>``; an unknown id is an error naming the closest ids.

        An id used twice is an error too: editing only one of them, silently, would leave
        the driver with whichever it reads, and guessing is not an option.
        """
        index = self._type_index()
        found = index.get(profile_id, [])
        if not found:
            raise XmlConfigError(
                f"{self.source} has no profile (vgpuType) with id {profile_id}",
                hint=f"{suggest_ids(profile_id, list(index))} "
                "List them with: vgpubuild profiles list --xml FILE.",
            )
        if len(found) > 1:
            lines = " and ".join(str(el.sourceline) for el in found[:2])
            raise XmlConfigError(
                f"{self.source} has {len(found)} profiles (vgpuType) with id {profile_id} "
                f"(lines {lines}), so it is not clear which one to use",
                hint="Remove or renumber the duplicate; profile ids must be unique.",
            )
        return found[0]

    def _type_index(self) -> dict[int, list[etree._Element]]:
        if self._types is None:
            self._types = {}
            for el in self.type_elements():
                number = parse_number(el.get("id"))
                if number is not None:
                    self._types.setdefault(number, []).append(el)
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
            self._writer.touch(el)
            el.text = text
        return old

    def set_attr(self, el: etree._Element, name: str, value: str) -> str | None:
        """Set (or add) an attribute; returns the old value (None if it was absent)."""
        old = el.get(name)
        if old != value:
            self._writer.touch(el)
            el.set(name, value)
        return old

    def ensure_child(self, parent: etree._Element, tag: str) -> tuple[etree._Element, bool]:
        """The first ``<tag>`` child of ``parent``, appended if missing (then ``True``).

        A new child goes last, indented like its siblings, so the diff is one added line.
        """
        found = parent.find(tag)
        if found is not None:
            return found, False
        self._writer.touch(parent)
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
        self._writer.touch(parent)
        self._writer.map_children(el)
        duplicate = copy.deepcopy(el)
        self._writer.copy_marks(el, duplicate)
        # The copy sits where el's tail was; el is now followed by the copy, so it takes
        # the whitespace that precedes it (matters for a last child, whose tail is the
        # parent's closing indentation).
        previous = el.getprevious()
        lead = (parent.text if previous is None else previous.tail) or ""
        el.addnext(duplicate)
        duplicate.tail = el.tail
        el.tail = lead[len(lead.rstrip()) :]
        return duplicate

    # ----------------------------------------------------------------- writing

    def original_bytes(self) -> bytes:
        """The bytes the document was parsed from."""
        return self._writer.original

    def to_bytes(self) -> bytes:
        """The document's bytes: the original ones wherever nothing changed."""
        return self._writer.to_bytes()

    def save(self, path: Path) -> None:
        """Write atomically: ``path`` is replaced only once the whole file is written."""
        data = self.to_bytes()
        with atomic_file(path) as f:
            f.write(data)


# ----------------------------------------------------------------- model builders


def _child_number(el: etree._Element, tag: str) -> int | None:
    child = el.find(tag)
    return None if child is None else parse_number(child.text)


def _mib(value: int | None) -> int | None:
    return None if value is None else value // MIB


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


def _slip_of_a_key(typed: str, known: str) -> int | None:
    """How likely ``typed`` is a slip for ``known``: 0 a repeated digit dropped or doubled
    (``33`` for ``333``), 1 another digit dropped or extra, 2 two neighbours swapped; None
    otherwise. A wrong digit is not counted: ``150`` is as near ``120`` as ``159``, and the
    numeric neighbours already cover it.
    """
    if abs(len(typed) - len(known)) == 1:
        short, long = sorted((typed, known), key=len)
        cut = [i for i in range(len(long)) if long[:i] + long[i + 1 :] == short]
        if not cut:
            return None
        # the dropped (or extra) digit is the same as a neighbour: a key pressed once too few
        repeated = any(long[i] in long[max(i - 1, 0) : i] + long[i + 1 : i + 2] for i in cut)
        return 0 if repeated else 1
    if len(typed) == len(known):
        diff = [i for i, (a, b) in enumerate(zip(typed, known, strict=True)) if a != b]
        swapped = len(diff) == 2 and diff[1] == diff[0] + 1 and typed[diff[0]] == known[diff[1]]
        return 2 if swapped else None
    return None


def suggest_ids(wanted: int, known: Collection[int]) -> str:
    """A hint for an unknown profile id: the likely typo (``33`` -> ``333``), then the nearest."""
    slips = sorted(
        (rank, abs(i - wanted), i)
        for i in known
        if (rank := _slip_of_a_key(str(wanted), str(i))) is not None
    )
    guess = f"Did you mean {slips[0][2]}? " if slips else ""
    nearest = sorted(known, key=lambda i: (abs(i - wanted), i))[:5]
    return f"{guess}Closest ids: {', '.join(str(i) for i in sorted(nearest)) or 'none'}."
