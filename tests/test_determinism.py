"""The artifact depends only on its inputs: not on the folder, umask, clock or machine.

Two builds of the demo release in different folders, with different umasks and input
mtimes and separate caches (so nothing is reused), must give the same bytes; real Nix must
put the artifact exactly where vgpubuild said it would.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import require_tool
from test_pipeline import HOST_TREE, write_config

from vgpubuild.artifact import (
    FIXED_MTIME,
    MANIFEST_NAME,
    describe,
    finalise,
    manifest_bytes,
    normalise_tree,
)
from vgpubuild.demo import make_demo_inputs
from vgpubuild.errors import InputError
from vgpubuild.nar import nar_hash
from vgpubuild.nixhash import Hash


def _build(root: Path, umask: int, *extra: str) -> dict[str, Any]:
    """Generate the demo inputs under ``root`` and build them there, under ``umask``."""
    old = os.umask(umask)
    try:
        demo = make_demo_inputs(root / "inputs")
    finally:
        os.umask(old)
    for path in [demo.zip_path, *demo.patcher_dir.rglob("*")]:
        os.utime(path, (1_000_000_000 + umask, 1_000_000_000 + umask), follow_symlinks=False)
    config = write_config(demo, root / "build.json", profileOverrides={"333": {"heads": 2}})
    proc = subprocess.run(
        [sys.executable, "-m", "vgpubuild", "patch", "--config", str(config),
         "--patcher", str(demo.patcher_dir), "--out", str(root / "out"), "--json", *extra],
        env={**os.environ, "VGPUBUILD_CACHE": str(root / "cache")},
        capture_output=True,
        preexec_fn=lambda: os.umask(umask),  # the child has no threads yet
        check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr.decode(errors="backslashreplace")
    data: dict[str, Any] = json.loads(proc.stdout)
    assert data["cached"] is False
    return data


@pytest.fixture(scope="module")
def two_builds(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], dict[str, Any]]:
    a = _build(tmp_path_factory.mktemp("first"), 0o022, "--repack")
    b = _build(tmp_path_factory.mktemp("second-build-elsewhere"), 0o077, "--repack")
    return a, b


def test_same_nar_hash_store_path_and_bytes(
    two_builds: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    a, b = two_builds
    assert a["artifact"] != b["artifact"]
    assert a["nar_hash"] == b["nar_hash"]
    assert a["store_path"] == b["store_path"] and a["store_path"].endswith(f"-{HOST_TREE}")
    assert a["build_key"] == b["build_key"]
    assert nar_hash(a["artifact"]) == nar_hash(b["artifact"])
    assert a["repacked"]["sha256"] == b["repacked"]["sha256"]
    assert a["repacked"]["store_path"] == b["repacked"]["store_path"]
    ma = (Path(a["artifact"]) / MANIFEST_NAME).read_bytes()
    assert ma == (Path(b["artifact"]) / MANIFEST_NAME).read_bytes()
    # No timestamps or build paths leak into the manifest.
    text = ma.decode(errors="backslashreplace")
    assert str(Path(a["artifact"]).parent.parent) not in text and "time" not in text
    assert json.loads(text) == json.loads(manifest_bytes(json.loads(text)))


def test_artifact_modes_and_mtimes_are_normalised(
    two_builds: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    _, b = two_builds  # built under umask 077
    for path in [Path(b["artifact"]), *Path(b["artifact"]).rglob("*")]:
        st = path.lstat()
        if stat.S_ISDIR(st.st_mode):
            assert stat.S_IMODE(st.st_mode) == 0o755, path
        elif stat.S_ISREG(st.st_mode):
            assert stat.S_IMODE(st.st_mode) in (0o644, 0o755), path
        assert st.st_mtime == FIXED_MTIME, path


def test_nix_store_add_gives_the_predicted_path(
    two_builds: tuple[dict[str, Any], dict[str, Any]], tmp_path: Path
) -> None:
    nix_store = require_tool("nix-store")
    a, _ = two_builds
    store = str(tmp_path / "store")  # a chroot store: the real /nix/store stays untouched
    added = subprocess.run(
        [nix_store, "--store", store, "--add-fixed", "--recursive", "sha256", a["artifact"]],
        capture_output=True, text=True, errors="backslashreplace", check=True,
    ).stdout.strip()  # fmt: skip
    assert added == a["store_path"]
    run = subprocess.run(
        [nix_store, "--store", store, "--add-fixed", "sha256", a["repacked"]["path"]],
        capture_output=True, text=True, errors="backslashreplace", check=True,
    ).stdout.strip()  # fmt: skip
    assert run == a["repacked"]["store_path"]
    nix_hash = subprocess.run(
        [require_tool("nix-hash"), "--type", "sha256", "--base32", a["artifact"]],
        capture_output=True, text=True, errors="backslashreplace", check=True,
    ).stdout.strip()  # fmt: skip
    assert nix_hash == Hash.parse(a["nar_hash"]).format("nix32")


# ------------------------------------------------------------------ the artifact module


def _messy_tree(root: Path) -> None:
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "exec.sh").write_text("#!/bin/sh\n")
    os.chmod(root / "exec.sh", 0o4710)  # setuid, group-exec: only "owner may run" survives
    (root / "data.txt").write_text("data\n")
    os.chmod(root / "data.txt", 0o600)
    (root / "sub" / "wide.txt").write_text("x")
    os.chmod(root / "sub" / "wide.txt", 0o666)
    (root / "sub" / "link").symlink_to("../data.txt")
    os.chmod(root / "sub" / "deeper", 0o700)


def test_normalise_tree_modes_mtimes_and_links(tmp_path: Path) -> None:
    root = tmp_path / "t"
    root.mkdir()
    _messy_tree(root)
    before = nar_hash(root)
    normalise_tree(root, build_dirs=[tmp_path / "work"])
    assert stat.S_IMODE((root / "exec.sh").stat().st_mode) == 0o755
    assert stat.S_IMODE((root / "data.txt").stat().st_mode) == 0o644
    assert stat.S_IMODE((root / "sub" / "wide.txt").stat().st_mode) == 0o644
    assert stat.S_IMODE((root / "sub" / "deeper").stat().st_mode) == 0o755
    assert os.readlink(root / "sub" / "link") == "../data.txt"
    assert (root / "sub" / "link").lstat().st_mtime == FIXED_MTIME
    assert root.stat().st_mtime == FIXED_MTIME
    assert nar_hash(root) == before  # only what a NAR ignores changed


@pytest.mark.parametrize("kind", ["fifo", "socket"])
def test_special_files_are_refused(tmp_path: Path, kind: str) -> None:
    root = tmp_path / "t"
    (root / "sub").mkdir(parents=True)
    special = root / "sub" / "special"
    if kind == "fifo":
        os.mkfifo(special)
    else:
        s = socket.socket(socket.AF_UNIX)
        s.bind(str(special))
        s.close()
    with pytest.raises(InputError, match=f"is a {kind}, which an artifact cannot contain"):
        normalise_tree(root)


def test_device_nodes_are_refused(tmp_path: Path) -> None:
    root = tmp_path / "t"
    root.mkdir()
    try:
        os.mknod(root / "null", 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("creating a device node needs root")
    with pytest.raises(InputError, match="is a device node"):
        normalise_tree(root)


def test_symlink_into_the_build_folder_is_refused(tmp_path: Path) -> None:
    work = tmp_path / "work"
    root = work / "tree"
    root.mkdir(parents=True)
    (root / "abs").symlink_to(work / "inputs" / "x.run")
    with pytest.raises(InputError, match="points into the build folder"):
        normalise_tree(root, build_dirs=[work])
    (root / "abs").unlink()
    (root / "ok").symlink_to("/usr/share/doc")  # absolute, but not ours: content like any other
    normalise_tree(root, build_dirs=[work])


def test_finalise_writes_a_sorted_manifest_and_describes(tmp_path: Path) -> None:
    root = tmp_path / "tree-x"
    root.mkdir()
    _messy_tree(root)
    info = finalise(root, {"b": 1, "a": {"z": [], "y": "é"}}, name="named-artifact")
    text = (root / MANIFEST_NAME).read_text(encoding="utf-8")
    assert text == '{\n  "a": {\n    "y": "é",\n    "z": []\n  },\n  "b": 1\n}\n'
    assert info.store_path.endswith("-named-artifact")
    assert info.nar_hash == nar_hash(root) == describe(root, "named-artifact").nar_hash
    assert stat.S_IMODE((root / MANIFEST_NAME).stat().st_mode) == 0o644
