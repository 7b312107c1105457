"""patcher: target/option mapping, checks before patch.sh, running it, judging its result.

patch.sh runs for real: the demo's stand-in patcher (real command-line contract, GNU patch,
real .run archives), in a clean environment, with each failure mode produced by a variant.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import require_tool
from githubtarballs import make_patcher_tarballs
from httpserver import FaultServer, drop

from vgpubuild.cache import Cache
from vgpubuild.catalog import Release, get_release
from vgpubuild.demo import DemoInputs, make_demo_inputs
from vgpubuild.errors import HashMismatchError, PatcherError, ToolMissingError, UsageError
from vgpubuild.fetch import FetchOptions
from vgpubuild.nar import nar_hash
from vgpubuild.patchercontract import Contract, read_contract
from vgpubuild.patchertree import fetch_patcher, require_patcher, stage_patcher
from vgpubuild.patchrun import run_patch
from vgpubuild.patchsh import (
    GPL_FLAGS,
    check_args,
    check_expectations,
    check_tools,
    patch_args,
    read_expectations,
)
from vgpubuild.runfile import check_run
from vgpubuild.targets import choose_target

FAST = FetchOptions(attempts=3, retry_wait=0.01, max_retry_wait=0.02, timeout=5, progress=False)


def _runs(demo: DemoInputs) -> list[Path]:
    return [demo.host_run, demo.guest_run, demo.general_run]


def _contract(patcher: Path) -> Contract:
    return read_contract(patcher / "patch.sh", "demo")


# ------------------------------------------------------------------ target and options


@pytest.mark.parametrize(
    ("guest", "merged", "requested", "expected"),
    [
        (True, False, "auto", "grid"),
        (True, True, "auto", "grid"),
        (False, True, "auto", "general-merge"),
        (False, False, "auto", "vgpu-kvm"),
        (False, False, "grid-merge", "grid-merge"),
        (False, False, "wsys", "wsys"),
        (True, False, "grid", "grid"),
    ],
)
def test_choose_target_like_vgpu4nixos(
    guest: bool, merged: bool, requested: str, expected: str
) -> None:
    assert choose_target(guest, merged, requested) == expected


def test_choose_target_refuses_unknown_and_contradictions() -> None:
    with pytest.raises(UsageError, match="unknown target 'vgpu-kmv'") as err:
        choose_target(False, False, "vgpu-kmv")
    assert "vgpu-kvm" in (err.value.hint or "")
    with pytest.raises(UsageError, match="contradicts --guest"):
        choose_target(True, False, "vgpu-kvm")


def test_patch_args_map_options_like_vgpu4nixos() -> None:
    assert patch_args("vgpu-kvm", False, False, []) == [*GPL_FLAGS, "vgpu-kvm"]
    assert GPL_FLAGS == (
        "--enable-nvidia-gpl-for-experimenting",
        "--force-nvidia-gpl-I-know-it-is-wrong",
    )
    assert patch_args("grid", True, False, []) == ["grid"]
    assert patch_args("vgpu-kvm", True, True, ["--repack", "--spoof-devid"]) == [
        "--remap-p2v",
        "--repack",
        "--spoof-devid",
        "vgpu-kvm",
    ]


def test_args_are_checked_against_the_patch_sh_that_runs(tmp_path: Path) -> None:
    old = read_contract(
        make_demo_inputs(tmp_path / "535", shape="535").patcher_dir / "patch.sh", "535.129"
    )
    with pytest.raises(UsageError, match=r"branch 535\.129 has no --remap-p2v"):
        check_args(old, patch_args("vgpu-kvm", False, True, []), clones=False)
    with pytest.raises(
        UsageError, match=r"branch 535\.129 does not know the option '--repak'"
    ) as err:
        check_args(old, patch_args("vgpu-kvm", False, False, ["--repak"]), clones=False)
    assert "--repack" in (err.value.hint or "")
    with pytest.raises(UsageError, match=r"branch 535\.129 has no target 'vgpu-kvm-merge'"):
        check_args(old, patch_args("vgpu-kvm-merge", False, False, []), clones=False)
    with pytest.raises(UsageError, match=r"does not edit vgpuConfig\.xml for target 'grid'"):
        check_args(old, patch_args("grid", False, False, []), clones=True)
    check_args(old, patch_args("vgpu-kvm", False, False, ["--repack"]), clones=True)


def test_release_without_patcher_support_is_an_error() -> None:
    with pytest.raises(PatcherError, match="no vGPU-Unlock-patcher support"):
        require_patcher(get_release("16.8"))


# -------------------------------------------------------------------- expectations


def test_read_expectations(demo: DemoInputs, release: Release) -> None:
    found = check_expectations(demo.patcher_dir / "patch.sh", release)
    assert found == {
        "GNRL": "NVIDIA-Linux-x86_64-550.999.07",
        "VGPU": "NVIDIA-Linux-x86_64-550.999.05-vgpu-kvm",
        "GRID": "NVIDIA-Linux-x86_64-550.999.07-grid",
        "WSYS": "NVIDIA-Windows-x86_64-552.99",
    }


def test_version_lines_not_matching_the_release(tmp_path: Path, release: Release) -> None:
    bad = make_demo_inputs(tmp_path, failure="versions")
    with pytest.raises(PatcherError) as err:
        check_expectations(bad.patcher_dir / "patch.sh", release)
    assert "550.998.07" in err.value.message and "550.999.07" in err.value.message
    not_vup = tmp_path / "patch.sh"
    not_vup.write_text("#!/bin/bash\necho hi\n")
    with pytest.raises(PatcherError, match="no GNRL/VGPU/GRID line"):
        read_expectations(not_vup)


# ------------------------------------------------------------------ NAR verification


def test_stage_patcher_verifies_nar_hash(
    tmp_path: Path, demo: DemoInputs, release: Release
) -> None:
    assert release.patcher is not None
    assert stage_patcher(demo.patcher_dir, release.patcher.sha256, False) == demo.patcher_dir
    tampered = tmp_path / "patcher"
    shutil.copytree(demo.patcher_dir, tampered)
    with (tampered / "patches" / "setup-vup-hooks.patch").open("a") as f:
        f.write("\n")
    with pytest.raises(HashMismatchError, match="specified: sha256-"):
        stage_patcher(tampered, release.patcher.sha256, False)
    assert stage_patcher(tampered, release.patcher.sha256, True) == tampered
    with pytest.raises(PatcherError, match="pass --patcher-unverified"):
        stage_patcher(tampered, None, False)


def test_catalog_patcher_hash_is_what_nix_hash_prints(demo: DemoInputs, release: Release) -> None:
    nix_hash = require_tool("nix-hash")
    out = subprocess.run(
        [nix_hash, "--type", "sha256", str(demo.patcher_dir)],
        capture_output=True,
        text=True,
        errors="backslashreplace",
        check=True,
    ).stdout.strip()
    assert release.patcher is not None and out == release.patcher.sha256.hex


def test_stage_patcher_ignores_git_metadata(
    tmp_path: Path, demo: DemoInputs, release: Release
) -> None:
    assert release.patcher is not None
    checkout = tmp_path / "checkout"
    shutil.copytree(demo.patcher_dir, checkout)
    (checkout / ".git").mkdir()
    (checkout / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (checkout / "unlock" / ".git").write_text("gitdir: ../.git/modules/unlock\n")
    with pytest.raises(PatcherError, match=r"contains \.git"):
        stage_patcher(checkout, release.patcher.sha256, False)
    (tmp_path / "work").mkdir()
    staged = stage_patcher(checkout, release.patcher.sha256, False, work_dir=tmp_path / "work")
    assert nar_hash(staged) == release.patcher.sha256


# ----------------------------------------------------------------------- fetching


def _serve(server: FaultServer, root: Path, faults: bool = False) -> None:
    for path in root.rglob("*.tar.gz"):
        url_path = "/" + str(path.relative_to(root))
        server.add(url_path, path.read_bytes(), script=[drop(100)] if faults else None)


def test_fetch_patcher_assembles_github_tarballs(
    tmp_path: Path, demo: DemoInputs, release: Release
) -> None:
    assert release.patcher is not None
    make_patcher_tarballs(demo, tmp_path / "github")
    cache = Cache(tmp_path / "cache")
    with FaultServer() as server:
        _serve(server, tmp_path / "github", faults=True)
        tree = fetch_patcher(release.patcher, cache, FAST, base_url=server.url(""))
        assert nar_hash(tree) == release.patcher.sha256
        assert (tree / "unlock" / "vgpu_unlock_hooks.c").is_file()
        assert (tree / ".gitmodules").is_file()
        before = len(server.requests())
        again = fetch_patcher(release.patcher, cache, FetchOptions(offline=True), server.url(""))
        assert again == tree and len(server.requests()) == before


def test_fetch_patcher_refuses_wrong_content(
    tmp_path: Path, demo: DemoInputs, release: Release
) -> None:
    assert release.patcher is not None
    other = make_demo_inputs(tmp_path / "other", failure="die")
    # Serve the variant's content under the catalog's revs: it must not verify.
    rev, _ = demo.patcher_revs()
    written = make_patcher_tarballs(other, tmp_path / "github")
    written[0].rename(written[0].with_name(f"{rev}.tar.gz"))
    cache = Cache(tmp_path / "cache")
    with FaultServer() as server:
        _serve(server, tmp_path / "github")
        with pytest.raises(HashMismatchError):
            fetch_patcher(release.patcher, cache, FAST, base_url=server.url(""))
    assert not (cache.root / "patchers" / release.patcher.sha256.hex).exists()


# ------------------------------------------------------------------------- running


@pytest.mark.parametrize(
    ("target", "output", "present"),
    [
        (
            "vgpu-kvm",
            "NVIDIA-Linux-x86_64-550.999.05-vgpu-kvm-patched",
            "kernel/unlock/vgpu_unlock_hooks.c",
        ),
        ("grid", "NVIDIA-Linux-x86_64-550.999.07-grid-patched", "nvidia-gridd"),
        (
            "general-merge",
            "NVIDIA-Linux-x86_64-550.999.07-merged-vgpu-kvm-patched",
            "vgpuConfig.xml",
        ),
    ],
)
def test_run_patch_produces_the_patched_tree(
    tmp_path: Path, demo: DemoInputs, release: Release, target: str, output: str, present: str
) -> None:
    args = patch_args(target, False, False, ["--repack"])
    log = tmp_path / "build.log"
    out = run_patch(
        demo.patcher_dir,
        _runs(demo),
        args,
        tmp_path / "work",
        log,
        _contract(demo.patcher_dir),
    )
    assert out.name == output and out.is_dir()
    assert (out / present).is_file()
    assert 'MODULE_LICENSE("Dual MIT/GPL")' in (out / "kernel" / "nvidia" / "nv.c").read_text()
    assert f"patched driver is in {output}" in log.read_text()
    assert check_run(out.with_name(output + ".run"), None).targetdir == output
    assert not list(out.rglob("*.rej"))


@pytest.mark.parametrize(
    ("failure", "match"),
    [
        ("die", "failed with exit code 1: .*NOT APPLIED to kernel-open"),
        ("reject", "reported failed patches: .*FAILED"),
        ("nooutput", "exited 0 but did not create NVIDIA-Linux-x86_64-550.999.05-vgpu-kvm-patched"),
    ],
)
def test_run_patch_failures(tmp_path: Path, release: Release, failure: str, match: str) -> None:
    bad = make_demo_inputs(tmp_path / "in", failure=failure)  # type: ignore[arg-type]
    args = patch_args("vgpu-kvm", False, False, [])
    log = tmp_path / "build.log"
    with pytest.raises(PatcherError, match=match) as err:
        run_patch(
            bad.patcher_dir,
            _runs(bad),
            args,
            tmp_path / "work",
            log,
            _contract(bad.patcher_dir),
        )
    assert str(log) in (err.value.hint or "")
    assert log.stat().st_size > 0


def test_rej_file_alone_is_a_failure(tmp_path: Path, demo: DemoInputs, release: Release) -> None:
    """A .rej left behind fails the run even when nothing in the output says FAILED."""
    patcher = tmp_path / "patcher"
    shutil.copytree(demo.patcher_dir, patcher)
    with (patcher / "patch.sh").open("a") as f:
        f.write('touch "${TARGET}/kernel/quiet.c.rej"\n')
    args = patch_args("vgpu-kvm", False, False, [])
    with pytest.raises(PatcherError, match=r"left rejected hunks: .*quiet\.c\.rej"):
        run_patch(
            patcher,
            _runs(demo),
            args,
            tmp_path / "w",
            tmp_path / "log",
            _contract(patcher),
        )


def _path_without(tmp_path: Path, *missing: str) -> str:
    """A PATH folder of symlinks to every program on PATH except ``missing``."""
    folder = tmp_path / "bin"
    folder.mkdir(parents=True)
    for directory in os.environ["PATH"].split(os.pathsep):
        if not os.path.isdir(directory):
            continue
        for name in os.listdir(directory):
            link = folder / name
            if name not in missing and not link.exists():
                link.symlink_to(os.path.join(directory, name))
    return str(folder)


def test_missing_tools_are_named_up_front(
    tmp_path: Path, demo: DemoInputs, release: Release
) -> None:
    path = _path_without(tmp_path, "awk", "gawk", "patch", "gcc", "makecert", "which")
    args = patch_args("vgpu-kvm", False, False, ["--repack"])
    contract = _contract(demo.patcher_dir)
    with pytest.raises(ToolMissingError) as err:
        run_patch(demo.patcher_dir, _runs(demo), args, tmp_path / "w", tmp_path / "l",
            contract, path,
        )  # fmt: skip
    assert "awk (gawk)" in err.value.message and "patch (GNU patch)" in err.value.message
    assert "branch demo" in err.value.message
    assert not (tmp_path / "w").exists()
    with pytest.raises(ToolMissingError, match="7z"):
        check_tools(contract, "wsys", ["wsys"], search_path=path)
    with_awk = _path_without(tmp_path / "2", "gcc", "makecert", "which")
    check_tools(contract, "vgpu-kvm", args, search_path=with_awk)  # none of them needed
    for option, tool in (
        ("--spoof-devid", "gcc (gcc)"),
        ("--create-cert", "makecert (mono-devel)"),
    ):
        with pytest.raises(ToolMissingError) as err:
            check_tools(contract, "vgpu-kvm", [option, "vgpu-kvm"], search_path=with_awk)
        assert tool in err.value.message and "which (" in err.value.message
    with pytest.raises(ToolMissingError, match=r"which .*gcc \(gcc\)"):
        check_tools(contract, "wsys", ["wsys"], search_path=with_awk)


def test_patch_sh_gets_a_clean_environment(
    tmp_path: Path, demo: DemoInputs, release: Release, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VGPUBUILD_TEST_LEAK", "secret")
    monkeypatch.setenv("NIX_BUILD_CORES", "3")
    patcher = tmp_path / "patcher"
    shutil.copytree(demo.patcher_dir, patcher)
    with (patcher / "patch.sh").open("a") as f:
        f.write('env > "${TARGET}/env.txt"\n')
    args = patch_args("vgpu-kvm", True, False, [])
    contract = _contract(patcher)
    out = run_patch(patcher, _runs(demo), args, tmp_path / "w", tmp_path / "log", contract)
    env = dict(line.split("=", 1) for line in (out / "env.txt").read_text().splitlines())
    assert "VGPUBUILD_TEST_LEAK" not in env
    assert env["LC_ALL"] == "C"
    assert env["HOME"] == str(tmp_path / "w" / "home")
    assert env["NIX_BUILD_CORES"] == "3"  # parallelism is the one thing passed through
    allowed = {"PATH", "LC_ALL", "LANG", "HOME", "TMPDIR", "PWD", "OLDPWD", "SHLVL", "_"}
    assert set(env) <= allowed | {"NIX_BUILD_CORES", "MAKEFLAGS", "ZSTD_NBTHREADS"}
    assert env["PATH"] == check_tools(contract, "vgpu-kvm", args)
