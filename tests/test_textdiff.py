"""Dry-run diffs: GNU patch applies them, and they are GNU ``diff -u``'s where it is unambiguous."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import xmlgen
from conftest import require_tool

from vgpubuild.profiles.clones import copy_profiles
from vgpubuild.profiles.overrides import apply_overrides
from vgpubuild.profiles.settings import parse_clone_map, parse_overrides
from vgpubuild.textdiff import unified_diff
from vgpubuild.vgpuconfig.model import VgpuConfig


def _gnu_body(before: bytes, after: bytes, tmp_path: Path) -> str:
    diff = require_tool("diff")
    (tmp_path / "a").write_bytes(before)
    (tmp_path / "b").write_bytes(after)
    out = subprocess.run([diff, "-u", "a", "b"], cwd=tmp_path, capture_output=True, check=False)
    return out.stdout.decode(errors="backslashreplace").split("\n", 2)[2]  # without the two header lines


CASES = [
    ({"333": {"heads": 2}}, {}),  # one line
    ({"333": {"vramAllocation": 3584}, "334": {"heads": 1}}, {}),  # two hunks
    ({"333": {"enableCuda": True, "heads": 1}}, {"1E07:0000": "1E30:12BA"}),  # inserts
]


def _edit(overrides: dict[str, dict[str, object]], clones: dict[str, str]) -> tuple[bytes, bytes]:
    data = xmlgen.large()
    config = VgpuConfig.parse(data)
    copy_profiles(config, parse_clone_map(clones))
    apply_overrides(config, parse_overrides(overrides))
    return data, config.to_bytes()


@pytest.mark.parametrize(("overrides", "clones"), CASES)
def test_gnu_patch_applies_the_diff(
    tmp_path: Path, overrides: dict[str, dict[str, object]], clones: dict[str, str]
) -> None:
    before, after = _edit(overrides, clones)
    ours = unified_diff(before, after, "x", "x (edited)")
    assert ours.startswith("--- x\n+++ x (edited)\n@@ ")
    (tmp_path / "x").write_bytes(before)
    subprocess.run(
        [require_tool("patch"), "--batch", "--silent", "x"],
        input=ours.encode(),
        cwd=tmp_path,
        check=True,
    )
    assert (tmp_path / "x").read_bytes() == after


@pytest.mark.parametrize(("overrides", "clones"), CASES[:2])
def test_hunks_match_gnu_diff(
    tmp_path: Path, overrides: dict[str, dict[str, object]], clones: dict[str, str]
) -> None:
    """Value edits have one right diff. (A copied block can be placed at several equally
    right lines; there difflib and GNU diff may choose differently, so only patch decides.)"""
    before, after = _edit(overrides, clones)
    ours = unified_diff(before, after, "x", "x (edited)")
    assert ours.split("\n", 2)[2] == _gnu_body(before, after, tmp_path)


def test_equal_texts_give_no_diff_and_short_hunks_use_the_short_form(tmp_path: Path) -> None:
    assert unified_diff(b"a\nb\n", b"a\nb\n", "x", "y") == ""
    ours = unified_diff(b"a\n", b"b\n", "x", "y")
    assert ours == "--- x\n+++ y\n@@ -1 +1 @@\n-a\n+b\n"
    assert ours.split("\n", 2)[2] == _gnu_body(b"a\n", b"b\n", tmp_path)
