"""The typer side of ``vgpubuild``: global options and commands built only when invoked.

typer turns every registered command into a click command, evaluating each annotation,
before it looks at the command line: for all commands, ~50 ms on every call. Here the
root group knows each command's name, module and summary from :data:`COMMANDS`; it
imports and builds the invoked command's module only, and ``vgpubuild --help`` lists the
summaries without importing any command module.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator, MutableMapping
from typing import Annotated, Any, NamedTuple

import typer
from typer.core import TyperGroup

from vgpubuild import __version__
from vgpubuild.errors import exit_code_summary

HELP = """Build patched NVIDIA vGPU drivers reproducibly, for NixOS and everyone else.

Fetches and verifies a release's inputs, runs vGPU-Unlock-patcher's patch.sh, rewrites vgpuConfig.xml (profile overrides, clones) and emits an artifact whose Nix hash and store path are known in advance.

Examples:

\b
  vgpubuild add ./NVIDIA-GRID-Linux-KVM-550.90.05-550.90.07-552.74.zip

\b
  vgpubuild patch --release 17.3 --out ./result

\b
  vgpubuild profiles show nvidia-333 --xml vgpuConfig.xml

\b
  vgpubuild hash path ./result
"""


class Command(NamedTuple):
    module: str
    summary: str  # the first paragraph of the command's own help (a test keeps them equal)


COMMANDS: dict[str, Command] = {  # in the order --help lists them
    "gpus": Command("gpus", "List this machine's NVIDIA GPUs and what each can do with vGPU."),
    "patch": Command(
        "patch",
        "Build a patched vGPU driver tree for a release and print its Nix hash and store path.",
    ),
    "demo": Command(
        "patch",
        "Build the built-in demo release end to end and print its store path (make demo).",
    ),
    "fetch": Command(
        "fetch", "Obtain a release's inputs, verified, into the cache and print where they are."
    ),
    "prefetch": Command(
        "fetch", "Download URL into the cache and print its SRI hash, as nix-prefetch-url does."
    ),
    "add": Command(
        "fetch",
        "Check a file against the catalog (by name and hash), then put it in the cache and "
        "the Nix store.",
    ),
    "nix-builder": Command(
        "nix",
        "Build the patched driver as a Nix derivation's builder (run by Nix, not by hand).",
    ),
    "profiles": Command(
        "profiles",
        "Inspect and edit vgpuConfig.xml: list profiles, override sizes and displays, clone "
        "GPUs, remap P40 profiles. Edits keep the file byte-identical except the changed values.",
    ),
    "releases": Command(
        "releases", "The vGPU releases vgpubuild can build (built in, plus your own)."
    ),
    "hash": Command("hash", "Hash files and trees exactly as Nix does."),
    "nar": Command("hash", "Write NAR archives (nix-store --dump)."),
    "store": Command("hash", "Compute Nix store paths without Nix."),
    "cache": Command(
        "nix", "vgpubuild's own cache (list, clean) and Nix binary cache folders (export)."
    ),
}


def load(name: str) -> Any:
    """Import the module of command ``name`` and build its commands; return that one."""
    holder = typer.Typer()
    importlib.import_module(f"vgpubuild.cli.{COMMANDS[name].module}").register(holder)
    return typer.main.get_group(holder).commands[name]


class _Commands(MutableMapping[str, Any]):
    """Every command's name (typer's "did you mean" reads them); a command is imported and
    built when first looked up."""

    def __init__(self) -> None:
        self._built: dict[str, Any] = {}

    def __getitem__(self, name: str) -> Any:
        if name not in COMMANDS:
            raise KeyError(name)
        if name not in self._built:
            self._built[name] = load(name)
        return self._built[name]

    def __setitem__(self, name: str, command: Any) -> None:
        self._built[name] = command

    def __delitem__(self, name: str) -> None:
        del self._built[name]

    def __iter__(self) -> Iterator[str]:
        return iter(COMMANDS)

    def __len__(self) -> int:
        return len(COMMANDS)


class _LazyGroup(TyperGroup):
    """The root group: every command listed, only the invoked one imported and built.

    Its help is click's plain layout: typer's boxed one imports rich's markdown and syntax
    highlighting, which would make ``vgpubuild --help`` take 2-3x longer. The commands'
    own help keeps the boxes.
    """

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        self.commands = _Commands()

    def list_commands(self, ctx: Any) -> list[str]:
        return list(COMMANDS)

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, command.summary) for name, command in COMMANDS.items()])


debug = {"on": False}
"""Set by ``--debug``; the entry point puts its own flag here, and shows tracebacks then."""

app = typer.Typer(
    name="vgpubuild",
    cls=_LazyGroup,
    rich_markup_mode=None,
    help=HELP,
    epilog=exit_code_summary(),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)

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
    debug_on: Annotated[
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
    debug["on"] = debug_on
    level = log.DEBUG if (verbose or debug_on) else log.WARNING if quiet else log.INFO
    log.configure(log_format, level)  # type: ignore[arg-type]


_CLICK_ERROR: type[Exception] = next(
    cls for cls in typer.BadParameter.__mro__ if cls.__name__ == "ClickException"
)
"""click's usage-error base (vendored inside typer in recent releases, so found by name)."""


def run() -> int:
    """Run the command line through typer; click's usage errors become one line."""
    from vgpubuild.cli.globalopts import hoist

    try:
        args = hoist(lambda: typer.main.get_command(app), sys.argv[1:])
        code = app(args=args, prog_name="vgpubuild", standalone_mode=False)
    except _CLICK_ERROR as exc:
        # click's own usage errors (unknown option, missing argument): one line too.
        ctx = getattr(exc, "ctx", None)
        where = ctx.command_path if ctx else "vgpubuild"
        message = exc.format_message().rstrip(".")  # type: ignore[attr-defined]
        if not message:  # no arguments at all: the help is the answer
            exc.show()  # type: ignore[attr-defined]
            return int(exc.exit_code)  # type: ignore[attr-defined]
        sys.stderr.write(f"error: {message}. Run '{where} --help' for usage.\n")
        return int(exc.exit_code)  # type: ignore[attr-defined]
    return code if isinstance(code, int) else 0
