"""Benchmark: 50 profile overrides + 20 clones on a 1,000-profile / 200-pGPU vgpuConfig.xml.

vgpubuild (one process: ``vgpubuild profiles apply``, and the library call
``apply_edits`` on its own) against the chain vgpu4nixos/VUP run: one ``sed -i`` per
vcfgclone (VUP's sed program), then xmlstarlet for the overrides, measured two ways:
one ``xmlstarlet ed`` per value (the brief's chain) and vgpu4nixos's single ``xmlstarlet
ed -P`` with every ``-u``. The outputs are checked to parse to equal trees before timing
counts. Peak RSS via GNU time. Everything happens in a temporary folder.

Usage: .venv/bin/python bench/bench_profiles.py
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import xmlgen  # noqa: E402
from lxml import etree  # noqa: E402

from vgpubuild.profiles.edits import apply_edits  # noqa: E402
from vgpubuild.profiles.settings import parse_clone_map, parse_overrides  # noqa: E402
from vgpubuild.vgpuconfig.model import VgpuConfig  # noqa: E402

RUNS = 5


Overrides = dict[str, dict[str, Any]]
Clones = list[tuple[tuple[str, str], str]]


def workload(data: bytes) -> tuple[Overrides, Clones]:
    """50 overrides on spread-out profiles, 20 clones from sources sed can match."""
    config = VgpuConfig.parse(data)
    ids = [p.id for p in config.profiles]
    step = len(ids) // 50
    overrides: Overrides = {}
    for n, pid in enumerate(ids[::step][:50]):
        overrides[str(pid)] = {
            "vramAllocation": 1024 + 512 * (n % 8),
            "heads": 1 + n % 4,
            "display": {"width": 1920, "height": 1080},
            "framerateLimit": 0 if n % 5 == 0 else 60 + n,
        }
    clones: Clones = []
    seen: set[tuple[str, str]] = set()
    for el in config.pgpu_elements():
        dev = el.find("devId")
        assert dev is not None
        text_ids = (dev.get("deviceId", ""), dev.get("subsystemId", ""))
        if dev.get("subsystemVendorId") != "0x10de" or text_ids in seen:
            continue  # VUP's sed only matches the lower-case vendor text
        seen.add(text_ids)
        clones.append((text_ids, f"{0x2F00 + len(clones):04X}:0000"))
        if len(clones) == 20:
            break
    assert len(clones) == 20
    return overrides, clones


def run(cmd: list[str]) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(cmd, check=True, capture_output=True)


def reference_chain(xml: Path, overrides: Overrides, clones: Clones, per_value: bool) -> None:
    for (dev, sub), new in clones:
        run(
            [
                "sed",
                *xmlgen.vup_vcfgclone_sed(dev, sub, f"0x{new[:4]}", f"0x{new[5:]}"),
                "-i",
                str(xml),
            ]
        )
    args = xmlgen.vgpu4nixos_xmlstarlet(overrides)[2:]
    updates = [args[i : i + 4] for i in range(0, len(args), 4)]
    batches = [[u] for u in updates] if per_value else [updates]
    tmp = xml.with_suffix(".tmp")
    for batch in batches:
        with tmp.open("wb") as out:
            flat = [word for update in batch for word in update]
            subprocess.run(["xmlstarlet", "ed", "-P", *flat, str(xml)], stdout=out, check=True)
        tmp.replace(xml)


def timed(label: str, action, runs: int = RUNS) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    best = min(times)
    print(f"{label:<58} best {best:8.3f} s   median {statistics.median(times):8.3f} s")
    return best


def peak_rss(cmd: list[str]) -> int:
    proc = run(["/usr/bin/time", "-f", "MAXRSS %M", *cmd])
    return int(proc.stderr.decode(errors="backslashreplace").rsplit("MAXRSS ", 1)[1].split()[0])


def main() -> None:
    data = xmlgen.large()
    overrides, clones = workload(data)
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        src = tmp / "vgpuConfig.xml"
        src.write_bytes(data)
        config_toml = tmp / "build.toml"
        lines = ["[patcher.copyVGPUProfiles]"]
        lines += [f'"{new}" = "{dev[2:]}:{int(sub, 16):04X}"' for (dev, sub), new in clones]
        for pid, o in overrides.items():
            lines += [f'[patcher.profileOverrides."{pid}"]']
            lines += [f"vramAllocation = {o['vramAllocation']}", f"heads = {o['heads']}"]
            lines += ["display = { width = 1920, height = 1080 }"]
            lines += [f"framerateLimit = {o['framerateLimit']}"]
        config_toml.write_text("\n".join(lines) + "\n")
        table_clones = {new: f"{dev[2:]}:{int(sub, 16):04X}" for (dev, sub), new in clones}
        typed_overrides, typed_clones = parse_overrides(overrides), parse_clone_map(table_clones)

        ours_out, ref_out, lib_out = tmp / "ours.xml", tmp / "ref.xml", tmp / "lib.xml"
        cli = [sys.executable, "-m", "vgpubuild", "profiles", "apply", str(config_toml)]
        cli += ["--xml", str(src), "-o", str(ours_out)]

        def ours_cli() -> None:
            run(cli)

        def ours_lib() -> None:
            config = VgpuConfig.load(src)
            apply_edits(config, overrides=typed_overrides, clones=typed_clones)
            config.save(lib_out)

        def chain(per_value: bool):  # type: ignore[no-untyped-def]
            def go() -> None:
                shutil.copyfile(src, ref_out)
                reference_chain(ref_out, overrides, clones, per_value)

            return go

        values = len(xmlgen.vgpu4nixos_xmlstarlet(overrides)[2:]) // 4
        print(
            f"file: {len(data) / 1e6:.1f} MB, 1,000 profiles, 200 pGPUs; "
            f"{len(overrides)} overrides ({values} values), {len(clones)} clones"
        )
        t_lib = timed("vgpubuild apply_edits (library, in process)", ours_lib)
        t_cli = timed("vgpubuild profiles apply (whole CLI process)", ours_cli)
        t_one = timed("sed x20 + one xmlstarlet ed -P (vgpu4nixos's command)", chain(False))
        canon = [
            etree.tostring(etree.parse(str(p)), method="c14n") for p in (ours_out, lib_out, ref_out)
        ]
        assert canon[0] == canon[1] == canon[2], "outputs differ from the reference chain"
        t_each = timed(f"sed x20 + xmlstarlet ed per value (x{values})", chain(True), runs=2)
        print(f"RATIO per-value chain / vgpubuild CLI:      {t_each / t_cli:7.1f}x")
        print(f"RATIO vgpu4nixos command / vgpubuild CLI:   {t_one / t_cli:7.1f}x")
        print(f"RATIO per-value chain / vgpubuild library:  {t_each / t_lib:7.1f}x")
        print(
            f"peak RSS vgpubuild CLI: {peak_rss(cli) / 1024:.0f} MiB; "
            f"one xmlstarlet ed: {peak_rss(['xmlstarlet', 'ed', '-P', str(src)]) / 1024:.0f} MiB"
        )
        print("outputs: equal canonical trees (vgpubuild CLI, library, reference chain)")


if __name__ == "__main__":
    main()
