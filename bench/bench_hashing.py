"""Hashing, NAR dumps and start-up: vgpubuild against Nix (and Python) on the same data.

Data (made once under ``$VGPUBUILD_BENCH_DATA``, default /var/tmp/vgpubuild-bench, and
reused while its recipe is unchanged): a 1 GiB file; a ~1 GiB tree of 3,000 files; a
driver-shaped tree (16 files of 9-40 MiB, 2,000 small files, symlinks; ~250 MiB); 20,000
tiny files; one tiny file. Dumps go into a pipe read by ``cat > file`` on tmpfs, as a
user's ``> tree.nar`` would read them (into /dev/null, ``sendfile`` copies nothing and
flatters whoever uses it).
"""

from __future__ import annotations

import hashlib
import shutil
import sys
from pathlib import Path

from harness import (
    STARTUP_PAIRS,
    VGPUBUILD,
    Row,
    Run,
    Workload,
    data_dir,
    measure,
    rss_row,
    same_stdout,
    sha256_bytes_per_second,
)

OUT = Path("/dev/shm") if Path("/dev/shm").is_dir() else Path("/var/tmp")


def _nar_size(path: Path) -> int:
    from vgpubuild.nar import nar_hash_and_size

    return nar_hash_and_size(path)[1]


def _dump(label: str, tree: Path, target: float) -> Workload:
    outs = {"ours": OUT / "vgpubuild-bench.ours.nar", "ref": OUT / "vgpubuild-bench.nix.nar"}

    def before(side: str) -> None:
        outs[side].unlink(missing_ok=True)

    def cleanup() -> None:
        for side in outs:
            before(side)

    def same(_a: Run, _b: Run) -> bool:
        return _digest(outs["ours"]) == _digest(outs["ref"])

    return Workload(
        f"nar dump into cat > file, {label}",
        ["sh", "-c", '"$0" nar dump "$1" | cat > "$2"', VGPUBUILD, str(tree), str(outs["ours"])],
        ["sh", "-c", 'nix-store --dump "$0" | cat > "$1"', str(tree), str(outs["ref"])],
        target,
        reference_name="nix-store --dump",
        before=before,
        same=same,
        cleanup=cleanup,
    )


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


SRI = "sha256-" + "A" * 43 + "="


def _against_python(label: str, args: list[str], target: float) -> Workload:
    """A command's start-up against the interpreter's own (``python3 -c pass``)."""
    return Workload(
        f"start-up: {label}",
        [VGPUBUILD, *args],
        [sys.executable, "-c", "pass"],
        target,
        reference_name="python3 -c pass",
        pairs=STARTUP_PAIRS,
    )


def workloads(sha256_speed: float) -> list[Workload]:
    for tool in ("nix-hash", "nix-store"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed: nothing to compare with (make tools)")
    data = data_dir()
    big, tree, driver, tiny = (data / n for n in ("big.bin", "tree", "driver", "tiny"))
    floors = {p: _nar_size(p) / sha256_speed for p in (tree, driver, tiny)}
    floors[big] = big.stat().st_size / sha256_speed
    trees = (
        ("3,000 files / 1 GiB", tree, 0.90, 1.00),
        ("driver-shaped, 250 MiB", driver, 1.00, 1.00),
        ("20,000 tiny files", tiny, 1.25, 1.30),
    )
    works = [
        Workload(
            "hash file, 1 GiB",
            [VGPUBUILD, "hash", "file", "--to", "base16", str(big)],
            ["nix-hash", "--flat", "--type", "sha256", str(big)],
            0.95,
            reference_name="nix-hash --flat",
            same=same_stdout,
            floor=floors[big],
        )
    ]
    works += [
        Workload(
            f"hash path, {label}",
            [VGPUBUILD, "hash", "path", "--to", "base16", str(path)],
            ["nix-hash", "--type", "sha256", str(path)],
            target,
            reference_name="nix-hash",
            same=same_stdout,
            floor=floors[path],
        )
        for label, path, target, _ in trees
    ]
    works += [_dump(label, path, target) for label, path, _, target in trees]
    one = str(data / "one-tiny-file")
    works += [
        Workload(
            "start-up: hash path, one tiny file",
            [VGPUBUILD, "hash", "path", "--to", "base16", one],
            ["nix-hash", "--type", "sha256", one],
            2.5,
            reference_name="nix-hash",
            same=same_stdout,
            pairs=STARTUP_PAIRS,
        ),
        _against_python("vgpubuild --version", ["--version"], 3.0),
        _against_python("hash convert", ["hash", "convert", "--to", "nix32", SRI], 3.0),
        _against_python("vgpubuild --help", ["--help"], 8.0),
    ]
    return works


def against_floor(big: Path, floor: float) -> Workload:
    """``hash file`` against SHA-256 alone: one thread hashing as many bytes from memory
    (OpenSSL through hashlib, a buffer that stays in cache), timed in the same pairs so
    both meet the same load. The file must cost no more than its hashing."""
    mib = big.stat().st_size >> 20
    pure = f"import hashlib; b = bytes(1 << 20); h = hashlib.sha256()\nfor _ in range({mib}): h.update(b)"
    return Workload(
        "hash file, 1 GiB, against SHA-256 alone",
        [VGPUBUILD, "hash", "file", "--to", "base16", str(big)],
        [sys.executable, "-c", pure],
        1.10,
        reference_name="SHA-256 of 1 GiB in memory",
        floor=floor,
    )


def rows() -> list[Row]:
    works = workloads(sha256_bytes_per_second())
    works.insert(1, against_floor(Path(works[0].ours[-1]), works[0].floor or 0.0))
    for work in works:
        measure(work)
    heavy = [w for w in works if not w.name.startswith("start-up")]
    return [work.row() for work in works] + [
        rss_row("peak RSS, hashing and dumping (largest)", heavy, 32)
    ]
