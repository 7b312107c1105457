"""Shared test helpers: reference tools that must exist in CI, and running the CLI."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import nixenv
import pytest
from httpserver import FaultServer

from vgpubuild.cache import Cache
from vgpubuild.catalog import Release, get_release
from vgpubuild.demo import DemoInputs, make_demo_inputs

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
_NIX_CONF: list[Path] = []


def pytest_configure(config: pytest.Config) -> None:
    """Every Nix command of the session reads the suite's own configuration (tests/nixenv.py)."""
    _NIX_CONF.append(nixenv.install())


def pytest_unconfigure(config: pytest.Config) -> None:
    for conf_dir in _NIX_CONF:
        nixenv.uninstall(conf_dir)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say, in one line, whether the Nix builds ran in the sandbox (CI reads this line)."""
    if shutil.which("nix-build"):
        terminalreporter.write_line(nixenv.sandbox_state().note)
    else:
        terminalreporter.write_line("nix sandbox: not checked (nix-build is not installed)")


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
        proc.stdout.decode(errors="backslashreplace"),
        proc.stderr.decode(errors="backslashreplace"),
        proc.stdout,
    )


def run_on_a_terminal(args: list[str], env: dict[str, str]) -> tuple[int, bytes]:
    """Run the CLI with stderr on a pseudo-terminal; return (exit code, what the tty got).

    Progress bars and colours are only ever for terminals, so this is how tests see them.
    """
    import pty

    primary, secondary = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "vgpubuild", *args],
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=secondary,
    )
    os.close(secondary)
    seen = b""
    while True:
        try:
            data = os.read(primary, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        seen += data
    proc.wait(timeout=60)
    os.close(primary)
    return proc.returncode, seen


@pytest.fixture
def cli() -> type[Result]:
    return Result


@pytest.fixture(scope="session")
def nix_store() -> str:
    return require_tool("nix-store")


@pytest.fixture(scope="session")
def nix_sandbox() -> nixenv.SandboxState:
    """Nix builds in the sandbox if this machine allows one (else unsandboxed, reported)."""
    require_tool("nix-build")
    return nixenv.sandbox_state()


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


@pytest.fixture
def no_user_netrc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A HOME of the test's own, so the user's ~/.netrc never leaks into a fetch test."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("NETRC", raising=False)


@pytest.fixture
def server() -> Iterator[FaultServer]:
    """A real HTTP server on 127.0.0.1 with injectable faults (tests/httpserver.py)."""
    with FaultServer() as s:
        yield s


@pytest.fixture
def cache(tmp_path: Path) -> Cache:
    return Cache(tmp_path / "cache")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoInputs:
    """The generated demo release (GRID-shaped zip, .run files, stand-in patcher)."""
    return make_demo_inputs(tmp_path_factory.mktemp("demo") / "inputs")


@pytest.fixture(scope="module")
def release(demo: DemoInputs) -> Release:
    return get_release("17.99", extra=demo.release_mapping())
