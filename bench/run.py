"""Run the benchmarks under bench/ (modules named bench_*.py) and print one table.

Each module's ``rows()`` times vgpubuild side by side with its reference tool (see
harness.py: interleaved pairs, ratios pair by pair); timing is never asserted in the test
suite. ``make bench`` calls this; ``make bench BENCH_ARGS=hash`` runs only the modules
whose name contains "hash". ``BENCH_PAIRS=11`` counts more pairs (default 7).
"""

from __future__ import annotations

import importlib
import platform
import sys
from pathlib import Path

from harness import PAIRS, table


def main(argv: list[str]) -> int:
    here = Path(__file__).resolve().parent
    names = sorted(p.stem for p in here.glob("bench_*.py"))
    if argv:
        names = [n for n in names if any(word in n for word in argv)]
    rows = []
    for name in names:
        print(f"== {name}", file=sys.stderr, flush=True)
        rows += importlib.import_module(name).rows()
    print(f"\n{platform.node()}: {PAIRS} interleaved pairs per workload (start-up: more), "
          "medians; ratio = vgpubuild / reference\n")  # fmt: skip
    print(table(rows))
    return 0 if all(row.met for row in rows) else 1


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main(sys.argv[1:]))
