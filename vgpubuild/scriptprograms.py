"""Which programs a shell script calls, and under which conditions each call runs.

Read from :func:`vgpubuild.shellscan.scan`'s commands: the first word of each command (a
``$VAR`` first word is the program its top-level value starts with, as ``$CP`` = ``cp -a``),
and the names checked with ``which X`` or ``command -v X``. Builtins, keywords and the
script's own functions are not programs; a function's programs count at each place it is
called, under that call's conditions.
"""

from __future__ import annotations

import re

from vgpubuild.shellscan import Command, Script, When, assignment, flag_of

NOT_PROGRAMS = frozenset(
    [
        "[",
        "[[",
        "!",
        ":",
        ".",
        "{",
        "}",
        "(",
        ")",
        "alias",
        "break",
        "builtin",
        "cd",
        "command",
        "continue",
        "declare",
        "echo",
        "eval",
        "exec",
        "exit",
        "export",
        "false",
        "getopts",
        "hash",
        "let",
        "local",
        "popd",
        "printf",
        "pushd",
        "pwd",
        "read",
        "readonly",
        "return",
        "set",
        "shift",
        "source",
        "test",
        "then",
        "else",
        "elif",
        "fi",
        "do",
        "done",
        "esac",
        "case",
        "if",
        "for",
        "while",
        "until",
        "time",
        "trap",
        "true",
        "type",
        "typeset",
        "ulimit",
        "umask",
        "unset",
        "wait",
    ]
)
"""Bash builtins and keywords: never looked up on PATH."""

_PROGRAM = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]*")


def _program(command: Command, script: Script) -> list[str]:
    """The programs ``command`` runs or checks for (``which X``, ``command -v X``)."""
    words = list(command.words)
    while words and assignment(words[0]):
        words = words[1:]
    if not words:
        return []
    first = words[0]
    name = flag_of(first)
    if name is not None:  # $CP: the program named at the start of its value
        value = script.top_assignments.get(name, "")
        first = value.split()[0] if value.split() else ""
    found = [first] if _PROGRAM.fullmatch(first) else []
    if first == "which" or words[:2] == ["command", "-v"]:
        found += [w for w in words[1:] if _PROGRAM.fullmatch(w)]
    return [p for p in found if p not in NOT_PROGRAMS and p not in script.functions]


def programs(script: Script) -> tuple[tuple[str, When], ...]:
    """Each program with the condition it runs under; a function's programs at its calls."""
    by_function: dict[str, list[tuple[str, When]]] = {}
    calls: list[tuple[str, When]] = []
    for command in script.commands:
        owner = command.when.function or ""
        for program in _program(command, script):
            by_function.setdefault(owner, []).append((program, command.when))
        if command.words and command.words[0] in script.functions:
            calls.append((command.words[0], command.when))
    result = list(by_function.get("", []))
    seen: set[tuple[str, When]] = set()
    pending = [c for c in calls if c[1].function is None]
    while pending:
        name, at = pending.pop()
        if (name, at) in seen:
            continue
        seen.add((name, at))
        for program, inner in by_function.get(name, []):
            result.append((program, When(at.flags | inner.flags, at.branch, None)))
        for callee, inner in calls:
            if inner.function == name:
                pending.append((callee, When(at.flags | inner.flags, at.branch, None)))
    return tuple(result)
