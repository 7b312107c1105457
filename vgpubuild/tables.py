"""The user's TOML and JSON documents, parsed in one place with one set of error messages.

Build configs, overrides files, release definitions, vgpu_unlock-rs files and the Nix
builder's ``config`` attribute all come from the user. Whatever the file holds, parsing it
ends in a table or in a :class:`ConfigError`: a syntax error says where, and a document
that nests deeper than any real one is refused here, before a recursive step (a parser,
a schema check, a merge) could exhaust Python's stack on it.
"""

from __future__ import annotations

import json
import tomllib
from typing import Any, Literal

from vgpubuild.errors import ConfigError

MAX_DEPTH = 32
"""Deepest nesting of tables and lists accepted (the deepest real document needs 5)."""

Syntax = Literal["toml", "json"]


def parse_table(text: str, source: str, syntax: Syntax) -> dict[str, Any]:
    """Parse ``text`` (named ``source`` in errors) as a table of ``syntax``."""
    try:
        data = json.loads(text) if syntax == "json" else tomllib.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{source} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
            hint="Fix the syntax (builtins.toJSON output loads as is).",
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source} is not valid TOML: {exc}", hint="Fix the syntax.") from None
    except RecursionError:
        raise _too_deep(source) from None
    check_depth(data, source)
    if not isinstance(data, dict):
        raise ConfigError(
            f"{source} must hold a table, not a {type(data).__name__}",
            hint='Write options as keys, e.g. release = "17.3".',
        )
    return data


def check_depth(data: Any, source: str) -> None:
    """Refuse ``data`` (already parsed, e.g. by Nix) if it nests deeper than :data:`MAX_DEPTH`."""
    if _depth(data) > MAX_DEPTH:
        raise _too_deep(source)


def _too_deep(source: str) -> ConfigError:
    return ConfigError(
        f"{source} nests tables or lists more than {MAX_DEPTH} levels deep",
        hint="Such files are a few levels deep; check that this is the right file.",
    )


def _depth(value: Any) -> int:
    """How deeply tables and lists nest in ``value`` (walked without recursion)."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, level = stack.pop()
        deepest = max(deepest, level)
        if isinstance(item, dict):
            stack.extend((v, level + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, level + 1) for v in item)
    return deepest
