"""default.nix and flake.nix, checked with real Nix against a stand-in for nixpkgs.

No nixpkgs is installed here, so the fetchers of the stand-in return their own arguments,
tagged: the tests see exactly which name, hash, rev and options mkPatchedDriver hands to
``requireFile``, ``fetchFromGitHub`` and ``fetchurl``, and that they come from the catalog.
(tests/test_nix_builder.py builds mkPatchedDriver's derivation for real.)
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
from conftest import require_tool

STUB_NIXPKGS = """
# A stand-in for nixpkgs: the fetchers return their arguments, tagged with their name.
{
  lib = {
    getExe = p: "${p.outPath}/bin/${p.meta.mainProgram}";
    makeBinPath = ps: builtins.concatStringsSep ":" (map (p: "${p}/bin") ps);
  };
  stdenv.buildPlatform.system = "x86_64-linux";
  stdenv.hostPlatform.system = "x86_64-linux";
  requireFile = args: { fetcher = "requireFile"; } // args;
  fetchurl = args: { fetcher = "fetchurl"; } // args;
  fetchFromGitHub = args: { fetcher = "fetchFromGitHub"; } // args;
  callPackage = f: args: { outPath = "/stub/vgpubuild"; meta.mainProgram = "vgpubuild"; };
  vgpubuild = { outPath = "/stub/vgpubuild"; meta.mainProgram = "vgpubuild"; };
} // builtins.listToAttrs (map (name: { inherit name; value = "/stub/${name}"; }) [
  "bash" "coreutils" "findutils" "gnugrep" "gnused" "gawk" "gnupatch" "gnutar" "gzip" "xz"
  "zstd" "bzip2" "patchelf" "diffutils" "which" "gcc"
])
"""


@pytest.fixture(scope="module")
def stub(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("stub") / "nixpkgs.nix"
    path.write_text(STUB_NIXPKGS)
    return path


@pytest.fixture(scope="module")
def catalog(repo_root: Path) -> dict[str, Any]:
    with open(repo_root / "vgpubuild" / "releases.toml", "rb") as f:
        data: dict[str, Any] = tomllib.load(f)["releases"]
    return data


def _eval(repo_root: Path, expr: str, check: bool = True) -> Any:
    nix_instantiate = require_tool("nix-instantiate")
    proc = subprocess.run(
        [nix_instantiate, "--eval", "--strict", "--json", "-E", expr],
        capture_output=True,
        text=True, errors="backslashreplace",
        cwd=repo_root,
        check=False,
        timeout=120,
    )
    if not check:
        return proc
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _driver(repo_root: Path, stub: Path, args: str) -> Any:
    """mkPatchedDriver's derivation attributes (not instantiated: the stubs are no paths)."""
    expr = (
        f"let d = (import ./. {{ pkgs = import {stub}; }}).mkPatchedDriver {{ {args} }}; in "
        "{ inherit (d) name builder args gridZip patcher generalRun config PATH release "
        "repack extraPatches patcherUnverified __structuredAttrs; }"
    )
    return _eval(repo_root, expr)


def _nix_files(repo_root: Path) -> list[Path]:
    git = shutil.which("git")
    if git and (repo_root / ".git").exists():
        out = subprocess.run(
            [git, "ls-files", "-co", "--exclude-standard", "--", "*.nix"],
            capture_output=True,
            text=True, errors="backslashreplace",
            cwd=repo_root,
            check=True,
        ).stdout
        return [repo_root / line for line in out.splitlines() if (repo_root / line).is_file()]
    skip = {".venv", ".git", ".mypy_cache", ".pytest_cache"}
    return [p for p in repo_root.rglob("*.nix") if not skip & set(p.relative_to(repo_root).parts)]


def test_every_nix_file_parses(repo_root: Path, tmp_path: Path) -> None:
    nix_instantiate = require_tool("nix-instantiate")
    files = _nix_files(repo_root)
    names = {p.relative_to(repo_root).as_posix() for p in files}
    assert {"default.nix", "flake.nix"} <= names
    for path in files:
        proc = subprocess.run(
            [nix_instantiate, "--parse", str(path)], capture_output=True, text=True, errors="backslashreplace", check=False
        )
        assert proc.returncode == 0, f"{path}: {proc.stderr}"
    # The stand-in used below parses too (and a broken file would be caught).
    (tmp_path / "stub.nix").write_text(STUB_NIXPKGS)
    (tmp_path / "broken.nix").write_text("{ a = ; }")
    ok = subprocess.run(
        [nix_instantiate, "--parse", str(tmp_path / "stub.nix")], capture_output=True
    )
    bad = subprocess.run(
        [nix_instantiate, "--parse", str(tmp_path / "broken.nix")], capture_output=True
    )
    assert ok.returncode == 0 and bad.returncode != 0


def test_default_nix_reads_the_same_catalog_as_the_cli(
    repo_root: Path, catalog: dict[str, Any]
) -> None:
    got = _eval(repo_root, "(import ./. { pkgs = null; }).catalog")
    assert got == catalog


@pytest.mark.parametrize("release", ["16.2", "16.5", "17.3"])
def test_mkpatcheddriver_takes_zip_and_patcher_from_the_catalog(
    repo_root: Path, stub: Path, catalog: dict[str, Any], release: str
) -> None:
    rel = catalog[release]
    d = _driver(repo_root, stub, f'release = "{release}"; config = {{ patcher.enable = true; }};')
    assert d["gridZip"]["fetcher"] == "requireFile"
    assert d["gridZip"]["name"] == rel["zip_name"]
    assert d["gridZip"]["hash"] == rel["zip_sha256"]
    assert f"nix-store --add-fixed sha256 /path/to/{rel['zip_name']}" in d["gridZip"]["message"]
    owner, repo = rel["patcher"]["repo"].split("/")
    assert d["patcher"] == {
        "fetcher": "fetchFromGitHub",
        "owner": owner,
        "repo": repo,
        "rev": rel["patcher"]["rev"],
        "hash": rel["patcher"]["sha256"],
        "fetchSubmodules": True,
    }
    assert d["generalRun"] is None  # not merged: no consumer driver
    assert d["builder"] == "/stub/vgpubuild/bin/vgpubuild"
    assert d["args"] == ["nix-builder"]
    assert d["__structuredAttrs"] is True
    assert d["release"] == release
    assert json.loads(d["config"]) == {"patcher": {"enable": True}}
    assert d["name"] == f"nvidia-vgpu-{rel['host_version']}-patched"
    assert "/stub/gnupatch/bin" in d["PATH"].split(":")


def test_release_without_patcher_support_gets_no_patcher(
    repo_root: Path, stub: Path, catalog: dict[str, Any]
) -> None:
    release = next(v for v, r in catalog.items() if "patcher" not in r)
    d = _driver(repo_root, stub, f'release = "{release}";')
    assert d["patcher"] is None
    assert d["gridZip"]["name"] == catalog[release]["zip_name"]


def test_merged_config_fetches_the_consumer_driver(
    repo_root: Path, stub: Path, catalog: dict[str, Any]
) -> None:
    rel = catalog["17.3"]["patcher"]
    for config in ("{ merged = true; }", '{ patcher.target = "general-merge"; }'):
        d = _driver(repo_root, stub, f'release = "17.3"; config = {config};')
        assert d["generalRun"] == {
            "fetcher": "fetchurl",
            "url": rel["general_url"],
            "hash": rel["general_sha256"],
        }


def test_driver_source_url_uses_fetchurl_and_stays_out_of_the_build(
    repo_root: Path, stub: Path, catalog: dict[str, Any]
) -> None:
    d = _driver(
        repo_root,
        stub,
        'release = "17.3"; config = { patcher.enable = true; driverSource = { '
        'url = "https://nas.example/grid.zip"; curlOptsList = [ "-u" "me:secret" ]; }; };',
    )
    assert d["gridZip"] == {
        "fetcher": "fetchurl",
        "url": "https://nas.example/grid.zip",
        "name": catalog["17.3"]["zip_name"],
        "hash": catalog["17.3"]["zip_sha256"],
        "curlOptsList": ["-u", "me:secret"],
    }
    assert "secret" not in d["config"] and "driverSource" not in json.loads(d["config"])


def test_module_defaults_of_driver_source_mean_requirefile(repo_root: Path, stub: Path) -> None:
    # What builtins.toJSON of the NixOS module gives when driverSource is left alone.
    d = _driver(
        repo_root,
        stub,
        'release = "17.3"; config = { driverSource = { name = ""; url = null; sha256 = null; '
        "curlOptsList = [ ]; }; };",
    )
    assert d["gridZip"]["fetcher"] == "requireFile"


def test_explicit_inputs_and_user_releases(repo_root: Path, stub: Path) -> None:
    d = _driver(
        repo_root,
        stub,
        'release = "99.1"; gridZip = "/zip"; patcher = "/vup"; generalRun = "/gen.run"; '
        'repack = true; extraPatches = [ "/a.patch" ]; patcherUnverified = true; '
        'releases."99.1" = { host_version = "999.1"; zip_name = "x.zip"; '
        'zip_sha256 = "sha256-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="; };',
    )
    assert (d["gridZip"], d["patcher"], d["generalRun"]) == ("/zip", "/vup", "/gen.run")
    assert d["repack"] is True and d["patcherUnverified"] is True
    assert d["extraPatches"] == ["/a.patch"]
    # The builder learns the user-defined release through the config's `releases`.
    assert json.loads(d["config"])["releases"]["99.1"]["host_version"] == "999.1"


def test_unknown_release_is_a_clear_evaluation_error(repo_root: Path, stub: Path) -> None:
    proc = _eval(
        repo_root,
        f'(import ./. {{ pkgs = import {stub}; }}).mkPatchedDriver {{ release = "1.0"; }}',
        check=False,
    )
    assert proc.returncode != 0
    assert "release 1.0 is not in the catalog" in proc.stderr


def test_overlay_adds_the_package_and_the_function(repo_root: Path, stub: Path) -> None:
    got = _eval(
        repo_root,
        f"let pkgs = import {stub}; o = (import ./. {{ pkgs = null; }}).overlay pkgs pkgs; in "
        "{ names = builtins.attrNames o; fn = builtins.isFunction o.vgpubuildLib.mkPatchedDriver; "
        "exe = o.vgpubuild.meta.mainProgram; }",
    )
    assert got == {"names": ["vgpubuild", "vgpubuildLib"], "fn": True, "exe": "vgpubuild"}


def test_flake_outputs_evaluate(repo_root: Path, stub: Path, tmp_path: Path) -> None:
    """The flake's outputs, with its nixpkgs input overridden by the stand-in."""
    nix = require_tool("nix")
    src = tmp_path / "src"
    for rel in ("flake.nix", "default.nix", "pyproject.toml", "vgpubuild/releases.toml"):
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(repo_root / rel, src / rel)
    fake = tmp_path / "nixpkgs"
    fake.mkdir()
    (fake / "stub.nix").write_text(STUB_NIXPKGS)
    (fake / "flake.nix").write_text(
        "{ outputs = { self }: {\n"
        "  lib.genAttrs = names: f: builtins.listToAttrs (map (n: { name = n; value = f n; }) names);\n"
        "  legacyPackages.x86_64-linux = import ./stub.nix;\n"
        "}; }\n"
    )

    def flake_eval(attr: str, *extra: str) -> Any:
        proc = subprocess.run(
            [
                nix,
                "--extra-experimental-features",
                "nix-command flakes",
                "eval",
                "--json",
                "--impure",  # the --apply expressions import the stand-in by absolute path
                "--no-write-lock-file",
                "--override-input",
                "nixpkgs",
                f"path:{fake}",
                f"path:{src}#{attr}",
                *extra,
            ],
            capture_output=True,
            text=True, errors="backslashreplace",
            check=False,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    assert flake_eval('lib.catalog."17.3".zip_name') == (
        "NVIDIA-GRID-Linux-KVM-550.90.05-550.90.07-552.74.zip"
    )
    assert flake_eval("packages.x86_64-linux.default.meta.mainProgram") == "vgpubuild"
    assert flake_eval("apps.x86_64-linux.default.program") == "/stub/vgpubuild/bin/vgpubuild"
    made = flake_eval(
        "lib",
        "--apply",
        f'lib: (lib.mkPatchedDriver {{ pkgs = import {stub}; release = "17.3"; }}).gridZip.name',
    )
    assert made == "NVIDIA-GRID-Linux-KVM-550.90.05-550.90.07-552.74.zip"
    overlay = flake_eval(
        "overlays",
        "--apply",
        f"o: let p = import {stub}; in builtins.attrNames (o.default p p)",
    )
    assert overlay == ["vgpubuild", "vgpubuildLib"]
