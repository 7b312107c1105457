"""patch.sh's vgpuConfig.xml steps, replayed with the user's clones first (vgpu4nixos's order).

vgpu4nixos inserts the user's ``vcfgclone`` lines into ``patch.sh`` right before its first
built-in one, so the user's clones run first and the built-in list after them, with the
branch's semantics (on 550.90 a built-in line then disables what the user cloned to the
same card). vgpubuild gets the same file without editing the clone list: it has the staged
``patch.sh`` copy the file aside at that very line (:func:`snapshot_script`), lets the
script run unchanged, and then replays from that copy (:func:`replay`): the user's clones
(compared as numbers, a missing source is an error), then every built-in step after that
line which runs for the target and options (a missing source does nothing, as in VUP).

The same replay without the user's clones must give exactly what ``patch.sh`` wrote; every
build checks that (:func:`first_difference`), so the model of the branch is proven against
the real script each time, and a mismatch stops the build naming the first ``<pgpu>`` that
differs. The snapshot is taken after everything the script does before its clone list
(remap-p2v, and its own patches of vgpuConfig.xml, which add cards such as the M60 that
535's list clones from), so none of that needs a model.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vgpubuild.errors import PatcherError
from vgpubuild.patchercontract import Contract, Step
from vgpubuild.profiles.clones import clone_builtin, copy_profiles
from vgpubuild.profiles.remap import remap_p2v_profiles
from vgpubuild.profiles.settings import PciId, parse_pci_id
from vgpubuild.vgpuconfig.model import VgpuConfig
from vgpubuild.vgpuconfig.vocabulary import parse_number


def first_clone(contract: Contract) -> Step:
    """The first built-in vcfgclone line (where vgpu4nixos puts the user's clones)."""
    step = next((s for s in contract.steps if s.kind == "clone"), None)
    if step is None:
        raise PatcherError(
            f"patch.sh of branch {contract.branch} has no built-in vcfgclone line",
            hint="vgpubuild places copied profiles where the branch's own list starts; "
            "use a branch that has one, or drop copyVGPUProfiles.",
        )
    return step


def insert_before_first_clone(text: str, contract: Contract, lines: Sequence[str]) -> str:
    """``text`` (the script ``contract`` was read from) with ``lines`` before its first
    built-in vcfgclone line, indented like it."""
    step = first_clone(contract)
    rows = text.splitlines(keepends=True)
    at = step.line - 1
    if at > 0 and rows[at - 1].rstrip("\r\n").endswith("\\"):
        raise PatcherError(
            f"patch.sh of branch {contract.branch}: line {step.line} continues line {at}",
            hint="vgpubuild cannot insert a line there; report this patcher branch.",
        )
    indent = rows[at][: len(rows[at]) - len(rows[at].lstrip())]
    return "".join([*rows[:at], *(f"{indent}{line}\n" for line in lines), *rows[at:]])


def snapshot_script(patch_sh: Path, contract: Contract, snapshot: Path) -> None:
    """Make the staged ``patch_sh`` copy its vgpuConfig.xml to ``snapshot`` right before its
    first built-in vcfgclone line (the only change vgpubuild makes to the script)."""
    step = first_clone(contract)
    line = f"cp {step.xml} {shlex.quote(str(snapshot))}"
    text = patch_sh.read_text(encoding="utf-8", errors="surrogateescape")
    patch_sh.write_text(
        insert_before_first_clone(text, contract, [line]),
        encoding="utf-8",
        errors="surrogateescape",
    )


def builtin_steps(contract: Contract, target: str, args: Sequence[str]) -> list[Step]:
    """The built-in steps from the first vcfgclone line on that run for ``target``/``args``."""
    first = contract.steps.index(first_clone(contract))
    return [s for s in contract.steps[first:] if contract.runs(s.when, target, args)]


def replay(
    config: VgpuConfig,
    contract: Contract,
    target: str,
    args: Sequence[str],
    user: Sequence[tuple[PciId, PciId]] = (),
) -> list[str]:
    """Apply the user's ``(new, source)`` clones, then the built-in steps, to ``config``.

    Returns the changes the user's clones made (the built-in ones are patch.sh's own).
    """
    changes = copy_profiles(config, list(user), contract.clone_disables)
    for step in builtin_steps(contract, target, args):
        if step.kind == "remap":
            remap_p2v_profiles(config)
            continue
        src = parse_pci_id(f"{step.ids[0]}:{step.ids[1]}", error=PatcherError)
        dst = parse_pci_id(f"{step.ids[2]}:{step.ids[3]}", error=PatcherError)
        clone_builtin(config, src, dst, contract.clone_disables)
    return changes


# ----------------------------------------------------------------------- comparing


def _canonical(el: Any) -> tuple[Any, ...]:
    """An element as numbers where its values are numbers (hex case and width do not count)."""

    attrs = tuple(sorted((k, _canonical_value(v)) for k, v in el.attrib.items()))
    children = tuple(_canonical(c) for c in el if isinstance(c.tag, str))
    return (el.tag, attrs, _canonical_value(el.text), children)


def _canonical_value(text: str | None) -> int | str:
    text = (text or "").strip()
    return int(text, 16) if re.fullmatch(r"0[xX][0-9A-Fa-f]+", text) else text


def _describe(el: Any) -> str:
    if el is None:
        return "nothing"
    if el.tag == "vgpuType":
        return f"vgpuType {el.get('id')} {el.get('name')!r}"
    dev = el.find("devId")
    ids = [parse_number(dev.get(a)) if dev is not None else None for a in
           ("deviceId", "subsystemId", "subsystemVendorId")]  # fmt: skip
    device, sub, vendor = (f"{n:04X}" if n is not None else "?" for n in ids)
    return f"{device}:{sub} (vendor 0x{vendor}, {len(el.findall('supportedVgpu'))} profiles)"


def _field(ours: Any, theirs: Any) -> str:
    """The first attribute or element in which two entries differ, both values shown."""
    for mine, other in zip(ours.iter(), theirs.iter(), strict=False):
        for name in sorted(set(mine.attrib) | set(other.attrib)):
            if _canonical_value(mine.get(name)) != _canonical_value(other.get(name)):
                return f"; {mine.tag}@{name}: {other.get(name)!r} instead of {mine.get(name)!r}"
        if mine.tag != other.tag or _canonical_value(mine.text) != _canonical_value(other.text):
            return f"; <{other.tag}> {(other.text or '').strip()!r} instead of <{mine.tag}>"
    return "; a different number of child elements"


def first_difference(expected: VgpuConfig, written: VgpuConfig) -> str | None:
    """Where ``written`` (patch.sh's file) first differs from ``expected``; None if nowhere.

    ``<pgpu>`` entries are compared first, in order, then ``<vgpuType>`` entries.
    """
    for tag, ours, theirs in (
        ("pgpu", expected.pgpu_elements(), written.pgpu_elements()),
        ("vgpuType", list(expected.type_elements()), list(written.type_elements())),
    ):
        for n in range(max(len(ours), len(theirs))):
            a = ours[n] if n < len(ours) else None
            b = theirs[n] if n < len(theirs) else None
            if a is None or b is None or _canonical(a) != _canonical(b):
                detail = "" if a is None or b is None else _field(a, b)
                return (
                    f"<{tag}> number {n + 1}: patch.sh wrote {_describe(b)}, "
                    f"vgpubuild expected {_describe(a)}{detail}"
                )
    return None


def check_builtin(
    base: VgpuConfig, written: VgpuConfig, contract: Contract, target: str, args: Sequence[str]
) -> None:
    """Stop when replaying the built-in steps on ``base`` does not give ``written``."""
    replay(base, contract, target, args)
    where = first_difference(base, written)
    if where is not None:
        raise PatcherError(
            f"vgpubuild's model of patch.sh (branch {contract.branch}) differs from what it "
            f"wrote to vgpuConfig.xml: {where}",
            hint="The patcher's vcfgclone does something vgpubuild does not model; please "
            "report it with this message. Nothing was written.",
        )
