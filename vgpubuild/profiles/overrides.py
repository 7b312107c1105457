"""Profile overrides (vgpu4nixos's ``profileOverrides.<id>``) applied to vgpuConfig.xml.

The same values as vgpu4nixos's xmlstarlet edits (see :mod:`vgpubuild.profiles.settings`),
but loudly: an unknown profile id is an error naming the closest ids, and an element that
is missing is created and reported instead of silently skipped. ``enableCuda`` (declared by
vgpu4nixos, never applied there) is written to
:data:`~vgpubuild.vgpuconfig.vocabulary.CUDA_ELEMENT`.
"""

from __future__ import annotations

from collections.abc import Mapping

from lxml import etree

from vgpubuild.errors import XmlConfigError
from vgpubuild.profiles.settings import ProfileOverride
from vgpubuild.vgpuconfig.model import VgpuConfig
from vgpubuild.vgpuconfig.vocabulary import parse_number


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


def _check_framebuffer(el: etree._Element, label: str) -> None:
    framebuffer = el.find("framebuffer")
    value = None if framebuffer is None else parse_number(framebuffer.text)
    if framebuffer is not None and (value is None or value <= 0):
        raise XmlConfigError(
            f"{label}: framebuffer would be {framebuffer.text!r}, not a positive size",
            hint="Use vramAllocation (framebuffer is derived) or give a positive hex size.",
        )
