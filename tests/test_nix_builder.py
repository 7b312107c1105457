"""``vgpubuild nix-builder`` run by real Nix (nix-build) on the generated demo release.

The builds run with the suite's own Nix configuration (tests/nixenv.py): inside Nix's
build sandbox wherever the kernel allows one, as it does on a new machine with Debian's
``nix-bin``, where the builder sees no ``/bin/sh`` and only the ``lo`` interface. The
derivations name the installed ``vgpubuild`` program as their builder (its shebang names
this checkout's interpreter by absolute path); ``PATH`` holds the tools ``patch.sh`` runs.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import require_tool, run_cli
from httpserver import FaultServer
from nixenv import Built, SandboxState, nix_build, probe, sandbox_paths, vgpubuild_program

from vgpubuild.demo import DEMO_RELEASE, DemoInputs
from vgpubuild.nar import nar_hash
from vgpubuild.nixhash import Hash

BUILD_TIMEOUT = 300
"""A hang shows up as TimeoutExpired, far above a normal build's few seconds."""
TOOLS_PATH = "/usr/bin"
"""Where this machine keeps bash, coreutils, patch, ... (visible in the sandbox)."""

EXTRA_PATCH = """--- /dev/null
+++ b/EXTRA-NOTE.txt
@@ -0,0 +1 @@
+added by an extra patch given to the Nix builder
"""


@pytest.fixture(scope="module")
def files(demo: DemoInputs) -> dict[str, Path]:
    """The demo's release table and config as files Nix reads, and an extra patch."""
    root = demo.root
    (root / "releases.json").write_text(json.dumps(demo.release_mapping()))
    config = {"patcher": {"enable": True}, "releases": demo.release_mapping()}
    (root / "config.json").write_text(json.dumps(config))
    (root / "extra.patch").write_text(EXTRA_PATCH)
    return {
        "releases": root / "releases.json",
        "config": root / "config.json",
        "patch": root / "extra.patch",
    }


def _builder() -> str:
    return f'builder = "{vgpubuild_program()}";\n  args = [ "nix-builder" ];'


def _expr(demo: DemoInputs, files: dict[str, Path], *, structured: bool, extra: str = "") -> str:
    """A plain derivation (no nixpkgs) whose builder is vgpubuild's builder mode."""
    attrs = extra or (
        f"gridZip = {demo.zip_path};\n"
        f'  patcher = builtins.path {{ path = {demo.patcher_dir}; name = "source"; }};\n'
        f"  config = builtins.readFile {files['config']};\n"
        f'  release = "{DEMO_RELEASE}";\n'
        f"  extraPatches = [ {files['patch']} ];"
    )
    return f"""derivation {{
  name = "vgpubuild-demo-driver-{"structured" if structured else "env"}";
  system = builtins.currentSystem;
  {_builder()}
  PATH = "{TOOLS_PATH}";
  __structuredAttrs = {"true" if structured else "false"};
  {attrs}
}}
"""


@pytest.fixture(autouse=True)
def _owned_nix(nix_sandbox: SandboxState) -> SandboxState:
    """Every test here runs Nix with the suite's configuration, sandboxed where possible."""
    return nix_sandbox


def _logged_hash(log: str) -> Hash:
    found = re.findall(r"^vgpubuild: artifact NAR hash (sha256:[0-9a-z]{52}) ", log, re.M)
    assert len(found) == 1, log
    return Hash.parse(found[0])


def _build(tmp_path: Path, expr_text: str) -> tuple[Path, Built]:
    expr = tmp_path / "driver.nix"
    expr.write_text(expr_text)
    proc = nix_build(expr)
    assert proc.returncode == 0, proc.stderr
    return expr, proc


@pytest.mark.parametrize("structured", [True, False], ids=["structured-attrs", "plain-env"])
def test_derivation_builds_reproducibly_with_the_reported_nar_hash(
    tmp_path: Path, demo: DemoInputs, files: dict[str, Path], structured: bool
) -> None:
    nix_store = require_tool("nix-store")
    expr, proc = _build(tmp_path, _expr(demo, files, structured=structured))
    out = Path(proc.stdout.strip().splitlines()[-1])

    # The output is the artifact itself: manifest at its root, the extra patch applied.
    manifest = json.loads((out / "vgpubuild-manifest.json").read_text())
    assert manifest["release"]["version"] == DEMO_RELEASE
    assert (out / "EXTRA-NOTE.txt").read_text().startswith("added by an extra patch")
    assert (out / "vgpuConfig.xml").is_file()

    # Nix's NAR hash of $out is the one the builder reported, and vgpubuild's own.
    nix_hash = subprocess.run(
        [nix_store, "-q", "--hash", str(out)], capture_output=True, text=True, errors="backslashreplace", check=True
    ).stdout.strip()
    assert Hash.parse(nix_hash) == _logged_hash(proc.stderr + proc.stdout)
    cli = run_cli("hash", "path", str(out), "--to", "nix32")
    assert f"sha256:{cli.stdout.strip()}" == nix_hash
    # No references: the tree does not point back at its inputs in the store.
    refs = subprocess.run(
        [nix_store, "-q", "--references", str(out)], capture_output=True, text=True, errors="backslashreplace", check=True
    ).stdout.split()
    assert refs == []
    # Plain logs: no ANSI colour codes anywhere.
    assert "\x1b[" not in proc.stderr

    # nix-build --check builds again and compares bit for bit.
    check = nix_build(expr, "--check")
    assert check.returncode == 0, check.stderr


def test_both_attribute_styles_give_the_same_artifact(
    tmp_path: Path, demo: DemoInputs, files: dict[str, Path]
) -> None:
    hashes = set()
    for structured in (True, False):
        sub = tmp_path / str(structured)
        sub.mkdir()
        _, proc = _build(sub, _expr(demo, files, structured=structured))
        hashes.add(nar_hash(proc.stdout.strip().splitlines()[-1]))
    assert len(hashes) == 1


def test_repack_fills_the_run_output(
    tmp_path: Path, demo: DemoInputs, files: dict[str, Path]
) -> None:
    nix_store = require_tool("nix-store")
    attrs = (
        f"gridZip = {demo.zip_path};\n"
        f'  patcher = builtins.path {{ path = {demo.patcher_dir}; name = "source"; }};\n'
        f"  config = builtins.readFile {files['config']};\n"
        f'  release = "{DEMO_RELEASE}";\n'
        '  repack = true;\n  outputs = [ "out" "run" ];'
    )
    expr, proc = _build(tmp_path, _expr(demo, files, structured=True, extra=attrs))
    out = proc.stdout.strip().splitlines()[-1]
    run_proc = nix_build(expr, "-A", "run")  # already built: just names the output
    run = run_proc.stdout.strip().splitlines()[-1]
    assert (Path(out) / "vgpubuild-manifest.json").is_file()
    assert Path(run).is_file() and os.access(run, os.X_OK)
    assert Path(run).read_bytes().startswith(b"#!")
    # The .run's flat hash is what Nix records for the output's contents.
    nix_hash = subprocess.run(
        [nix_store, "-q", "--hash", run], capture_output=True, text=True, errors="backslashreplace", check=True
    ).stdout.strip()
    assert Hash.parse(nix_hash) == nar_hash(run)
    check = nix_build(expr, "--check")
    assert check.returncode == 0, check.stderr


def test_builder_touches_no_home(tmp_path: Path, demo: DemoInputs, files: dict[str, Path]) -> None:
    # Nix sets HOME=/homeless-shelter; as root without a sandbox, writing there would work.
    _build(tmp_path, _expr(demo, files, structured=True).replace("vgpubuild-demo", "home-demo"))
    assert not os.path.exists("/homeless-shelter")


def test_missing_input_fails_with_a_clear_error(
    tmp_path: Path, demo: DemoInputs, files: dict[str, Path]
) -> None:
    attrs = (
        f'gridZip = "{tmp_path}/NVIDIA-GRID-missing.zip";\n'
        f'  patcher = builtins.path {{ path = {demo.patcher_dir}; name = "source"; }};\n'
        f"  config = builtins.readFile {files['config']};\n"
        f'  release = "{DEMO_RELEASE}";'
    )
    expr = tmp_path / "missing.nix"
    expr.write_text(_expr(demo, files, structured=True, extra=attrs))
    proc = nix_build(expr)
    assert proc.returncode != 0
    assert "error: derivation attribute gridZip names" in proc.stderr
    assert "NVIDIA-GRID-missing.zip" in proc.stderr and "does not exist" in proc.stderr
    assert "failed with exit code 4" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_input_that_needs_the_network_fails_fast_with_offline_error(
    tmp_path: Path, demo: DemoInputs, files: dict[str, Path]
) -> None:
    # No patcher attribute: the pinned rev would have to be downloaded.
    attrs = (
        f"gridZip = {demo.zip_path};\n"
        f"  config = builtins.readFile {files['config']};\n"
        f'  release = "{DEMO_RELEASE}";'
    )
    expr = tmp_path / "offline.nix"
    expr.write_text(_expr(demo, files, structured=False, extra=attrs))
    proc = nix_build(expr)  # BUILD_TIMEOUT turns a hang into a failure
    assert proc.returncode != 0
    assert "failed with exit code 5" in proc.stderr
    assert re.search(r"error: .*offline", proc.stderr, re.I), proc.stderr
    assert "Traceback" not in proc.stderr


def test_mkpatcheddriver_from_default_nix_builds(
    tmp_path: Path, repo_root: Path, demo: DemoInputs, files: dict[str, Path]
) -> None:
    """default.nix's function, with nixpkgs' fetchers replaced by hash-checked builtins.path."""
    package = Path(vgpubuild_program()).parent.parent
    # requireFile and fetchFromGitHub check the hash they are given, as builtins.path does.
    stub = f"""{{
  lib = {{ getExe = p: "${{p.outPath}}/bin/${{p.meta.mainProgram}}"; makeBinPath = _: "{TOOLS_PATH}"; }};
  stdenv.buildPlatform.system = builtins.currentSystem;
  requireFile = {{ name, hash, ... }}: builtins.path {{ path = {demo.zip_path}; inherit name; recursive = false; sha256 = hash; }};
  fetchFromGitHub = {{ hash, fetchSubmodules, ... }}: assert fetchSubmodules;
    builtins.path {{ path = {demo.patcher_dir}; name = "source"; sha256 = hash; }};
  vgpubuild = {{ outPath = "{package}"; meta.mainProgram = "vgpubuild"; }};
}}"""
    (tmp_path / "stub.nix").write_text(stub)
    expr = tmp_path / "driver.nix"
    expr.write_text(
        f"(import {repo_root} {{ pkgs = import {tmp_path / 'stub.nix'}; }}).mkPatchedDriver {{\n"
        f'  release = "{DEMO_RELEASE}";\n'
        f"  releases = builtins.fromJSON (builtins.readFile {files['releases']});\n"
        '  config = { patcher.enable = true; patcher.copyVGPUProfiles."1E07:0000" = "1E30:12BA"; };\n'
        "}\n"
    )
    proc = nix_build(expr)
    assert proc.returncode == 0, proc.stderr
    out = Path(proc.stdout.strip().splitlines()[-1])
    manifest: dict[str, Any] = json.loads((out / "vgpubuild-manifest.json").read_text())
    assert manifest["release"]["version"] == DEMO_RELEASE
    assert "1E07:0000" in json.dumps(manifest)
    assert nar_hash(out) == _logged_hash(proc.stderr + proc.stdout)


def test_builds_run_inside_the_sandbox(nix_sandbox: SandboxState) -> None:
    """What a builder observes from inside: no /bin/sh, only lo, no way to the host."""
    if not nix_sandbox.on:
        pytest.skip(nix_sandbox.note)
    with FaultServer() as server:
        seen = probe(host_port=server.port)
        assert server.connections == 0
    assert seen["interfaces"] == ["lo"], seen
    assert seen["bin_sh"] is False, seen
    assert seen["host_port_reachable"] is False, seen
    assert seen["home"] == "/homeless-shelter", seen
    # Of the host's /root only what the configuration mounts (an interpreter, maybe) shows.
    mounted = {Path(p).parts[2] for p in sandbox_paths() if Path(p).parts[1:2] == ("root",)}
    root_entries = seen["root_entries"]
    assert isinstance(root_entries, list) and set(root_entries) <= mounted, seen


# -- the builder outside Nix: attribute handling, quickly --------------------------------------


def _fake_nix_env(tmp_path: Path, attrs: dict[str, Any], structured: bool) -> dict[str, str]:
    build_top = tmp_path / "build"
    build_top.mkdir(exist_ok=True)
    env = {
        "HOME": "/homeless-shelter",
        "TMPDIR": str(build_top),
        "NIX_BUILD_TOP": str(build_top),
        "NIX_BUILD_CORES": "0",
        "PATH": "/usr/bin:/bin",
    }
    if structured:
        attrs_file = build_top / ".attrs.json"
        attrs_file.write_text(json.dumps({**attrs, "outputs": {"out": str(tmp_path / "out")}}))
        env["NIX_ATTRS_JSON_FILE"] = str(attrs_file)
        env["PATH"] = "/path-not-set"
    else:
        env.update({k: v for k, v in attrs.items()})
        env["out"] = str(tmp_path / "out")
    return env


def _run_builder(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vgpubuild", "nix-builder"],
        env=env,
        capture_output=True,
        text=True, errors="backslashreplace",
        check=False,
        timeout=BUILD_TIMEOUT,
    )


def test_structured_attrs_config_object_and_path_attribute(
    tmp_path: Path, demo: DemoInputs
) -> None:
    attrs = {
        "gridZip": str(demo.zip_path),
        "patcher": str(demo.patcher_dir),
        "release": DEMO_RELEASE,
        "config": {"patcher": {"enable": True}, "releases": demo.release_mapping()},
        "PATH": "/usr/bin:/bin",
        "repack": False,
    }
    proc = _run_builder(_fake_nix_env(tmp_path, attrs, structured=True))
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out" / "vgpubuild-manifest.json").is_file()
    assert "cores=" in proc.stderr


def test_no_out_means_not_anix_build() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("out", "NIX_ATTRS_JSON_FILE")}
    res = run_cli("nix-builder", env=env)
    assert res.exit_code == 2
    assert "$out is not set" in res.stderr


@pytest.mark.parametrize(
    ("attrs", "code", "message"),
    [
        ({"config": "{not json"}, 3, "config is not valid JSON"),
        ({"config": '{"release": "1.0"}', "release": "2.0"}, 3, "release is '2.0' but config"),
        ({"config": '{"patcher": {"enabel": true}}', "release": "17.3"}, 3, "enabel"),
        ({"repack": "1", "release": "17.3"}, 2, "no 'run' output"),
        ({"extraPatches": "/nonexistent/a.patch"}, 4, "extraPatches[0]"),
    ],
)
def test_bad_attributes_are_clear_errors(
    tmp_path: Path, attrs: dict[str, str], code: int, message: str
) -> None:
    proc = _run_builder(_fake_nix_env(tmp_path, attrs, structured=False))
    assert proc.returncode == code, proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()


def test_network_guard_refuses_internet_sockets_only() -> None:
    code = (
        "import socket\n"
        "from vgpubuild.builder import forbid_network\n"
        "from vgpubuild.errors import OfflineError\n"
        "forbid_network()\n"
        "a, b = socket.socketpair()\n"
        "for call in (lambda: socket.socket(socket.AF_INET),\n"
        "             lambda: socket.socket(socket.AF_INET6),\n"
        "             lambda: socket.getaddrinfo('localhost', 80),\n"
        "             lambda: socket.create_connection(('127.0.0.1', 9))):\n"
        "    try:\n"
        "        call()\n"
        "    except OfflineError as exc:\n"
        "        print('refused', exc.message)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, errors="backslashreplace", check=True, timeout=60
    )
    lines = proc.stdout.splitlines()
    assert len(lines) == 4 and all(line.startswith("refused ") for line in lines)
