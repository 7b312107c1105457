"""Generated test trees for NAR/hash parity (every node kind and name-order trap Nix has),
and helpers that run the reference Nix tools on them.

Content is deterministic (seeded) and written in chunks, so even the large file never
exists in memory. Shared by the hashing tests and bench/bench_hashing.py.
"""

from __future__ import annotations

import hashlib
import os
import random
import subprocess
import sys
from pathlib import Path

MIB = 1 << 20

# Byte order: 'A' < 'a' < 'a-b' < 'a.b' < 'a0'; a locale collation (en_US) orders these
# differently ('a-b' and 'a.b' next to 'ab', case folded), and non-ASCII sorts by UTF-8 bytes.
TRICKY_NAMES = ("A", "a", "a-b", "a.b", "a0", "B", "_", "é", "Ω", "z", "~")


def write_file(path: Path, size: int, seed: int = 0, executable: bool = False) -> Path:
    """Write ``size`` pseudo-random bytes in 1 MiB pieces (each piece distinct)."""
    block = random.Random(seed).randbytes(min(size, MIB))
    with open(path, "wb") as f:
        written = 0
        index = 0
        while written < size:
            piece = index.to_bytes(8, "little") + block[8:]
            piece = piece[: min(len(block), size - written)]
            f.write(piece)
            written += len(piece)
            index += 1
    path.chmod(0o755 if executable else 0o644)
    return path


def names_tree(root: Path) -> Path:
    """A directory whose entries sort differently by bytes and by locale."""
    root.mkdir()
    for i, name in enumerate(TRICKY_NAMES):
        write_file(root / name, 3 + i, seed=i)
    (root / "a.b").chmod(0o755)
    return root


def deep_tree(root: Path, depth: int = 60) -> Path:
    """``depth`` nested directories with a file at the bottom and one on the way."""
    node = root
    for level in range(depth):
        node = node / f"d{level}"
    node.mkdir(parents=True)
    write_file(node / "leaf", 17, seed=depth)
    write_file(root / "d0" / "mid", 9, seed=1)
    return root


def mixed_tree(root: Path) -> Path:
    """One tree with every node kind: files (empty, odd sizes, executable), all symlink
    kinds, empty directories, nesting and tricky names."""
    root.mkdir()
    write_file(root / "empty", 0)
    for size in (1, 7, 8, 9, 4095, 4096, 65537):
        write_file(root / f"file{size}", size, seed=size)
    write_file(root / "run.sh", 100, seed=5, executable=True)
    (root / "group-x-only").write_bytes(b"x bit for group and other, not for the owner\n")
    (root / "group-x-only").chmod(0o655)
    (root / "emptydir").mkdir()
    (root / "sub" / "emptier").mkdir(parents=True)
    os.symlink("../file7", root / "sub" / "relative-link")
    os.symlink("/etc/hostname", root / "absolute-link")
    os.symlink("does/not/exist", root / "dangling-link")
    os.symlink("sub", root / "dir-link")
    names_tree(root / "names")
    deep_tree(root / "deep", depth=20)
    return root


def bench_tree(root: Path, files: int = 3000, total: int = 1 << 30) -> Path:
    """About ``total`` bytes in ``files`` files of mixed sizes, 100 per directory."""
    rng = random.Random(42)
    weights = [rng.paretovariate(1.2) for _ in range(files)]
    scale = total / sum(weights)
    for i, weight in enumerate(weights):
        folder = root / f"dir{i // 100:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        write_file(folder / f"file{i:05d}.bin", int(weight * scale), seed=i, executable=i % 7 == 0)
    return root


# Reference tools ------------------------------------------------------------------

NIX = ("nix", "--extra-experimental-features", "nix-command")


def nix(*args: str) -> str:
    """Run a Nix command (``nix-hash``, ``nix-store``, or ``nix`` with nix-command on) and
    return its stdout, stripped; a failure fails the test with Nix's own message."""
    cmd = [*NIX, *args[1:]] if args[0] == "nix" else list(args)
    from conftest import require_tool

    require_tool(cmd[0])
    proc = subprocess.run(cmd, capture_output=True, text=True, errors="backslashreplace", check=False)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed: {proc.stderr}"
    return proc.stdout.strip()


def stream_digest(cmd: list[str]) -> tuple[str, int]:
    """sha256 and length of a command's stdout, read in chunks (for 100+ MiB outputs)."""
    h = hashlib.sha256()
    size = 0
    with subprocess.Popen(cmd, stdout=subprocess.PIPE) as proc:
        assert proc.stdout is not None
        while chunk := proc.stdout.read(1 << 20):
            h.update(chunk)
            size += len(chunk)
    assert proc.returncode == 0, f"{' '.join(cmd)} exited {proc.returncode}"
    return h.hexdigest(), size


def cli_cmd(*args: str) -> list[str]:
    """The command line run_cli uses, for when a test streams the output itself."""
    return [sys.executable, "-m", "vgpubuild", *args]


def forget(store_path: str) -> None:
    """Delete a path a test added to the real store (kept if something refers to it)."""
    subprocess.run(["nix-store", "--delete", store_path], capture_output=True, check=False)
