"""vcfgclone, vcfgpatch and ``copyVGPUProfiles``: giving a GPU another GPU's profiles.

vGPU-Unlock-patcher does these with sed programs that match the XML as text, so
``0x0`` vs ``0x0000`` or ``0x10de`` vs ``0x10DE`` decide whether a line matches and a
missing source card is silently ignored. Here PCI ids are 16-bit numbers, compared as
numbers, and a clone whose source is not in the file is an error.

Semantics (VUP 550.x): ``vcfgclone SRC DST`` first disables every enabled ``<pgpu>``
that already has DST's ids (``subsystemVendorId`` set to 0x9999), then inserts, right
after each enabled ``<pgpu>`` with SRC's ids and NVIDIA's subsystem vendor (0x10DE), a
copy carrying DST's ``deviceId``/``subsystemId`` (written ``0x%04X``).
"""

from __future__ import annotations

from lxml import etree

from vgpubuild.errors import XmlConfigError
from vgpubuild.profiles.settings import CloneMap, PciId
from vgpubuild.vgpuconfig.model import VgpuConfig
from vgpubuild.vgpuconfig.vocabulary import DISABLED_SUBSYSTEM_VENDOR, NVIDIA_VENDOR, parse_number


def _devid(el: etree._Element) -> etree._Element:
    dev = el.find("devId")
    assert dev is not None, "only entries whose ids matched get here"
    return dev


def _ids(el: etree._Element) -> tuple[int | None, int | None, int | None]:
    dev = el.find("devId")
    if dev is None:
        return None, None, None
    return (
        parse_number(dev.get("deviceId")),
        parse_number(dev.get("subsystemId")),
        parse_number(dev.get("subsystemVendorId")),
    )


class _PgpuIndex:
    """Every ``<pgpu>`` with its ids read once, kept current as entries are cloned."""

    def __init__(self, config: VgpuConfig) -> None:
        self.config = config
        self.entries = [(el, *_ids(el)) for el in config.pgpu_elements()]

    def matching(self, pci: PciId, vendor: int | None = None) -> list[int]:
        """Positions of entries with ``pci``'s ids (and this subsystem vendor, if given)."""
        return [
            n
            for n, (_el, device, subsystem, sub_vendor) in enumerate(self.entries)
            if device == pci.device
            and subsystem == pci.subsystem
            and (vendor is None or sub_vendor == vendor)
        ]

    def missing(self, src: PciId, verb: str) -> XmlConfigError:
        cards = sorted(
            {
                f"{device or 0:04X}:{subsystem or 0:04X}"
                for _el, device, subsystem, vendor in self.entries
                if vendor != DISABLED_SUBSYSTEM_VENDOR
            }
        )
        same = [c for c in cards if c.startswith(f"{src.device:04X}:")]
        listing = ", ".join(same or cards[:12]) + ("" if same or len(cards) <= 12 else ", ...")
        return XmlConfigError(
            f"{self.config.source} has no enabled pGPU {src} (vendor 0x10DE) to {verb}",
            hint=f"pGPUs in the file: {listing or 'none'}.",
        )

    def clone(
        self,
        src: PciId,
        dst: PciId,
        disable_with: int | None = DISABLED_SUBSYSTEM_VENDOR,
        missing_ok: bool = False,
    ) -> list[str]:
        """``disable_with``: the vendor id an existing enabled destination gets first (None:
        a plain copy, as 535.x and 550.54); ``missing_ok``: a missing source does nothing
        (what VUP's own lines do) instead of being an error."""
        sources = self.matching(src, NVIDIA_VENDOR)
        if not sources:
            if missing_ok:
                return []
            raise self.missing(src, "clone from")
        changes: list[str] = []
        cloned: list[str] = []
        for n in self.matching(dst, NVIDIA_VENDOR) if disable_with is not None else []:
            el, device, subsystem, _vendor = self.entries[n]
            self.config.set_attr(_devid(el), "subsystemVendorId", f"0x{disable_with:04X}")
            self.entries[n] = (el, device, subsystem, disable_with)
            changes.append(
                f"pgpu {dst}: existing entry disabled (subsystemVendorId 0x{disable_with:04X})"
            )
        for n in reversed(sources):  # from the end, so earlier positions stay valid
            el, _device, _subsystem, vendor = self.entries[n]
            duplicate = self.config.insert_copy_after(el)
            dev = _devid(duplicate)
            self.config.set_attr(dev, "deviceId", dst.device_hex)
            self.config.set_attr(dev, "subsystemId", dst.subsystem_hex)
            self.entries.insert(n + 1, (duplicate, dst.device, dst.subsystem, vendor))
            count = len(duplicate.findall("supportedVgpu"))
            cloned.insert(0, f"pgpu {dst}: cloned from {src} ({count} profiles)")
        return changes + cloned


def vcfgclone(config: VgpuConfig, src: PciId, dst: PciId) -> list[str]:
    """Give card ``dst`` the profiles of card ``src`` (VUP 550.x semantics, see module)."""
    return _PgpuIndex(config).clone(src, dst)


def vcfgpatch(config: VgpuConfig, src: PciId, dst: PciId) -> list[str]:
    """Change the ids of every enabled ``<pgpu>`` with ``src``'s ids to ``dst`` in place."""
    index = _PgpuIndex(config)
    sources = index.matching(src, NVIDIA_VENDOR)
    if not sources:
        raise index.missing(src, "patch")
    for n in sources:
        dev = _devid(index.entries[n][0])
        config.set_attr(dev, "deviceId", dst.device_hex)
        config.set_attr(dev, "subsystemId", dst.subsystem_hex)
    return [f"pgpu {src}: ids changed to {dst} ({len(sources)} entries)"]


def copy_profiles(
    config: VgpuConfig, pairs: CloneMap, disable_with: int | None = DISABLED_SUBSYSTEM_VENDOR
) -> list[str]:
    """Run ``copyVGPUProfiles`` pairs (``(new, source)``) in order, as vcfgclone.

    ``disable_with`` is the branch's semantics (see :meth:`_PgpuIndex.clone`).
    """
    index = _PgpuIndex(config)
    changes: list[str] = []
    for new, src in pairs:
        changes += index.clone(src, new, disable_with)
    return changes


def clone_builtin(
    config: VgpuConfig, src: PciId, dst: PciId, disable_with: int | None
) -> list[str]:
    """One of VUP's own vcfgclone lines: like :func:`copy_profiles`, but a source that is
    not in the file does nothing (the line's sed matches nothing)."""
    return _PgpuIndex(config).clone(src, dst, disable_with, missing_ok=True)
