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


def _quoted_end(text: str, i: int) -> tuple[int, str | None]:
    """Where the quoted or ``$``-part starting at ``i`` ends, and a command substitution's
    text when it is one (``$(...)`` or backticks)."""
    if text.startswith("'", i):
        return text.find("'", i + 1) + 1 or len(text), None
    if text.startswith('"', i):
        return _quote_end(text, i + 1), None
    if text.startswith("`", i):
        stop = text.find("`", i + 1) + 1 or len(text)
        return stop, text[i + 1 : stop - 1]
    if text.startswith("$((", i):
        return _closing(text, i + 2, "(", ")"), None
    if text.startswith("$(", i):
        stop = _closing(text, i + 2, "(", ")")
        return stop, text[i + 2 : stop - 1]
    return _closing(text, i + 2, "{", "}"), None


def _operator(text: str, i: int, word: list[str]) -> str | None:
    """The operator at ``i``, unless ``&`` belongs to a redirection (``&>``, ``2>&1``)."""
    op = next((o for o in _OPERATORS if text.startswith(o, i)), None)
    if op in ("&", "&&") and word and word[-1].endswith(">"):
        return None
    if op == "&" and text.startswith("&>", i):
        return None
    return op


class _Reader:
    """The state of :func:`tokens`: the word being built and where it started."""

    def __init__(self, text: str, line: int, comments: dict[int, str]) -> None:
        self.text, self.line, self.comments = text, line, comments
        self.out: list[Token] = []
        self.word: list[str] = []
        self.subs: list[tuple[str, int]] = []
        self.start = line

    def end_word(self) -> None:
        if self.word:
            self.out.append(Token("".join(self.word), self.start, True, self.subs))
        self.word, self.subs = [], []

    def quoted(self, i: int) -> int:
        stop, sub = _quoted_end(self.text, i)
        chunk = self.text[i:stop]
        if sub is not None:
            self.subs.append((sub, self.line))
        if chunk.startswith('"'):
            self.subs += [
                (m.group(1) or m.group(2) or "", self.line)
                for m in re.finditer(r"\$\(([^()]*)\)|`([^`]*)`", chunk)
            ]
        self.word.append(chunk)
        self.line += chunk.count("\n")
        return stop

    def step(self, i: int) -> int:
        """Read what starts at ``i``; return where the next thing starts."""
        text, ch = self.text, self.text[i]
        if text.startswith("\\\n", i):
            self.line += 1
            return i + 2
        if ch in " \t\n":
            self.end_word()
            if ch == "\n":
                self.out.append(Token("\n", self.line, False))
                self.line += 1
            return i + 1
        if ch == "#" and not self.word:
            stop = text.find("\n", i)
            stop = len(text) if stop < 0 else stop
            self.comments.setdefault(self.line, text[i + 1 : stop].strip())
            return stop
        if ch in "'\"`" or text.startswith(("$(", "${"), i):
            return self.quoted(i)
        op = _operator(text, i, self.word)
        if op is not None:
            self.end_word()
            self.out.append(Token(op, self.line, False))
            return i + len(op)
        size = 2 if ch in "<>" and text.startswith("&", i + 1) else 1
        self.word.append(text[i : i + size])
        return i + size


def tokens(text: str, first_line: int, comments: dict[int, str]) -> list[Token]:
    """Words and operators; newlines become ``\\n`` separators; comments go to ``comments``."""
    reader = _Reader(text, first_line, comments)
    i = 0
    while i < len(text):
        if not reader.word:
            reader.start = reader.line
        i = reader.step(i)
    reader.end_word()
    return reader.out
