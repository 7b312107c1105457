"""What ``vgpubuild hash|nar|store`` do, without typer.

Scripts call these commands in loops, one file at a time, so their start-up is most of
their cost: importing typer alone takes several times Python's own start-up. Their bodies
live here, importing nothing heavy, and :data:`FAST_LANE` lists the option spellings of
each, so :mod:`vgpubuild.cli.app` can run a plain invocation without typer. The typer
declarations (``--help``, completion, error messages for anything unusual) are in
:mod:`vgpubuild.cli.hash` and use the same spellings.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # importing typing (and re, which it loads) costs start-up; mypy
if TYPE_CHECKING:  # reads the name as typing's
    from collections.abc import Callable

    from vgpubuild.nixhash import Hash, HashForm

# Option spellings, shared with the typer declarations.
TO = ("--to", "--format", "-f")
TYPE = ("--type",)
JSON = ("--json",)
OUTPUT = ("-o", "--output")
NAME = ("--name",)
FLAT = ("--flat",)
RECURSIVE = ("--recursive",)


def _debug(event: str, **values: object) -> None:
    """A debug log event (-v); structlog is imported only when it will be shown."""
    if "vgpubuild.log" not in sys.modules:
        return  # nothing configured logging (-v does): the default level hides debug
    from vgpubuild import log

    if log.is_enabled_for(log.DEBUG):
        log.get_logger().debug(event, **values)


def _line(text: str) -> None:
    sys.stdout.write(text + "\n")


def _json(data: object) -> None:
    import json

    _line(json.dumps(data, indent=2, sort_keys=True))


FORM_ALIASES = {"base32": "nix32"}
"""Nix's own names for a form (``nix hash to-base32``, ``nix-hash --base32``)."""


def _check_form(form: str) -> HashForm:
    from vgpubuild.errors import UsageError
    from vgpubuild.nixhash import HASH_FORMS

    form = FORM_ALIASES.get(form, form)
    if form not in HASH_FORMS:
        raise UsageError(
            f"unknown hash form {form!r}",
            hint=f"Use one of: {', '.join(HASH_FORMS)} (base32 is nix32).",
        )
    return form


def _as_json(h: Hash, **extra: str) -> dict[str, str]:
    from vgpubuild.nixhash import HASH_FORMS

    return {**extra, "algo": h.algo, **{f: h.format(f) for f in HASH_FORMS}}


def _emit(h: Hash, form: str, as_json: bool, **extra: str) -> None:
    if as_json:
        _json(_as_json(h, **extra))
    else:
        _line(h.format(_check_form(form)))


def _hash_each(what: Callable[[str, str], Hash], event: str, paths: list[str], to: str,
               algo: str, as_json: bool) -> None:  # fmt: skip
    """One line per path, in order (as ``nix hash file A B``); JSON: one object, or a list."""
    import time

    _check_form(to)
    hashed = []
    for path in paths:
        start = time.monotonic()
        h = what("/dev/stdin" if path == "-" and event == "hashed file" else path, algo)
        _debug(event, path=path, algo=algo, seconds=round(time.monotonic() - start, 3))
        hashed.append((path, h))
    if as_json and len(hashed) > 1:
        _json([_as_json(h, path=path) for path, h in hashed])
        return
    for path, h in hashed:
        _emit(h, to, as_json, path=path)


def hash_file(
    paths: list[str], to: str = "sri", algo: str = "sha256", as_json: bool = False
) -> None:
    """``hash file``: the flat hash of each file's bytes (``-``: standard input)."""
    from vgpubuild.nixhash import hash_file

    _hash_each(hash_file, "hashed file", paths, to, algo, as_json)


def hash_path(
    paths: list[str], to: str = "sri", algo: str = "sha256", as_json: bool = False
) -> None:
    """``hash path``: the recursive (NAR) hash of each file or tree."""
    from vgpubuild.nar import nar_hash

    _hash_each(nar_hash, "hashed NAR", paths, to, algo, as_json)


def hash_convert(
    value: str, to: str = "sri", algo: str | None = None, as_json: bool = False
) -> None:
    """``hash convert``: a hash in another spelling."""
    from vgpubuild.nixhash import Hash

    _check_form(to)
    _emit(Hash.parse(value, algo), to, as_json)


def nar_dump(path: str, output: str | None = None) -> None:
    """``nar dump``: the NAR of ``path`` on stdout or, atomically, in ``output``."""
    from vgpubuild import nar

    if output is None:
        if sys.stdout.isatty():
            from vgpubuild.errors import UsageError

            raise UsageError(
                "refusing to write a binary NAR to a terminal",
                hint="Redirect stdout (> file.nar, | command) or use --output FILE.",
            )
        nar.dump(path, sys.stdout.buffer)
        return
    from vgpubuild.atomic import atomic_file

    with atomic_file(output) as f:
        nar.dump(path, f)
    _debug("wrote NAR", path=path, output=output)


def store_path(
    path: str,
    name: str | None = None,
    flat: bool = False,
    recursive: bool = False,
    as_json: bool = False,
) -> None:
    """``store path``: the store path Nix would give ``path``."""
    from vgpubuild.store import Ingestion, path_for

    if flat and recursive:
        from vgpubuild.errors import UsageError

        raise UsageError("--flat and --recursive exclude each other", hint="Pick one.")
    ingestion: Ingestion = "flat" if flat else "recursive"
    content, found = path_for(path, ingestion, name)
    if as_json:
        _json({"path": path, "ingestion": ingestion, "hash": content.sri, "store_path": found})
    else:
        _line(found)


def _options(*pairs: tuple[tuple[str, ...], str, bool]) -> dict[str, tuple[str, bool]]:
    """Option spelling -> (parameter, takes a value)."""
    return {spelling: (param, value) for spellings, param, value in pairs for spelling in spellings}


_HASH_OPTIONS = _options((TO, "to", True), (TYPE, "algo", True), (JSON, "as_json", False))

FAST_LANE: dict[
    tuple[str, str], tuple[Callable[..., None], tuple[str, ...], dict[str, tuple[str, bool]]]
] = {
    ("hash", "file"): (hash_file, ("paths...",), _HASH_OPTIONS),
    ("hash", "path"): (hash_path, ("paths...",), _HASH_OPTIONS),
    ("hash", "convert"): (hash_convert, ("value",), _HASH_OPTIONS),
    ("nar", "dump"): (nar_dump, ("path",), _options((OUTPUT, "output", True))),
    ("store", "path"): (
        store_path,
        ("path",),
        _options(
            (NAME, "name", True),
            (FLAT, "flat", False),
            (RECURSIVE, "recursive", False),
            (JSON, "as_json", False),
        ),
    ),
}
"""Command words -> (body, its arguments in order, its options). An argument named
``x...`` takes all the words left, as a list (one at least)."""


def fast_call(argv: list[str]) -> Callable[[], None] | None:
    """``argv`` as a ready call of a body above, or None when it is not plainly one.

    Plain means: the command words first, then only the options listed (``--opt value``,
    ``--opt=value``) and the arguments (``-`` is one). Anything else (``--help``, a global
    option, a typo, a missing value) is left to typer, which explains it.
    """
    spec = FAST_LANE.get((argv[0], argv[1])) if len(argv) >= 2 else None
    parsed = _parse(argv[2:], spec[2]) if spec is not None else None
    if spec is None or parsed is None:
        return None
    body, arguments, _ = spec
    kwargs, positional = parsed
    if arguments[-1].endswith("..."):
        if not positional:
            return None
        kwargs[arguments[-1].removesuffix("...")] = positional
    elif len(positional) == len(arguments):
        kwargs.update(zip(arguments, positional, strict=True))
    else:
        return None
    return lambda: body(**kwargs)


def _parse(
    words: list[str], options: dict[str, tuple[str, bool]]
) -> tuple[dict[str, object], list[str]] | None:
    """Options (by parameter) and the other words; None at anything not in ``options``."""
    kwargs: dict[str, object] = {}
    positional: list[str] = []
    rest = iter(words)
    for word in rest:
        if not word.startswith("-") or word == "-":
            positional.append(word)
            continue
        spelling, eq, value = word.partition("=")
        if spelling not in options:
            return None
        param, takes_value = options[spelling]
        if not takes_value:
            if eq:
                return None
            kwargs[param] = True
        elif eq:
            kwargs[param] = value
        elif (following := next(rest, None)) is not None:
            kwargs[param] = following
        else:
            return None  # the value is missing: typer says so
    return kwargs, positional
