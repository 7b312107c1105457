"""Parity with real Nix on generated trees: NAR bytes, NAR hash in every form, store paths.

Every case goes through the CLI as a user runs it (``python -m vgpubuild``) and is compared
with what Nix 2.8 itself prints for the same path; store paths are checked by really adding
the path to the local store.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import run_cli
from treegen import (
    MIB,
    bench_tree,
    cli_cmd,
    deep_tree,
    driver_tree,
    forget,
    mixed_tree,
    names_tree,
    nix,
    stream_digest,
    tiny_tree,
    write_file,
)

from vgpubuild import nar
from vgpubuild.readahead import BUFFER_SIZE

LARGE = 120 * MIB

CASES: dict[str, Callable[[Path], Path]] = {
    "empty-file": lambda d: write_file(d / "empty-file", 0),
    "small-file": lambda d: write_file(d / "small-file", 1000, seed=3),
    "executable": lambda d: write_file(d / "tool.sh", 333, seed=4, executable=True),
    "large-file": lambda d: write_file(d / "large.bin", LARGE, seed=7),
    "symlink-relative": lambda d: _link(d / "rel-link", "../somewhere/file"),
    "symlink-absolute": lambda d: _link(d / "abs-link", "/etc/hostname"),
    "symlink-dangling": lambda d: _link(d / "dangling-link", "no-such-target"),
    "empty-dir": lambda d: _mkdir(d / "empty-dir"),
    "deep-nesting": lambda d: deep_tree(d / "deep", depth=60),
    "byte-order-names": lambda d: names_tree(d / "names"),
    "mixed-tree": lambda d: mixed_tree(d / "mixed"),
    # The benchmark's shapes, small: many files of Pareto sizes, a driver (a few big
    # files, many small ones, library symlinks), thousands of tiny files.
    "bench-tree": lambda d: bench_tree(d / "bench", files=300, total=24 * MIB),
    "driver-shaped": lambda d: driver_tree(d / "driver", scale=0.02),
    "tiny-files": lambda d: tiny_tree(d / "tiny", files=2000),
    "buffer-edges": lambda d: _edges(d / "edges"),
}
FILE_CASES = ("empty-file", "small-file", "executable", "large-file")


def _edges(root: Path) -> Path:
    """Files whose sizes sit on every size boundary of the packer (read whole or streamed,
    the pending bytes spilled, a buffer filled, a dump's sendfile), after names of every
    length mod 8, so the framing lands at every offset of a buffer."""
    root.mkdir()
    sizes = [4095, 4096, 4097, (1 << 16) - 1, 1 << 16, BUFFER_SIZE - 1, BUFFER_SIZE]
    sizes += [BUFFER_SIZE + 1, 2 * BUFFER_SIZE + 3, nar.SEND_MIN - 1, nar.SEND_MIN]
    for i, size in enumerate(sizes):
        write_file(root / f"{i:02d}{'x' * (i % 8)}", size, seed=i, executable=i % 3 == 0)
    for i in range(300):  # enough small ones to fill more than one buffer with structure
        write_file(root / f"small{i:03d}", i * 17 % 3000, seed=i)
    return root


def _link(path: Path, target: str) -> Path:
    os.symlink(target, path)
    return path


def _mkdir(path: Path) -> Path:
    path.mkdir()
    return path


@pytest.fixture(scope="module")
def trees(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every case built once per test module (each in its own folder)."""
    built = {}
    for case, build in CASES.items():
        folder = tmp_path_factory.mktemp(case)
        built[case] = build(folder)
    return built


@pytest.mark.parametrize("case", CASES)
def test_nar_dump_bytes_equal_nix_store_dump(case: str, trees: dict[str, Path]) -> None:
    path = str(trees[case])
    if case == "large-file":
        ours = stream_digest(cli_cmd("nar", "dump", path))
        assert ours == stream_digest(["nix-store", "--dump", path])
        assert ours[1] > LARGE
        return
    r = run_cli("nar", "dump", path)
    assert r.exit_code == 0, r.stderr
    expected = _nix_dump(path)
    assert r.stdout_bytes == expected


def _nix_dump(path: str) -> bytes:
    return subprocess.run(["nix-store", "--dump", path], capture_output=True, check=True).stdout


def test_nar_dump_to_output_file_and_to_a_python_stream(
    trees: dict[str, Path], tmp_path: Path
) -> None:
    """The -o path (sendfile into a regular file) and the no-descriptor path (BytesIO)."""
    path = str(trees["mixed-tree"])
    expected = _nix_dump(path)
    out = tmp_path / "mixed.nar"
    r = run_cli("nar", "dump", "-o", str(out), path)
    assert r.exit_code == 0 and r.stdout == "", r.stderr
    assert out.read_bytes() == expected
    buffer = io.BytesIO()
    nar.dump(path, buffer)
    assert buffer.getvalue() == expected
    assert nar.nar_hash_and_size(path)[1] == len(expected)


@pytest.mark.parametrize("case", CASES)
def test_hash_path_equals_nix_hash_in_every_form(case: str, trees: dict[str, Path]) -> None:
    path = str(trees[case])
    r = run_cli("hash", "path", "--json", path)
    assert r.exit_code == 0, r.stderr
    ours = json.loads(r.stdout)
    assert ours["algo"] == "sha256"
    assert ours["base16"] == nix("nix-hash", "--type", "sha256", path)
    assert ours["nix32"] == nix("nix-hash", "--type", "sha256", "--base32", path)
    assert ours["sri"] == nix("nix", "hash", "path", "--type", "sha256", "--sri", path)
    assert ours["base64"] == nix("nix", "hash", "path", "--type", "sha256", "--base64", path)


@pytest.mark.parametrize(
    ("form", "nix_args"),
    [
        ("base16", ["nix-hash", "--type", "sha256"]),
        ("nix32", ["nix-hash", "--type", "sha256", "--base32"]),
        ("sri", ["nix", "hash", "path", "--type", "sha256"]),
        ("base64", ["nix", "hash", "path", "--type", "sha256", "--base64"]),
    ],
)
def test_hash_path_to_option_prints_each_form(
    form: str, nix_args: list[str], trees: dict[str, Path]
) -> None:
    path = str(trees["mixed-tree"])
    r = run_cli("hash", "path", path, "--to", form)
    assert r.exit_code == 0, r.stderr
    assert r.stdout == nix(*nix_args, path) + "\n"


@pytest.mark.parametrize("algo", ["sha512", "sha1", "md5"])
def test_hash_path_other_algorithms_equal_nix_hash(algo: str, trees: dict[str, Path]) -> None:
    path = str(trees["mixed-tree"])
    r = run_cli("hash", "path", "--type", algo, "--to", "base16", path)
    assert r.exit_code == 0, r.stderr
    assert r.stdout.strip() == nix("nix-hash", "--type", algo, path)


@pytest.mark.parametrize("case", FILE_CASES)
def test_hash_file_equals_nix_hash_flat(case: str, trees: dict[str, Path]) -> None:
    path = str(trees[case])
    r = run_cli("hash", "file", "--json", path)
    assert r.exit_code == 0, r.stderr
    ours = json.loads(r.stdout)
    assert ours["base16"] == nix("nix-hash", "--flat", "--type", "sha256", path)
    assert ours["nix32"] == nix("nix-hash", "--flat", "--type", "sha256", "--base32", path)
    assert ours["sri"] == nix("nix", "hash", "file", "--type", "sha256", path)
    assert ours["base64"] == nix("nix", "hash", "file", "--type", "sha256", "--base64", path)


@pytest.mark.parametrize("case", FILE_CASES)
def test_store_path_flat_equals_nix_store_add_fixed(case: str, trees: dict[str, Path]) -> None:
    path = str(trees[case])
    r = run_cli("store", "path", "--flat", path)
    assert r.exit_code == 0, r.stderr
    added = nix("nix-store", "--add-fixed", "sha256", path)
    try:
        assert r.stdout.strip() == added
    finally:
        forget(added)


@pytest.mark.parametrize("case", CASES)
def test_store_path_recursive_equals_nix_store_add(case: str, trees: dict[str, Path]) -> None:
    path = str(trees[case])
    default = run_cli("store", "path", path)
    explicit = run_cli("store", "path", "--recursive", path)
    assert default.exit_code == 0, default.stderr
    assert explicit.stdout == default.stdout
    added = nix("nix-store", "--add-fixed", "--recursive", "sha256", path)
    try:
        assert default.stdout.strip() == added
        assert nix("nix-store", "--add", path) == added
    finally:
        forget(added)
