"""Run every benchmark under bench/ (files named bench_*.py), one after another.

Each benchmark runs vgpubuild side by side with its reference tool in the same run and
prints ratios; timing is never asserted in the test suite. ``make bench`` calls this;
``make bench BENCH_ARGS=fetch`` runs only benchmarks whose name contains "fetch".
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    here = Path(__file__).resolve().parent
    scripts = sorted(here.glob("bench_*.py"))
    if argv:
        scripts = [s for s in scripts if any(word in s.stem for word in argv)]
    failed = 0
    for script in scripts:
        print(f"== {script.stem}", flush=True)
        failed += subprocess.call([sys.executable, str(script)]) != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
