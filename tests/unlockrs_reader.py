"""A reader of ``profile_override.toml`` that enforces vgpu_unlock-rs's own types.

Written for the tests from vgpu_unlock-rs's profile override struct (``VgpuProfileOverride``
in its ``src/lib.rs``) and its ``human_number`` deserializer, independently of
``vgpubuild.unlockrs``: what vgpubuild exports must be a file vgpu_unlock-rs accepts, with
every value of the type its field has. serde ignores unknown keys and unknown top-level
tables; the reader reports them so a test can see them.
"""

from __future__ import annotations

import tomllib
from typing import Any

# The struct, field by field: Option<u32>, Option<u64>, Option<String>, or Option<u64>
# read "with = human_number" (a number, or a string such as "3.5GiB").
STRUCT = """
gpu_type u32
card_name String
vgpu_type String
features String
max_instances u32
num_displays u32
display_width u32
display_height u32
max_pixels u32
frl_config u32
cuda_enabled u32
ecc_supported u32
mig_instance_size u32
multi_vgpu_supported u32
pci_id u64
pci_device_id u64
framebuffer human
mappable_video_size human
framebuffer_reservation human
encoder_capacity u32
bar1_length u64
frl_enabled u32
adapter_name String
short_gpu_name String
license_type String
"""
TYPES = dict(line.split() for line in STRUCT.strip().splitlines())
SECTIONS = ("profile", "mdev", "vm")
MULTIPLES = {
    "KB": 1000,
    "kB": 1000,
    "MB": 1000**2,
    "GB": 1000**3,
    "TB": 1000**4,
    "KiB": 1024,
    "MiB": 1024**2,
    "GiB": 1024**3,
    "TiB": 1024**4,
}


class Rejected(ValueError):
    """vgpu_unlock-rs would fail to read the file."""


def _human(value: str) -> int:
    text = value.strip()
    if not text:
        raise Rejected("empty human number")
    unit_at = [n for n, ch in enumerate(text) if not (ch.isnumeric() or ch == ".")]
    if not unit_at:
        if not (text.isascii() and text.isdigit()):
            raise Rejected(f"{value!r} is not a u64")
        return int(text)
    digits, unit = text[: unit_at[0]], text[unit_at[0] :].lstrip()
    if unit not in MULTIPLES:
        raise Rejected(f"unknown unit {unit!r}")
    try:
        number = float(digits)
    except ValueError:
        raise Rejected(f"{digits!r} is not a number") from None
    if not digits.replace(".", "").isascii():
        raise Rejected(f"{digits!r} is not a number")
    return int(number * MULTIPLES[unit] + 0.5)


def _field(name: str, value: Any) -> int | str:
    kind = TYPES[name]
    if kind == "String":
        if not isinstance(value, str):
            raise Rejected(f"{name}: expected a string, got {value!r}")
        return value
    if kind == "human" and isinstance(value, str):
        return _human(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise Rejected(f"{name}: expected {kind}, got {value!r}")
    top = 2**32 - 1 if kind == "u32" else 2**64 - 1
    if not 0 <= value <= top:
        raise Rejected(f"{name}: {value} does not fit {kind}")
    return value


def read(text: str) -> tuple[dict[str, dict[str, dict[str, int | str]]], list[str]]:
    """The sections as vgpu_unlock-rs sees them, and what it would ignore."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise Rejected(str(exc)) from None
    ignored = [f"[{key}]" for key in data if key not in SECTIONS]
    parsed: dict[str, dict[str, dict[str, int | str]]] = {}
    for section in SECTIONS:
        table = data.get(section, {})
        if not isinstance(table, dict):
            raise Rejected(f"{section} must be a table")
        parsed[section] = {}
        for name, fields in table.items():
            if not isinstance(fields, dict):
                raise Rejected(f"{section}.{name} must be a table")
            parsed[section][name] = {}
            for key, value in fields.items():
                if key in TYPES:
                    parsed[section][name][key] = _field(key, value)
                else:
                    ignored.append(f"{section}.{name}.{key}")
    return parsed, ignored
