"""Global options after the command too: ``vgpubuild hash file X -v`` as ``vgpubuild -v hash file X``.

click only accepts a group's options before the subcommand's name, but people add ``-v``
or ``--debug`` at the end of the command they just ran. :func:`hoist` moves those options
in front of the command before click parses anything. It knows the command's own
options, so a token that is the value of one of them (``--extra -v``) stays where it is,
and ``--`` ends the scan. Nothing is imported or built when no global option follows the
command (the common case).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

FLAGS = frozenset(("--debug", "-v", "--verbose", "-q", "--quiet"))
VALUED = "--log-format"


def _is_global(token: str) -> bool:
    return token in FLAGS or token == VALUED or token.startswith(VALUED + "=")


def _command_start(args: list[str]) -> int:
    """Index of the first token that is not a root option (the command's name)."""
    i = 0
    while i < len(args) and args[i].startswith("-"):
        i += 2 if args[i] == VALUED else 1
    return i


def hoist(root: Callable[[], Any], args: list[str]) -> list[str]:
    """``args`` with the global options that follow the command moved before it.

    ``root`` builds the click group of the whole CLI; it is called only when a global
    option does follow the command.
    """
    start = _command_start(args)
    if not any(_is_global(token) for token in args[start:]):
        return args
    import typer

    command, end = root(), start
    while end < len(args) and hasattr(command, "get_command"):
        sub = command.get_command(typer.Context(command), args[end])
        if sub is None:
            return args  # an unknown command: click says so
        command, end = sub, end + 1
    own: set[str] = set()
    takes_value: set[str] = set()
    for param in command.params:
        names = [*param.opts, *param.secondary_opts]
        own.update(names)
        if param.param_type_name == "option" and not (param.is_flag or param.count):
            takes_value.update(names)
    moved: list[str] = []
    kept: list[str] = []
    i = end
    while i < len(args):
        token = args[i]
        if token == "--":
            kept += args[i:]
            break
        width = 2 if token in takes_value or (token == VALUED and token not in own) else 1
        if _is_global(token) and token not in own:
            moved += args[i : i + width]
        else:
            kept += args[i : i + width]
        i += width
    return [*args[:start], *moved, *args[start:end], *kept]
