"""A second identical ``vgpubuild patch`` (input-keyed cache) against doing the work again.

On the generated demo release: the second run (the artifact comes from the cache) against
``bash patch.sh vgpu-kvm`` run by hand on the same inputs (what a rebuild costs without the
cache: the patcher alone, no verification, no hashing), and against ``nix-store
--add-fixed --recursive`` of the artifact when the store already has it (Nix's own "nothing
to do"). Then with a driver-sized cached artifact (a 400 MiB file added to the cached
tree), placed into a fresh ``--out`` (copied from the cache) and into the same one (the
placed tree is recognised by inode and change times, nothing is copied). Target: each
second run under 1 s. Everything lives in a temporary folder.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from harness import VGPUBUILD, Row, Run, Workload, measure

BIG_MIB = 400


def rows() -> list[Row]:
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
        out = tmp / "out"
        ours = ["env", f"VGPUBUILD_CACHE={tmp / 'cache'}", VGPUBUILD, "-q", "patch",
                "--config", str(config), "--patcher", str(demo.patcher_dir),
                "--out", str(out), "--json"]  # fmt: skip
        first = json.loads(subprocess.run(ours, capture_output=True, check=True).stdout)
        assert first["cached"] is False

        stage = tmp / "by-hand"

        def fresh_stage(side: str) -> None:
            if side == "ref":
                shutil.rmtree(stage, ignore_errors=True)
                shutil.copytree(demo.patcher_dir, stage, symlinks=True)
                shutil.copyfile(demo.host_run, stage / demo.host_run.name)

        def cached(ours_run: Run, _ref: Run) -> bool:
            return bool(json.loads(ours_run.stdout)["cached"])

        works = [
            Workload(
                "patch, second identical run (cache hit)",
                ours,
                ["sh", "-c", 'cd "$0" && exec bash patch.sh vgpu-kvm', str(stage)],
                None,
                reference_name="bash patch.sh by hand",
                limit=1.0,
                before=fresh_stage,
                same=cached,
            )
        ]
        # Nix's own "nothing to do": re-adding a path the store already has.
        nothing = [sys.executable, "-c", "pass"]
        nothing_name = "python3 -c pass"
        nix_store = shutil.which("nix-store")
        if nix_store:
            store = tmp / "nix-chroot-store"
            nothing = [nix_store, "--store", str(store), "--add-fixed", "--recursive",
                       "sha256", first["artifact"]]  # fmt: skip
            nothing_name = "nix-store --add-fixed (already added)"
            works.append(
                Workload(
                    "patch, second identical run (cache hit)",
                    ours,
                    nothing,
                    None,
                    reference_name=nothing_name,
                    limit=1.0,
                    same=lambda _a, b: b.stdout.strip().decode() == first["store_path"],
                )
            )
        for work in works:
            measure(work)

        # A driver-sized cached artifact: the hit has to copy it into --out.
        entry = tmp / "cache" / "artifacts" / first["build_key"] / Path(first["artifact"]).name
        with (entry / "big-blob.bin").open("wb") as f:
            block = os.urandom(1 << 20)
            for _ in range(BIG_MIB):
                f.write(block)
        copy = ["sh", "-c", 'cp -r "$0" "$1"', str(entry), str(tmp / "plain-copy")]
        big = [
            Workload(
                f"patch, second run, {BIG_MIB} MiB artifact, fresh --out",
                ours,
                copy,
                None,
                reference_name="cp -r of the artifact",
                limit=1.0,
                before=_clear(out, tmp / "plain-copy"),
            ),
            Workload(
                f"patch, second run, {BIG_MIB} MiB artifact, same --out",
                ours,
                nothing,
                None,
                reference_name=nothing_name,
                limit=1.0,
            ),
        ]
        for work in big:
            measure(work)
        return [work.row() for work in works + big]


def _clear(*paths: Path) -> Callable[[str], None]:
    def clear(_side: str) -> None:
        for path in paths:
            shutil.rmtree(path, ignore_errors=True)

    return clear
