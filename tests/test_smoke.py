"""The CLI starts, reports its version, and maps errors to their exit codes."""

from conftest import run_cli

from vgpubuild import __version__


def test_version() -> None:
    r = run_cli("--version")
    assert r.exit_code == 0
    assert r.stdout.strip() == f"vgpubuild {__version__}"


def test_missing_path_is_one_line_input_error() -> None:
    r = run_cli("hash", "file", "/nonexistent/file")
    assert r.exit_code == 4
    assert r.stderr.count("\n") == 1
    assert r.stderr.startswith("error: ") and "does not exist" in r.stderr
    assert "Traceback" not in r.stderr


def test_click_usage_errors_are_one_line_with_the_way_out() -> None:
    r = run_cli("hash", "file", "--bogus", "x")
    assert r.exit_code == 2
    assert r.stderr == (
        "error: No such option: --bogus. Run 'vgpubuild hash file --help' for usage.\n"
    )


def test_no_arguments_prints_the_help() -> None:
    r = run_cli()
    assert r.exit_code == 2
    assert "Usage: vgpubuild" in r.stdout + r.stderr
