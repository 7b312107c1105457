"""vgpu_unlock-rs ``profile_override.toml``: import into, and export from, profile overrides.

vgpu_unlock-rs changes profiles at run time from ``/etc/vgpu_unlock/profile_override.toml``
(sections ``[profile.nvidia-333]``); vgpubuild bakes the same changes into vgpuConfig.xml
at build time. These functions translate the fields that have a vgpuConfig.xml
counterpart and list the ones that do not (names, license strings, PCI ids, per-VM and
per-mdev sections), so nothing is dropped silently.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from typing import Any

from vgpubuild.errors import ConfigError
from vgpubuild.profiles.settings import ProfileOverride
from vgpubuild.vgpuconfig.vocabulary import CUDA_ELEMENT, parse_number, to_hex

# vgpuConfig.xml element -> vgpu_unlock-rs key, and whether the XML writes it in hex.
_FIELDS: dict[str, tuple[str, bool]] = {
    "numHeads": ("num_displays", False),
    "maxPixels": ("max_pixels", False),
    "frlConfig": ("frl_config", True),
    "frame_rate_limiter": ("frl_enabled", False),
    CUDA_ELEMENT: ("cuda_enabled", False),
    "eccSupported": ("ecc_supported", False),
    "multiVgpuSupported": ("multi_vgpu_supported", False),
    "framebuffer": ("framebuffer", True),
    "fbReservation": ("framebuffer_reservation", True),
    "mappableVideoSize": ("mappable_video_size", True),
    "encoderCapacity": ("encoder_capacity", True),
    "bar1Length": ("bar1_length", True),
}
_BY_KEY = {key: (element, is_hex) for element, (key, is_hex) in _FIELDS.items()}
_DISPLAY_KEYS = {"width": "display_width", "height": "display_height"}
_SECTION = re.compile(r"nvidia-([0-9]+)")
_HUMAN = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([KMGT]i?B|kB)?\s*")
_UNITS = {"KB": 10**3, "kB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}
_UNITS |= {"KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40}


def export_unlockrs(overrides: Mapping[int, ProfileOverride]) -> tuple[str, list[str]]:
    """``profile_override.toml`` text for ``overrides`` and the values it cannot carry."""
    lines = [
        "# vgpu_unlock-rs profile overrides written by vgpubuild (profiles export-unlockrs)",
        "# Install as /etc/vgpu_unlock/profile_override.toml.",
    ]
    skipped: list[str] = []
    for pid in sorted(overrides):
        fields: dict[str, int] = {}
        for element, value in overrides[pid].elements().items():
            if isinstance(value, dict):
                for attr, attr_value in value.items():
                    key = _DISPLAY_KEYS.get(attr) if element == "display" else None
                    number = parse_number(attr_value)
                    if key is None or number is None:
                        skipped.append(f"nvidia-{pid}: {element}@{attr}")
                    else:
                        fields[key] = number
                continue
            number = parse_number(value)
            if element not in _FIELDS or number is None:
                skipped.append(f"nvidia-{pid}: {element}")
                continue
            fields[_FIELDS[element][0]] = number
        lines += ["", f"[profile.nvidia-{pid}]"]
        lines += [f"{key} = {value}" for key, value in fields.items()]
    return "\n".join(lines) + "\n", skipped


def import_unlockrs(
    text: str, source: str = "profile_override.toml"
) -> tuple[dict[str, Any], list[str]]:
    """Read ``profile_override.toml`` into a ``profileOverrides`` table (NixOS shape).

    Returns the table and the keys/sections that have no vgpuConfig.xml counterpart.
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source} is not valid TOML: {exc}", hint="Fix the syntax.") from None
    skipped = [
        f"[{name}] (per-VM/per-mdev or custom settings)" for name in data if name != "profile"
    ]
    table: dict[str, Any] = {}
    profiles = data.get("profile", {})
    if not isinstance(profiles, Mapping):
        raise ConfigError(f"{source}: 'profile' must be a table of [profile.nvidia-ID] sections")
    for section, values in profiles.items():
        match = _SECTION.fullmatch(section)
        if match is None or not isinstance(values, Mapping):
            raise ConfigError(
                f"{source}: section [profile.{section}] does not name a profile",
                hint="Sections are [profile.nvidia-ID], ID being the vgpuType id.",
            )
        override, unmapped = _one(values, f"{source} [profile.{section}]")
        table[match.group(1)] = override
        skipped += [f"[profile.{section}] {key}" for key in unmapped]
    return table, skipped


def _one(values: Mapping[str, Any], where: str) -> tuple[dict[str, Any], list[str]]:
    numbers: dict[str, int] = {}
    unmapped: list[str] = []
    for key, value in values.items():
        if key in _BY_KEY or key in _DISPLAY_KEYS.values():
            numbers[key] = _number(value, f"{where} {key}")
        else:
            unmapped.append(key)
    out: dict[str, Any] = {}
    xml: dict[str, Any] = {}
    if "num_displays" in numbers:
        out["heads"] = numbers.pop("num_displays")
    _display(numbers, out, xml)
    if "cuda_enabled" in numbers:
        out["enableCuda"] = numbers.pop("cuda_enabled") != 0
    _frame_rate(numbers, out, xml)
    if "framebuffer" in numbers and "framebuffer_reservation" in numbers:
        xml["profileSize"] = to_hex(numbers["framebuffer"] + numbers["framebuffer_reservation"])
    for key, value in numbers.items():
        element, is_hex = _BY_KEY[key]
        xml[element] = to_hex(value) if is_hex else str(value)
    if xml:
        out["xmlConfig"] = xml
    return out, unmapped


def _display(numbers: dict[str, int], out: dict[str, Any], xml: dict[str, Any]) -> None:
    """Both sides become the ``display`` option; one side alone is written as it is."""
    if "display_width" in numbers and "display_height" in numbers:
        out["display"] = {
            "width": numbers.pop("display_width"),
            "height": numbers.pop("display_height"),
        }
    for side in ("width", "height"):
        if f"display_{side}" in numbers:
            xml["display"] = {side: str(numbers.pop(f"display_{side}"))}


def _frame_rate(numbers: dict[str, int], out: dict[str, Any], xml: dict[str, Any]) -> None:
    """``framerateLimit`` when the limiter flag agrees with the rate, else both raw values."""
    if "frl_config" not in numbers:
        return
    rate = numbers.pop("frl_config")
    enabled = numbers.pop("frl_enabled", 1 if rate > 0 else 0)
    if (rate > 0) == (enabled != 0):
        out["framerateLimit"] = rate
    else:
        xml["frlConfig"], xml["frame_rate_limiter"] = to_hex(rate), str(enabled)


def _number(value: Any, where: str) -> int:
    """An unsigned integer, or a quoted size like ``"3.5GiB"`` (vgpu_unlock-rs accepts both)."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    match = _HUMAN.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise ConfigError(
            f"{where} must be an unsigned number, not {value!r}",
            hint='Write a number, or a size such as "3584MiB".',
        )
    return round(float(match.group(1)) * _UNITS.get(match.group(2) or "", 1))
