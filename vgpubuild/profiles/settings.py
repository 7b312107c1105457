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
from types import MappingProxyType
from typing import Any

from vgpubuild.errors import ConfigError, VgpubuildError
from vgpubuild.vgpuconfig.vocabulary import CUDA_ELEMENT, MIB, to_hex

_PCI_PAIR = re.compile(r"(?:0[xX])?([0-9A-Fa-f]+):(?:0[xX])?([0-9A-Fa-f]+)")
_PCI_DIGITS = 4
"""PCI device and subsystem ids are 16-bit: at most four hex digits each (``01E07`` is not
an id, even though its value would fit)."""


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


@dataclass(frozen=True)
class _Report:
    """Where parsed values came from, and which error class a bad one raises.

    ``error`` is :class:`ConfigError` for a file, :class:`~vgpubuild.errors.UsageError` when
    the values came from the command line; ``source`` names the file in messages.
    """

    error: type[VgpubuildError] = ConfigError
    source: str | None = None

    @property
    def suffix(self) -> str:
        return f" in {self.source}" if self.source else ""

    def __call__(self, message: str, hint: str | None = None) -> VgpubuildError:
        return self.error(message, hint=hint)


def parse_pci_id(
    text: str, *, error: type[VgpubuildError] = ConfigError, where: str | None = None
) -> PciId:
    """Parse ``1E07:0000`` or ``0x1E07:0x0``: hex, any case, one to four digits each.

    ``where`` (``copyVGPUProfiles entry '1E07'``) leads the message of a bad one.
    """
    lead = f"{where}: " if where else ""
    match = _PCI_PAIR.fullmatch(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise error(
            f"{lead}{text!r} is not a PCI id pair DEVICE:SUBSYSTEM",
            hint="Write two hex numbers, e.g. 1E07:0000 or 0x1E30:0x12BA.",
        )
    if any(len(digits) > _PCI_DIGITS for digits in match.groups()):
        raise error(
            f"{lead}PCI id {text!r} is out of range",
            hint="PCI device and subsystem ids are 16-bit: at most 4 hex digits (0xFFFF) each.",
        )
    device, subsystem = (int(g, 16) for g in match.groups())
    return PciId(device, subsystem)


def parse_clone_map(
    table: Mapping[str, str],
    *,
    error: type[VgpubuildError] = ConfigError,
    where: str = "copyVGPUProfiles",
    source: str | None = None,
) -> list[tuple[PciId, PciId]]:
    """Validate ``copyVGPUProfiles`` (key: the new card, value: the card copied).

    Returns ``(new, source)`` pairs in the table's order, which is the order they run.
    """
    report = _Report(error, source)
    if not isinstance(table, Mapping):
        raise report(f'{where}{report.suffix} must be a table like {{"1E07:0000" = "1E30:12BA"}}')
    pairs: list[tuple[PciId, PciId]] = []
    for new_text, src_text in table.items():
        entry = f"{where} entry {new_text!r}{report.suffix}"
        if not isinstance(src_text, str):
            raise report(
                f'{entry} must be a "DEVICE:SUBSYSTEM" string',
                hint='Write it as in vgpu4nixos, e.g. "1E07:0000" = "1E30:12BA".',
            )
        new = parse_pci_id(new_text, error=error, where=entry)
        src = parse_pci_id(src_text, error=error, where=entry)
        if new == src:
            raise report(
                f"{entry} copies the card onto itself",
                hint="The key is the new card, the value the supported card to copy.",
            )
        pairs.append((new, src))
    return pairs


OVERRIDE_KEYS = ("vramAllocation", "heads", "enableCuda", "display", "framerateLimit", "xmlConfig")
"""The option names of vgpu4nixos's ``profileOverrides.<id>`` submodule."""
DISPLAY_KEYS = ("width", "height")
"""The options of ``profileOverrides.<id>.display``."""

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
_NOT_XML_CHAR = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
"""A character XML 1.0 cannot hold (control characters, lone surrogates, U+FFFE/U+FFFF)."""

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


OverrideMap = Mapping[int, ProfileOverride]
"""``profileOverrides`` parsed: an override by profile (``vgpuType``) id."""


def parse_overrides(
    table: Mapping[str, Any],
    *,
    error: type[VgpubuildError] = ConfigError,
    where: str = "profileOverrides",
    source: str | None = None,
) -> OverrideMap:
    """Validate a ``profileOverrides`` table (``{"333": {"vramAllocation": 3584}}``).

    ``where`` is the table's path in messages (``patcher.profileOverrides`` in a build
    config), ``source`` the file it came from.
    """
    report = _Report(error, source)
    if not isinstance(table, Mapping):
        raise report(f"{where}{report.suffix} must be a table of profile ids")
    parsed: dict[int, ProfileOverride] = {}
    for key, options in table.items():
        if not (isinstance(key, str) and key.isdigit()):
            raise report(
                f"{where} key {key!r}{report.suffix} is not a vgpuType id",
                hint=f'Use the numeric profile id, e.g. {where}."333" for profile nvidia-333.',
            )
        path = f"{where}.{key}"
        if not isinstance(options, Mapping):
            raise report(f"{path}{report.suffix} must be a table of options", hint=_options_hint())
        parsed[int(key)] = _parse_one(options, path, report)
    return MappingProxyType(parsed)


def _options_hint() -> str:
    return f"Valid options: {', '.join(OVERRIDE_KEYS)}."


def _check_keys(
    table: Mapping[str, Any], valid: tuple[str, ...], path: str, report: _Report
) -> None:
    unknown = [str(k) for k in table if k not in valid]
    if unknown:
        near = difflib.get_close_matches(unknown[0], valid, n=1, cutoff=0.4)
        hint = f"Did you mean {f'{path}.{near[0]}'!r}?" if near else _options_hint()
        raise report(f"unknown option {f'{path}.{unknown[0]}'!r}{report.suffix}", hint=hint)


def _parse_one(options: Mapping[str, Any], path: str, report: _Report) -> ProfileOverride:
    _check_keys(options, OVERRIDE_KEYS, path, report)

    def number(name: str, bounds: tuple[int, int], unit: str) -> int | None:
        return _bounded(options.get(name), f"{path}.{name}", bounds, unit, report)

    display = options.get("display")
    size: tuple[int, int] | None = None
    if display is not None:
        if not isinstance(display, Mapping):
            raise report(f"{path}.display{report.suffix} must be a table with width and height")
        _check_keys(display, DISPLAY_KEYS, f"{path}.display", report)
        width, height = (
            _bounded(display.get(side), f"{path}.display.{side}", DISPLAY_RANGE, "pixels", report)
            for side in DISPLAY_KEYS
        )
        if (width is None) != (height is None):
            raise report(
                f"{path}.display{report.suffix} needs both width and height",
                hint="maxPixels is width*height, so give both (e.g. 1920x1080).",
            )
        size = None if width is None or height is None else (width, height)
    cuda = options.get("enableCuda")
    if cuda is not None and not isinstance(cuda, bool):
        raise report(f"{path}.enableCuda{report.suffix} must be true or false, not {cuda!r}")
    return ProfileOverride(
        vram_mib=number("vramAllocation", VRAM_MIB_RANGE, "MiB"),
        heads=number("heads", HEADS_RANGE, "heads"),
        display=size,
        framerate_limit=number("framerateLimit", FRL_RANGE, "frames per second"),
        enable_cuda=cuda,
        xml_config=_xml_config(options.get("xmlConfig") or {}, f"{path}.xmlConfig", report),
    )


_RANGE_HINTS = {
    "vramAllocation": "vramAllocation is the profile's size in MiB, e.g. 3584 for 3.5 GiB.",
    "heads": "heads is the number of virtual displays, usually 1 to 4.",
    "framerateLimit": "Use 0 to turn the frame-rate limiter off.",
    "width": "NVIDIA's largest profile display is 7680x4320.",
    "height": "NVIDIA's largest profile display is 7680x4320.",
}


def _bounded(
    value: Any, path: str, bounds: tuple[int, int], unit: str, report: _Report
) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise report(f"{path}{report.suffix} must be a whole number, not {value!r}")
    low, high = bounds
    if not low <= value <= high:
        name = path.rsplit(".", 1)[-1]
        raise report(
            f"{path} = {value} is out of range ({low} to {high} {unit}){report.suffix}",
            hint=_RANGE_HINTS.get(name, "Pick a value inside the range."),
        )
    return value


def _xml_config(table: Any, path: str, report: _Report) -> dict[str, ElementValue]:
    if not isinstance(table, Mapping):
        raise report(f"{path}{report.suffix} must be a table of element names")
    out: dict[str, ElementValue] = {}
    for name, value in table.items():
        if not (isinstance(name, str) and _XML_NAME.fullmatch(name)):
            raise report(f"{path}{report.suffix} has an invalid element name {name!r}")
        if isinstance(value, Mapping):
            attrs: dict[str, str] = {}
            for attr, attr_value in value.items():
                if not (isinstance(attr, str) and _XML_NAME.fullmatch(attr)):
                    raise report(f"{path}.{name}{report.suffix} has an invalid attribute {attr!r}")
                attrs[attr] = _scalar(attr_value, f"{path}.{name}.{attr}", report)
            out[name] = attrs
        else:
            out[name] = _scalar(value, f"{path}.{name}", report)
    return out


def _scalar(value: Any, path: str, report: _Report) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise report(
            f"{path}{report.suffix} must be a string or a number, not {value!r}",
            hint='Write the text exactly as it goes in the XML, e.g. "0x3C" or "1".',
        )
    text = str(value)
    if bad := _NOT_XML_CHAR.search(text):
        raise report(
            f"{path}{report.suffix} holds the character U+{ord(bad.group()):04X}, which XML "
            "cannot hold",
            hint="Remove control characters from the value; XML text holds tab, newline "
            "and printable characters only.",
        )
    return text
