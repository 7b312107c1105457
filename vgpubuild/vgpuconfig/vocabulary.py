"""The words of vgpuConfig.xml that vgpubuild reads and writes, and how it spells numbers.

Kept apart from the parser so that configuration checking (which needs the names, not the
document) does not load lxml.
"""

from __future__ import annotations

import re

ROOT_TAG = "vgpuconfig"
CUDA_ELEMENT = "cudaEnabled"
"""The ``<vgpuType>`` child that enables CUDA. Not confirmed against an NVIDIA file here:
``cudaEnabled`` is the name public tools that read and generate vgpuConfig.xml use; if a
release spells it differently, this one constant changes."""
DISABLED_SUBSYSTEM_VENDOR = 0x9999
"""VUP 550.x disables a ``<pgpu>`` by setting its ``subsystemVendorId`` to this value."""
NVIDIA_VENDOR = 0x10DE

MIB = 1 << 20
"""vgpuConfig.xml gives sizes in bytes; vgpubuild and vgpu4nixos speak MiB."""

_NUMBER = re.compile(r"\s*(0[xX][0-9A-Fa-f]+|[0-9]+)\s*")


def parse_number(text: str | None) -> int | None:
    """Read an XML value as a number: ``0xE0000000``, ``0x3c`` or ``60``; None if absent.

    NVIDIA's files mix hex case and widths (``0x0``/``0x0000``), so values are compared
    as numbers, never as text.
    """
    if text is None:
        return None
    match = _NUMBER.fullmatch(text)
    if match is None:
        return None
    digits = match.group(1)
    # Decimal values may carry leading zeros (``0011``), which int(..., 0) refuses.
    return int(digits, 16) if digits[:2] in ("0x", "0X") else int(digits, 10)


def to_hex(value: int) -> str:
    """``0x`` + upper-case hex digits, as vgpu4nixos writes (nixpkgs ``lib.toHexString``)."""
    return f"0x{value:X}"
