"""vgpu_unlock-rs ``profile_override.toml``: import into, and export from, profile overrides.

vgpu_unlock-rs changes profiles at run time from ``/etc/vgpu_unlock/profile_override.toml``
(sections ``[profile.nvidia-333]``); vgpubuild bakes the same changes into vgpuConfig.xml
at build time. vgpu_unlock-rs reads each section into one struct whose field list and
types are :data:`FIELD_TYPES`; a value of the wrong type makes it reject the whole file,
so import refuses it too and export never writes one. Fields with a vgpuConfig.xml
counterpart are translated both ways, including the strings: ``features`` is the
``<license>`` text, ``card_name`` the ``name`` attribute of ``<vgpuType>`` and ``vgpu_type``
its ``class`` attribute. The rest (type ids, PCI ids, per-VM and per-mdev sections) are
listed, never dropped silently.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from vgpubuild.errors import ConfigError
from vgpubuild.profiles.settings import ProfileOverride
from vgpubuild.tables import parse_table
from vgpubuild.vgpuconfig.model import VgpuConfig
from vgpubuild.vgpuconfig.vocabulary import CUDA_ELEMENT, parse_number, to_hex

FieldType = Literal["u32", "u64", "human", "str"]
FIELD_TYPES: dict[str, FieldType] = {
    "gpu_type": "u32",
    "card_name": "str",
    "vgpu_type": "str",
    "features": "str",
    "max_instances": "u32",
    "num_displays": "u32",
    "display_width": "u32",
    "display_height": "u32",
    "max_pixels": "u32",
    "frl_config": "u32",
    "cuda_enabled": "u32",
    "ecc_supported": "u32",
    "mig_instance_size": "u32",
    "multi_vgpu_supported": "u32",
    "pci_id": "u64",
    "pci_device_id": "u64",
    "framebuffer": "human",
    "mappable_video_size": "human",
    "framebuffer_reservation": "human",
    "encoder_capacity": "u32",
    "bar1_length": "u64",
    "frl_enabled": "u32",
    "adapter_name": "str",
    "short_gpu_name": "str",
    "license_type": "str",
}
"""vgpu_unlock-rs's profile override struct: every field and its type. ``human`` is a u64
that may also be a quoted size such as ``"3584MiB"`` (only these three fields take one)."""

_LIMITS = {"u32": 2**32 - 1, "u64": 2**63 - 1, "human": 2**63 - 1}
"""Largest value of each integer type that a TOML file can hold (TOML integers are i64)."""

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
LICENSE_ELEMENT = "license"
TYPE_ATTRIBUTES = {"name": "card_name", "class": "vgpu_type"}
"""``<vgpuType>`` attribute -> vgpu_unlock-rs key."""
_STRING_BYTES = {"features": 127, "card_name": 63, "vgpu_type": 63}
"""Longest string vgpu_unlock-rs can store (its buffers hold a NUL too; names are 31 bytes
before the 580 drivers). A longer one makes it refuse the profile's whole override."""
_SECTION = re.compile(r"nvidia-([0-9]+)")
_UNITS = {"KB": 10**3, "kB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}
_UNITS |= {"KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40}


@dataclass(frozen=True)
class Imported:
    """A ``profile_override.toml`` read for vgpuConfig.xml."""

    overrides: dict[str, Any]
    """A ``profileOverrides`` table (the NixOS module's shape)."""
    attributes: dict[int, dict[str, str]] = field(default_factory=dict)
    """New ``name``/``class`` attributes of ``<vgpuType>``, by profile id (not expressible
    as a ``profileOverrides`` option, whose values are child elements)."""
    skipped: list[str] = field(default_factory=list)
    """Sections and keys with no vgpuConfig.xml counterpart."""


# ------------------------------------------------------------------------------ export


def export_unlockrs(
    overrides: Mapping[int, ProfileOverride],
    attributes: Mapping[int, Mapping[str, str]] | None = None,
) -> tuple[str, list[str]]:
    """``profile_override.toml`` text for ``overrides`` and the values it cannot carry.

    ``attributes`` are ``<vgpuType>`` ``name``/``class`` values by profile id (from an
    import), written as ``card_name``/``vgpu_type``.
    """
    lines = [
        "# vgpu_unlock-rs profile overrides written by vgpubuild (profiles export-unlockrs)",
        "# Install as /etc/vgpu_unlock/profile_override.toml.",
    ]
    skipped: list[str] = []
    attributes = attributes or {}
    for pid in sorted(set(overrides) | set(attributes)):
        fields: dict[str, int | str] = {}
        for attr, text in attributes.get(pid, {}).items():
            fields[TYPE_ATTRIBUTES[attr]] = text
        override = overrides.get(pid, ProfileOverride())
        for element, value in override.elements().items():
            if isinstance(value, dict):
                for attr, attr_value in value.items():
                    key = _DISPLAY_KEYS.get(attr) if element == "display" else None
                    number = parse_number(attr_value)
                    if key is None or number is None:
                        skipped.append(f"nvidia-{pid}: {element}@{attr}")
                    else:
                        fields[key] = number
            elif element == LICENSE_ELEMENT:
                fields["features"] = value
            elif element in _FIELDS and (number := parse_number(value)) is not None:
                fields[_FIELDS[element][0]] = number
            else:
                skipped.append(f"nvidia-{pid}: {element}")
        lines += ["", f"[profile.nvidia-{pid}]"]
        for key, field_value in fields.items():
            lines.append(f"{key} = {_toml_value(key, field_value, f'nvidia-{pid}: {key}')}")
    return "\n".join(lines) + "\n", skipped


def _toml_value(key: str, value: int | str, where: str) -> str:
    """``value`` as TOML, after the checks vgpu_unlock-rs would make when reading it."""
    value = _checked(key, value, where)
    if isinstance(value, int):
        return str(value)
    limit = _STRING_BYTES.get(key)
    if limit is not None and len(value.encode()) > limit:
        raise ConfigError(
            f"{where} is {len(value.encode())} bytes; vgpu_unlock-rs stores at most {limit}",
            hint="Shorten it (vgpu_unlock-rs would refuse the whole profile override).",
        )
    return json.dumps(value)  # a JSON string literal is a valid TOML basic string



# ------------------------------------------------------------------------------ import


def import_unlockrs(text: str, source: str = "profile_override.toml") -> Imported:
    """Read ``profile_override.toml`` with vgpu_unlock-rs's types, for vgpuConfig.xml."""
    data = parse_table(text, source, "toml")
    skipped = [
        f"[{name}] (per-VM/per-mdev or custom settings)" for name in data if name != "profile"
    ]
    table: dict[str, Any] = {}
    attributes: dict[int, dict[str, str]] = {}
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
        where = f"{source} [profile.{section}]"
        checked = {key: _checked(key, value, f"{where} {key}") for key, value in values.items()}
        override, attrs, unmapped = _one(checked)
        if override:
            table[match.group(1)] = override
        if attrs:
            attributes[int(match.group(1))] = attrs
        skipped += [f"[profile.{section}] {key}" for key in unmapped]
    return Imported(table, attributes, skipped)


def apply_type_attributes(
    config: VgpuConfig, attributes: Mapping[int, Mapping[str, str]]
) -> list[str]:
    """Set imported ``name``/``class`` attributes on their ``<vgpuType>``; one line per change.

    Every id is looked up before anything changes, so an unknown one leaves ``config`` as it was.
    """
    targets = {pid: config.find_type(pid) for pid in sorted(attributes)}
    changes = []
    for pid, el in targets.items():
        for attr, value in attributes[pid].items():
            old = config.set_attr(el, attr, value)
            if old != value:
                changes.append(f"nvidia-{pid}: {attr} {old!r} -> {value!r}")
    return changes


_ATTRIBUTE_OF = {key: attr for attr, key in TYPE_ATTRIBUTES.items()}


def _one(values: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str], list[str]]:
    """One checked section: its profileOverrides entry, its attributes, its unmapped keys."""
    numbers: dict[str, int] = {}
    unmapped: list[str] = []
    xml: dict[str, Any] = {}
    attrs: dict[str, str] = {}
    for key, value in values.items():
        if key in _BY_KEY or key in _DISPLAY_KEYS.values():
            numbers[key] = value
        elif key == "features":
            xml[LICENSE_ELEMENT] = value
        elif key in _ATTRIBUTE_OF:
            attrs[_ATTRIBUTE_OF[key]] = value
        else:
            unmapped.append(key)
    out: dict[str, Any] = {}
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
    return out, attrs, unmapped


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


# ------------------------------------------------------------------------------- types


def _checked(key: str, value: Any, where: str) -> Any:
    """``value`` as vgpu_unlock-rs reads field ``key``; an error where it would refuse it.

    Unknown keys are passed through as they are (vgpu_unlock-rs ignores them).
    """
    kind = FIELD_TYPES.get(key)
    if kind is None:
        return value
    if kind == "str":
        if not isinstance(value, str):
            raise ConfigError(
                f"{where} must be a string for vgpu_unlock-rs, not {value!r}",
                hint='Quote it, e.g. card_name = "GRID RTX6000-4Q".',
            )
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        if 0 <= value <= _LIMITS[kind]:
            return value
        raise ConfigError(
            f"{where} = {value} is out of range for vgpu_unlock-rs (0 to {_LIMITS[kind]})",
            hint="Write an unsigned number that fits the field.",
        )
    if kind == "human" and isinstance(value, str):
        return _human_number(value, where)
    quoted = ' or a quoted size such as "3584MiB"' if kind == "human" else ""
    raise ConfigError(
        f"{where} must be an unsigned number{quoted} for vgpu_unlock-rs, not {value!r}",
        hint="Only framebuffer, mappable_video_size and framebuffer_reservation take a quoted "
        "size; write the others as bare numbers.",
    )


def _human_number(text: str, where: str) -> int:
    """A quoted size, read as vgpu_unlock-rs reads it: ``"3584MiB"``, ``"3.5 GiB"``, ``"60"``."""
    value = text.strip()
    split = next((n for n, ch in enumerate(value) if not (ch.isnumeric() or ch == ".")), None)
    number, unit = (value, "") if split is None else (value[:split], value[split:].lstrip())
    bad = ConfigError(
        f"{where} = {text!r} is not a size vgpu_unlock-rs understands",
        hint="Write a number with an optional unit: KB, kB, MB, GB, TB, KiB, MiB, GiB or TiB "
        '(e.g. "3584MiB").',
    )
    if split is None:
        if not number.isascii() or not number.isdigit() or int(number) > _LIMITS["human"]:
            raise bad
        return int(number)
    if unit not in _UNITS or not re.fullmatch(r"[0-9]*\.?[0-9]*", number) or number in ("", "."):
        raise bad
    return min(math.floor(float(number) * _UNITS[unit] + 0.5), 2**64 - 1)
