"""Store paths and store-name rules, checked against what the real `nix-store` does."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import require_tool, run_cli
from treegen import forget, mixed_tree, nix, write_file

from vgpubuild.errors import InputError, InvalidStoreNameError
from vgpubuild.nar import nar_hash
from vgpubuild.nixhash import hash_file
from vgpubuild.store import Ingestion, check_name, fixed_output_path, path_for, store_dir

NAMES = [
    "ok",
    "a+b-c.d_e?f=g",
    "-leading-dash",
    "x" * 211,
    "x" * 212,
    ".hidden",
    "with space",
    "colon:name",
    "caf\u00e9",
    "tab\tname",
    "semi;colon",
]


@pytest.mark.parametrize("name", NAMES, ids=lambda n: n[:20])
def test_store_name_rules_agree_with_nix_store(name: str, tmp_path: Path) -> None:
    """A name we accept, nix-store --add-fixed accepts, and the other way round.

    One deliberate difference: a leading '.' is refused (as newer Nix does), although
    Nix 2.8 still accepts it; such a name would not be portable across Nix versions.
    """
    ours_ok = True
    try:
        check_name(name)
    except InvalidStoreNameError:
        ours_ok = False
    if name.startswith("."):
        assert not ours_ok
        return
    path = write_file(tmp_path / name, 5, seed=1)
    proc = subprocess.run(
        [require_tool("nix-store"), "--add-fixed", "sha256", str(path)],
        capture_output=True,
        check=False,
    )
    assert (proc.returncode == 0) == ours_ok, proc.stderr
    if ours_ok:
        try:
            assert path_for(path, "flat")[1] == proc.stdout.decode(errors="backslashreplace").strip()
        finally:
            forget(proc.stdout.decode(errors="backslashreplace").strip())


@pytest.mark.parametrize("name", ["", ".x", "a b", "x" * 212, "ümlaut"])
def test_cli_rejects_invalid_store_names(name: str, tmp_path: Path) -> None:
    f = write_file(tmp_path / "file", 10)
    r = run_cli("store", "path", "--name", name, str(f))
    assert r.exit_code == 2
    assert r.stderr.startswith("error: ") and r.stderr.count("\n") == 1
    assert "store path name" in r.stderr
    assert "--name" not in r.stderr  # the name came from --name: no advice to pass it


@pytest.mark.parametrize("algo", ["sha256", "sha512", "sha1", "md5"])
@pytest.mark.parametrize("recursive", [False, True])
def test_fixed_output_paths_for_every_algorithm_match_nix(
    algo: str, recursive: bool, tmp_path: Path
) -> None:
    """sha256 recursive is the 'source' kind; everything else the fixed:out: indirection."""
    path = write_file(tmp_path / "payload", 4097, seed=9)
    content = nar_hash(path, algo) if recursive else hash_file(path, algo)
    flag = ["--recursive"] if recursive else []
    added = nix("nix-store", "--add-fixed", *flag, algo, str(path))
    try:
        ingestion: Ingestion = "recursive" if recursive else "flat"
        assert fixed_output_path(content, "payload", ingestion) == added
    finally:
        forget(added)


def test_name_option_renames_like_adding_a_copy_with_that_name(tmp_path: Path) -> None:
    tree = mixed_tree(tmp_path / "tree")
    copy = tmp_path / "other" / "wanted-name"
    copy.parent.mkdir()
    shutil.copytree(tree, copy, symlinks=True)
    r = run_cli("store", "path", "--name", "wanted-name", "--json", str(tree))
    assert r.exit_code == 0, r.stderr
    data = json.loads(r.stdout)
    added = nix("nix-store", "--add", str(copy))
    try:
        assert data["store_path"] == added
        assert data["ingestion"] == "recursive"
        assert data["hash"] == nix("nix", "hash", "path", "--type", "sha256", str(tree))
    finally:
        forget(added)


def test_flat_store_path_of_a_symlink_is_refused(tmp_path: Path) -> None:
    """Nix 2.8 fails there too ("ca hash mismatch"), so there is no path to predict."""
    target = write_file(tmp_path / "target", 3)
    link = tmp_path / "link"
    link.symlink_to(target)
    with pytest.raises(InputError, match="symlink"):
        path_for(link, "flat")
    r = run_cli("store", "path", "--flat", str(link))
    assert r.exit_code == 4 and r.stderr.count("\n") == 1
    assert "--name link" in r.stderr


def test_flat_and_recursive_together_is_a_usage_error(tmp_path: Path) -> None:
    f = write_file(tmp_path / "f", 1)
    r = run_cli("store", "path", "--flat", "--recursive", str(f))
    assert r.exit_code == 2 and "exclude each other" in r.stderr


def test_flat_store_path_of_a_directory_is_an_input_error(tmp_path: Path) -> None:
    r = run_cli("store", "path", "--flat", str(tmp_path))
    assert r.exit_code == 4 and "is a directory" in r.stderr


def test_store_dir_follows_nix_store_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    f = write_file(tmp_path / "f", 1)
    default = path_for(f, "flat")[1]
    monkeypatch.setenv("NIX_STORE_DIR", "/gnu/store")
    assert store_dir() == "/gnu/store"
    moved = path_for(f, "flat")[1]
    assert moved.startswith("/gnu/store/") and moved.endswith("-f")
    assert moved.rsplit("/", 1)[1] != default.rsplit("/", 1)[1]  # the dir is hashed in


def test_content_name_drops_the_store_hash_only_inside_the_store() -> None:
    from vgpubuild.store import content_name, store_dir

    hashed = f"{store_dir()}/0123456789abcdfghijklmnpqrsvwxyz-fix.patch"
    assert content_name(hashed) == "fix.patch"
    assert content_name("/tmp/0123456789abcdfghijklmnpqrsvwxyz-fix.patch") == (
        "0123456789abcdfghijklmnpqrsvwxyz-fix.patch"
    )
    assert content_name(f"{store_dir()}/short-name.patch") == "short-name.patch"
