"""The ``vgpubuild`` entry point: a fast lane, then typer; errors become one line.

A short command's time is mostly start-up, and importing typer alone costs several times
Python's own start-up. So ``--version`` and the plain forms of the hashing commands (see
:func:`vgpubuild.cli.hashing.fast_call`) run without typer; everything else goes through
:mod:`vgpubuild.cli.root`, which builds only the invoked command.
"""

from __future__ import annotations

import os
import signal
import sys

from vgpubuild import __version__
from vgpubuild.errors import DiskFullError, Interrupted, VgpubuildError, is_disk_full

TYPE_CHECKING = False  # typer is loaded only when the fast lane does not take the command
if TYPE_CHECKING:
    from types import FrameType
    from typing import NoReturn

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

    root.debug = _debug  # --debug sets the flag main() reads
    return root.run()


def __getattr__(name: str) -> object:
    """``app``: the typer application (in :mod:`vgpubuild.cli.root`, loaded on demand)."""
    if name == "app":
        from vgpubuild.cli.root import app

        return app
    raise AttributeError(name)


_debug = {"on": False}
"""Set by ``--debug`` (on the typer path): errors then show their traceback."""


def _debug_on() -> bool:
    return _debug["on"]


_SIGNAL_WORDS = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM", signal.SIGHUP: "SIGHUP"}


def _on_stop_signal(signum: int, _frame: FrameType | None) -> None:
    """Ctrl-C, SIGTERM (timeout, systemd, CI cancel) and SIGHUP end the run the same way.

    The first one raises, so every ``finally`` on the way out cleans up (patch.sh's process
    group is killed, the work folder removed); later ones are ignored until the run has
    cleaned up, so an impatient second Ctrl-C cannot leave half a folder behind.
    """
    for sig in _SIGNAL_WORDS:
        signal.signal(sig, signal.SIG_IGN)
    raise Interrupted(
        f"interrupted ({_SIGNAL_WORDS[signal.Signals(signum)]})",
        hint="Nothing partial was left at the output",
        signum=signum,
    )


def _os_error(exc: OSError) -> VgpubuildError | None:
    """A last resort for an ``OSError`` no layer turned into a vgpubuild error."""
    if is_disk_full(exc):
        where = os.path.dirname(exc.filename) if isinstance(exc.filename, str) else "."
        return DiskFullError(where or ".")
    return None


def _fail(exc: VgpubuildError) -> NoReturn:
    if _debug_on():
        import traceback

        traceback.print_exc()
    from vgpubuild.log import redact

    sys.stderr.write(f"error: {redact(str(exc))}\n")
    sys.exit(exc.exit_code)


def main() -> None:
    """Run the CLI; turn vgpubuild errors into one line on stderr and their exit code."""
    for sig in _SIGNAL_WORDS:
        signal.signal(sig, _on_stop_signal)
    try:
        code = _dispatch(sys.argv[1:])
    except VgpubuildError as exc:
        _fail(exc)
    except Exception as exc:
        if _debug_on():
            raise
        if isinstance(exc, OSError) and (known := _os_error(exc)) is not None:
            _fail(known)
        sys.stderr.write(
            f"error: internal error ({type(exc).__name__}: {exc}). "
            "Run again with --debug and report the traceback.\n"
        )
        sys.exit(1)
    sys.exit(code)
