"""The contract of a vGPU-Unlock-patcher ``patch.sh``, read from the script itself.

Branches and forks of VUP differ in exactly the things vgpubuild must get right: which
targets exist (535's ``vgpu*)`` builds plain vgpu-kvm for ``vgpu-kvm-merge``), which
options its argument parser knows (``--zstd``, ``--UnlockRS``, ``--remap-p2v``), which
cards its built-in ``vcfgclone`` list copies and from where, whether its ``vcfgclone``
disables an existing destination ``<pgpu>`` (550.90 and later: ``subsystemVendorId
0x9999``), and which programs each step calls. So none of that is a per-series table:
:func:`read_contract` reads it from the ``patch.sh`` about to run (with
:mod:`vgpubuild.shellscan`), and every check names the branch it was read from.

What the script cannot say is in :data:`HIDDEN_TOOLS` and :data:`TARGET_OUTPUTS`, the one
small table: programs run by the driver's own ``.run`` scripts, and what each target name
of vgpubuild's vocabulary must build (to tell what a glob branch like ``vgpu*)`` gives).
"""

from __future__ import annotations

import difflib
import fnmatch
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from vgpubuild.errors import PatcherError, UsageError
from vgpubuild.scriptprograms import programs
from vgpubuild.shellscan import Branch, Script, When, scan

TARGET_OUTPUTS: dict[str, str] = {
    "vgpu-kvm": "${VGPU}-patched",
    "grid": "${GRID}-patched",
    "general": "${GNRL}-patched",
    "wsys": "${WSYS}-patched",
    "grid-merge": "${GRID}-vgpu-kvm-patched",
    "general-merge": "${GNRL}-merged-vgpu-kvm-patched",
    "vgpu-kvm-merge": "${VGPU}-merged-patched",
}
"""vgpubuild's target names and the folder each must produce (patch.sh's own words)."""

HIDDEN_TOOLS: dict[str, tuple[str, ...]] = {
    "": ("tar", "xz", "gzip"),
    "--repack": ("zstd",),
}
"""Programs patch.sh needs that its text does not show: the driver ``.run`` files unpack
with tar/xz/gzip, and ``--repack`` runs the driver's own makeself.sh, which compresses
with zstd. Key: the option that needs them ("" = always)."""

_HEX = re.compile(r"0[xX][0-9A-Fa-f]+")
_CLONE_FUNCTION = "vcfgclone"
_XML = "vgpuConfig.xml"


@dataclass(frozen=True)
class Option:
    """One option of the argument parser: its pattern and the flags it sets."""

    pattern: str
    sets: Mapping[str, str]


@dataclass(frozen=True)
class Target:
    """One driver target of the script: its name, case pattern and output folder."""

    name: str
    pattern: str
    output: str
    """The folder it writes, in the script's words (``${VGPU}-patched``)."""
    sets: Mapping[str, str]
    branch: int
    """Its branch's position in the target case."""


@dataclass(frozen=True)
class Step:
    """A built-in edit of ``${TARGET}/vgpuConfig.xml``: a clone line or the remap call."""

    kind: str
    """``clone`` or ``remap``."""
    line: int
    when: When
    ids: tuple[str, str, str, str] = ("", "", "", "")
    """For a clone: SRCDEV SRCSUB DSTDEV DSTSUB as written."""
    comment: str = ""
    xml: str = ""
    """The file argument as written (``${TARGET}/vgpuConfig.xml``)."""


@dataclass(frozen=True)
class Contract:
    """What one ``patch.sh`` accepts and does, read from its text."""

    branch: str
    """How messages name it: the catalog branch, or the script's own VGPU version."""
    targets: dict[str, Target]
    mismatched: dict[str, Target]
    """vgpubuild target names a glob branch matches but builds something else for."""
    options: tuple[Option, ...]
    defaults: Mapping[str, str]
    steps: tuple[Step, ...]
    clone_disables: int | None
    """The ``subsystemVendorId`` its vcfgclone gives an existing destination (0x9999),
    or None when it only copies (535.x, 550.54)."""
    remap_option: str | None
    """The option that runs its remap-p2v step, if it has one."""
    tools: tuple[tuple[str, When], ...]
    functions: frozenset[str] = field(default_factory=frozenset)

    # ---------------------------------------------------------------- evaluation

    def flags(self, target: str, args: Sequence[str]) -> dict[str, bool]:
        """The script's true/false flags after parsing ``args`` and dispatching ``target``."""
        values = dict(self.defaults)
        for arg in args:
            option = self.option(arg)
            values.update(option.sets if option else {})
        chosen = self.targets.get(target)
        values.update(chosen.sets if chosen else {})
        return {k: v == "true" for k, v in values.items() if v in ("true", "false")}

    def runs(self, when: When, target: str, args: Sequence[str]) -> bool:
        """Whether a command under ``when`` runs (a flag never set counts as true: an empty
        ``$FLAG`` is a command that succeeds)."""
        flags = self.flags(target, args)
        chosen = self.targets.get(target)
        if when.branch is not None and (chosen is None or when.branch != ("target", chosen.branch)):
            return False  # the argument parser, a utility form or another target's branch
        return all(flags.get(name, True) == value for name, value in when.flags)

    def output_name(self, target: str, expectations: Mapping[str, str]) -> str:
        """The folder ``target`` writes, given the script's GNRL/VGPU/GRID/WSYS lines."""
        values = {"WSYS": "NVIDIA-Windows-x86_64", **expectations}
        return _resolve(self.check_target(target).output, values)

    def option(self, arg: str) -> Option | None:
        return next((o for o in self.options if fnmatch.fnmatchcase(arg, o.pattern)), None)

    def builtin_clones(self, target: str, args: Sequence[str]) -> list[Step]:
        """The clone lines that run for ``target`` with ``args``, in order."""
        return [s for s in self.steps if s.kind == "clone" and self.runs(s.when, target, args)]

    def edits_config(self, target: str) -> bool:
        """Whether ``target`` can reach the script's vgpuConfig.xml steps (with any options)."""
        chosen = self.targets.get(target)
        fixed = {**self.defaults, **(chosen.sets if chosen else {})}
        for option in self.options:
            for name in option.sets:
                fixed.pop(name, None)
        return any(
            all(
                fixed.get(name, "true" if value else "false") == ("true" if value else "false")
                for name, value in step.when.flags
            )
            for step in self.steps
        )

    def _all_options(self) -> list[str]:
        return [o.pattern for o in self.options if "*" not in o.pattern]

    def needed_tools(self, target: str, args: Sequence[str]) -> list[str]:
        """Every program the script (and what it runs) calls for ``target`` and ``args``."""
        found = [t for t, when in self.tools if self.runs(when, target, args)]
        found += HIDDEN_TOOLS[""]
        for arg in args:
            found += HIDDEN_TOOLS.get(arg, ())
        return list(dict.fromkeys(found))

    # ---------------------------------------------------------------- validation

    def check_target(self, target: str) -> Target:
        """The target, or an error naming the branch and what it has instead."""
        if target in self.targets:
            return self.targets[target]
        names = ", ".join(self.targets)
        wrong = self.mismatched.get(target)
        if wrong is not None:
            raise UsageError(
                f"patch.sh of branch {self.branch} has no target {target!r}: its case "
                f"'{wrong.pattern})' takes the name but builds {wrong.output} ({wrong.name})",
                hint=f"Use one of its targets: {names}.",
            )
        near = difflib.get_close_matches(target, list(self.targets), n=1)
        hint = f"Did you mean {near[0]!r}? " if near else ""
        raise UsageError(
            f"patch.sh of branch {self.branch} has no target {target!r}",
            hint=hint + f"Its targets: {names}.",
        )

    def check_options(self, options: Iterable[str]) -> None:
        """Refuse any option its argument parser does not know (it would only print it)."""
        known = self._all_options()
        for option in options:
            if not option.startswith("--"):
                raise UsageError(
                    f"extra patcher option {option!r} does not start with '--'",
                    hint="patch.sh would take it as the target; give the target with --target.",
                )
            if self.option(option) is None:
                near = difflib.get_close_matches(option, known, n=1)
                hint = f"Did you mean {near[0]!r}? " if near else ""
                raise UsageError(
                    f"patch.sh of branch {self.branch} does not know the option {option!r}",
                    hint=hint + "Its options: " + " ".join(known) + ".",
                )

    def check_remap(self) -> str:
        """The remap option, or an error when this branch has no remap-p2v step."""
        if self.remap_option is None:
            raise UsageError(
                f"patch.sh of branch {self.branch} has no --remap-p2v",
                hint="Drop remapP40ProfilesToV100D, or use a patcher branch that has it (550.x).",
            )
        return self.remap_option

    def check_clones(self, target: str) -> None:
        """Refuse user clones for a target whose build never edits vgpuConfig.xml."""
        if not self.edits_config(target):
            raise UsageError(
                f"patch.sh of branch {self.branch} does not edit vgpuConfig.xml for target "
                f"{target!r}, so copyVGPUProfiles has nothing to apply to",
                hint="Copy profiles on a host target (vgpu-kvm or a merged one).",
            )


# -------------------------------------------------------------------------- reading


def read_contract(patch_sh: str | Path, branch: str | None = None) -> Contract:
    """Read the contract of the ``patch.sh`` at ``patch_sh``; ``branch`` names it."""
    path = Path(patch_sh)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise PatcherError(
            f"cannot read {str(path)!r}: {exc.strerror}",
            hint="Point --patcher at a vGPU-Unlock-patcher checkout (the folder with patch.sh).",
        ) from None
    return contract_of(text, branch)


def contract_of(text: str, branch: str | None = None) -> Contract:
    """The contract of a ``patch.sh`` given as text."""
    script = scan(text)
    label = branch or _own_label(script)
    if not script.options or not script.targets:
        raise PatcherError(
            f"patch.sh ({label}) has no argument parser or target case vgpubuild can read",
            hint="This does not look like vGPU-Unlock-patcher's patch.sh; check --patcher.",
        )
    options = tuple(
        Option(pattern, dict(b.assignments))
        for b in script.options
        for pattern in b.patterns
        if pattern != "*"
    )
    targets, mismatched = _targets(script)
    steps = _steps(script)
    remap_flags = {
        name for s in steps if s.kind == "remap" for name, value in s.when.flags if value
    }
    remap_option = next(
        (o.pattern for o in options if any(o.sets.get(f) == "true" for f in remap_flags)), None
    )
    return Contract(
        branch=label,
        targets=targets,
        mismatched=mismatched,
        options=options,
        defaults=dict(script.top_assignments),
        steps=steps,
        clone_disables=_disable_marker(script),
        remap_option=remap_option,
        tools=programs(script),
        functions=frozenset(script.functions),
    )


def _own_label(script: Script) -> str:
    vgpu = script.top_assignments.get("VGPU", "")
    version = vgpu.removeprefix("NVIDIA-Linux-x86_64-").removesuffix("-vgpu-kvm")
    return f"for {version}" if version else "(unknown)"


def _resolve(text: str, values: Mapping[str, str]) -> str:
    """Expand ``${NAME}``/``$NAME`` from ``values``; keep GNRL/VGPU/GRID/WSYS as ``${X}``."""

    def one(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        return values.get(name, "${" + name + "}")

    for _ in range(4):
        text = re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)", one, text)
    return text


def _targets(script: Script) -> tuple[dict[str, Target], dict[str, Target]]:
    """Driver targets (a branch that sets SOURCE) by name, in the order bash tries them."""
    after = script.top_assignments.get("TARGET", "${SOURCE}-patched")
    branches: list[tuple[int, Branch, str, dict[str, str]]] = []
    for branch in script.targets:
        sets = dict(branch.assignments)
        if "SOURCE" not in sets:
            continue  # a utility form (vcfg, remap-p2v, diff2c) or the usage message
        local = {k: v for k, v in branch.assignments if k in ("SOURCE", "MRGD")}
        output = _resolve(sets.get("TARGET", after), local)
        flags = {k: v for k, v in sets.items() if v in ("true", "false")}
        branches.append((len(branches), branch, output, flags))
    targets: dict[str, Target] = {}
    mismatched: dict[str, Target] = {}
    for index, branch, output, flags in branches:
        for pattern in branch.patterns:
            if not any(ch in pattern for ch in "*?["):
                targets.setdefault(pattern, Target(pattern, pattern, output, flags, index))
    for name, expected in TARGET_OUTPUTS.items():
        first = next((b for b in branches if _matches(name, b[1].patterns)), None)
        if first is None or name in targets:
            continue
        index, branch, output, flags = first
        pattern = next(p for p in branch.patterns if fnmatch.fnmatchcase(name, p))
        own = next((n for n, e in TARGET_OUTPUTS.items() if e == output), output)
        if output == expected:
            targets[name] = Target(name, pattern, output, flags, index)
        else:
            mismatched[name] = Target(own, pattern, output, flags, index)
    return targets, mismatched


def _matches(name: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def _steps(script: Script) -> tuple[Step, ...]:
    """The built-in vgpuConfig.xml edits, in script order."""
    remap = _remap_function(script)
    steps = []
    for command in script.commands:
        words = command.words
        if command.when.function or command.when.branch or len(words) < 2 or _XML not in words[1]:
            continue
        if words[0] == _CLONE_FUNCTION and len(words) == 6:
            ids = (words[2], words[3], words[4], words[5])
            steps.append(Step("clone", command.line, command.when, ids, command.comment, words[1]))
        elif remap is not None and words[0] == remap:
            steps.append(
                Step("remap", command.line, command.when, comment=command.comment, xml=words[1])
            )
    return tuple(steps)


def _remap_function(script: Script) -> str | None:
    """The function the ``remap-p2v)`` utility form calls."""
    index = next((n for n, b in enumerate(script.targets) if "remap-p2v" in b.patterns), None)
    for command in script.commands:
        words = command.words
        takes_file = any(w.strip('"') in ("$1", "${1}") for w in words[1:])
        if command.when.branch == ("target", index) and words[0] in script.functions and takes_file:
            return words[0]
    return None


def _disable_marker(script: Script) -> int | None:
    """The vendor id vcfgclone writes over an existing destination's, if it writes one: any
    hex number in its body other than NVIDIA's 0x10de (550.90's sed writes 0x9999)."""
    for command in script.commands:
        if command.when.function == _CLONE_FUNCTION:
            for word in command.words:
                for literal in _HEX.findall(word):
                    if int(literal, 16) != 0x10DE:
                        return int(literal, 16)
    return None
