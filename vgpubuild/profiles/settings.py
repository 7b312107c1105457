"""The vgpuConfig.xml edits a build asks for, as typed values: parsed once, then passed on.

``copyVGPUProfiles`` (``{"NEW:SUB": "SRC:SUB"}``) becomes ``(new, source)`` :class:`PciId`
pairs and ``profileOverrides`` (``{"333": {"vramAllocation": 3584}}``) becomes
:class:`ProfileOverride` values by profile id. The build config, the command line and the
vgpu_unlock-rs importer all go through these parsers, so one rule decides what is valid.
No lxml here: checking a configuration never loads the XML parser.

vgpu4nixos turns each override into ``xmlstarlet ed -u .../ELEM/text() -v VALUE``; the
values here follow its formulas and spelling (hex in upper case, as nixpkgs
``lib.toHexString`` gives), with ranges checked.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from vgpubuild.errors import ConfigError, VgpubuildError
from vgpubuild.vgpuconfig.vocabulary import CUDA_ELEMENT, MIB, to_hex

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


CloneMap = Sequence[tuple[PciId, PciId]]
"""``copyVGPUProfiles`` parsed: ``(new card, card copied)`` pairs in the order they run."""


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


OVERRIDE_KEYS = ("vramAllocation", "heads", "enableCuda", "display", "framerateLimit", "xmlConfig")
"""The option names of vgpu4nixos's ``profileOverrides.<id>`` submodule."""

VRAM_MIB_RANGE = (512, 262144)
"""vramAllocation bounds in MiB: NVIDIA's smallest profile (512 MiB) to 256 GiB. Below
69 MiB the formula's framebuffer would be zero or negative."""
HEADS_RANGE = (1, 16)
"""numHeads bounds (NVIDIA's own profiles use 1 to 4)."""
DISPLAY_RANGE = (64, 16384)
"""Bounds of each display side in pixels (NVIDIA's largest is 7680x4320)."""
FRL_RANGE = (0, 1000)
"""framerateLimit bounds in frames per second; 0 turns the limiter off."""

_XML_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")

ElementValue = str | dict[str, str]
"""An element's new text, or ``{attribute: value}`` for its attributes."""


def vram_values(mib: int) -> dict[str, str]:
    """profileSize, fbReservation and framebuffer for ``mib`` MiB (vgpu4nixos's formula).

    ``profileSize = M*1048576``, ``fbReservation = 134217728 + (M-1024)*65536``,
    ``framebuffer = profileSize - fbReservation``; 3584 gives 0xE0000000, 0x12000000 and
    0xCE000000.
    """
    size = mib * MIB
    reservation = 134217728 + (mib - 1024) * 65536
    return {
        "profileSize": to_hex(size),
        "framebuffer": to_hex(size - reservation),
        "fbReservation": to_hex(reservation),
    }


@dataclass(frozen=True)
class ProfileOverride:
    """One profile's override, validated (values as the NixOS module names them)."""

    vram_mib: int | None = None
    heads: int | None = None
    display: tuple[int, int] | None = None
    framerate_limit: int | None = None
    enable_cuda: bool | None = None
    xml_config: Mapping[str, ElementValue] = field(default_factory=dict)

    def elements(self) -> dict[str, ElementValue]:
        """The element values to write, with Nix ``//`` semantics: xmlConfig wins."""
        values: dict[str, ElementValue] = {}
        if self.vram_mib is not None:
            values.update(vram_values(self.vram_mib))
        if self.heads is not None:
            values["numHeads"] = str(self.heads)
        if self.display is not None:
            width, height = self.display
            values["display"] = {"width": str(width), "height": str(height)}
            values["maxPixels"] = str(width * height)
        if self.framerate_limit is not None:
            values["frlConfig"] = to_hex(self.framerate_limit)
            values["frame_rate_limiter"] = "1" if self.framerate_limit > 0 else "0"
        if self.enable_cuda is not None:
            values[CUDA_ELEMENT] = "1" if self.enable_cuda else "0"
        values.update(self.xml_config)
        return values

    def to_mapping(self) -> dict[str, Any]:
        """Back to the NixOS module's shape (for manifests and TOML export)."""
        out: dict[str, Any] = {}
        if self.vram_mib is not None:
            out["vramAllocation"] = self.vram_mib
        if self.heads is not None:
            out["heads"] = self.heads
        if self.enable_cuda is not None:
            out["enableCuda"] = self.enable_cuda
        if self.display is not None:
            out["display"] = {"width": self.display[0], "height": self.display[1]}
        if self.framerate_limit is not None:
            out["framerateLimit"] = self.framerate_limit
        if self.xml_config:
            out["xmlConfig"] = {
                k: v if isinstance(v, str) else dict(v) for k, v in self.xml_config.items()
            }
        return out


def parse_overrides(
    table: Mapping[str, Any], *, error: type[VgpubuildError] = ConfigError
) -> dict[int, ProfileOverride]:
    """Validate a ``profileOverrides`` table (``{"333": {"vramAllocation": 3584}}``).

    ``error`` is the class raised for a bad value: :class:`ConfigError` for a file,
    :class:`~vgpubuild.errors.UsageError` when the values came from the command line.
    """
    if not isinstance(table, Mapping):
        raise error("profileOverrides must be a table of profile ids")
    parsed: dict[int, ProfileOverride] = {}
    for key, options in table.items():
        where = f'profileOverrides."{key}"'
        if not (isinstance(key, str) and key.isdigit()):
            raise error(
                f"{where}: the key must be a numeric profile id",
                hint='Use the vgpuType id, e.g. profileOverrides."333" for profile nvidia-333.',
            )
        if not isinstance(options, Mapping):
            raise error(f"{where} must be a table of options", hint=_options_hint())
        parsed[int(key)] = _parse_one(options, where, error)
    return parsed


def _options_hint() -> str:
    return f"Valid options: {', '.join(OVERRIDE_KEYS)}."


def _closest(word: str, choices: tuple[str, ...]) -> str:
    near = difflib.get_close_matches(word, choices, n=1, cutoff=0.4)
    return f"Did you mean {near[0]!r}? " + _options_hint() if near else _options_hint()


def _parse_one(
    options: Mapping[str, Any], where: str, error: type[VgpubuildError]
) -> ProfileOverride:
    unknown = [k for k in options if k not in OVERRIDE_KEYS]
    if unknown:
        raise error(
            f"unknown option {where}.{unknown[0]}", hint=_closest(str(unknown[0]), OVERRIDE_KEYS)
        )

    def number(name: str, bounds: tuple[int, int], unit: str) -> int | None:
        value = options.get(name)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise error(f"{where}.{name} must be a whole number, not {value!r}")
        low, high = bounds
        if not low <= value <= high:
            raise error(
                f"{where}.{name} = {value} is out of range ({low} to {high} {unit})",
                hint=_RANGE_HINTS.get(name, "Pick a value inside the range."),
            )
        return value

    display = options.get("display")
    size: tuple[int, int] | None = None
    if display is not None:
        if not isinstance(display, Mapping):
            raise error(f"{where}.display must be a table with width and height")
        extra = [k for k in display if k not in ("width", "height")]
        if extra:
            raise error(
                f"unknown option {where}.display.{extra[0]}",
                hint=_closest(str(extra[0]), ("width", "height")),
            )
        width = _dim(display, "width", where, error)
        height = _dim(display, "height", where, error)
        if (width is None) != (height is None):
            raise error(
                f"{where}.display needs both width and height",
                hint="maxPixels is width*height, so give both (e.g. 1920x1080).",
            )
        size = None if width is None or height is None else (width, height)
    cuda = options.get("enableCuda")
    if cuda is not None and not isinstance(cuda, bool):
        raise error(f"{where}.enableCuda must be true or false, not {cuda!r}")
    return ProfileOverride(
        vram_mib=number("vramAllocation", VRAM_MIB_RANGE, "MiB"),
        heads=number("heads", HEADS_RANGE, "heads"),
        display=size,
        framerate_limit=number("framerateLimit", FRL_RANGE, "frames per second"),
        enable_cuda=cuda,
        xml_config=_xml_config(options.get("xmlConfig") or {}, where, error),
    )


_RANGE_HINTS = {
    "vramAllocation": "vramAllocation is the profile's size in MiB, e.g. 3584 for 3.5 GiB.",
    "heads": "heads is the number of virtual displays, usually 1 to 4.",
    "framerateLimit": "Use 0 to turn the frame-rate limiter off.",
}


def _dim(
    display: Mapping[str, Any], name: str, where: str, error: type[VgpubuildError]
) -> int | None:
    value = display.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise error(f"{where}.display.{name} must be a whole number of pixels, not {value!r}")
    low, high = DISPLAY_RANGE
    if not low <= value <= high:
        raise error(
            f"{where}.display.{name} = {value} is out of range ({low} to {high} pixels)",
            hint="NVIDIA's largest profile display is 7680x4320.",
        )
    return value


def _xml_config(table: Any, where: str, error: type[VgpubuildError]) -> dict[str, ElementValue]:
    if not isinstance(table, Mapping):
        raise error(f"{where}.xmlConfig must be a table of element names")
    out: dict[str, ElementValue] = {}
    for name, value in table.items():
        if not (isinstance(name, str) and _XML_NAME.fullmatch(name)):
            raise error(f"{where}.xmlConfig has an invalid element name {name!r}")
        if isinstance(value, Mapping):
            attrs: dict[str, str] = {}
            for attr, attr_value in value.items():
                if not (isinstance(attr, str) and _XML_NAME.fullmatch(attr)):
                    raise error(f"{where}.xmlConfig.{name} has an invalid attribute {attr!r}")
                attrs[attr] = _scalar(attr_value, f"{where}.xmlConfig.{name}.{attr}", error)
            out[name] = attrs
        else:
            out[name] = _scalar(value, f"{where}.xmlConfig.{name}", error)
    return out


def _scalar(value: Any, where: str, error: type[VgpubuildError]) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise error(
            f"{where} must be a string or a number, not {value!r}",
            hint='Write the text exactly as it goes in the XML, e.g. "0x3C" or "1".',
        )
    return str(value)
