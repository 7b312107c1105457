"""Download 1 GiB from a loopback server: ``vgpubuild prefetch`` against ``curl -o``.

Both fetch the same URL from the same server (tests/httpserver.py in its own process,
sending the benchmark data's 1 GiB file with sendfile so the server is not the
bottleneck). Before every run,
untimed: the previous run's file is removed and dirty pages are synced, so neither side
pays for the other's writeback. vgpubuild's time includes hashing and moving the file into
its cache; curl only writes it. One extra run, untimed, watches (with a Python audit hook)
that vgpubuild never opens the downloaded file for reading: the hash is computed while the
bytes arrive.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from harness import VGPUBUILD, Row, Workload, data_dir, measure

ROOT = Path(__file__).resolve().parent.parent

SERVER = """
import sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from httpserver import FaultServer
with FaultServer() as server:
    print(server.add("/payload.bin", file=Path(sys.argv[2])), flush=True)
    sys.stdin.read()
"""

# vgpubuild's CLI with an audit hook that reports every file opened for reading under the
# cache's sha256/ and partial/ folders (the download's own files).
WATCHED = """
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


def rows() -> list[Row]:
    if shutil.which("curl") is None:
        raise SystemExit("curl is not installed: nothing to compare with (make tools)")
    data = data_dir() / "big.bin"
    with tempfile.TemporaryDirectory(prefix="bench-fetch-", dir="/var/tmp") as tmp:
        work = Path(tmp)
        server = subprocess.Popen(
            [sys.executable, "-c", SERVER, str(ROOT / "tests"), str(data)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            errors="backslashreplace",
        )
        try:
            assert server.stdout is not None
            url = server.stdout.readline().strip()
            cache, out = work / "cache", work / "curl.bin"

            def fresh(_side: str) -> None:
                shutil.rmtree(cache, ignore_errors=True)
                out.unlink(missing_ok=True)
                os.sync()

            env = {**os.environ, "VGPUBUILD_CACHE": str(cache)}
            fresh("ours")
            watched = subprocess.run(
                [sys.executable, "-c", WATCHED, "-q", "prefetch", url],
                env=env,
                capture_output=True,
                text=True,
                errors="backslashreplace",
                check=True,
            )
            rereads = watched.stderr.count("REREAD ")
            prefetch = Workload(
                "prefetch, 1 GiB from loopback (hash and cache included)",
                ["env", f"VGPUBUILD_CACHE={cache}", VGPUBUILD, "-q", "prefetch", url],
                ["curl", "-s", "-f", "-o", str(out), url],
                1.0,
                reference_name="curl -o",
                before=fresh,
            )
            measure(prefetch)
            fresh("ours")
        finally:
            server.communicate("")
    reread = Row(
        "prefetch: downloaded file opened for reading afterwards",
        f"{rereads} times", "-", "-", "-", "-", "0 times", rereads == 0,
    )  # fmt: skip
    return [prefetch.row(), reread]
