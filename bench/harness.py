"""Side-by-side timing for the benchmarks: interleaved pairs, ratios, one table.

Every workload runs vgpubuild and its reference as whole processes (start-up is part of
the cost), in pairs whose order alternates (A B, B A, ...) after one warm-up run of each,
which also warms the page cache equally and checks that both produced the same result.
The ratio is taken pair by pair, so a machine that speeds up or slows down during the
run shifts both sides of a pair alike; the table gives its median and range.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from treegen import bench_tree, driver_tree, tiny_tree, write_file

PAIRS = int(os.environ.get("BENCH_PAIRS", "7"))
"""Counted pairs per workload (the issue asks for at least 7)."""

STARTUP_PAIRS = max(PAIRS, 21)
"""Start-up workloads take milliseconds, where noise is largest: more pairs, cheaply."""

VGPUBUILD = str(Path(sys.executable).with_name("vgpubuild"))
"""The installed console script: what a user runs (not ``python -m``)."""

TIME = "/usr/bin/time"
"""GNU time, for each run's peak RSS."""

Command = Sequence[str]

GIB = 1 << 30
RECIPE = "1 GiB file; 3000 files / 1 GiB; driver x1; 20000 tiny; one tiny file (v1)"


def data_dir() -> Path:
    """The generated inputs, made on first use (a few minutes) and kept for later runs:
    ``$VGPUBUILD_BENCH_DATA``, default /var/tmp/vgpubuild-bench."""
    root = Path(os.environ.get("VGPUBUILD_BENCH_DATA", "/var/tmp/vgpubuild-bench"))
    stamp = root / "recipe"
    if stamp.is_file() and stamp.read_text() == RECIPE:
        return root
    print(f"generating benchmark data under {root} (once) ...", file=sys.stderr, flush=True)
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    write_file(root / "big.bin", GIB, seed=1)
    bench_tree(root / "tree", files=3000, total=GIB)
    driver_tree(root / "driver")
    tiny_tree(root / "tiny", files=20_000)
    (root / "one-tiny-file").write_bytes(b"hello\n")
    os.sync()  # no writeback of fresh data competing with the timed runs
    stamp.write_text(RECIPE)
    return root


@dataclass
class Run:
    seconds: float
    rss_mib: float
    stdout: bytes


def run(cmd: Command, cwd: Path | None = None) -> Run:
    """Run ``cmd`` once: wall seconds, peak RSS (its own or a child's), its stdout.

    The peak comes from GNU time, not from this process's wait4: a child started from a
    big parent inherits the parent's high-water mark across exec (here: ~25 MiB).
    """
    with tempfile.TemporaryFile() as errors:
        start = time.perf_counter()
        proc = subprocess.Popen(
            [TIME, "-f", "%M", *cmd], stdout=subprocess.PIPE, stderr=errors, cwd=cwd
        )
        stdout, _ = proc.communicate()
        seconds = time.perf_counter() - start
        errors.seek(0)
        message = errors.read().decode(errors="replace")
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} exited {proc.returncode}: {message[-2000:]}")
    return Run(seconds, int(message.split()[-1]) / 1024, stdout)


@dataclass
class Workload:
    """One row of the table: a vgpubuild command against a reference command."""

    name: str
    ours: Command
    reference: Command
    target: float | None  # the median ratio ours/reference must be at most this (or None)
    reference_name: str = ""
    limit: float | None = None  # or: vgpubuild's median must take less than this (seconds)
    pairs: int = PAIRS
    before: Callable[[str], object] = lambda side: None  # untimed, before each run of a side
    same: Callable[[Run, Run], bool] | None = None  # the warm-up outputs agree
    cleanup: Callable[[], object] = lambda: None
    floor: float | None = None  # the SHA-256 floor for the bytes this workload hashes
    ours_runs: list[Run] = field(default_factory=list)
    reference_runs: list[Run] = field(default_factory=list)

    @property
    def ratios(self) -> list[float]:
        return [
            a.seconds / b.seconds for a, b in zip(self.ours_runs, self.reference_runs, strict=True)
        ]

    def row(self) -> Row:
        median = statistics.median(self.ratios)
        if self.limit is not None:
            target = f"< {self.limit:g} s"
            met = statistics.median(r.seconds for r in self.ours_runs) < self.limit
        elif self.target is not None:
            target, met = f"<= {self.target:.2f}x", median <= self.target
        else:  # a comparison to read, not a goal
            target, met = "-", True
        return Row(
            self.name,
            _seconds(self.ours_runs),
            f"{self.reference_name} {_seconds(self.reference_runs)}",
            f"{median:.2f}x",
            f"{min(self.ratios):.2f}-{max(self.ratios):.2f}x",
            f"{self.floor:.3f} s" if self.floor is not None else "-",
            target,
            met,
        )


class Row(NamedTuple):
    workload: str
    ours: str
    reference: str
    ratio: str
    spread: str
    floor: str
    target: str
    met: bool


def measure(work: Workload) -> None:
    """Warm up both sides (and compare them), then time ``work.pairs`` interleaved pairs."""
    print(f"  {work.name} ...", file=sys.stderr, flush=True)
    try:
        sides = {"ours": work.ours, "ref": work.reference}
        warm = {}
        for side, cmd in sides.items():
            work.before(side)
            warm[side] = run(cmd)
        if work.same is not None and not work.same(warm["ours"], warm["ref"]):
            raise SystemExit(f"{work.name}: vgpubuild and {work.reference_name} disagree")
        for i in range(work.pairs):
            for side in ("ours", "ref") if i % 2 == 0 else ("ref", "ours"):
                work.before(side)
                runs = work.ours_runs if side == "ours" else work.reference_runs
                runs.append(run(sides[side]))
    finally:
        work.cleanup()


def rss_row(name: str, works: list[Workload], limit_mib: float) -> Row:
    """The largest peak RSS of vgpubuild (and of the reference) over ``works``."""
    ours = max(r.rss_mib for w in works for r in w.ours_runs)
    theirs = max(r.rss_mib for w in works for r in w.reference_runs)
    return Row(
        name, f"{ours:.1f} MiB", f"{theirs:.1f} MiB", "-", "-", "-", f"<= {limit_mib:.0f} MiB",
        ours <= limit_mib,
    )  # fmt: skip


def same_stdout(a: Run, b: Run) -> bool:
    return a.stdout.strip() == b.stdout.strip()


# The SHA-256 floor ------------------------------------------------------------------------


def sha256_bytes_per_second() -> float:
    """The CPU's SHA-256 speed on large blocks: ``openssl speed -evp sha256``, the same
    OpenSSL code that hashes for Nix and for Python's hashlib."""
    if shutil.which("openssl"):
        proc = subprocess.run(
            ["openssl", "speed", "-evp", "sha256", "-bytes", "16384", "-seconds", "3"],
            capture_output=True,
            text=True,
            errors="backslashreplace",
            check=False,
        )
        for line in proc.stdout.splitlines():
            if line.startswith("sha256"):
                return float(line.split()[-1].rstrip("k")) * 1000
    import hashlib

    block = bytes(16384) * 64
    h = hashlib.sha256()
    start = time.perf_counter()
    for _ in range(3 * 1024 // 16):
        h.update(block)
    return 3 * (1 << 30) / (time.perf_counter() - start)


# The table ---------------------------------------------------------------------------------


def _seconds(runs: list[Run]) -> str:
    value = statistics.median(r.seconds for r in runs)
    return f"{value * 1000:.1f} ms" if value < 1 else f"{value:.3f} s"


def table(rows: list[Row]) -> str:
    """The one table ``make bench`` prints (Markdown, so it pastes into notes as it is)."""
    lines = [
        "| workload | vgpubuild | reference | ratio median | ratio min-max | SHA-256 floor "
        "| target | met |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        cells = [*row[:-1], "met" if row.met else "MISSED"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
