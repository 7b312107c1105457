"""The README is the user's contract: it must show the two commands and the real exit codes."""

from pathlib import Path

from vgpubuild.errors import exit_code_table

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def test_readme_exit_codes_match_the_hierarchy() -> None:
    assert exit_code_table() in README


def test_readme_shows_the_two_commands() -> None:
    assert "make demo" in README and "make test" in README
