"""Profile overrides: vgpu4nixos's ``profileOverrides.<id>`` applied to vgpuConfig.xml.

vgpu4nixos turns each override into ``xmlstarlet ed -P -u '/vgpuconfig/vgpuType[@id="ID"]/ELEM/text()' -v VALUE``;
this module computes the same values with the same formulas and writes the same strings
(hex in upper case, as nixpkgs ``lib.toHexString`` gives), but loudly: an unknown profile
id is an error naming the closest ids, an element that is missing is created and reported
instead of silently skipped, values are range-checked, and ``enableCuda`` (declared by
vgpu4nixos, never applied) is written to :data:`~vgpubuild.vgpuconfig.CUDA_ELEMENT`.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from vgpubuild.errors import ConfigError, VgpubuildError, XmlConfigError
from vgpubuild.vgpuconfig import CUDA_ELEMENT, VgpuConfig, parse_number

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
_MIB = 1048576

ElementValue = str | dict[str, str]
"""An element's new text, or ``{attribute: value}`` for its attributes."""


def to_hex(value: int) -> str:
    """``0x`` + upper-case hex digits, as vgpu4nixos writes (nixpkgs ``lib.toHexString``)."""
    return f"0x{value:X}"


def vram_values(mib: int) -> dict[str, str]:
    """profileSize, fbReservation and framebuffer for ``mib`` MiB (vgpu4nixos's formula).

    ``profileSize = M*1048576``, ``fbReservation = 134217728 + (M-1024)*65536``,
    ``framebuffer = profileSize - fbReservation``; 3584 gives 0xE0000000, 0x12000000 and
    0xCE000000.
    """
    size = mib * _MIB
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


def apply_overrides(config: VgpuConfig, overrides: Mapping[int, ProfileOverride]) -> list[str]:
    """Apply validated overrides; returns one line per changed or created value.

    Every id is checked before anything changes, so an unknown id leaves ``config``
    untouched.
    """
    targets = {pid: config.find_type(pid) for pid in sorted(overrides)}
    changes: list[str] = []
    for pid, el in targets.items():
        label = f"nvidia-{pid} ({el.get('name', '?')})"
        for name, value in overrides[pid].elements().items():
            child, created = config.ensure_child(el, name)
            if isinstance(value, str):
                old = config.set_text(child, value)
                if created:
                    changes.append(f"{label}: created <{name}>{value}</{name}>")
                elif old != value:
                    changes.append(f"{label}: {name} {old} -> {value}")
                continue
            if created:
                changes.append(f"{label}: created <{name}>")
            for attr, attr_value in value.items():
                old = config.set_attr(child, attr, attr_value)
                if old is None:
                    changes.append(f"{label}: {name}@{attr} created = {attr_value}")
                elif old != attr_value:
                    changes.append(f"{label}: {name}@{attr} {old} -> {attr_value}")
        _check_framebuffer(el, label)
    return changes


def _check_framebuffer(el: Any, label: str) -> None:
    framebuffer = el.find("framebuffer")
    value = None if framebuffer is None else parse_number(framebuffer.text)
    if framebuffer is not None and (value is None or value <= 0):
        raise XmlConfigError(
            f"{label}: framebuffer would be {framebuffer.text!r}, not a positive size",
            hint="Use vramAllocation (framebuffer is derived) or give a positive hex size.",
        )
