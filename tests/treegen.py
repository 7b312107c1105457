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
# differently ('a-b' and 'a.b' next to 'ab', case folded), and non-ASCII sorts by UTF-8 bytes:
# a 4-byte character (F0 ..) before an undecodable byte FF, which code point order (and so
# sorting Python's str names) gets the other way round.
TRICKY_NAMES = (
    "A",
    "a",
    "a-b",
    "a.b",
    "a0",
    "B",
    "_",
    "é",
    "Ω",
    "z",
    "~",
    "\U0001f600",
    os.fsdecode(b"\xff-raw"),
)


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


def driver_tree(root: Path, scale: float = 1.0) -> Path:
    """Shaped like an unpacked vGPU driver: 16 files of 9-40 MiB (kernel modules, libraries,
    firmware), 2,000 small files (sources, manifests, man pages) and library symlinks.

    About 250 MiB at ``scale=1``; ``scale`` shrinks every file (the parity tests use ~0.01).
    """
    rng = random.Random(16)
    big_sizes = [rng.randint(9 * MIB, 40 * MIB) for _ in range(16)]
    adjust = 230 * MIB / sum(big_sizes)
    for i, size in enumerate(big_sizes):
        folder = root / ("kernel" if i % 3 == 0 else "firmware" if i % 3 == 1 else "lib")
        folder.mkdir(parents=True, exist_ok=True)
        name = f"nvidia-part{i:02d}.so.550.90.05"
        write_file(
            folder / name, max(1, int(size * adjust * scale)), seed=100 + i, executable=i % 2 == 0
        )
        if folder.name == "lib":
            os.symlink(name, folder / f"nvidia-part{i:02d}.so")
    for i in range(2000):
        folder = root / "src" / f"mod{i // 50:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        size = int(rng.paretovariate(1.1) * 2000 * scale) % (400 * 1024)
        write_file(folder / f"file{i:04d}.c", size, seed=i, executable=i % 97 == 0)
    return root


def tiny_tree(root: Path, files: int = 20_000) -> Path:
    """``files`` files of 0-1,000 bytes, 200 to a directory: the per-file cost alone."""
    rng = random.Random(20)
    for i in range(files):
        folder = root / f"d{i // 200:03d}"
        if i % 200 == 0:
            folder.mkdir(parents=True)
        (folder / f"f{i:05d}").write_bytes(rng.randbytes(rng.randint(0, 1000)))
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
