"""The hash/nar/store commands from the outside: bad input gives one `error:` line and the
right exit code, help teaches, logs go to stderr (JSON on request), data to stdout."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Result, require_tool, run_cli
from treegen import cli_cmd, mixed_tree, write_file

from vgpubuild.errors import exit_code_table
from vgpubuild.nixhash import HASH_FORMS


def assert_one_line_error(r: Result, code: int, *fragments: str) -> None:
    assert r.exit_code == code, (r.exit_code, r.stderr)
    assert r.stderr.startswith("error: "), r.stderr
    assert r.stderr.count("\n") == 1 and r.stderr.endswith("\n"), r.stderr
    assert "Traceback" not in r.stderr
    for fragment in fragments:
        assert fragment in r.stderr, r.stderr


# Missing and special files ---------------------------------------------------------------

TREE_COMMANDS = (("hash", "path"), ("nar", "dump"), ("store", "path"))


@pytest.mark.parametrize(
    "command", [("hash", "file"), *TREE_COMMANDS, ("store", "path", "--flat")], ids=" ".join
)
def test_missing_path(command: tuple[str, ...], tmp_path: Path) -> None:
    r = run_cli(*command, str(tmp_path / "nope"))
    assert_one_line_error(r, 4, "does not exist", "nope")
    assert r.stdout == ""


@contextlib.contextmanager
def special_file(kind: str, path: Path) -> Iterator[Path]:
    """A fifo, a bound unix socket, or a real character device node (root only)."""
    if kind == "fifo":
        os.mkfifo(path)
        yield path
    elif kind == "socket":
        with socket.socket(socket.AF_UNIX) as sock:
            sock.bind(str(path))
            yield path
    else:
        if os.geteuid() != 0:
            pytest.skip("creating a device node needs root")
        os.mknod(path, 0o600 | stat.S_IFCHR, os.makedev(1, 3))  # same numbers as /dev/null
        yield path


WORD = {"fifo": "fifo", "socket": "socket", "device": "device node"}
"""How the error names each kind of special file."""


@pytest.mark.parametrize("kind", ["fifo", "socket", "device"])
@pytest.mark.parametrize("command", TREE_COMMANDS, ids=" ".join)
def test_special_file_inside_a_tree(kind: str, command: tuple[str, ...], tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    write_file(tree / "a-file", 10)
    with special_file(kind, tree / "sub" / "odd"):
        r = run_cli(*command, str(tree))
    assert_one_line_error(r, 4, f"is a {WORD[kind]}", "sub/odd", "NAR cannot contain")


@pytest.mark.parametrize("kind", ["socket", "device"])
def test_hash_file_refuses_sockets_and_devices(kind: str, tmp_path: Path) -> None:
    with special_file(kind, tmp_path / "odd"):
        r = run_cli("hash", "file", str(tmp_path / "odd"))
    assert_one_line_error(r, 4, f"is a {WORD[kind]}, not a regular file")


def test_hash_file_reads_a_pipe_to_its_end() -> None:
    r = run_cli("hash", "file", "/dev/stdin", "--to", "base16", input=b"hi\n")
    assert r.exit_code == 0, r.stderr
    assert r.stdout == "98ea6e4f216f2fb4b69fff9b3a44842c38686ca685f3f55dc48c5d3fb1107be4\n"


def test_hash_file_of_a_directory_points_to_hash_path(tmp_path: Path) -> None:
    assert_one_line_error(run_cli("hash", "file", str(tmp_path)), 4, "is a directory", "hash path")


# Unreadable input (the suite runs as root, so the child drops its file-access override) ---


def run_unprivileged(*args: str) -> Result:
    cmd = cli_cmd(*args)
    if os.geteuid() == 0:
        cmd = [require_tool("setpriv"), "--bounding-set", "-dac_override,-dac_read_search", *cmd]
    proc = subprocess.run(cmd, capture_output=True, check=False)
    return Result(
        proc.returncode, proc.stdout.decode(errors="backslashreplace"), proc.stderr.decode(errors="backslashreplace"), proc.stdout
    )


@pytest.fixture
def locked_tree(tmp_path: Path) -> Iterator[Path]:
    tree = mixed_tree(tmp_path / "tree")
    (tree / "names" / "a0").chmod(0o000)
    yield tree
    (tree / "names" / "a0").chmod(0o644)


@pytest.mark.parametrize("command", [*TREE_COMMANDS, ("hash", "file")], ids=" ".join)
def test_unreadable_file(command: tuple[str, ...], locked_tree: Path) -> None:
    target = locked_tree / "names" / "a0" if command == ("hash", "file") else locked_tree
    r = run_unprivileged(*command, str(target))
    assert_one_line_error(r, 4, "cannot read", "a0", "permission denied")


def test_unreadable_directory(locked_tree: Path) -> None:
    (locked_tree / "names" / "a0").chmod(0o644)
    (locked_tree / "sub").chmod(0o000)
    try:
        r = run_unprivileged("hash", "path", str(locked_tree))
    finally:
        (locked_tree / "sub").chmod(0o755)
    assert_one_line_error(r, 4, "cannot list directory", "permission denied")


def test_the_tree_is_readable_once_unlocked(locked_tree: Path) -> None:
    """Guards the two tests above: the only failure there is the locked entry."""
    (locked_tree / "names" / "a0").chmod(0o644)
    assert run_unprivileged("hash", "path", str(locked_tree)).exit_code == 0


# Invalid values ----------------------------------------------------------------------------

GOOD_HEX = "98ea6e4f216f2fb4b69fff9b3a44842c38686ca685f3f55dc48c5d3fb1107be4"


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        (GOOD_HEX[:-2], "fits no encoding"),  # bad length
        (GOOD_HEX[:-1] + "x", "invalid hex digit"),  # bad alphabet
        ("1r3v22qkypccqifzbww5lrn6hf1chi23m6zzkyvb8bvg457nxsle", "invalid character 'e'"),
        ("sha512:" + GOOD_HEX, "not a valid sha512 hash"),  # wrong algorithm prefix
        ("whirlpool:" + GOOD_HEX, "unknown hash algorithm"),
        ("z" * 52, "does not fit"),  # nix32 overflow
        ("sha256-not/base64!", "SRI base64 part"),
    ],
)
def test_invalid_hash_strings(value: str, fragment: str) -> None:
    assert_one_line_error(run_cli("hash", "convert", value), 2, fragment)


def test_hash_of_one_algorithm_given_for_another() -> None:
    r = run_cli("hash", "convert", "--type", "sha512", "sha256:" + GOOD_HEX)
    assert_one_line_error(r, 2, "is sha256, but a sha512 hash is expected")


@pytest.mark.parametrize("command", [("hash", "file"), ("hash", "path")], ids=" ".join)
def test_unknown_form_and_algorithm(command: tuple[str, ...], tmp_path: Path) -> None:
    f = str(write_file(tmp_path / "f", 3))
    assert_one_line_error(run_cli(*command, f, "--to", "hex"), 2, "unknown hash form 'hex'")
    assert_one_line_error(run_cli(*command, f, "--type", "sha3"), 2, "unknown hash algorithm")


# Output problems ---------------------------------------------------------------------------


def test_nar_dump_refuses_a_terminal(tmp_path: Path) -> None:
    f = write_file(tmp_path / "f", 3)
    controller, terminal = pty.openpty()
    try:
        proc = subprocess.run(
            cli_cmd("nar", "dump", str(f)), stdout=terminal, stderr=subprocess.PIPE, check=False
        )
    finally:
        os.close(terminal)
        os.close(controller)
    r = Result(proc.returncode, "", proc.stderr.decode(errors="backslashreplace"), b"")
    assert_one_line_error(r, 2, "terminal", "--output")


def test_nar_dump_into_a_pipe_closed_early(tmp_path: Path) -> None:
    big = write_file(tmp_path / "big", 8 << 20)
    with subprocess.Popen(
        cli_cmd("nar", "dump", str(big)), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        assert len(proc.stdout.read(100)) == 100
        proc.stdout.close()
        stderr = proc.stderr.read().decode(errors="backslashreplace")
    assert_one_line_error(Result(proc.wait(), "", stderr, b""), 11, "closed the pipe")


def test_nar_dump_output_in_an_unwritable_place(tmp_path: Path) -> None:
    f = write_file(tmp_path / "f", 3)
    r = run_cli("nar", "dump", "-o", str(f / "below-a-file.nar"), str(f))
    assert_one_line_error(r, 11)


def test_failed_nar_dump_leaves_no_output_file(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    write_file(tree / "a", 100)
    os.mkfifo(tree / "z-fifo")
    out = tmp_path / "out.nar"
    assert_one_line_error(run_cli("nar", "dump", "-o", str(out), str(tree)), 4, "fifo")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tree"]


# Help, logs, streams -----------------------------------------------------------------------

SUBCOMMANDS = [
    ("hash", "file"),
    ("hash", "path"),
    ("hash", "convert"),
    ("nar", "dump"),
    ("store", "path"),
]


@pytest.mark.parametrize("command", SUBCOMMANDS, ids=" ".join)
def test_subcommand_help_has_an_example(command: tuple[str, ...]) -> None:
    r = run_cli(*command, "--help")
    assert r.exit_code == 0 and r.stderr == ""
    assert "Example: vgpubuild " + " ".join(command) in " ".join(r.stdout.split())


def test_top_level_help_lists_the_commands_and_exit_codes() -> None:
    r = run_cli("--help")
    assert r.exit_code == 0
    text = " ".join(r.stdout.split())
    for group in ("hash", "nar", "store"):
        assert f" {group} " in text
    assert "Exit codes: 0 success" in text and "4 input" in text


def test_json_logs_go_to_stderr_and_data_to_stdout(tmp_path: Path) -> None:
    tree = mixed_tree(tmp_path / "tree")
    r = run_cli("-v", "--log-format", "json", "hash", "path", "--to", "nix32", str(tree))
    assert r.exit_code == 0, r.stderr
    assert len(r.stdout.splitlines()) == 1 and len(r.stdout.strip()) == 52
    events = [json.loads(line) for line in r.stderr.splitlines()]
    assert events and events[0]["event"] == "hashed NAR" and events[0]["level"] == "debug"
    assert events[0]["path"] == str(tree)


def test_no_log_lines_without_verbose(tmp_path: Path) -> None:
    r = run_cli("--log-format", "json", "hash", "file", str(write_file(tmp_path / "f", 1)))
    assert r.exit_code == 0 and r.stderr == ""


def test_unknown_log_format_is_a_usage_error() -> None:
    assert_one_line_error(run_cli("--log-format", "xml", "hash", "convert", GOOD_HEX), 2)


@pytest.mark.parametrize("form", HASH_FORMS)
def test_json_output_has_every_form(form: str, tmp_path: Path) -> None:
    f = str(write_file(tmp_path / "f", 5))
    data = json.loads(run_cli("hash", "file", "--json", f).stdout)
    assert data[form] == run_cli("hash", "file", "--to", form, f).stdout.strip()


def test_docs_list_the_exit_codes(repo_root: Path) -> None:
    assert exit_code_table() in (repo_root / "docs" / "hashing.md").read_text()


def test_module_entry_point_runs() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "vgpubuild", "--version"], capture_output=True, check=False
    )
    assert proc.returncode == 0 and proc.stdout.startswith(b"vgpubuild ")
