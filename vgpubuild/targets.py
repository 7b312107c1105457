"""The ``patch.sh`` targets: one table of what each reads and what folder it writes.

Every other place (the config's valid values, the command line's help, which zip members
are extracted, which inputs are obtained, whether vgpuConfig.xml exists, the output
folder's name) reads this table, so a target is added or changed here alone.

A :class:`Target` is a string (``Target.GRID == "grid"``), so it goes into patch.sh's
command line, JSON and messages as itself. The command line imports this module at
start-up for its help text, so it stays light (no dataclasses, nothing third-party).
"""

from __future__ import annotations

import difflib
import enum
from collections.abc import Mapping
from typing import Literal, NamedTuple

from vgpubuild.errors import UsageError

Role = Literal["host", "guest", "general", "windows"]
"""An input of a build: the vgpu-kvm host driver, the grid guest driver, the consumer
("general") driver, the Windows guest installer."""

WSYS_DEFAULT = "NVIDIA-Windows-x86_64"
"""The Windows folder name when patch.sh has no WSYS line."""


class _Facts(NamedTuple):
    inputs: tuple[Role, ...]
    folder_line: str
    folder_suffix: str = ""


class Target(enum.StrEnum):
    """A driver target of ``patch.sh`` (its utility forms ``vcfg``/``remap-p2v`` are not)."""

    VGPU_KVM = "vgpu-kvm"
    GRID = "grid"
    GENERAL = "general"
    WSYS = "wsys"
    GRID_MERGE = "grid-merge"
    GENERAL_MERGE = "general-merge"
    VGPU_KVM_MERGE = "vgpu-kvm-merge"

    def __repr__(self) -> str:
        return repr(self.value)

    @property
    def inputs(self) -> tuple[Role, ...]:
        """The input files it reads (the general driver is not in the GRID zip)."""
        return _FACTS[self].inputs

    @property
    def has_vgpuconfig(self) -> bool:
        """Whether its tree has vgpuConfig.xml (only host drivers do)."""
        return "host" in self.inputs

    def output_name(self, expectations: Mapping[str, str]) -> str:
        """The folder ``patch.sh`` writes, from its GNRL/VGPU/GRID/WSYS lines."""
        facts = _FACTS[self]
        return f"{expectations.get(facts.folder_line, WSYS_DEFAULT)}{facts.folder_suffix}-patched"


_FACTS: dict[Target, _Facts] = {
    Target.VGPU_KVM: _Facts(("host",), "VGPU"),
    Target.GRID: _Facts(("guest",), "GRID"),
    Target.GENERAL: _Facts(("general",), "GNRL"),
    Target.WSYS: _Facts(("windows",), "WSYS"),
    Target.GRID_MERGE: _Facts(("host", "guest"), "GRID", "-vgpu-kvm"),
    Target.GENERAL_MERGE: _Facts(("host", "general"), "GNRL", "-merged-vgpu-kvm"),
    Target.VGPU_KVM_MERGE: _Facts(("host", "general"), "VGPU", "-merged"),
}

AUTO = "auto"
CHOICES: tuple[str, ...] = (AUTO, *Target)
"""Values of ``patcher.target`` and ``--target``: ``auto`` chooses as vgpu4nixos does."""


def get_target(name: str) -> Target:
    """The target called ``name``; an unknown one is a usage error naming the closest."""
    try:
        return Target(name)
    except ValueError:
        raise UsageError(f"unknown target {name!r}", hint=choices_hint(name)) from None


def choices_hint(name: str) -> str:
    """``Did you mean ...?`` for a misspelt target, then every valid value."""
    near = difflib.get_close_matches(name, CHOICES, n=1)
    lead = f"Did you mean {near[0]!r}? " if near else ""
    return lead + "Targets: " + ", ".join(CHOICES) + "."


def choose_target(guest: bool, merged: bool, requested: str = AUTO) -> Target:
    """The ``patch.sh`` target: vgpu4nixos's rule for ``auto``, else ``requested`` (checked).

    guest -> ``grid``; merged (host with the desktop driver) -> ``general-merge``; else
    ``vgpu-kvm``. An explicit target that contradicts ``guest``/``merged`` is an error.
    """
    rule = Target.GRID if guest else Target.GENERAL_MERGE if merged else Target.VGPU_KVM
    if requested == AUTO:
        return rule
    target = get_target(requested)
    if (guest or merged) and target != rule:
        flag = "--guest" if guest else "--merged"
        raise UsageError(
            f"target {requested!r} contradicts {flag}, which means {rule!r}",
            hint=f"Drop {flag} or use --target {rule} (or auto).",
        )
    return target
