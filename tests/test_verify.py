"""The one hash verifier: compare, and on a mismatch report it the one way."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from vgpubuild.errors import HashMismatchError, InputError
from vgpubuild.nar import nar_hash
from vgpubuild.nixhash import Hash
from vgpubuild.verify import Pinned

GOOD = Hash("sha256", hashlib.sha256(b"good").digest())
BAD = Hash("sha256", hashlib.sha256(b"bad").digest())


def test_a_match_returns_the_hash_and_sets_nothing_aside() -> None:
    moved: list[Path] = []

    def set_aside() -> Path:
        moved.append(Path("quarantine"))
        return moved[-1]

    assert Pinned(GOOD, "x").check(GOOD, set_aside=set_aside) == GOOD
    assert moved == []


def test_nothing_pinned_accepts_anything() -> None:
    assert Pinned(None, "x").check(BAD) == BAD


def test_a_mismatch_names_both_hashes_like_nix() -> None:
    with pytest.raises(HashMismatchError) as err:
        Pinned(GOOD, "grid.zip").check(BAD, note="why", hint="what to do")
    assert err.value.message == (
        f"hash mismatch in grid.zip (why)\n  specified: {GOOD.sri}\n  got:       {BAD.sri}"
    )
    assert err.value.hint == "what to do"


def test_set_aside_runs_first_and_the_message_says_where(tmp_path: Path) -> None:
    kept = tmp_path / "quarantine" / "x"
    with pytest.raises(HashMismatchError, match=f"moved to {kept}"):
        Pinned(GOOD, "x").check(BAD, set_aside=lambda: kept)


def test_the_error_class_can_name_another_failure() -> None:
    with pytest.raises(InputError, match="hash mismatch in the NAR"):
        Pinned(GOOD, "the NAR").check(BAD, error=InputError)


def test_files_and_trees(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"good")
    assert Pinned(GOOD, "f").check_file(tmp_path / "f") == GOOD
    with pytest.raises(HashMismatchError):
        Pinned(BAD, "f").check_file(tmp_path / "f")
    tree = nar_hash(tmp_path)
    assert Pinned(tree, "tree").check_tree(tmp_path) == tree
    with pytest.raises(HashMismatchError, match="hash mismatch in tree"):
        Pinned(GOOD, "tree").check_tree(tmp_path)
