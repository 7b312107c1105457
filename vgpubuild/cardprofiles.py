"""The vGPU profiles one card gets from a release's vgpuConfig.xml, clones included.

A consumer card has no ``<pgpu>`` of its own in NVIDIA's file: ``patch.sh`` (or a
``copyVGPUProfiles`` line) gives it a copy of its source card's entry, and with
``--remap-p2v`` the P40 profiles are renamed. To show what the built driver will offer,
the same edits (:func:`~vgpubuild.vcfgclone.vcfgclone`,
:func:`~vgpubuild.profiles.remap.remap_p2v_profiles`) run on a parsed copy in memory; nothing is
written. A file that already carries them (an artifact) is read as it is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lxml import etree

from vgpubuild.errors import XmlConfigError
from vgpubuild.gpus import Card, Verdict
from vgpubuild.profiles.clones import vcfgclone
from vgpubuild.profiles.remap import remap_p2v_profiles
from vgpubuild.profiles.settings import PciId
from vgpubuild.releasexml import ReleaseXml
from vgpubuild.vgpuconfig.model import VgpuConfig
from vgpubuild.vgpuconfig.vocabulary import DISABLED_SUBSYSTEM_VENDOR, parse_number


@dataclass(frozen=True)
class CardProfile:
    """One profile a card offers: ``nvidia-<id>`` in sysfs's ``mdev_supported_types``."""

    id: int
    name: str
    framebuffer_mib: int | None
    heads: int | None
    max_instances: int | None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": f"nvidia-{self.id}",
            "name": self.name,
            "framebuffer_mib": self.framebuffer_mib,
            "heads": self.heads,
            "max_instances": self.max_instances,
        }


@dataclass
class CardProfiles:
    """The profiles, from which file, and what had to be done in memory to get them."""

    origin: str
    profiles: list[CardProfile] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "xml": self.origin,
            "profiles": [p.to_json() for p in self.profiles],
            "notes": self.notes,
        }


def _pgpu_ids(el: etree._Element) -> tuple[int, int, int] | None:
    dev = el.find("devId")
    if dev is None:
        return None
    values = [parse_number(dev.get(k)) for k in ("deviceId", "subsystemId", "subsystemVendorId")]
    return (values[0] or 0, values[1] or 0, values[2] or 0)


def _entry(config: VgpuConfig, card: Card) -> etree._Element | None:
    """The card's enabled ``<pgpu>``: one with its exact subsystem, else a wildcard (0)."""
    found: dict[bool, etree._Element] = {}
    for el in config.pgpu_elements():
        ids = _pgpu_ids(el)
        if ids is None or ids[2] == DISABLED_SUBSYSTEM_VENDOR:
            continue
        if card.matches(PciId(ids[0], ids[1])):
            found.setdefault(ids[1] == card.subsystem, el)
    return found.get(True, found.get(False))


def card_profiles(xml: ReleaseXml, card: Card, verdict: Verdict) -> CardProfiles:
    """The profiles ``card`` gets on ``verdict``'s terms (its clone source, remap-p2v)."""
    config = xml.parse()
    result = CardProfiles(xml.origin)
    if verdict.remap_p2v and remap_p2v_profiles(config):
        result.notes.append("P40 profiles shown as --remap-p2v renames them (GRID V40-*)")
    entry = _entry(config, card)
    if entry is None and verdict.source is not None:
        try:
            vcfgclone(config, verdict.source, PciId(card.device, 0))
        except XmlConfigError:
            result.notes.append(
                f"{xml.origin} has no pGPU {verdict.source} to clone from; patch.sh may add "
                "it: build the driver and pass --xml ARTIFACT_FOLDER for the exact list"
            )
            return result
        result.notes.append(f"cloned from {verdict.source} in memory, as the build will")
        entry = _entry(config, card)
    if entry is None:
        result.notes.append(f"{xml.origin} has no pGPU for this card")
        return result
    for supported in entry.iter("supportedVgpu"):
        vgpu_id = parse_number(supported.get("vgpuId"))
        if vgpu_id is None:
            continue
        max_vgpus = supported.find("maxVgpus")
        try:
            profile = config.profile(vgpu_id)
        except XmlConfigError:
            result.notes.append(f"profile {vgpu_id} is listed for the card but not defined")
            continue
        result.profiles.append(
            CardProfile(
                vgpu_id,
                profile.name,
                profile.framebuffer_mib,
                profile.heads,
                parse_number(max_vgpus.text) if max_vgpus is not None else None,
            )
        )
    return result
