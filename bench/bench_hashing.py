"""Hashing, NAR and --help speed: vgpubuild side by side with Nix, in one run.

Cases: ``hash file`` vs ``nix-hash --flat`` on a 1 GiB file; ``hash path`` vs ``nix-hash`` on
a ~1 GiB tree of 3,000 files; ``nar dump`` vs ``nix-store --dump`` into /dev/null and into a
pipe read by this script; ``vgpubuild --help``. Both tools run as processes (Python start-up
is part of our cost) on a warm page cache; every output is checked to be identical. Prints
wall time, the ratio ours/Nix, and each process's peak RSS. Data lives under /tmp and is
removed at the end. Targets: ratio <= 1.10, peak RSS < 100 MB, --help < 0.3 s.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import cast

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from treegen import bench_tree, write_file

OURS = [sys.executable, "-m", "vgpubuild"]
GIB = 1 << 30


@dataclass
class Run:
    seconds: float
    rss_mb: float
    output: bytes  # stdout, or the byte count as text when it was only counted


def run(cmd: list[str], sink: str = "capture") -> Run:
    """Run ``cmd``; stdout is captured, sent to /dev/null, or read and counted here."""
    start = time.perf_counter()
    if sink == "devnull":
        with open(os.devnull, "wb") as null:
            proc = subprocess.Popen(cmd, stdout=null)
            output = b""
    else:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE)
        assert proc.stdout is not None
        if sink == "count":
            total = 0
            while chunk := cast(io.BufferedReader, proc.stdout).read1(1 << 20):
                total += len(chunk)
            output = str(total).encode()
        else:
            output = proc.stdout.read()
        proc.stdout.close()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} exited {proc.returncode}")
    return Run(seconds, usage.ru_maxrss / 1024, output.strip())


def warm(path: Path) -> None:
    """Read everything once so neither tool pays for the disk."""
    subprocess.run(["nix-hash", "--type", "sha256", str(path)], capture_output=True, check=True)


def main() -> int:
    for tool in ("nix-hash", "nix-store"):
        if shutil.which(tool) is None:
            print(f"{tool} is not installed; nothing to compare with")
            return 1
    work = Path(tempfile.mkdtemp(prefix="vgpubuild-bench-", dir="/tmp"))
    rows: list[tuple[str, Run, Run | None]] = []
    mismatches = 0
    try:
        print(f"generating 1 GiB file and ~1 GiB tree of 3000 files under {work} ...", flush=True)
        big = write_file(work / "big.bin", GIB, seed=1)
        tree = bench_tree(work / "tree", files=3000, total=GIB)
        tree_size = sum(f.stat().st_size for f in tree.rglob("*") if f.is_file())
        print(f"tree: {tree_size / GIB:.2f} GiB", flush=True)
        os.sync()  # no writeback of the fresh data competing with the timed runs
        warm(big)
        warm(tree)
        cases = [
            (
                "hash file, 1 GiB",
                [*OURS, "hash", "file", "--to", "base16", str(big)],
                ["nix-hash", "--flat", "--type", "sha256", str(big)],
                "capture",
            ),
            (
                "hash path, 3000-file tree",
                [*OURS, "hash", "path", "--to", "base16", str(tree)],
                ["nix-hash", "--type", "sha256", str(tree)],
                "capture",
            ),
            (
                "hash path, 1 GiB file",
                [*OURS, "hash", "path", "--to", "base16", str(big)],
                ["nix-hash", "--type", "sha256", str(big)],
                "capture",
            ),
            (
                "nar dump file > /dev/null",
                [*OURS, "nar", "dump", str(big)],
                ["nix-store", "--dump", str(big)],
                "devnull",
            ),
            (
                "nar dump tree > /dev/null",
                [*OURS, "nar", "dump", str(tree)],
                ["nix-store", "--dump", str(tree)],
                "devnull",
            ),
            (
                "nar dump file | counter",
                [*OURS, "nar", "dump", str(big)],
                ["nix-store", "--dump", str(big)],
                "count",
            ),
            (
                "nar dump tree | counter",
                [*OURS, "nar", "dump", str(tree)],
                ["nix-store", "--dump", str(tree)],
                "count",
            ),
        ]
        for label, ours_cmd, nix_cmd, sink in cases:
            theirs = run(nix_cmd, sink)
            ours = run(ours_cmd, sink)
            if ours.output != theirs.output:
                mismatches += 1
                print(f"MISMATCH in {label}: {ours.output[:80]!r} != {theirs.output[:80]!r}")
            rows.append((label, ours, theirs))
        rows.append(("vgpubuild --help", run([*OURS, "--help"]), None))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print()
    print(f"{'case':<28} {'ours s':>7} {'nix s':>7} {'ratio':>6} {'ours MB':>8} {'nix MB':>7}  ok")
    for label, ours, ref in rows:
        if ref is None:
            ok = ours.seconds < 0.3 and ours.rss_mb < 100
            print(
                f"{label:<28} {ours.seconds:7.3f} {'':>7} {'':>6} {ours.rss_mb:8.1f} {'':>7}  "
                f"{'yes' if ok else 'NO'} (target < 0.3 s)"
            )
            continue
        ratio = ours.seconds / ref.seconds
        ok = ratio <= 1.10 and ours.rss_mb < 100
        print(
            f"{label:<28} {ours.seconds:7.3f} {ref.seconds:7.3f} {ratio:6.2f} "
            f"{ours.rss_mb:8.1f} {ref.rss_mb:7.1f}  {'yes' if ok else 'NO'}"
        )
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
