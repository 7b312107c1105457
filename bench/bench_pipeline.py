"""Benchmark: a second identical ``vgpubuild patch`` (input-keyed cache) vs doing the work again.

On the generated demo release, in one run:

* vgpubuild, first (cold) build: every stage, patch.sh included;
* vgpubuild, second identical run: the artifact comes from the input-keyed cache;
* reference: ``bash patch.sh vgpu-kvm`` run by hand on the same inputs (what a rebuild
  costs without an input-keyed cache: the patcher alone, no verification, no hashing);
* reference: ``nix-store --add-fixed --recursive sha256`` of the artifact when the path is
  already in the store (Nix's own "nothing to do" answer, into a throw-away chroot store);
* vgpubuild, second run with a driver-sized cached artifact (a BIG_MIB file added to the
  cached tree, which the cache trusts), into a fresh --out (the tree is copied from the
  cache) and into the same --out (the placed tree is recognised by inode and change times,
  nothing is copied).

Prints wall times (median of RUNS), the ratios, and peak RSS (GNU time). Target: the second
run well under 1 s. Everything lives in a temporary folder; nothing is written to the repo.

Usage: .venv/bin/python bench/bench_pipeline.py [BIG_MIB] (default 400)
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from timing import timed

RUNS = 5


def report(label: str, times: list[float], rss: int) -> float:
    median = statistics.median(times)
    print(f"{label:<58} {median * 1000:9.1f} ms   peak RSS {rss / 1024:6.1f} MB", flush=True)
    return median


def main(big_mib: int) -> None:
    from vgpubuild.demo import DEMO_RELEASE, make_demo_inputs

    with tempfile.TemporaryDirectory(prefix="bench-pipeline.") as tmp_name:
        tmp = Path(tmp_name)
        demo = make_demo_inputs(tmp / "inputs")
        config = tmp / "build.json"
        config.write_text(
            json.dumps(
                {
                    "release": DEMO_RELEASE,
                    "zip": str(demo.zip_path),
                    "releases": demo.release_mapping(),
                    "patcher": {"copyVGPUProfiles": {"1E07:0000": "1E30:12BA"}},
                }
            )
        )
        env = {**os.environ, "VGPUBUILD_CACHE": str(tmp / "cache")}
        out = tmp / "out"
        cmd = [sys.executable, "-m", "vgpubuild", "-q", "patch", "--config", str(config),
               "--patcher", str(demo.patcher_dir), "--out", str(out), "--json"]  # fmt: skip

        first, first_rss, stdout, _ = timed(cmd, env)
        result = json.loads(stdout)
        assert result["cached"] is False
        report("vgpubuild patch, first build (cold)", [first], first_rss)

        seconds, rss = [], 0
        for _ in range(RUNS):
            t, r, stdout, _ = timed(cmd, env)
            assert json.loads(stdout)["cached"] is True
            seconds.append(t)
            rss = max(rss, r)
        second = report("vgpubuild patch, second identical run (cache hit)", seconds, rss)

        # Reference 1: patch.sh by hand, on a staged copy with the .run beside it.
        ref_times, ref_rss = [], 0
        for i in range(RUNS):
            stage = tmp / f"by-hand-{i}"
            shutil.copytree(demo.patcher_dir, stage, symlinks=True)
            shutil.copyfile(demo.host_run, stage / demo.host_run.name)
            t, r, _, _ = timed(["bash", "patch.sh", "vgpu-kvm"], env, cwd=stage)
            ref_times.append(t)
            ref_rss = max(ref_rss, r)
            shutil.rmtree(stage)
        by_hand = report("reference: bash patch.sh vgpu-kvm by hand", ref_times, ref_rss)

        # Reference 2: Nix re-adding a path it already has.
        nix_store = shutil.which("nix-store")
        nix_med = None
        if nix_store:
            store = tmp / "nix-chroot-store"
            add = [nix_store, "--store", str(store), "--add-fixed", "--recursive", "sha256",
                   result["artifact"]]  # fmt: skip
            timed(add, env)
            nix_times, nix_rss = [], 0
            for _ in range(RUNS):
                t, r, added, _ = timed(add, env)
                assert added.strip() == result["store_path"]
                nix_times.append(t)
                nix_rss = max(nix_rss, r)
            nix_med = report("reference: nix-store --add-fixed --recursive (already added)",
                             nix_times, nix_rss)  # fmt: skip
        else:
            print("reference: nix-store not installed, skipped")

        # A driver-sized cached artifact: the hit has to copy it into --out.
        entry = tmp / "cache" / "artifacts" / result["build_key"] / Path(result["artifact"]).name
        with (entry / "big-blob.bin").open("wb") as f:
            block = os.urandom(1 << 20)
            for _ in range(big_mib):
                f.write(block)
        copy_times, copy_rss = [], 0
        for _ in range(3):
            shutil.rmtree(out)
            t, r, _, _ = timed(cmd, env)
            copy_times.append(t)
            copy_rss = max(copy_rss, r)
        copied = report(f"  same, {big_mib} MiB artifact, fresh --out (copied from cache)",
                        copy_times, copy_rss)  # fmt: skip
        same_times, same_rss = [], 0
        for _ in range(RUNS):
            t, r, _, _ = timed(cmd, env)
            same_times.append(t)
            same_rss = max(same_rss, r)
        in_place = report(f"  same, {big_mib} MiB artifact, same --out (still in place)",
                          same_times, same_rss)  # fmt: skip

        print(f"RATIO second run / first build:        {second / first:6.3f}")
        print(f"RATIO second run / patch.sh by hand:   {second / by_hand:6.3f}")
        if nix_med:
            print(f"RATIO second run / nix-store re-add:   {second / nix_med:6.3f}")
        worst = max(second, copied, in_place)
        print(f"second identical run under 1 s: {'yes' if worst < 1 else 'NO'} (demo "
              f"{second:.3f} s; {big_mib} MiB: {copied:.3f} s copied, {in_place:.3f} s in place)")  # fmt: skip


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 400)
