"""The system's PCI id database (``pci.ids``): names for vendor, device and subsystem ids.

vgpubuild keeps no table of GPU names of its own: a hand-kept list goes stale with every
new card, while the distribution's ``pci.ids`` (Debian's ``pci.ids`` package, Fedora's and
NixOS's ``hwdata``) is what ``lspci`` prints from and is updated with the system. Names
are looked up the way ``lspci`` looks them up, so both print the same name for a card.

The file format: a vendor line (``10de  NVIDIA Corporation``), its devices indented by
one tab (``\t2684  AD102 [GeForce RTX 4090]``) and their subsystems by two
(``\t\t1462 3734  name``); ``#`` starts a comment; a ``C`` line starts the device-class
section, which holds nothing vgpubuild reads.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from vgpubuild.errors import InputError

ENV = "VGPUBUILD_PCI_IDS"
"""Names the database to use; set but empty, no database is used."""

SYSTEM_PATHS = (
    Path("/usr/share/misc/pci.ids"),  # Debian, Ubuntu (package pci.ids)
    Path("/usr/share/hwdata/pci.ids"),  # Fedora, Arch (hwdata)
    Path("/run/current-system/sw/share/hwdata/pci.ids"),  # NixOS with hwdata installed
)

_VENDOR = re.compile(r"([0-9a-fA-F]{4})\s+(.*\S)")
_DEVICE = re.compile(r"\t([0-9a-fA-F]{4})\s+(.*\S)")
_SUBSYSTEM = re.compile(r"\t\t([0-9a-fA-F]{4})\s+([0-9a-fA-F]{4})\s+(.*\S)")


@dataclass
class PciNames:
    """Names from one ``pci.ids`` file: every vendor, and the devices of chosen vendors."""

    path: Path
    vendors: dict[int, str] = field(default_factory=dict)
    devices: dict[tuple[int, int], str] = field(default_factory=dict)
    subsystems: dict[tuple[int, int, int, int], str] = field(default_factory=dict)

    def vendor(self, vendor: int) -> str | None:
        return self.vendors.get(vendor)

    def device(self, vendor: int, device: int) -> str | None:
        return self.devices.get((vendor, device))

    def subsystem(self, vendor: int, device: int, sub_vendor: int, sub_device: int) -> str | None:
        """The board's name; as in lspci, a board with the chip's own ids is named like it."""
        found = self.subsystems.get((vendor, device, sub_vendor, sub_device))
        if found is None and (vendor, device) == (sub_vendor, sub_device):
            return self.device(vendor, device)
        return found


def load(path: Path, device_vendors: Iterable[int]) -> PciNames:
    """Read ``path``: all vendor names, and device/subsystem names of ``device_vendors``.

    Streams the file (about 1.3 MB) and keeps only what was asked for; a line that does
    not fit the format is skipped, as lspci skips it.
    """
    wanted = set(device_vendors)
    names = PciNames(path)
    vendor: int | None = None
    device: int | None = None
    try:
        with path.open(encoding="utf-8", errors="replace") as f:
            for line in f:
                line = line.rstrip("\r\n")
                if not line or line.startswith("#"):
                    continue
                if line.startswith("C "):
                    break  # the class section: the vendor list is over
                if m := _VENDOR.fullmatch(line):
                    vendor, device = int(m.group(1), 16), None
                    names.vendors.setdefault(vendor, m.group(2))
                elif vendor not in wanted:
                    continue
                elif m := _DEVICE.fullmatch(line):
                    device = int(m.group(1), 16)
                    names.devices.setdefault((vendor, device), m.group(2))
                elif device is not None and (m := _SUBSYSTEM.fullmatch(line)):
                    key = (vendor, device, int(m.group(1), 16), int(m.group(2), 16))
                    names.subsystems.setdefault(key, m.group(3))
    except OSError as exc:
        raise InputError(
            f"cannot read the PCI id database {str(path)!r}: {exc.strerror}",
            hint=f"Point --pci-ids (or {ENV}) at a readable pci.ids file.",
        ) from None
    return names


def locate(explicit: Path | None) -> Path | None:
    """The database to read: ``explicit``, else ``$VGPUBUILD_PCI_IDS``, else the system's.

    An explicit or configured file that does not exist is an error (a typo would
    otherwise silently drop every name); no system file is not.
    """
    if explicit is None and ENV in os.environ:
        explicit = Path(os.environ[ENV]) if os.environ[ENV] else None
        if explicit is None:
            return None
    if explicit is not None:
        if not explicit.is_file():
            raise InputError(
                f"the PCI id database {str(explicit)!r} does not exist",
                hint="Give a pci.ids file (Debian: package pci.ids; NixOS: hwdata).",
            )
        return explicit
    return next((p for p in SYSTEM_PATHS if p.is_file()), None)
