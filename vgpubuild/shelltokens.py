"""Split a bash script into words and operators, the way bash reads it (not expands it).

Quotes (``'...'``, ``"..."``), ``\\`` line continuations, comments, ``${...}``, and command
substitutions (``$(...)`` and backticks, whose text is kept so their commands can be read
too) are understood; newlines become ``\\n`` separator tokens. Used by
:mod:`vgpubuild.shellscan`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_OPERATORS = ("&&", "||", ";;", ";", "|", "&", "(", ")")


@dataclass
class Token:
    text: str
    line: int
    word: bool
    subs: list[tuple[str, int]] = field(default_factory=list)
    """Command substitutions inside a word: their text and first line."""


def _closing(text: str, i: int, opening: str, closing: str) -> int:
    """Index just past the ``closing`` that matches an ``opening`` before ``i``."""
    depth = 1
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch in "'`":
            i = text.find(ch, i + 1) + 1 or len(text)
            continue
        if ch == '"':
            i = _quote_end(text, i + 1)
            continue
        if ch == opening:
            depth += 1
        elif ch == closing:
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return i


def _quote_end(text: str, i: int) -> int:
    """Index just past the ``"`` that closes a double-quoted string opened before ``i``."""
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            i += 2
        elif ch == '"':
            return i + 1
        elif text.startswith("$(", i):
            i = _closing(text, i + 2, "(", ")")
        elif ch == "`":
            i = text.find("`", i + 1) + 1 or len(text)
        else:
            i += 1
    return i


def tokens(text: str, first_line: int, comments: dict[int, str]) -> list[Token]:
    """Words and operators; newlines become ``\\n`` separators; comments go to ``comments``."""
    out: list[Token] = []
    i, line = 0, first_line
    word: list[str] = []
    start = line
    subs: list[tuple[str, int]] = []

    def end_word() -> None:
        nonlocal word, subs
        if word:
            out.append(Token("".join(word), start, True, subs))
        word, subs = [], []

    while i < len(text):
        ch = text[i]
        if not word:
            start = line
        if ch == "\\" and text.startswith("\\\n", i):
            i, line = i + 2, line + 1
        elif ch in " \t":
            end_word()
            i += 1
        elif ch == "\n":
            end_word()
            out.append(Token("\n", line, False))
            i, line = i + 1, line + 1
        elif ch == "#" and not word:
            stop = text.find("\n", i)
            stop = len(text) if stop < 0 else stop
            comments.setdefault(line, text[i + 1 : stop].strip())
            i = stop
        elif ch in "'\"`" or text.startswith("$(", i) or text.startswith("${", i):
            if ch == "'":
                stop = text.find("'", i + 1) + 1 or len(text)
            elif ch == '"':
                stop = _quote_end(text, i + 1)
            elif ch == "`":
                stop = text.find("`", i + 1) + 1 or len(text)
                subs.append((text[i + 1 : stop - 1], line))
            elif text.startswith("$((", i):
                stop = _closing(text, i + 2, "(", ")")
            elif text.startswith("$(", i):
                stop = _closing(text, i + 2, "(", ")")
                subs.append((text[i + 2 : stop - 1], line))
            else:
                stop = _closing(text, i + 2, "{", "}")
            chunk = text[i:stop]
            if ch == '"':
                subs += [
                    (m.group(1) or m.group(2) or "", line)
                    for m in re.finditer(r"\$\(([^()]*)\)|`([^`]*)`", chunk)
                ]
            word.append(chunk)
            line += chunk.count("\n")
            i = stop
        elif (
            (op := next((o for o in _OPERATORS if text.startswith(o, i)), None))
            and not (op in ("&", "&&") and word and word[-1].endswith(">"))
            and not (op == "&" and text.startswith("&>", i))
        ):
            end_word()
            out.append(Token(op, line, False))
            i += len(op)
        elif ch in "<>" and text.startswith("&", i + 1):
            word.append(text[i : i + 2])
            i += 2
        else:
            word.append(ch)
            i += 1
    end_word()
    return out
