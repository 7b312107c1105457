"""The Nix configuration every test runs Nix with: owned by the suite, never the machine's.

A new machine's Nix (Debian's ``nix-bin``, no ``/etc/nix/nix.conf``) builds with Nix's
built-in defaults: ``sandbox = true`` (the kernels here allow it: inside a build there is
no ``/bin/sh``, no ``/usr``, no ``/root`` and only the ``lo`` interface) and
``build-users-group = nixbld``, a group that does not exist. A machine configured by hand
may say anything else. So the suite writes its own ``nix.conf`` into a folder of its own
and points ``NIX_CONF_DIR`` there (``NIX_USER_CONF_FILES`` empty, ``NIX_CONFIG`` unset) for
the whole test process; every Nix command a test runs inherits it.

The configuration keeps the sandbox on and builds as root without build users (the
interpreter and the checkout live where ``nixbld`` users could not read them). It makes
visible, through ``extra-sandbox-paths``, only what a Python builder needs: this
interpreter's installation and virtual environment, the ``vgpubuild`` package, and the
system's ``/usr`` (libraries and the tools ``patch.sh`` runs) with the ``/lib`` and
``/lib64`` names the dynamic loader uses and Debian's ``/etc/alternatives`` links. ``/bin``, ``/etc``, ``/root`` and the network
stay out.

Where a kernel cannot create a sandbox, :func:`sandbox_state` finds out once with a probe
build, switches the configuration to ``sandbox = false`` and says so in one line, which
the test session prints in its summary (under ``CI=true`` too: reported, not skipped).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import vgpubuild
from vgpubuild.demo import DEMO_RELEASE, DemoInputs

PYTHON = os.path.normpath(sys.executable)
"""This interpreter by an absolute path without ``..`` (the sandbox has only the mounted folders)."""

SANDBOX_FALLBACK_NOTE = "nix sandbox: unavailable on this machine ({reason}); builder tests ran unsandboxed"
BUILD_TIMEOUT = 300
"""A hang shows up as TimeoutExpired, far above a normal build's few seconds."""


def decoded(data: bytes) -> str:
    """A tool's output as text: bytes that are not UTF-8 are shown escaped, never raised on."""
    return data.decode("utf-8", errors="backslashreplace")


def _conf_dir() -> Path:
    return Path(os.environ["NIX_CONF_DIR"])


def sandbox_paths() -> list[str]:
    """Host paths a Python builder needs inside the sandbox, and nothing else."""
    package_src = Path(vgpubuild.__file__).resolve().parent
    paths = {
        os.path.normpath(sys.prefix),
        os.path.realpath(sys.base_prefix),
        str(package_src),
        "/usr",
    }
    # /lib and /lib64 are symlinks into /usr on merged-/usr systems; the loader uses the names.
    # Debian's /usr/bin/awk and friends resolve through /etc/alternatives.
    paths.update(p for p in ("/lib", "/lib64", "/etc/alternatives") if os.path.exists(p))
    return sorted(paths)


def write_conf(*, sandbox: bool) -> None:
    lines = {
        "build-users-group": "",
        "sandbox": "true" if sandbox else "false",
        "sandbox-fallback": "false",
        "extra-sandbox-paths": " ".join(sandbox_paths()),
        "substituters": "",
        "experimental-features": "nix-command",
    }
    text = "".join(f"{key} = {value}\n" for key, value in lines.items())
    (_conf_dir() / "nix.conf").write_text("# written by tests/nixenv.py\n" + text)


def install() -> Path:
    """Point this process (and so every Nix it starts) at the suite's own configuration."""
    conf_dir = Path(tempfile.mkdtemp(prefix="vgpubuild-nix-conf-"))
    os.environ["NIX_CONF_DIR"] = str(conf_dir)
    os.environ["NIX_USER_CONF_FILES"] = ""
    os.environ.pop("NIX_CONFIG", None)
    os.environ.pop("NIX_REMOTE", None)
    write_conf(sandbox=True)
    return conf_dir


def uninstall(conf_dir: Path) -> None:
    shutil.rmtree(conf_dir, ignore_errors=True)


def python_builder(work: Path, name: str, code: str) -> Path:
    """An executable script run by this interpreter: a builder needing no ``/bin/sh``.

    The shebang names the interpreter by its absolute path, so a virtual environment's
    interpreter finds its environment (Nix passes only the builder's base name as argv[0]).
    """
    script = work / name
    script.write_text(f"#!{PYTHON}\n{code}")
    script.chmod(0o755)
    return script


def vgpubuild_program() -> str:
    """The installed ``vgpubuild`` console script: the builder the derivations name."""
    program = Path(os.path.normpath(sys.prefix)) / "bin" / "vgpubuild"
    first = program.read_bytes().split(b"\n", 1)[0]
    assert os.path.normpath(first[2:].decode()) == PYTHON, (
        f"{program} does not start with #!{PYTHON} (got {first!r}); "
        "a builder must not need /bin/sh"
    )
    return str(program)


@dataclass(frozen=True)
class Built:
    """A finished ``nix-build``: its exit code and its output as text (see :func:`decoded`)."""

    returncode: int
    stdout: str
    stderr: str

    @property
    def out_path(self) -> str:
        lines = self.stdout.strip().splitlines()
        assert self.returncode == 0 and lines, self.stderr
        return lines[-1]


def nix_build(expr: Path, *args: str) -> Built:
    nix_build_exe = shutil.which("nix-build")
    assert nix_build_exe, "nix-build is not installed (make tools installs it as root)"
    proc = subprocess.run(
        [nix_build_exe, str(expr), "--no-out-link", *args],
        capture_output=True,
        check=False,
        timeout=BUILD_TIMEOUT,
    )
    return Built(proc.returncode, decoded(proc.stdout), decoded(proc.stderr))


PROBE = """\
import json, os, socket, sys
def reach(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        return True
    except OSError:
        return False
seen = {
    "interfaces": sorted(name for _, name in socket.if_nameindex()),
    "bin_sh": os.path.exists("/bin/sh"),
    "root_entries": sorted(os.listdir("/root")) if os.path.isdir("/root") else [],
    "usr_bin_env": os.path.exists("/usr/bin/env"),
    "home": os.environ.get("HOME"),
    "host_port_reachable": reach(int(os.environ["hostPort"])),
}
os.mkdir(os.environ["out"])
with open(os.path.join(os.environ["out"], "seen.json"), "w") as f:
    json.dump(seen, f)
"""


def build_python(work: Path, name: str, code: str, attrs: dict[str, str]) -> Built:
    """Build a derivation whose builder is a Python script; ``attrs`` values are Nix code."""
    script = python_builder(work, f"{name}.py", code)
    lines = "".join(f"  {key} = {value};\n" for key, value in attrs.items())
    expr = work / f"{name}.nix"
    expr.write_text(
        f"""derivation {{
  name = "{name}";
  system = builtins.currentSystem;
  builder = {script};
{lines}}}
"""
    )
    return nix_build(expr)


@dataclass(frozen=True)
class SandboxState:
    on: bool
    seen: dict[str, object]
    note: str


def probe(host_port: int) -> dict[str, object]:
    """Build the probe (always anew) and return what its builder saw."""
    work = Path(tempfile.mkdtemp(prefix="vgpubuild-nix-probe-"))
    try:
        attrs = {"hostPort": f'"{host_port}"', "salt": f'"{os.urandom(8).hex()}"'}
        built = build_python(work, "vgpubuild-sandbox-probe", PROBE, attrs)
        seen: dict[str, object] = json.loads((Path(built.out_path) / "seen.json").read_text())
        return seen
    finally:
        shutil.rmtree(work, ignore_errors=True)


@cache
def sandbox_state() -> SandboxState:
    """Whether builds here run sandboxed; if the kernel refuses, fall back and say why.

    Only a failure to set the sandbox up falls back: a probe whose builder ran and failed
    is a defect of the suite and fails loudly.
    """
    try:
        return SandboxState(True, probe(host_port=9), "nix sandbox: on")
    except AssertionError as exc:
        if "failed with exit code" in str(exc):
            raise
        reason = (str(exc).strip().splitlines() or ["no output"])[-1]
    write_conf(sandbox=False)
    probe(host_port=9)  # unsandboxed, the probe must work
    return SandboxState(False, {}, SANDBOX_FALLBACK_NOTE.format(reason=reason))


def demo_derivation(work: Path, demo: DemoInputs, name: str, *, repack: bool = False) -> Path:
    """A builder-mode derivation of the demo release (no nixpkgs), written to ``work``.

    Its builder is the installed ``vgpubuild``; ``repack`` adds the ``run`` output with
    the single-file ``.run``. Returns the expression file.
    """
    config = work / f"{name}.config.json"
    config.write_text(json.dumps({"patcher": {"enable": True}, "releases": demo.release_mapping()}))
    outputs = '\n  outputs = [ "out" "run" ];\n  repack = true;' if repack else ""
    expr = work / f"{name}.nix"
    expr.write_text(
        f"""derivation {{
  name = "{name}";
  system = builtins.currentSystem;
  builder = "{vgpubuild_program()}";
  args = [ "nix-builder" ];
  PATH = "/usr/bin";
  __structuredAttrs = true;{outputs}
  gridZip = {demo.zip_path};
  patcher = builtins.path {{ path = {demo.patcher_dir}; name = "source"; }};
  config = builtins.readFile {config};
  release = "{DEMO_RELEASE}";
}}
"""
    )
    return expr
