"""Which vGPU releases a GPU can run, and how: native, a clone, a clone of your own, or not.

The answer is assembled from facts vgpubuild already holds, never from a table of GPU names:

* vGPU-Unlock-patcher's built-in clone list of the release's branch (which consumer cards
  ``patch.sh`` gives a supported card's profiles, and from which card), read through
  :func:`patcher_branch` alone;
* the release's ``vgpuConfig.xml`` when the user has it (every ``<pgpu>`` NVIDIA supports);
* the card's name in the system's ``pci.ids``: its chip (``AD102``) gives the architecture,
  and GeForce/TITAN marks a consumer card, which NVIDIA never supports natively. A consumer
  card of an architecture the clone list does not unlock (Ampere, Ada, ...) cannot be
  unlocked; one of an architecture it does unlock, but not on the list, can be tried with
  a ``copyVGPUProfiles`` line from the source the list uses for its architecture.

A ``<pgpu>`` (or a clone line) with subsystem id 0 stands for every board with that device
id, which is how ``1B38:0`` covers each Tesla P40 and ``1E84:0000`` each RTX 2070 SUPER.
"""

from __future__ import annotations

import functools
import re
import tomllib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from vgpubuild.catalog import Release
from vgpubuild.pciids import PciNames
from vgpubuild.profiles.settings import PciId, parse_pci_id
from vgpubuild.releasexml import ReleaseXml
from vgpubuild.resources import data_dir
from vgpubuild.targets import choose_target

NVIDIA = 0x10DE
Status = Literal["native", "clone", "user-clone", "unsupported", "unknown"]
WORKS: tuple[Status, ...] = ("native", "clone", "user-clone")

_ARCHITECTURES = {
    "GF": "Fermi",
    "GK": "Kepler",
    "GM": "Maxwell",
    "GP": "Pascal",
    "GV": "Volta",
    "TU": "Turing",
    "GA": "Ampere",
    "AD": "Ada",
    "GH": "Hopper",
    "GB": "Blackwell",
}
"""NVIDIA chip name prefixes (the ``AD102`` of ``AD102 [GeForce RTX 4090]``)."""
_CHIP = re.compile(r"(" + "|".join(_ARCHITECTURES) + r")\d{2,3}[A-Z]{0,2}\b")
_CONSUMER = re.compile(r"\b(GeForce|TITAN|Titan)\b")
_MARKETING = re.compile(r"\[(.+)\]")


# ------------------------------------------------------------ vGPU-Unlock-patcher facts


@dataclass(frozen=True)
class Clone:
    """One line of a branch's built-in clone list: ``new`` gets ``source``'s profiles."""

    new: PciId
    source: PciId
    remap_only: bool
    """patch.sh runs this line only with ``--remap-p2v``."""


@dataclass(frozen=True)
class PatcherBranch:
    """What a release's vGPU-Unlock-patcher branch does to vgpuConfig.xml."""

    series: str
    clones: tuple[Clone, ...]
    remap_p2v: bool
    """Its patch.sh has ``--remap-p2v``."""
    p40: PciId
    """The card whose (``GRID P40-*``) profiles ``--remap-p2v`` renames."""


def patcher_branch(release: Release) -> PatcherBranch | None:
    """The patcher facts of ``release``'s branch; None when no patcher supports it.

    The one place ``vgpubuild gpus`` reads them: repoint this function, and only this,
    when they come from another source (the patch.sh being run).
    """
    if release.patcher is None:
        return None
    return _branch(release.host_version.split(".", 1)[0])


@functools.cache
def _branch(series: str) -> PatcherBranch:
    with (data_dir("profiles") / "clones.toml").open("rb") as f:
        rows = tomllib.load(f)["clone"]
    clones = tuple(
        Clone(parse_pci_id(r["new"]), parse_pci_id(r["source"]), bool(r.get("remap_p2v")))
        for r in rows
        if series in r["series"]
    )
    with (data_dir("profiles") / "p2v.toml").open("rb") as f:
        p40 = parse_pci_id(tomllib.load(f)["card"])
    # A branch has --remap-p2v exactly when its list has a line that only runs with it.
    return PatcherBranch(series, clones, any(c.remap_only for c in clones), p40)


# ----------------------------------------------------------------------------- cards


@dataclass(frozen=True)
class Card:
    """A GPU to judge: its ids and its ``pci.ids`` name (None when the database lacks it)."""

    device: int
    subsystem: int
    name: str | None

    @property
    def chip(self) -> str | None:
        match = _CHIP.match(self.name or "")
        return match.group(0) if match else None

    @property
    def architecture(self) -> str | None:
        chip = self.chip
        return _ARCHITECTURES[chip[:2]] if chip else None

    @property
    def consumer(self) -> bool:
        """A GeForce or TITAN card (NVIDIA's vGPU drivers support none natively)."""
        return bool(_CONSUMER.search(self.name or ""))

    def matches(self, pci: PciId) -> bool:
        """True when ``pci`` (a ``<pgpu>`` or clone line) stands for this card."""
        return pci.device == self.device and pci.subsystem in (0, self.subsystem)


def card_of(device: int, subsystem: int, names: PciNames | None) -> Card:
    return Card(device, subsystem, names.device(NVIDIA, device) if names else None)


def label(pci: PciId, names: PciNames | None) -> str:
    """``Tesla P40 (1B38:0000)``: the marketing name from pci.ids when it has one."""
    name = names.device(NVIDIA, pci.device) if names else None
    marketing = _MARKETING.search(name or "")
    name = marketing.group(1) if marketing else name
    return f"{name} ({pci})" if name else str(pci)


# --------------------------------------------------------------------------- verdicts


@dataclass(frozen=True)
class Verdict:
    """What a card can do with one release."""

    release: str
    status: Status
    reason: str
    source: PciId | None = None
    """The card whose profiles it gets (``clone``/``user-clone``)."""
    remap_p2v: bool = False
    """The build needs ``--remap-p2v`` (``remapP40ProfilesToV100D``)."""
    target: str | None = None
    """The ``patch.sh`` target ``auto`` picks for a host; None when no patcher runs."""

    def to_json(self) -> dict[str, Any]:
        return {
            "release": self.release,
            "status": self.status,
            "reason": self.reason,
            "source": str(self.source) if self.source else None,
            "remap_p2v": self.remap_p2v,
            "target": self.target,
        }


@dataclass
class Knowledge:
    """What the judgement may use beyond the card: names, and vgpuConfig.xml per release."""

    names: PciNames | None
    xml: dict[str, ReleaseXml] = field(default_factory=dict)
    _pgpus: dict[str, list[PciId]] = field(default_factory=dict)

    def pgpus(self, release: str) -> list[PciId]:
        """The enabled ``<pgpu>`` ids of the release's vgpuConfig.xml (which must be known)."""
        if release not in self._pgpus:
            self._pgpus[release] = [
                PciId(p.device_id or 0, p.subsystem_id or 0)
                for p in self.xml[release].parse().pgpus
                if not p.disabled
            ]
        return self._pgpus[release]


def _needs_remap(branch: PatcherBranch | None, profiles_of: PciId) -> bool:
    """Cards running the P40's profiles need --remap-p2v on a branch that has it."""
    return branch is not None and branch.remap_p2v and profiles_of == branch.p40


def judge(card: Card, release: Release, know: Knowledge) -> Verdict:
    """The verdict for ``card`` on ``release`` (see the module docstring for the rules)."""
    branch = patcher_branch(release)
    verdict = functools.partial(Verdict, release.version, target=_auto_target() if branch else None)
    names = know.names
    for clone in branch.clones if branch else ():
        if card.matches(clone.new):
            remap = clone.remap_only or _needs_remap(branch, clone.source)
            why = f"patch.sh's built-in list clones it from {label(clone.source, names)}"
            if clone.remap_only:
                why += ", only with --remap-p2v"
            elif remap:
                why += "; this release's guests need the P40 profiles remapped"
            return verdict("clone", why, source=clone.source, remap_p2v=remap)
    sources = {c.source for c in branch.clones} if branch else set()
    own = next((s for s in sources if card.matches(s)), None)
    if own is not None:
        remap = _needs_remap(branch, own)
        why = "patch.sh clones other cards from it, so the patched vgpuConfig.xml lists it"
        if remap:
            why += "; this release's guests need its P40 profiles remapped"
        return verdict("native", why, remap_p2v=remap)
    xml = know.xml.get(release.version)
    if xml is not None:
        for new, src in xml.user_clones.items():
            if card.matches(parse_pci_id(new)):
                source = parse_pci_id(src)
                why = f"{xml.origin} was built with copyVGPUProfiles from {label(source, names)}"
                return verdict(
                    "user-clone", why, source=source, remap_p2v=_needs_remap(branch, source)
                )
        if any(card.matches(p) for p in know.pgpus(release.version)):
            return verdict("native", f"{xml.origin} lists it")
    return _not_listed(card, branch, know, verdict, xml is not None)


def _not_listed(
    card: Card,
    branch: PatcherBranch | None,
    know: Knowledge,
    verdict: Callable[..., Verdict],
    xml_checked: bool,
) -> Verdict:
    """A card neither the clone list nor vgpuConfig.xml names: reason from its architecture."""
    xml_hint = (
        "not in its vgpuConfig.xml"
        if xml_checked
        else "NVIDIA's own support is in the release's vgpuConfig.xml (vgpubuild add its "
        "GRID zip, or pass --xml)"
    )
    arch = card.architecture
    if arch is None:
        why = "pci.ids has no name for it" if know.names else "no pci.ids database was found"
        return verdict("unknown", f"{why}, so its architecture is unknown; {xml_hint}")
    unlocked = _unlocked(branch, know.names)
    if arch in unlocked and (card.consumer or xml_checked):
        source = _source_for(card, unlocked[arch], know.names)
        why = (
            f"not on patch.sh's built-in list; {arch} cards are unlocked by cloning "
            f"{label(source, know.names)}: add copyVGPUProfiles (untested by the patcher)"
        )
        return verdict("user-clone", why, source=source, remap_p2v=_needs_remap(branch, source))
    if arch in unlocked:
        source = _source_for(card, unlocked[arch], know.names)
        return verdict(
            "unknown",
            f"{xml_hint}; if it is not there, copyVGPUProfiles from "
            f"{label(source, know.names)} may unlock it",
        )
    if card.consumer:
        kind = "GeForce/TITAN"
        if branch is None:
            why = f"NVIDIA supports no {kind} card, and no patcher branch unlocks this release"
        else:
            archs = ", ".join(sorted(unlocked)) or "no"
            why = (
                f"consumer {arch} cards cannot be unlocked: vGPU-Unlock-patcher unlocks "
                f"{archs} cards only"
            )
        return verdict("unsupported", why)
    if xml_checked:
        return verdict("unsupported", f"{arch} card {xml_hint}, and not one a clone unlocks")
    return verdict("unknown", xml_hint)


def _unlocked(branch: PatcherBranch | None, names: PciNames | None) -> dict[str, list[Clone]]:
    """The branch's clone lines by the architecture of the cards they unlock."""
    by_arch: dict[str, list[Clone]] = {}
    for clone in branch.clones if branch else ():
        arch = card_of(clone.new.device, clone.new.subsystem, names).architecture
        if arch and not clone.remap_only:
            by_arch.setdefault(arch, []).append(clone)
    return by_arch


def _source_for(card: Card, clones: list[Clone], names: PciNames | None) -> PciId:
    """The list's source for a card like this: one of the same chip, else the commonest."""
    chip = card.chip
    for clone in clones:
        source_chip = card_of(clone.source.device, 0, names).chip
        if chip and source_chip and source_chip.startswith(chip[:5]):
            return clone.source
    return Counter(c.source for c in clones).most_common(1)[0][0]


def _auto_target() -> str:
    return str(choose_target(guest=False, merged=False))


def recommend(verdicts: list[Verdict]) -> Verdict | None:
    """The newest release that works, preferring built-in support over a clone of one's own."""
    for wanted in (("native", "clone"), ("user-clone",)):
        for v in reversed(verdicts):
            if v.status in wanted:
                return v
    return None
