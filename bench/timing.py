"""Timing one command for the benchmarks: wall seconds and peak RSS (GNU time's %M)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import NamedTuple


class Timed(NamedTuple):
    seconds: float
    rss_kib: int
    stdout: str
    stderr: str


def timed(cmd: list[str], env: dict[str, str], cwd: Path | None = None) -> Timed:
    """Run ``cmd`` once under /usr/bin/time; a failure stops the benchmark with its stderr."""
    start = time.perf_counter()
    proc = subprocess.run(
        ["/usr/bin/time", "-f", "MAXRSS %M", *cmd],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True, errors="backslashreplace",
        check=False,
    )
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:4])} failed: {proc.stderr[-2000:]}")
    head, _, tail = proc.stderr.rpartition("MAXRSS ")
    return Timed(elapsed, int(tail.split()[0]), proc.stdout, head)
