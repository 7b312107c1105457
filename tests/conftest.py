"""Shared test helpers: reference tools that must exist in CI, and running the CLI."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_tool(name: str) -> str:
    """Path of a reference tool; in CI its absence fails the test, elsewhere it skips."""
    found = shutil.which(name)
    if found:
        return found
    message = f"reference tool {name!r} is not installed (make tools installs it as root)"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


@dataclass
class Result:
    exit_code: int
    stdout: str
    stderr: str
    stdout_bytes: bytes


def run_cli(*args: str, input: bytes | None = None, env: dict[str, str] | None = None,
            cwd: str | os.PathLike[str] | None = None, timeout: float = 600) -> Result:
    """Run ``python -m vgpubuild ARGS`` as a real process, as a user would."""
    proc = subprocess.run(
        [sys.executable, "-m", "vgpubuild", *args],
        input=input,
        capture_output=True,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        timeout=timeout,
        check=False,
    )
    return Result(
        proc.returncode,
        proc.stdout.decode(errors="replace"),
        proc.stderr.decode(errors="replace"),
        proc.stdout,
    )


@pytest.fixture
def cli() -> type[Result]:
    return Result


@pytest.fixture(scope="session")
def nix_store() -> str:
    return require_tool("nix-store")


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent
