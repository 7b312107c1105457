"""The hand-off to vgpu4nixos: a repacked .run both of its unpack methods turn into exactly
the artifact tree, and a NixOS snippet whose name and hash Nix resolves to the right path.

vgpu4nixos (like nixpkgs' nvidia-x11) unpacks a driver with ``sh $src -x`` and falls back to
``skip=$(sed 's/^skip=//; t; d' $src); tail -n +$skip $src | bsdtar xvf -``. Both commands
run here as written there, on the ``.run`` of ``vgpubuild patch --repack`` and on the
``run`` output of the builder-mode derivation; each result's NAR hash must be the artifact's.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from conftest import Result, require_tool, run_cli
from nixenv import SandboxState, demo_derivation, nix_build

from vgpubuild.demo import DEMO_RELEASE, DemoInputs
from vgpubuild.nar import nar_hash
from vgpubuild.nixhash import hash_file

SKIP_FALLBACK = 'skip=$(sed \'s/^skip=//; t; d\' "$1"); tail -n +$skip "$1" | bsdtar xvf -'
"""nixpkgs' and vgpu4nixos's ``unpackManually``, with ``$src`` as ``$1``."""


def _patch_repack(demo: DemoInputs, work: Path, *extra: str) -> Result:
    """``vgpubuild patch --repack`` on the demo release, with its own cache, into work/out."""
    config = work / "build.json"
    config.write_text(json.dumps({"patcher": {"enable": True}, "releases": demo.release_mapping()}))
    res = run_cli(
        "patch", "--release", DEMO_RELEASE, "--config", str(config), "--zip", str(demo.zip_path),
        "--patcher", str(demo.patcher_dir), "--out", str(work / "out"), "--repack", *extra,
        env={"VGPUBUILD_CACHE": str(work / "cache")},
    )  # fmt: skip
    assert res.exit_code == 0, res.stderr
    return res


@pytest.fixture(scope="module")
def repacked(tmp_path_factory: pytest.TempPathFactory, demo: DemoInputs) -> dict[str, Any]:
    """``vgpubuild patch --repack --json`` on the demo release."""
    data: dict[str, Any] = json.loads(
        _patch_repack(demo, tmp_path_factory.mktemp("repack"), "--json").stdout
    )
    return data


def _unpack_with_sh_x(run: Path, work: Path, shell: str = "sh") -> Path:
    """``SHELL FILE.run -x`` in an empty folder: the tree lands in the one folder it makes,
    named like the artifact (``NVIDIA-Linux-x86_64-<version>-<target>-patched``)."""
    work.mkdir()
    subprocess.run([require_tool(shell), str(run), "-x"], cwd=work, check=True, capture_output=True)
    (made,) = work.iterdir()
    assert made.name.startswith("NVIDIA-Linux-x86_64-") and made.name.endswith("-patched")
    return made


def _unpack_with_skip_fallback(run: Path, work: Path) -> Path:
    """The fallback in an empty folder: the payload's top level is the folder itself."""
    require_tool("bsdtar")
    work.mkdir()
    subprocess.run(
        [require_tool("bash"), "-c", SKIP_FALLBACK, "unpack", str(run)],
        cwd=work, check=True, capture_output=True,
    )  # fmt: skip
    return work


@pytest.mark.parametrize("method", ["sh -x", "bash -x", "skip= + tail | bsdtar"])
def test_both_unpack_methods_give_exactly_the_artifact_tree(
    tmp_path: Path, repacked: dict[str, Any], method: str
) -> None:
    run = Path(repacked["repacked"]["path"])
    if method == "skip= + tail | bsdtar":
        tree = _unpack_with_skip_fallback(run, tmp_path / "unpacked")
    else:
        tree = _unpack_with_sh_x(run, tmp_path / "unpacked", method.split()[0])
        assert tree.name == Path(repacked["artifact"]).name
    assert nar_hash(tree).sri == repacked["nar_hash"]
    assert (tree / "vgpubuild-manifest.json").is_file()


def test_snippet_names_the_run_and_its_flat_hash_and_nix_agrees(
    tmp_path: Path, repacked: dict[str, Any]
) -> None:
    nix_instantiate, nix_store = require_tool("nix-instantiate"), require_tool("nix-store")
    run = Path(repacked["repacked"]["path"])
    snippet: str = repacked["repacked"]["nixos"]
    flat = hash_file(run).sri
    assert repacked["repacked"]["sha256"] == flat
    # The snippet is valid Nix, and sets exactly what vgpu4nixos needs.
    evaluated = json.loads(
        subprocess.run(
            [nix_instantiate, "--eval", "--strict", "--json", "-E", "{\n" + snippet + "}"],
            capture_output=True, text=True, errors="backslashreplace", check=True,
        ).stdout
    )  # fmt: skip
    assert evaluated == {
        "hardware": {
            "nvidia": {
                "vgpu": {
                    "patcher": {"enable": False},
                    "driverSource": {"name": run.name, "url": None, "sha256": flat},
                }
            }
        }
    }
    # The command it gives adds the file at the store path it names ...
    store_path = repacked["repacked"]["store_path"]
    assert f"nix-store --add-fixed sha256 {run}" in snippet and store_path in snippet
    added = subprocess.run(
        [nix_store, "--store", str(tmp_path / "store"), "--add-fixed", "sha256", str(run)],
        capture_output=True, text=True, errors="backslashreplace", check=True,
    ).stdout.strip()  # fmt: skip
    assert added == store_path
    # ... which is where requireFile (a flat fixed-output derivation) with that name and
    # hash looks for it.
    expr = (
        f'(derivation {{ name = "{run.name}"; system = "x86_64-linux"; builder = "none"; '
        f'outputHashMode = "flat"; outputHashAlgo = "sha256"; outputHash = "{flat}"; }}).outPath'
    )
    out_path = subprocess.run(
        [nix_instantiate, "--eval", "--json", "-E", expr, "--store", str(tmp_path / "eval")],
        capture_output=True, text=True, errors="backslashreplace", check=True,
    ).stdout  # fmt: skip
    assert json.loads(out_path) == store_path


def test_text_output_prints_the_snippet(tmp_path: Path, demo: DemoInputs) -> None:
    res = _patch_repack(demo, tmp_path)
    (run,) = (tmp_path / "out").glob("*.run")
    assert "hardware.nvidia.vgpu = {" in res.stdout
    assert f'name = "{run.name}";' in res.stdout
    assert f'sha256 = "{hash_file(run).sri}";' in res.stdout
    assert "patcher.enable = false;" in res.stdout


def test_nix_built_run_output_unpacks_to_the_out_output(
    tmp_path: Path, demo: DemoInputs, nix_sandbox: SandboxState
) -> None:
    """``repack = true`` in the builder-mode derivation (what mkPatchedDriver sets)."""
    expr = demo_derivation(tmp_path, demo, "vgpubuild-handoff-demo-driver", repack=True)
    out = nix_build(expr).out_path
    run = Path(nix_build(expr, "-A", "run").out_path)  # already built: names the output
    # The store file is named after the output, not NAME.run; sh -x unpacks all the same.
    for method, tree in (
        ("sh -x", _unpack_with_sh_x(run, tmp_path / "sh")),
        ("skip= + tail | bsdtar", _unpack_with_skip_fallback(run, tmp_path / "skip")),
    ):
        assert nar_hash(tree) == nar_hash(out), method
