"""``cache export`` of a 1 GiB artifact side by side with ``nix copy --to file://``.

The artifact is a driver-shaped folder of about 1 GiB: 128 files of 8 MiB whose 1 MiB
pieces are half pseudo-random, half a repeated pattern (it compresses to about half, like
a driver's binaries). Nix gets the same folder from a local store rooted under /tmp
(``nix-store --add-fixed --recursive``, not timed) and copies it into a cache of its own
with the same compression. Both run as processes on a warm page cache; the NAR hash and
store path both caches record must agree. Prints wall time, the ratio ours/Nix, each
process's peak RSS (GNU time) and the NAR file sizes. Target: peak RSS < 64 MiB.

xz is slow (about 1-3 MB/s for both tools here), so it runs on the first
``BENCH_CACHE_XZ_MIB`` MiB of the files (default 128; 1024 for the whole artifact): its
memory does not depend on the size, only its time does.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from timing import Timed, timed

OURS = [sys.executable, "-m", "vgpubuild"]
MIB = 1 << 20
FILES, FILE_MIB = 128, 8
RSS_TARGET_KIB = 64 << 10


def driver_like(root: Path, files: int) -> Path:
    """``files`` files of FILE_MIB MiB, each MiB half random, half a repeated pattern."""
    root.mkdir(parents=True)
    pattern = (b"NVRM: vgpu type %d; framebuffer 0x%08x\n" * 120)[: 4 << 10]
    for i in range(files):
        with open(root / f"lib{i:03d}.so.550.90.05", "wb") as f:
            for piece in range(FILE_MIB):
                seed = hashlib.sha256(f"{i}:{piece}".encode()).digest()
                rand = hashlib.shake_256(seed).digest(MIB // 2)
                f.write(rand + pattern * (MIB // 2 // len(pattern)))
        os.chmod(root / f"lib{i:03d}.so.550.90.05", 0o755 if i % 2 else 0o644)
    return root


def narinfo_fields(cache: Path) -> dict[str, str]:
    (narinfo,) = cache.glob("*.narinfo")
    return dict(line.split(": ", 1) for line in narinfo.read_text().splitlines() if ": " in line)


def main() -> int:
    for tool in ("nix", "nix-store"):
        if shutil.which(tool) is None:
            print(f"{tool} is not installed; nothing to compare with")
            return 1
    xz_files = max(1, int(os.environ.get("BENCH_CACHE_XZ_MIB", "128")) // FILE_MIB)
    work = Path(tempfile.mkdtemp(prefix="vgpubuild-bench-cache-", dir="/tmp"))
    env = {**os.environ, "NIX_CONF_DIR": str(work), "NIX_USER_CONF_FILES": ""}
    (work / "nix.conf").write_text("build-users-group =\nsubstituters =\nexperimental-features = nix-command\n")
    rows: list[tuple[str, int, Timed, Timed, int, int]] = []
    mismatches = 0
    try:
        print(f"generating {FILES * FILE_MIB} MiB artifact under {work} ...", flush=True)
        full = driver_like(work / "NVIDIA-Linux-x86_64-550.90.05-vgpu-kvm-patched", FILES)
        small = work / "xz-part" / full.name
        small.mkdir(parents=True)
        for f in sorted(full.iterdir())[:xz_files]:
            os.link(f, small / f.name)
        for compression, art in (("none", full), ("zstd", full), ("xz", small)):
            store = work / f"store-{compression}"
            path = subprocess.run(
                ["nix-store", "--store", str(store), "--add-fixed", "--recursive", "sha256", str(art)],
                env=env, capture_output=True, text=True, errors="backslashreplace", check=True,
            ).stdout.strip()  # fmt: skip
            ours_cache, nix_cache = work / f"ours-{compression}", work / f"nix-{compression}"
            ours = timed(
                [*OURS, "cache", "export", str(art), "--to", str(ours_cache), "--compression", compression],
                env,
            )  # fmt: skip
            theirs = timed(
                ["nix", "copy", "--from", str(store), "--to",
                 f"file://{nix_cache}?compression={compression}", path],
                env,
            )  # fmt: skip
            a, b = narinfo_fields(ours_cache), narinfo_fields(nix_cache)
            if (a["StorePath"], a["NarHash"]) != (b["StorePath"], b["NarHash"]):
                mismatches += 1
                print(f"MISMATCH ({compression}): {a['StorePath']} {a['NarHash']} != {b['StorePath']} {b['NarHash']}")
            size = sum(f.stat().st_size for f in art.iterdir()) // MIB
            rows.append((compression, size, ours, theirs, int(a["FileSize"]), int(b["FileSize"])))
            shutil.rmtree(store, ignore_errors=True)
            shutil.rmtree(ours_cache)
            shutil.rmtree(nix_cache)
    finally:
        subprocess.run(["chmod", "-R", "u+w", str(work)], check=False)
        shutil.rmtree(work, ignore_errors=True)

    print()
    print(f"{'compression':<11} {'MiB':>5} {'ours s':>7} {'nix s':>7} {'ratio':>6} "
          f"{'ours RSS':>9} {'nix RSS':>8} {'ours file':>10} {'nix file':>10}  RSS < 64 MiB")  # fmt: skip
    for compression, size, ours, theirs, ours_file, nix_file in rows:
        print(
            f"{compression:<11} {size:>5} {ours.seconds:7.1f} {theirs.seconds:7.1f} "
            f"{ours.seconds / theirs.seconds:6.2f} {ours.rss_kib / 1024:8.1f}M {theirs.rss_kib / 1024:7.1f}M "
            f"{ours_file / MIB:9.1f}M {nix_file / MIB:9.1f}M  {'yes' if ours.rss_kib < RSS_TARGET_KIB else 'NO'}"
        )
    return 1 if mismatches or any(r[2].rss_kib >= RSS_TARGET_KIB for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
