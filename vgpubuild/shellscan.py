"""Read the structure of a bash script without running it: commands and when they run.

vGPU-Unlock-patcher's ``patch.sh`` differs between branches and forks (options, targets,
clone lines, tools), so vgpubuild learns each one from the script it is about to run. This
module is the reading half: it splits the script into simple commands (quotes, ``\\``
line continuations, comments, ``$(...)`` and backticks understood) and records for each
one the conditions it sits under, in the forms ``patch.sh`` uses::

    if $FLAG; then ... else ... fi      $FLAG && { ... }      $FLAG || cmd
    $A && $B && cmd                      case "$1" in pattern) ... ;; esac
    name() { ... }                       while ...; do ... done

A condition it cannot read (``[ -e file ]``, ``a || b && c``) is "maybe" and adds nothing:
a caller that asks "can this run?" gets yes. It is not a shell: it never expands or runs
anything, and its only job is the questions :mod:`vgpubuild.patchercontract` asks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from vgpubuild.shelltokens import Token, tokens

_FLAG = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")
_ASSIGNMENT = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)=(.*)", re.S)


@dataclass(frozen=True)
class When:
    """Where a command sits: the flags it needs, the case branch and function it is in."""

    flags: frozenset[tuple[str, bool]] = frozenset()
    """``(NAME, value)`` pairs that must all hold (``$NAME`` is ``true`` or ``false``)."""
    branch: tuple[str, int] | None = None
    """``("target"|"option", index)``: inside that branch of the script's ``case "$1"``."""
    function: str | None = None
    """Inside the body of this function (it runs when the function is called)."""

    def also(self, flags: frozenset[tuple[str, bool]]) -> When:
        return replace(self, flags=self.flags | flags)


@dataclass(frozen=True)
class Command:
    """One simple command: its words as written (quotes kept), where it is, when it runs."""

    line: int
    words: tuple[str, ...]
    when: When
    comment: str = ""
    """The comment at the end of its line, if any (``# GTX 1070``)."""


@dataclass(frozen=True)
class Branch:
    """One branch of a ``case "$1"``: its patterns and the assignments at its top level."""

    patterns: tuple[str, ...]
    line: int
    assignments: tuple[tuple[str, str], ...] = ()


@dataclass
class Script:
    """What :func:`scan` read."""

    commands: list[Command] = field(default_factory=list)
    functions: dict[str, int] = field(default_factory=dict)
    """Function name -> the line it is defined on."""
    top_assignments: dict[str, str] = field(default_factory=dict)
    """``NAME=value`` outside any block or function (the first one of each name)."""
    options: list[Branch] = field(default_factory=list)
    """The option parser: the ``case "$1"`` inside the loop over the arguments."""
    targets: list[Branch] = field(default_factory=list)
    """The target dispatch: the first ``case "$1"`` at the top level."""


def flag_of(word: str) -> str | None:
    """``FLAG`` when ``word`` is exactly ``$FLAG`` or ``${FLAG}`` (quoted or not)."""
    match = _FLAG.fullmatch(word.strip('"'))
    return None if match is None else match.group(1) or match.group(2)


def assignment(word: str) -> tuple[str, str] | None:
    """``(NAME, value)`` for a ``NAME=value`` word, one level of quotes removed."""
    match = _ASSIGNMENT.fullmatch(word)
    if match is None:
        return None
    value = match.group(2)
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        value = value[1:-1]
    return match.group(1), value


# ------------------------------------------------------------------------------ blocks


@dataclass
class _Frame:
    kind: str
    """``if``, ``brace``, ``func``, ``loop``, ``case`` or ``sub``."""
    flags: frozenset[tuple[str, bool]] = frozenset()
    state: str = ""
    name: str | None = None
    cond: list[tuple[str, tuple[str, bool] | None]] = field(default_factory=list)
    """An ``if``'s condition: (operator before it, its flag literal or None) per element."""
    then: frozenset[tuple[str, bool]] = frozenset()
    negation: frozenset[tuple[str, bool]] = frozenset()
    case: str | None = None
    """``target`` or ``option`` for the script's ``case "$1"`` blocks."""
    branch: int = -1


def _literal(words: list[str]) -> tuple[str, bool] | None:
    """The flag test ``$FLAG`` / ``! $FLAG`` that ``words`` is, if it is one."""
    negated = bool(words) and words[0] == "!"
    rest = words[1:] if negated else words
    name = flag_of(rest[0]) if len(rest) == 1 else None
    return None if name is None else (name, not negated)


class _Parser:
    def __init__(self, script: Script, comments: dict[int, str]) -> None:
        self.script = script
        self.comments = comments
        self.frames: list[_Frame] = []
        self.seen_target_case = False

    def top(self) -> _Frame | None:
        return self.frames[-1] if self.frames else None

    # the context of the next command
    def when(self, extra: frozenset[tuple[str, bool]] = frozenset()) -> When:
        flags: set[tuple[str, bool]] = set(extra)
        branch = None
        function = None
        for frame in self.frames:
            flags |= frame.flags
            if frame.kind == "if":
                flags |= frame.then if frame.state == "then" else set()
                flags |= frame.negation if frame.state == "else" else set()
            if frame.kind == "case" and frame.case and frame.state == "body":
                branch = (frame.case, frame.branch)
            if frame.kind == "func":
                function, flags, branch = frame.name, set(extra), None
        return When(frozenset(flags), branch, function)

    def record(self, words: list[Token], extra: frozenset[tuple[str, bool]]) -> None:
        when = self.when(extra)
        texts = tuple(t.text for t in words)
        line = words[0].line
        self.script.commands.append(Command(line, texts, when, self.comments.get(line, "")))
        for text, sub_line in (sub for t in words for sub in t.subs):
            inner = scan(text, sub_line)
            for command in inner.commands:
                merged = When(when.flags | command.when.flags, when.branch, when.function)
                self.script.commands.append(replace(command, when=merged))
        pairs = [assignment(t) for t in texts]
        if pairs and all(pairs):
            self._assignments([p for p in pairs if p is not None])

    def _assignments(self, pairs: list[tuple[str, str]]) -> None:
        if not self.frames:
            for name, value in pairs:
                self.script.top_assignments.setdefault(name, value)
            return
        top = self.frames[-1]
        if top.kind == "case" and top.case and top.state == "body":
            listing = self.script.targets if top.case == "target" else self.script.options
            branch = listing[top.branch]
            listing[top.branch] = replace(branch, assignments=branch.assignments + tuple(pairs))

    def keyword(self, words: list[Token], chain: frozenset[tuple[str, bool]]) -> list[Token]:
        """Handle block keywords at the start of ``words``; return the command left over."""
        while words:
            word = words[0].text
            top = self.frames[-1] if self.frames else None
            if word == "if":
                self.frames.append(_Frame("if", chain, "cond"))
            elif word in ("while", "until", "for"):
                self.frames.append(_Frame("loop", chain, "head"))
                return []
            elif word == "do" and top and top.kind == "loop":
                top.state = "body"
            elif word == "done" and top and top.kind == "loop":
                self.frames.pop()
            elif word in ("then", "elif", "else") and top and top.kind == "if":
                self._if_keyword(top, word)
            elif word == "fi" and top and top.kind == "if":
                self.frames.pop()
            elif word == "case":
                self._case(words, chain)
                return []
            elif word == "{":
                self.frames.append(_Frame("brace", chain))
            elif word == "}" and top and top.kind in ("brace", "func"):
                self.frames.pop()
            else:
                return words
            words = words[1:]
        return words

    def _if_keyword(self, frame: _Frame, word: str) -> None:
        if word in ("then",) and frame.state == "cond":
            simple = all(op in ("", "&&") for op, _ in frame.cond)
            literals = frozenset(lit for _, lit in frame.cond if lit) if simple else frozenset()
            frame.then = literals
            exact = len(frame.cond) == 1 and frame.cond[0][1] is not None
            frame.negation |= frozenset((n, not v) for n, v in literals) if exact else frozenset()
            frame.state = "then"
        elif word == "elif":
            frame.state, frame.cond, frame.negation = "cond", [], frozenset()
        elif word == "else":
            frame.state = "else"

    def _case(self, words: list[Token], chain: frozenset[tuple[str, bool]]) -> None:
        subject = words[1].text if len(words) > 1 else ""
        if words[1:2] and words[1].subs:
            self.record(words[1:2], chain)  # case `stat ...` in: the programs it runs
        kind = None
        inside = {f.kind for f in self.frames}
        if subject in ('"$1"', "$1") and "func" not in inside:
            if "loop" in inside:
                kind = "option"
            elif not self.seen_target_case and not inside:
                kind, self.seen_target_case = "target", True
        self.frames.append(_Frame("case", chain, "pattern", case=kind))


def _pattern(tokens: list[Token], i: int) -> tuple[list[str], int]:
    """The alternatives of a case pattern starting at ``i``; the index after its ``)``."""
    patterns: list[str] = []
    while i < len(tokens) and tokens[i].text != ")":
        if tokens[i].word:
            patterns.append(tokens[i].text.strip("\"'"))
        i += 1
    return patterns, i + 1


class _Walker:
    """The token walk of :func:`scan`: the and-or list being read and what it assumes."""

    def __init__(self, parser: _Parser, toks: list[Token]) -> None:
        self.parser, self.toks = parser, toks
        self.words: list[Token] = []
        self.chain: list[tuple[str, tuple[str, bool] | None]] = []
        self.lits: set[tuple[str, bool]] = set()
        self.op_before = ""
        self.saw_or = False

    def element(self) -> None:
        """The and-or element in ``words`` is complete."""
        frozen = frozenset(self.lits)
        rest = self.parser.keyword(self.words, frozen)
        literal = _literal([t.text for t in rest]) if rest else None
        top = self.parser.top()
        if top and top.kind == "if" and top.state == "cond" and rest:
            top.cond.append((self.op_before, literal))
        if rest and literal is None:
            self.parser.record(rest, frozen)
        self.chain.append((self.op_before, literal))
        self.words = []

    def operator(self, op: str) -> None:
        """``&&``/``||``: what the next element can assume (``A || B && C``: nothing)."""
        self.element()
        last = self.chain[-1][1]
        if op == "&&" and self.saw_or:
            self.lits.clear()
        elif op == "&&" and last is not None:
            self.lits.add(last)
        elif op == "||":
            single = last is not None and len(self.chain) == 1
            self.lits = {(last[0], not last[1])} if single and last else set()
            self.saw_or = True
        self.op_before = op

    def end_list(self) -> None:
        if self.words:
            self.element()
        self.chain.clear()
        self.lits = set()
        self.op_before, self.saw_or = "", False

    def pattern(self, i: int, top: _Frame) -> int:
        """A case pattern (or the ``esac``) at ``i``; returns the next index."""
        tok = self.toks[i]
        if tok.word and tok.text == "esac":
            self.parser.frames.pop()
            return i + 1
        if not (tok.word or tok.text == "("):
            return i + 1
        patterns, after = _pattern(self.toks, i + (tok.text == "("))
        top.branch += 1
        top.state = "body"
        if top.case:
            script = self.parser.script
            listing = script.targets if top.case == "target" else script.options
            listing.append(Branch(tuple(patterns), tok.line))
        return after

    def function(self, i: int) -> int:
        """``name() {``: open the function's frame; returns the index after its ``{``."""
        name = self.words[0].text
        self.parser.script.functions[name] = self.words[0].line
        self.parser.frames.append(_Frame("func", name=name))
        self.words = []
        i += 2
        while i < len(self.toks) and self.toks[i].text in ("\n", "{"):
            i += 1
            if self.toks[i - 1].text == "{":
                break
        return i

    def op(self, op: str, top: _Frame | None) -> None:
        if op == "(" and not self.words:
            self.parser.frames.append(_Frame("sub", frozenset(self.lits)))
        elif op == ")" and top and top.kind == "sub":
            self.end_list()
            self.parser.frames.pop()
        elif op in ("&&", "||"):
            self.operator(op)
        elif op == "|":
            self.element()
        else:
            self.end_list()
            if op == ";;" and top and top.kind == "case":
                top.state = "pattern"

    def walk(self) -> None:
        i, toks = 0, self.toks
        while i < len(toks):
            tok, top = toks[i], self.parser.top()
            if top and top.kind == "case" and top.state == "pattern" and not self.words:
                i = self.pattern(i, top)
            elif tok.word:
                if tok.text == "esac" and top and top.kind == "case" and not self.words:
                    self.parser.frames.pop()
                else:
                    self.words.append(tok)
                i += 1
            elif (
                tok.text == "("
                and len(self.words) == 1
                and toks[i + 1 : i + 2]
                and toks[i + 1].text == ")"
            ):
                i = self.function(i)
            else:
                self.op(tok.text, top)
                i += 1
        self.end_list()


def scan(text: str, first_line: int = 1) -> Script:
    """Read ``text`` (a bash script) into commands, functions, assignments and its cases."""
    comments: dict[int, str] = {}
    script = Script()
    _Walker(_Parser(script, comments), tokens(text, first_line, comments)).walk()
    return script
