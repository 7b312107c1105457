"""The ``vgpubuild`` entry point: a fast lane, then typer; errors become one line.

A short command's time is mostly start-up, and importing typer alone costs several times
Python's own start-up. So ``--version`` and the plain forms of the hashing commands (see
:func:`vgpubuild.cli.hashing.fast_call`) run without typer; everything else goes through
:mod:`vgpubuild.cli.root`, which builds only the invoked command.
"""

from __future__ import annotations

import sys

from vgpubuild import __version__
from vgpubuild.errors import Interrupted, VgpubuildError

TYPE_CHECKING = False  # typer is loaded only when the fast lane does not take the command
if TYPE_CHECKING:
    import typer

    app: typer.Typer

_FAST_GROUPS = frozenset(("hash", "nar", "store"))


def _dispatch(argv: list[str]) -> int:
    if argv == ["--version"]:
        sys.stdout.write(f"vgpubuild {__version__}\n")
        return 0
    if argv and argv[0] in _FAST_GROUPS:
        from vgpubuild.cli.hashing import fast_call

        call = fast_call(argv)
        if call is not None:
            call()
            return 0
    from vgpubuild.cli import root

    return root.run()


def __getattr__(name: str) -> object:
    """``app``: the typer application (in :mod:`vgpubuild.cli.root`, loaded on demand)."""
    if name == "app":
        from vgpubuild.cli.root import app

        return app
    raise AttributeError(name)


def _debug_on() -> bool:
    root = sys.modules.get("vgpubuild.cli.root")
    return bool(root is not None and root.debug["on"])


def main() -> None:
    """Run the CLI; turn vgpubuild errors into one line on stderr and their exit code."""
    try:
        try:
            code = _dispatch(sys.argv[1:])
        except KeyboardInterrupt:  # the fast lane has no signal handler of its own
            raise Interrupted(
                "interrupted", hint="Nothing partial was left at the output."
            ) from None
    except VgpubuildError as exc:
        if _debug_on():
            import traceback

            traceback.print_exc()
        from vgpubuild.log import redact

        sys.stderr.write(f"error: {redact(str(exc))}\n")
        sys.exit(exc.exit_code)
    except Exception:
        if _debug_on():
            raise
        if isinstance(exc, OSError) and (known := _os_error(exc)) is not None:
            _fail(known)
        exc_type, exc_value, _ = sys.exc_info()
        sys.stderr.write(
            f"error: internal error ({exc_type.__name__ if exc_type else '?'}: {exc_value}). "
            "Run again with --debug and report the traceback.\n"
        )
        sys.exit(1)
    sys.exit(code)
