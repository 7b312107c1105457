"""vcfgclone, vcfgpatch, ``copyVGPUProfiles`` and remap-p2v on vgpuConfig.xml.

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

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from vgpubuild.errors import ConfigError, VgpubuildError, XmlConfigError
from vgpubuild.vgpuconfig import DISABLED_SUBSYSTEM_VENDOR, VgpuConfig, parse_number

NVIDIA_VENDOR = 0x10DE
_PCI_PAIR = re.compile(r"\s*(?:0[xX])?([0-9A-Fa-f]+)\s*:\s*(?:0[xX])?([0-9A-Fa-f]+)\s*")


@dataclass(frozen=True, order=True)
class PciId:
    """A physical GPU's ``deviceId`` and ``subsystemId`` (16-bit numbers)."""

    device: int
    subsystem: int

    def __str__(self) -> str:
        return f"{self.device:04X}:{self.subsystem:04X}"

    @property
    def device_hex(self) -> str:
        return f"0x{self.device:04X}"

    @property
    def subsystem_hex(self) -> str:
        return f"0x{self.subsystem:04X}"


def parse_pci_id(text: str, *, error: type[VgpubuildError] = ConfigError) -> PciId:
    """Parse ``1E07:0000`` or ``0x1E07:0x0`` (hex, any case, any width up to 16 bits)."""
    match = _PCI_PAIR.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise error(
            f"{text!r} is not a PCI id pair DEVICE:SUBSYSTEM",
            hint="Write two hex numbers, e.g. 1E07:0000 or 0x1E30:0x12BA.",
        )
    device, subsystem = (int(g, 16) for g in match.groups())
    if device > 0xFFFF or subsystem > 0xFFFF:
        raise error(
            f"PCI id {text!r} is out of range",
            hint="PCI device and subsystem ids are 16-bit: at most 0xFFFF each.",
        )
    return PciId(device, subsystem)


def parse_clone_map(
    table: Mapping[str, str], *, error: type[VgpubuildError] = ConfigError
) -> list[tuple[PciId, PciId]]:
    """Validate ``copyVGPUProfiles`` (key: the new card, value: the card copied).

    Returns ``(new, source)`` pairs in the table's order, which is the order they run.
    """
    if not isinstance(table, Mapping):
        raise error('copyVGPUProfiles must be a table like {"1E07:0000" = "1E30:12BA"}')
    pairs: list[tuple[PciId, PciId]] = []
    for new_text, src_text in table.items():
        if not isinstance(src_text, str):
            raise error(f'copyVGPUProfiles."{new_text}" must be a "DEVICE:SUBSYSTEM" string')
        new, src = parse_pci_id(new_text, error=error), parse_pci_id(src_text, error=error)
        if new == src:
            raise error(
                f'copyVGPUProfiles."{new_text}" copies the card onto itself',
                hint="The key is the new card, the value the supported card to copy.",
            )
        pairs.append((new, src))
    return pairs


def _devid(el: Any) -> Any:
    dev = el.find("devId")
    assert dev is not None, "only entries whose ids matched get here"
    return dev


def _ids(el: Any) -> tuple[int | None, int | None, int | None]:
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

    def clone(self, src: PciId, dst: PciId) -> list[str]:
        sources = self.matching(src, NVIDIA_VENDOR)
        if not sources:
            raise self.missing(src, "clone from")
        changes: list[str] = []
        cloned: list[str] = []
        for n in self.matching(dst):
            el, device, subsystem, vendor = self.entries[n]
            if vendor == DISABLED_SUBSYSTEM_VENDOR:
                continue
            self.config.set_attr(
                _devid(el), "subsystemVendorId", f"0x{DISABLED_SUBSYSTEM_VENDOR:04X}"
            )
            self.entries[n] = (el, device, subsystem, DISABLED_SUBSYSTEM_VENDOR)
            changes.append(f"pgpu {dst}: existing entry disabled (subsystemVendorId 0x9999)")
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


def copy_profiles(config: VgpuConfig, pairs: list[tuple[PciId, PciId]]) -> list[str]:
    """Run ``copyVGPUProfiles`` pairs (``(new, source)``) in order, as vcfgclone."""
    index = _PgpuIndex(config)
    changes: list[str] = []
    for new, src in pairs:
        changes += index.clone(src, new)
    return changes


# ----------------------------------------------------------------- data tables


@dataclass(frozen=True)
class BuiltinClone:
    """One line of VUP's built-in clone list (``profiles/clones.toml``)."""

    card: str
    new: PciId
    source: PciId
    source_card: str
    series: tuple[str, ...]
    remap_p2v: bool


def _read_data(name: str) -> dict[str, Any]:
    from vgpubuild.resources import data_dir

    with (data_dir("profiles") / name).open("rb") as f:
        return tomllib.load(f)


def builtin_clones(series: str | None = None, *, remap_p2v: bool = False) -> list[BuiltinClone]:
    """VUP's built-in clones for a driver series (``"550"``); all series when None.

    Lines that VUP runs only with ``--remap-p2v`` are included when ``remap_p2v`` is set.
    """
    table = []
    for row in _read_data("clones.toml")["clone"]:
        entry = BuiltinClone(
            card=row["card"],
            new=parse_pci_id(row["new"]),
            source=parse_pci_id(row["source"]),
            source_card=row["source_card"],
            series=tuple(row["series"]),
            remap_p2v=bool(row.get("remap_p2v", False)),
        )
        if (series is None or series in entry.series) and (remap_p2v or not entry.remap_p2v):
            table.append(entry)
    return table


def remap_p2v_profiles(config: VgpuConfig) -> list[str]:
    """Rename ``GRID P40-x`` types to ``GRID V40-x`` with their V100D twin's devId ids.

    The P40->V100D map and the fallback ids are in ``profiles/p2v.toml``. Unlike VUP,
    a mapped V100D type missing from the file falls back to the default ids instead of
    writing empty ids. Running it twice changes nothing the second time.
    """
    data = _read_data("p2v.toml")
    mapping: dict[str, str] = data["map"]
    by_name = {el.get("name"): el for el in config.type_elements()}
    changes: list[str] = []
    for el in list(config.type_elements()):
        name = el.get("name") or ""
        if not name.startswith("GRID P40-"):
            continue
        p_name = name.removeprefix("GRID ")
        v_name = p_name.replace("P", "V", 1)
        twin = by_name.get(f"GRID {mapping.get(p_name, '')}")
        twin_dev = None if twin is None else twin.find("devId")
        if twin_dev is not None:
            device = twin_dev.get("deviceId", data["fallback_device"])
            subsystem = twin_dev.get("subsystemId", data["fallback_subsystem"])
            origin = mapping[p_name]
        else:
            device, subsystem = data["fallback_device"], data["fallback_subsystem"]
            origin = "V100D fallback"
        config.set_attr(el, "name", f"GRID {v_name}")
        dev, _ = config.ensure_child(el, "devId")
        config.set_attr(dev, "deviceId", device)
        config.set_attr(dev, "subsystemId", subsystem)
        changes.append(
            f"nvidia-{el.get('id')}: GRID {p_name} -> GRID {v_name} "
            f"(ids of {origin}: {device} {subsystem})"
        )
    return changes
