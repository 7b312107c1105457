"""Unified diffs of two versions of a text, as ``diff -u`` prints them.

``vgpubuild profiles ... --dry-run`` shows an edit of vgpuConfig.xml this way. difflib's
default "autojunk" treats lines repeated all over that file (the same
``<mappableVideoSize>`` in every profile) as junk and then shows whole blocks as changed,
so the matcher runs with autojunk off, and only on the changed middle: the common head and
tail, all but their context lines, are cut off first, which keeps a one-line edit of a
60,000-line file fast.
"""

from __future__ import annotations

import difflib

CONTEXT = 3
"""Unchanged lines shown around each change (``diff -u``'s default)."""


Opcode = tuple[str, int, int, int, int]


def unified_diff(before: bytes, after: bytes, from_label: str, to_label: str) -> str:
    """The ``diff -u`` of two UTF-8 texts (bad bytes replaced); empty when they are equal."""
    a = before.decode("utf-8", errors="replace").splitlines(keepends=True)
    b = after.decode("utf-8", errors="replace").splitlines(keepends=True)
    lines: list[str] = []
    for group in _groups(a, b):
        (_, i1, _, j1, _), (_, _, i2, _, j2) = group[0], group[-1]
        lines.append(f"@@ -{_range(i1, i2 - i1)} +{_range(j1, j2 - j1)} @@\n")
        for tag, a1, a2, b1, b2 in group:
            if tag == "equal":
                lines += [" " + line for line in a[a1:a2]]
                continue
            lines += ["-" + line for line in a[a1:a2]]
            lines += ["+" + line for line in b[b1:b2]]
    if not lines:
        return ""
    body = "".join(line if line.endswith("\n") else line + "\n" for line in lines)
    return f"--- {from_label}\n+++ {to_label}\n{body}"


def _groups(a: list[str], b: list[str]) -> list[list[Opcode]]:
    """difflib's grouped opcodes of the changed middle, in whole-text line numbers.

    The cut-off head and tail are equal in both texts; a hunk at the edge of the middle
    takes its context lines from them.
    """
    shortest = min(len(a), len(b))
    head = 0
    while head < shortest and a[head] == b[head]:
        head += 1
    tail = 0
    while tail < shortest - head and a[-1 - tail] == b[-1 - tail]:
        tail += 1
    matcher = difflib.SequenceMatcher(
        None, a[head : len(a) - tail], b[head : len(b) - tail], autojunk=False
    )
    groups = [
        [(tag, i1 + head, i2 + head, j1 + head, j2 + head) for tag, i1, i2, j1, j2 in group]
        for group in matcher.get_grouped_opcodes(CONTEXT)
    ]
    if groups:
        _edge_context(groups[0], groups[-1], len(a), len(b))
    return groups


def _edge_context(first: list[Opcode], last: list[Opcode], a_len: int, b_len: int) -> None:
    """Give the first and last hunk ``CONTEXT`` lines, taken from the cut-off head and tail.

    Around the edges of the middle both texts are equal and line up, so the context is the
    ``CONTEXT`` lines before the first change and after the last one, where they exist.
    """
    if first[0][0] == "equal":
        first.pop(0)
    _, i, _, j, _ = first[0]
    if k := min(CONTEXT, i, j):
        first.insert(0, ("equal", i - k, i, j - k, j))
    if last[-1][0] == "equal":
        last.pop()
    _, _, i, _, j = last[-1]
    if k := min(CONTEXT, a_len - i, b_len - j):
        last.append(("equal", i, i + k, j, j + k))


def _range(first: int, length: int) -> str:
    """A hunk's line range as ``diff -u`` writes it (1-based; ``N`` alone for one line)."""
    if length == 1:
        return str(first + 1)
    return f"{first + 1 if length else first},{length}"
