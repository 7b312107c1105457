"""``cache export`` of a 1 GiB artifact side by side with ``nix copy --to file://``.

The artifact is a driver-shaped folder of about 1 GiB: 128 files of 8 MiB whose 1 MiB
pieces are half pseudo-random, half a repeated pattern (it compresses to about half, like
a driver's binaries). Nix gets the same folder from a local store rooted under /tmp
(``nix-store --add-fixed --recursive``, not timed) and copies it into a cache of its own
with the same compression. Both run as processes on a warm page cache; the NAR hash and
store path both caches record must agree. Rows: the ratio ours/Nix (no target: compression
dominates both), and the largest peak RSS. Target: peak RSS < 64 MiB.

xz is slow (about 1-3 MB/s for both tools here), so it runs on the first
``BENCH_CACHE_XZ_MIB`` MiB of the files (default 16; 1024 for the whole artifact): its
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

from harness import VGPUBUILD, Row, Run, Workload, measure, rss_row

MIB = 1 << 20
FILES, FILE_MIB = 128, 8


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


def rows() -> list[Row]:
    for tool in ("nix", "nix-store"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed: nothing to compare with (make tools)")
    xz_files = max(1, int(os.environ.get("BENCH_CACHE_XZ_MIB", "16")) // FILE_MIB)
    work = Path(tempfile.mkdtemp(prefix="vgpubuild-bench-cache-", dir="/var/tmp"))
    nix_env = ["env", f"NIX_CONF_DIR={work}", "NIX_USER_CONF_FILES="]
    (work / "nix.conf").write_text(
        "build-users-group =\nsubstituters =\nexperimental-features = nix-command\n"
    )
    works: list[Workload] = []
    try:
        print(f"generating {FILES * FILE_MIB} MiB artifact under {work} ...", file=sys.stderr)
        full = driver_like(work / "NVIDIA-Linux-x86_64-550.90.05-vgpu-kvm-patched", FILES)
        small = work / "xz-part" / full.name
        small.mkdir(parents=True)
        for f in sorted(full.iterdir())[:xz_files]:
            os.link(f, small / f.name)
        for compression, art in (("none", full), ("zstd", full), ("xz", small)):
            store = work / f"store-{compression}"
            path = subprocess.run(
                [*nix_env, "nix-store", "--store", str(store), "--add-fixed", "--recursive",
                 "sha256", str(art)],
                capture_output=True, text=True, errors="backslashreplace", check=True,
            ).stdout.strip()  # fmt: skip
            caches = {"ours": work / f"ours-{compression}", "ref": work / f"nix-{compression}"}

            def fresh(side: str, caches: dict[str, Path] = caches) -> None:
                shutil.rmtree(caches[side], ignore_errors=True)

            def same(_a: Run, _b: Run, caches: dict[str, Path] = caches) -> bool:
                a, b = narinfo_fields(caches["ours"]), narinfo_fields(caches["ref"])
                return (a["StorePath"], a["NarHash"]) == (b["StorePath"], b["NarHash"])

            size = sum(f.stat().st_size for f in art.iterdir()) // MIB
            work_item = Workload(
                f"cache export, {size} MiB, {compression}",
                [VGPUBUILD, "cache", "export", str(art), "--to", str(caches["ours"]),
                 "--compression", compression],
                [*nix_env, "nix", "copy", "--from", str(store), "--to",
                 f"file://{caches['ref']}?compression={compression}", path],
                None,
                reference_name="nix copy --to file://",
                before=fresh,
                same=same,
            )  # fmt: skip
            measure(work_item)
            works.append(work_item)
            shutil.rmtree(store, ignore_errors=True)
    finally:
        subprocess.run(["chmod", "-R", "u+w", str(work)], check=False)
        shutil.rmtree(work, ignore_errors=True)
    return [w.row() for w in works] + [rss_row("peak RSS, cache export (largest)", works, 64)]
