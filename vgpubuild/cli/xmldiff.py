"""The ``--dry-run`` output of the ``profiles`` edits: a unified diff, as ``diff -u`` prints it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vgpubuild.vgpuconfig.model import VgpuConfig


def unified_diff(config: VgpuConfig, xml: Path) -> str:
    """A unified diff of the edit (3 lines of context), like ``diff -u``.

    difflib's default "autojunk" treats lines repeated all over vgpuConfig.xml (the same
    ``<mappableVideoSize>`` in every profile) as junk and shows whole blocks as changed,
    so the changed middle is matched with autojunk off.
    """
    import difflib

    before = config.original_bytes().decode("utf-8", errors="replace").splitlines(keepends=True)
    after = config.to_bytes().decode("utf-8", errors="replace").splitlines(keepends=True)
    head = 0
    while head < min(len(before), len(after)) and before[head] == after[head]:
        head += 1
    tail = 0
    while tail < min(len(before), len(after)) - head and before[-1 - tail] == after[-1 - tail]:
        tail += 1
    matcher = difflib.SequenceMatcher(None, before, after, autojunk=False)
    matcher.set_seqs(before[head : len(before) - tail], after[head : len(after) - tail])
    lines = [f"--- {xml}\n", f"+++ {xml} (edited)\n"]
    for group in _shifted(matcher.get_grouped_opcodes(0), head):
        first, last = group[0], group[-1]
        i1, i2 = max(first[1] - 3, 0), min(last[2] + 3, len(before))
        j1, j2 = max(first[3] - 3, 0), min(last[4] + 3, len(after))
        lines.append(f"@@ -{i1 + 1},{i2 - i1} +{j1 + 1},{j2 - j1} @@\n")
        context_from = i1
        for _tag, a1, a2, b1, b2 in group:
            lines += [" " + line for line in before[context_from:a1]]
            lines += ["-" + line for line in before[a1:a2]]
            lines += ["+" + line for line in after[b1:b2]]
            context_from = a2
        lines += [" " + line for line in before[context_from:i2]]
    return (
        "".join(line if line.endswith("\n") else line + "\n" for line in lines)
        if len(lines) > 2
        else ""
    )


def _shifted(groups: Any, offset: int) -> list[list[tuple[str, int, int, int, int]]]:
    """Opcode groups of the trimmed middle, in whole-file line numbers, merged when their
    3-line contexts would touch (as ``diff -u`` prints one hunk)."""
    merged: list[list[tuple[str, int, int, int, int]]] = []
    for group in groups:
        for tag, a1, a2, b1, b2 in group:
            if tag == "equal":
                continue
            op = (tag, a1 + offset, a2 + offset, b1 + offset, b2 + offset)
            if merged and op[1] - merged[-1][-1][2] <= 6:
                merged[-1].append(op)
            else:
                merged.append([op])
    return merged
