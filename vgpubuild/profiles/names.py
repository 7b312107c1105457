"""The names a person types for profiles and their XML, and the closest one when it is wrong.

A profile is known by three names: its ``vgpuType`` id (``333``), the sysfs type name
``nvidia-333`` (what ``mdevctl`` and vgpubuild's own messages print) and its profile name
(``GRID RTX6000-1Q``). All three are accepted wherever a profile is named on the command
line.

Raw edits (``profiles override --set ELEM=V`` / ``ELEM@ATTR=V``) are checked against the
element and attribute names the file's profiles already use: a typo (``eccSuported``) would
otherwise create a junk element NVIDIA's driver ignores, the silent failure this tool
exists to prevent. ``--create`` says the new name is meant.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping

from vgpubuild.errors import XmlConfigError
from vgpubuild.vgpuconfig.model import VgpuConfig

SYSFS_PREFIX = "nvidia-"


def resolve_profile(config: VgpuConfig, text: str) -> int:
    """The vgpuType id ``text`` names: ``333``, ``nvidia-333`` or ``GRID RTX6000-1Q``."""
    raw = text.strip()
    number = raw.removeprefix(SYSFS_PREFIX)
    if number.isdigit():
        config.find_type(int(number))  # an unknown id: the error names the likely one
        return int(number)
    names = {
        (el.get("name") or "").casefold(): int(el.get("id") or -1)
        for el in config.type_elements()
        if (el.get("id") or "").isdigit()
    }
    for candidate in (raw.casefold(), f"grid {raw}".casefold()):
        if candidate in names:
            return names[candidate]
    shown = {el.get("name") or "" for el in config.type_elements()}
    near = difflib.get_close_matches(raw, sorted(shown), n=1, cutoff=0.5)
    raise XmlConfigError(
        f"{config.source} has no profile named {raw!r}",
        hint=(f"Did you mean {near[0]!r}? " if near else "")
        + "Name a profile by its id (333), nvidia-333 or its name; "
        "list them with: vgpubuild profiles list --xml FILE.",
    )


def known_names(config: VgpuConfig) -> dict[str, set[str]]:
    """Every element name the profiles use, with the attribute names seen on it."""
    names: dict[str, set[str]] = {}
    for profile in config.type_elements():
        for child in profile:
            if isinstance(child.tag, str):
                names.setdefault(child.tag, set()).update(str(a) for a in child.attrib)
    return names


def _unknown(what: str, name: str, source: str, choices: Iterable[str]) -> XmlConfigError:
    near = difflib.get_close_matches(name, sorted(choices), n=1, cutoff=0.6)
    guess = f"Did you mean {near[0]!r}? " if near else ""
    return XmlConfigError(
        f"no profile in {source} has {what}", hint=f"{guess}Pass --create to add it anyway."
    )


def check_raw_names(config: VgpuConfig, edits: Mapping[str, str | Mapping[str, str]]) -> None:
    """Refuse element or attribute names no profile in ``config`` uses (see module doc)."""
    known = known_names(config)
    for element, value in edits.items():
        if element not in known:
            raise _unknown(f"an element <{element}>", element, config.source, known)
        if isinstance(value, Mapping):
            for attr in value:
                if attr not in known[element]:
                    what = f"an attribute {attr!r} on <{element}>"
                    raise _unknown(what, attr, config.source, known[element])
