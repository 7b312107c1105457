"""Start-up: only the invoked command's module is imported and built, the fast lane for
the hashing commands behaves exactly as their typer declarations, and the lists that make
this possible (command summaries, option spellings) agree with what the modules declare."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_cli
from treegen import mixed_tree, write_file

from vgpubuild.cli import root
from vgpubuild.cli.hashing import FAST_LANE

COMMAND_MODULES = {f"vgpubuild.cli.{command.module}" for command in root.COMMANDS.values()}


SHOW_MODULES = """
import atexit, sys
atexit.register(lambda: sys.stderr.write("MODULES " + " ".join(sorted(sys.modules)) + "\\n"))
sys.argv = ["vgpubuild", *sys.argv[1:]]
from vgpubuild.cli.app import main
main()
"""


def imported(*args: str) -> set[str]:
    """The modules ``vgpubuild ARGS`` has loaded when it exits."""
    proc = subprocess.run(
        [sys.executable, "-c", SHOW_MODULES, *args],
        capture_output=True,
        text=True,
        errors="backslashreplace",
        check=False,
    )
    line = next(line for line in proc.stderr.splitlines() if line.startswith("MODULES "))
    return set(line.split()[1:])


def test_fast_lane_imports_neither_typer_nor_any_command_module(tmp_path: Path) -> None:
    f = str(write_file(tmp_path / "f", 10))
    for args in (
        ("hash", "convert", "sha256-" + "A" * 43 + "="),
        ("hash", "path", f),
        ("--version",),
    ):
        modules = imported(*args)
        assert "typer" not in modules, args
        assert not modules & COMMAND_MODULES, args
        assert "typing" not in modules and "dataclasses" not in modules, args


@pytest.mark.parametrize(
    ("args", "module"),
    [
        (("releases", "list"), "vgpubuild.cli.releases"),
        (("-q", "hash", "convert", "sha256-" + "A" * 43 + "="), "vgpubuild.cli.hash"),
        (("profiles", "--help"), "vgpubuild.cli.profiles"),
    ],
)
def test_typer_path_builds_only_the_invoked_commands_module(
    args: tuple[str, ...], module: str
) -> None:
    modules = imported(*args)
    assert "typer" in modules
    assert modules & COMMAND_MODULES == {module}


def test_top_level_help_imports_no_command_module_and_no_rich() -> None:
    modules = imported("--help")
    assert not modules & COMMAND_MODULES
    assert not {m for m in modules if m.split(".")[0] == "rich"}


def test_help_summaries_are_the_commands_own() -> None:
    """--help lists COMMANDS' summaries without loading the modules: they must agree."""
    for name, command in root.COMMANDS.items():
        built = root.load(name)
        own = " ".join((built.short_help or built.help or "").split("\n\n")[0].split())
        assert own == command.summary, name


def test_every_registered_command_is_listed() -> None:
    """A command a module registers but COMMANDS does not name could never be invoked."""
    import importlib

    import typer

    for module_name in {command.module for command in root.COMMANDS.values()}:
        holder = typer.Typer()
        importlib.import_module(f"vgpubuild.cli.{module_name}").register(holder)
        for name in typer.main.get_group(holder).commands:
            assert name in root.COMMANDS, f"{name} (vgpubuild.cli.{module_name}) is not listed"
            assert root.COMMANDS[name].module == module_name, name


def test_typo_in_a_command_name_is_answered_with_a_suggestion() -> None:
    r = run_cli("hsh")
    assert r.exit_code == 2 and "Did you mean 'hash'?" in r.stderr


# The fast lane: same behaviour as typer, same spellings ----------------------------------


def test_fast_lane_spellings_are_the_typer_declarations() -> None:
    for (group, name), (_, arguments, options) in FAST_LANE.items():
        command = root.load(group).commands[name]
        declared = {
            opt: (param.name, not param.is_flag)
            for param in command.params
            if param.param_type_name == "option" and param.name != "help"
            for opt in param.opts
        }
        got = {spelling: (param, value) for spelling, (param, value) in options.items()}
        assert got == declared, (group, name)
        positional = [
            f"{p.name}..." if p.nargs == -1 else p.name
            for p in command.params
            if p.param_type_name == "argument"
        ]
        assert positional == list(arguments), (group, name)


def _both(*args: str) -> tuple[tuple[int, bytes, str], tuple[int, bytes, str]]:
    """``vgpubuild ARGS`` by the fast lane, and by typer (a global option turns it off)."""
    fast, typer_path = run_cli(*args), run_cli("--log-format", "auto", *args)
    return (
        (fast.exit_code, fast.stdout_bytes, fast.stderr),
        (typer_path.exit_code, typer_path.stdout_bytes, typer_path.stderr),
    )


@pytest.mark.parametrize(
    "args",
    [
        ("hash", "path", "{tree}"),
        ("hash", "path", "{tree}", "{file}", "--json"),
        ("hash", "file", "--to", "base32", "{file}", "{tree}/file8"),
        ("hash", "path", "--to", "nix32", "--type", "sha512", "{tree}"),
        ("hash", "path", "--to=base16", "{tree}"),
        ("hash", "file", "-f", "base64", "--json", "{file}"),
        ("hash", "file", "{tree}"),  # a directory: the one-line error
        ("hash", "path", "{tree}/missing"),
        ("hash", "path", "--to", "hex", "{tree}"),
        ("hash", "convert", "--type", "sha1", "0" * 40, "--to", "sri"),
        ("hash", "convert", "not-a-hash"),
        ("nar", "dump", "{file}"),
        ("nar", "dump", "-o", "{out}", "{tree}"),
        ("store", "path", "--flat", "--json", "{file}"),
        ("store", "path", "--name", "x", "--recursive", "{tree}"),
        ("store", "path", "--flat", "--recursive", "{tree}"),
    ],
)
def test_fast_lane_and_typer_give_the_same_result(args: tuple[str, ...], tmp_path: Path) -> None:
    tree = mixed_tree(tmp_path / "tree")
    names = {"tree": str(tree), "file": str(tree / "file7"), "out": str(tmp_path / "o.nar")}
    fast, slow = _both(*(arg.format(**names) for arg in args))
    assert fast == slow
    if args[0:2] != ("nar", "dump") or "-o" not in args:
        return
    assert Path(names["out"]).read_bytes() == run_cli("nar", "dump", str(tree)).stdout_bytes


@pytest.mark.parametrize(
    "args",
    [
        ("hash", "path", "--help"),
        ("hash", "path", "--bogus", "x"),
        ("hash", "path", "--to"),
        ("hash", "convert", "a", "b"),
        ("hash", "path"),
        ("nar", "dump", "--", "x"),
        ("store", "path", "--json=yes", "x"),
    ],
)
def test_anything_unusual_is_left_to_typer(args: tuple[str, ...]) -> None:
    from vgpubuild.cli.hashing import fast_call

    assert fast_call(list(args)) is None
