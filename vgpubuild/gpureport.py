"""``vgpubuild gpus`` as data: per GPU its ids, names, verdicts, profiles and settings.

One JSON-ready structure feeds both outputs (``--json`` prints it, the text view renders
it), so what a script reads and what a person reads cannot disagree. The release files
(vgpuConfig.xml) are loaded lazily and once: a cached GRID zip is read only for the
release a card is judged on in detail.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vgpubuild.cardprofiles import card_profiles
from vgpubuild.catalog import Release
from vgpubuild.gpus import NVIDIA, WORKS, Card, Knowledge, Verdict, card_of, judge, recommend
from vgpubuild.gpusuggest import settings, to_nix, to_toml
from vgpubuild.pcidevices import PciGpu, Scan
from vgpubuild.releasexml import ReleaseXml

SRIOV_MANAGE = "/usr/lib/nvidia/sriov-manage"
"""NVIDIA's script (shipped with the vGPU host driver) that enables a card's VFs."""


def _hex(value: int | None, width: int = 4) -> str | None:
    return None if value is None else f"0x{value:0{width}X}"


@dataclass
class Survey:
    """Inputs shared by every GPU of one run."""

    releases: list[Release]
    know: Knowledge
    load_xml: Callable[[Release], ReleaseXml | None]
    """The release's vgpuConfig.xml from the cache, or None (called once per release)."""
    suggest: bool = False
    _loaded: set[str] = field(default_factory=set)

    def _xml(self, release: Release) -> ReleaseXml | None:
        if release.version not in self._loaded:
            self._loaded.add(release.version)
            found = self.know.xml.get(release.version) or self.load_xml(release)
            if found is not None:
                self.know.xml[release.version] = found
        return self.know.xml.get(release.version)

    def gpu(self, gpu: PciGpu) -> dict[str, Any]:
        """Everything ``vgpubuild gpus`` says about one GPU."""
        names = self.know.names
        card = card_of(gpu.device, gpu.subsystem_device or 0, names)
        detail = self.releases[0] if len(self.releases) == 1 else None
        if detail is not None:
            self._xml(detail)  # before judging: the file may show the card is native
        verdicts = [judge(card, r, self.know) for r in self.releases]
        chosen = recommend(verdicts) if detail is None else verdicts[0]
        if detail is None and chosen is not None:
            detail = next(r for r in self.releases if r.version == chosen.release)
            if self._xml(detail) is not None:
                chosen = judge(card, detail, self.know)
        sub_vendor = gpu.subsystem_vendor
        return {
            "address": gpu.address,
            "vendor_id": _hex(NVIDIA),
            "device_id": _hex(gpu.device),
            "subsystem_vendor_id": _hex(sub_vendor),
            "subsystem_id": _hex(gpu.subsystem_device),
            "class": _hex(gpu.pci_class, 6),
            "name": card.name,
            "subsystem_vendor_name": names.vendor(sub_vendor) if names and sub_vendor else None,
            "subsystem_name": (
                names.subsystem(NVIDIA, gpu.device, sub_vendor, gpu.subsystem_device)
                if names and sub_vendor is not None and gpu.subsystem_device is not None
                else None
            ),
            "architecture": card.architecture,
            "consumer": card.consumer,
            "iommu_group": gpu.iommu_group,
            "driver": gpu.driver,
            "sriov": _sriov(gpu),
            "verdicts": [v.to_json() for v in verdicts],
            "recommended": chosen.to_json() if chosen and chosen.status in WORKS else None,
            "profiles": self._profiles(card, detail, chosen),
            "suggest": self._suggest(card, chosen) if self.suggest else None,
        }

    def _profiles(
        self, card: Card, release: Release | None, verdict: Verdict | None
    ) -> dict[str, Any] | None:
        xml = self._xml(release) if release is not None else None
        if xml is None or verdict is None:
            return None
        return {"release": verdict.release, **card_profiles(xml, card, verdict).to_json()}

    def _suggest(self, card: Card, verdict: Verdict | None) -> dict[str, str] | None:
        if verdict is None or verdict.status not in WORKS:
            return None
        tree = settings(card, verdict)
        return {
            "release": verdict.release,
            "toml": to_toml(verdict.release, tree),
            "nix": to_nix(verdict.release, tree),
        }


def report(found: Scan, survey: Survey, database: Path | None, *, sysfs: bool) -> dict[str, Any]:
    """The whole ``vgpubuild gpus`` report: where it looked, every GPU, every note."""
    notes = list(found.notes)
    if survey.know.names is None:
        notes.append(
            "no pci.ids database: names and architectures are unknown "
            "(install pci.ids or hwdata, or pass --pci-ids FILE)"
        )
    return {
        "sysfs": str(found.devices_dir) if sysfs else None,
        "pci_ids": str(database) if database else None,
        "gpus": [survey.gpu(gpu) for gpu in found.gpus],
        "notes": notes,
    }


def _sriov(gpu: PciGpu) -> dict[str, Any] | None:
    """SR-IOV state (datacenter Ampere and later run vGPUs on virtual functions)."""
    if not gpu.sriov_totalvfs:
        return None
    return {
        "total_vfs": gpu.sriov_totalvfs,
        "enabled_vfs": gpu.sriov_numvfs,
        "enable_command": (None if gpu.sriov_numvfs else f"{SRIOV_MANAGE} -e {gpu.address}"),
    }
