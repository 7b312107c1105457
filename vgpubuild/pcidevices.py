"""The NVIDIA GPUs of this machine, read from sysfs (``/sys/bus/pci/devices``).

Each PCI function is a folder of one-line attribute files written by the kernel
(``vendor`` ``0x10de``, ``device``, ``subsystem_vendor``, ``subsystem_device``, ``class``
``0x030000``), symlinks (``iommu_group``, ``driver``, ``physfn`` on an SR-IOV virtual
function) and, on a card that can do SR-IOV, ``sriov_totalvfs``/``sriov_numvfs``. The scan
only reads: nothing here opens a sysfs file for writing (writing ``sriov_numvfs`` would
create virtual functions).

Containers and odd kernels show odd trees (no ``/sys/bus/pci`` at all, missing or unreadable
files, text that is not a hex id). None of that is a crash: a missing tree is one
:class:`~vgpubuild.errors.InputError`, and a device that cannot be read is skipped with a
note saying which file held what.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from vgpubuild.errors import InputError
from vgpubuild.profiles.settings import PciId

NVIDIA = 0x10DE
DISPLAY_CLASS = 0x03
"""PCI base class of display controllers (VGA 0x0300, 3D 0x0302); NVIDIA's HDMI audio
and USB functions on the same card have other classes and are not GPUs."""

_HEX = re.compile(r"(?:0[xX])?([0-9a-fA-F]{1,8})")


class OddDevice(Exception):
    """A device folder vgpubuild cannot read; the message says which file and why."""


@dataclass(frozen=True)
class PciGpu:
    """One NVIDIA display function as sysfs shows it."""

    address: str
    """The PCI address, ``0000:01:00.0`` (``given`` for a card named with ``--device``)."""
    device: int
    subsystem_vendor: int | None
    subsystem_device: int | None
    pci_class: int
    iommu_group: str | None
    driver: str | None
    sriov_totalvfs: int | None
    """How many virtual functions the card can have; None: not an SR-IOV card."""
    sriov_numvfs: int | None


@dataclass
class Scan:
    """What a scan found: the GPUs, how many devices it looked at, what it skipped."""

    devices_dir: Path
    gpus: list[PciGpu] = field(default_factory=list)
    seen: int = 0
    notes: list[str] = field(default_factory=list)


def _text(folder: Path, name: str) -> str:
    try:
        raw = (folder / name).read_bytes()
    except FileNotFoundError:
        raise OddDevice(f"it has no {name} file") from None
    except OSError as exc:
        raise OddDevice(f"its {name} file cannot be read ({exc.strerror})") from None
    return raw.decode("ascii", errors="replace").strip()


def _shown(text: str) -> str:
    return repr(text if len(text) <= 20 else text[:20] + "...")


def _hex(folder: Path, name: str, bits: int = 16) -> int:
    text = _text(folder, name)
    match = _HEX.fullmatch(text)
    value = int(match.group(1), 16) if match else None
    if value is None or value >> bits:
        raise OddDevice(f"its {name} file holds {_shown(text)}, not a {bits}-bit hex id")
    return value


def _count(folder: Path, name: str) -> int:
    text = _text(folder, name)
    if not text.isdigit():
        raise OddDevice(f"its {name} file holds {_shown(text)}, not a count")
    return int(text)


def _optional(folder: Path, name: str, read: Callable[[Path, str], int]) -> int | None:
    """An attribute some kernels or devices lack: None when absent, an error when odd."""
    return read(folder, name) if (folder / name).exists() else None


def _link_name(folder: Path, name: str) -> str | None:
    try:
        return os.path.basename(os.readlink(folder / name))
    except OSError:
        return None


def read_gpu(folder: Path) -> PciGpu | None:
    """The GPU in one device folder; None when it is not an NVIDIA display function.

    SR-IOV virtual functions (a ``physfn`` link) are not listed: they belong to their
    card, whose ``sriov_numvfs`` counts them. Raises :class:`OddDevice`.
    """
    if _hex(folder, "vendor") != NVIDIA:
        return None
    pci_class = _hex(folder, "class", 24)
    if pci_class >> 16 != DISPLAY_CLASS or os.path.lexists(folder / "physfn"):
        return None
    return PciGpu(
        address=folder.name,
        device=_hex(folder, "device"),
        subsystem_vendor=_optional(folder, "subsystem_vendor", _hex),
        subsystem_device=_optional(folder, "subsystem_device", _hex),
        pci_class=pci_class,
        iommu_group=_link_name(folder, "iommu_group"),
        driver=_link_name(folder, "driver"),
        sriov_totalvfs=_optional(folder, "sriov_totalvfs", _count),
        sriov_numvfs=_optional(folder, "sriov_numvfs", _count),
    )


def scan(sysfs: Path) -> Scan:
    """Every NVIDIA GPU under ``sysfs``/bus/pci/devices, in address order."""
    devices_dir = sysfs / "bus" / "pci" / "devices"
    try:
        entries = sorted(os.listdir(devices_dir))
    except OSError as exc:
        reason = "does not exist" if isinstance(exc, FileNotFoundError) else exc.strerror
        raise InputError(
            f"no PCI devices to look at: {devices_dir} {reason}",
            hint="Run on the host itself (containers often hide /sys/bus/pci), pass --sysfs "
            "ROOT for another sysfs tree, or --device DEV:SUB to judge a card by its ids.",
        ) from None
    result = Scan(devices_dir)
    for name in entries:
        result.seen += 1
        try:
            gpu = read_gpu(devices_dir / name)
        except OddDevice as exc:
            result.notes.append(f"{name}: skipped: {exc}")
            continue
        if gpu is not None:
            result.gpus.append(gpu)
    return result


def named(pci: PciId) -> Scan:
    """A scan that "finds" one card given by its ids (``--device``), sysfs unread."""
    gpu = PciGpu("given", pci.device, None, pci.subsystem, 0x030000, None, None, None, None)
    return Scan(Path("--device"), [gpu], 1)
