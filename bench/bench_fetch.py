"""Benchmark: download 1 GiB from a loopback server, vgpubuild prefetch vs ``curl -o``.

Both clients fetch the same URL from the same server (tests/httpserver.py in its own
process, sending the file with sendfile so the server is not the bottleneck). Runs
alternate which client goes first, and dirty pages are synced before each run, so neither
pays for the other's disk writeback. Reports wall time of each, the ratio
(target <= 1.2), vgpubuild's peak RSS (target < 100 MB) and, through a Python audit hook,
that vgpubuild never opened the downloaded file for reading (the hash is computed while the
bytes arrive). Everything is written under a temporary folder; nothing in the repo.

Usage: .venv/bin/python bench/bench_fetch.py [SIZE_MIB] (default 1024)
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from timing import timed

ROOT = Path(__file__).resolve().parent.parent

RUNS = 5

# Runs vgpubuild's CLI with an audit hook that records every file opened for reading under
# the cache's sha256/ and partial/ folders (the download's own files).
SERVER = """
import sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from httpserver import FaultServer
with FaultServer() as server:
    print(server.add("/payload.bin", file=Path(sys.argv[2])), flush=True)
    sys.stdin.read()
"""

WRAPPER = """
import os, sys
cache = os.environ["VGPUBUILD_CACHE"]
watched = (os.path.join(cache, "sha256"), os.path.join(cache, "partial"))
def hook(event, args):
    path = args[0] if event == "open" else None
    if isinstance(path, str) and path.startswith(watched) and not path.endswith(".json"):
        mode = args[1] or "r"
        if "r" in mode and "+" not in mode:
            sys.stderr.write("REREAD " + args[0] + "\\n")
sys.addaudithook(hook)
sys.argv = ["vgpubuild", *sys.argv[1:]]
from vgpubuild.cli.app import main
main()
"""


def main() -> int:
    size_mib = int(sys.argv[1]) if len(sys.argv) > 1 else 1024
    with tempfile.TemporaryDirectory(prefix="bench-fetch-") as tmp:
        work = Path(tmp)
        data = work / "payload.bin"
        with open(data, "wb") as f:
            for _ in range(size_mib):
                f.write(os.urandom(1 << 20))
        server = subprocess.Popen(
            [sys.executable, "-c", SERVER, str(ROOT / "tests"), str(data)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True, errors="backslashreplace",
        )
        try:
            assert server.stdout is not None
            url = server.stdout.readline().strip()
            ours, curls, curl_sums, rss, rereads = [], [], [], 0, []
            for i in range(RUNS):
                out = work / f"curl-{i}.bin"
                env = {**os.environ, "VGPUBUILD_CACHE": str(work / f"cache-{i}")}
                order = ("curl", "ours", "sum") if i % 2 == 0 else ("ours", "sum", "curl")
                for who in order:
                    os.sync()
                    if who == "sum":  # what fetchurl + hashing amounts to: download, then hash
                        t, *_ = timed(
                            ["sh", "-c", f"curl -s -f -o {out}.s {url} && sha256sum {out}.s"],
                            dict(os.environ),
                        )
                        curl_sums.append(t)
                        os.unlink(f"{out}.s")
                        continue
                    if who == "curl":
                        t, *_ = timed(["curl", "-s", "-f", "-o", str(out), url], dict(os.environ))
                        curls.append(t)
                        continue
                    cmd = [sys.executable, "-c", WRAPPER, "-q", "prefetch", url]
                    t, kib, _, err = timed(cmd, env)
                    ours.append(t)
                    rss = max(rss, kib)
                    rereads += [line for line in err.splitlines() if line.startswith("REREAD")]
                out.unlink()
                subprocess.run(["rm", "-rf", env["VGPUBUILD_CACHE"]], check=True)
        finally:
            server.communicate("")
    c, o = statistics.median(curls), statistics.median(ours)
    print(f"payload: {size_mib} MiB over loopback, {RUNS} runs each (median)")
    print(f"curl -o:              {c:.3f} s  ({size_mib / c:.0f} MiB/s)")
    print(f"vgpubuild prefetch:   {o:.3f} s  ({size_mib / o:.0f} MiB/s, incl. ~0.2 s start-up)")
    cs = statistics.median(curl_sums)
    print(f"curl -o && sha256sum: {cs:.3f} s (the same work: download, then hash)")
    print(f"RATIO vgpubuild/curl: {o / c:.2f}x (target <= 1.2x)")
    print(f"RATIO vgpubuild/(curl && sha256sum): {o / cs:.2f}x")
    print(f"peak RSS vgpubuild: {rss / 1024:.1f} MB (target < 100 MB)")
    print(f"downloaded file opened for reading afterwards: {len(rereads)} times (target 0)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
