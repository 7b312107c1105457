"""The ``vgpubuild`` entry point: global options, command registration, error reporting."""

from __future__ import annotations

import os
import signal
import sys
import traceback
from types import FrameType
from typing import Annotated, NoReturn

import typer

from vgpubuild import __version__
from vgpubuild.errors import (
    DiskFullError,
    Interrupted,
    VgpubuildError,
    exit_code_summary,
    is_disk_full,
)

HELP = """Build patched NVIDIA vGPU drivers reproducibly, for NixOS and everyone else.

Fetches and verifies a release's inputs, runs vGPU-Unlock-patcher's patch.sh, rewrites vgpuConfig.xml (profile overrides, clones) and emits an artifact whose Nix hash and store path are known in advance.

Examples:

  vgpubuild add ./NVIDIA-GRID-Linux-KVM-550.90.05-550.90.07-552.74.zip

  vgpubuild patch --release 17.3 --out ./result

  vgpubuild profiles show nvidia-333 --xml vgpuConfig.xml

  vgpubuild hash path ./result
"""

EPILOG = exit_code_summary()

app = typer.Typer(
    name="vgpubuild",
    help=HELP,
    epilog=EPILOG,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)

_debug = {"on": False}


def _version(value: bool) -> None:
    if value:
        typer.echo(f"vgpubuild {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show tracebacks and debug logs on errors.")
    ] = False,
    log_format: Annotated[
        str,
        typer.Option(
            "--log-format",
            help="Log style on stderr: auto (readable), console, or json (one object a line).",
        ),
    ] = "auto",
    verbose: Annotated[bool, typer.Option("-v", "--verbose", help="Log debug details.")] = False,
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="Log warnings only.")] = False,
) -> None:
    from vgpubuild import log
    from vgpubuild.errors import UsageError

    if log_format not in ("auto", "console", "json"):
        raise UsageError(f"unknown log format {log_format!r}", hint="Use auto, console or json.")
    _debug["on"] = debug
    level = log.DEBUG if (verbose or debug) else log.WARNING if quiet else log.INFO
    log.configure(log_format, level)  # type: ignore[arg-type]


def _register_all() -> None:
    import importlib

    for name in ("gpus", "patch", "profiles", "releases", "fetch", "hash", "nix"):  # help order
        importlib.import_module(f"vgpubuild.cli.{name}").register(app)


_register_all()


_CLICK_ERROR: type[Exception] = next(
    cls for cls in typer.BadParameter.__mro__ if cls.__name__ == "ClickException"
)
"""click's usage-error base (vendored inside typer in recent releases, so found by name)."""


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
    if _debug["on"]:
        traceback.print_exc()
    from vgpubuild.log import redact

    sys.stderr.write(f"error: {redact(str(exc))}\n")
    sys.exit(exc.exit_code)


def main() -> None:
    """Run the CLI; turn vgpubuild errors into one line on stderr and their exit code."""
    for sig in _SIGNAL_WORDS:
        signal.signal(sig, _on_stop_signal)
    try:
        from vgpubuild.cli.globalopts import hoist

        args = hoist(lambda: typer.main.get_command(app), sys.argv[1:])
        code = app(args=args, prog_name="vgpubuild", standalone_mode=False)
    except _CLICK_ERROR as exc:
        # click's own usage errors (unknown option, missing argument): one line too.
        ctx = getattr(exc, "ctx", None)
        where = ctx.command_path if ctx else "vgpubuild"
        message = exc.format_message().rstrip(".")  # type: ignore[attr-defined]
        if not message:  # no arguments at all: the help is the answer
            exc.show()  # type: ignore[attr-defined]
            sys.exit(exc.exit_code)  # type: ignore[attr-defined]
        sys.stderr.write(f"error: {message}. Run '{where} --help' for usage.\n")
        sys.exit(exc.exit_code)  # type: ignore[attr-defined]
    except VgpubuildError as exc:
        _fail(exc)
    except Exception as exc:
        if _debug["on"]:
            raise
        if isinstance(exc, OSError) and (known := _os_error(exc)) is not None:
            _fail(known)
        exc_type, exc_value, _ = sys.exc_info()
        sys.stderr.write(
            f"error: internal error ({exc_type.__name__ if exc_type else '?'}: {exc_value}). "
            "Run again with --debug and report the traceback.\n"
        )
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)
