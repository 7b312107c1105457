"""50 profile overrides + 20 clones on a 1,000-profile / 200-pGPU vgpuConfig.xml.

``vgpubuild profiles apply`` (one process) against the chain vgpu4nixos/VUP run: one
``sed -i`` per vcfgclone (VUP's sed program), then vgpu4nixos's single ``xmlstarlet ed -P``
with every ``-u``. (The chain with one ``xmlstarlet ed`` per value takes ~45 s a run, too
long for seven pairs; ``chain_script(per_value=True)`` writes it for a run by hand.) The
outputs are checked to parse to equal trees (c14n) before timing counts. Target: vgpubuild
no slower. Everything happens in a temporary folder.
"""

from __future__ import annotations

import shlex
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import xmlgen  # noqa: E402
from harness import VGPUBUILD, Row, Run, Workload, measure  # noqa: E402
from lxml import etree  # noqa: E402

from vgpubuild.vgpuconfig.model import VgpuConfig  # noqa: E402

Overrides = dict[str, dict[str, Any]]
Clones = list[tuple[tuple[str, str], str]]


def workload(data: bytes) -> tuple[Overrides, Clones]:
    """50 overrides on spread-out profiles, 20 clones from sources sed can match."""
    config = VgpuConfig.parse(data)
    ids = [profile.id for profile in config.profiles]
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


def chain_script(
    src: Path, xml: Path, overrides: Overrides, clones: Clones, per_value: bool
) -> str:
    """The reference chain as a shell script: copy, one ``sed -i`` per clone (VUP's
    vcfgclone), then xmlstarlet for the overrides, once with every ``-u`` (vgpu4nixos's
    command) or once per value."""
    lines = [f"cp {shlex.quote(str(src))} {shlex.quote(str(xml))}"]
    for (dev, sub), new in clones:
        sed = xmlgen.vup_vcfgclone_sed(dev, sub, f"0x{new[:4]}", f"0x{new[5:]}")
        lines.append(shlex.join(["sed", *sed, "-i", str(xml)]))
    args = xmlgen.vgpu4nixos_xmlstarlet(overrides)[2:]
    updates = [args[i : i + 4] for i in range(0, len(args), 4)]
    batches = [[u] for u in updates] if per_value else [updates]
    tmp = xml.with_suffix(".tmp")
    for batch in batches:
        flat = [word for update in batch for word in update]
        command = shlex.join(["xmlstarlet", "ed", "-P", *flat, str(xml)])
        lines.append(f"{command} > {shlex.quote(str(tmp))} && mv {tmp} {xml}")
    return "set -e\n" + "\n".join(lines) + "\n"


def rows() -> list[Row]:
    if shutil.which("xmlstarlet") is None:
        raise SystemExit("xmlstarlet is not installed: nothing to compare with (make tools)")
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

        ours_out, ref_out = tmp / "ours.xml", tmp / "ref.xml"
        cli = [VGPUBUILD, "profiles", "apply", str(config_toml), "--xml", str(src)]
        cli += ["-o", str(ours_out)]

        def same(_a: Run, _b: Run) -> bool:
            return bool(_canonical(ours_out) == _canonical(ref_out))

        script = tmp / "chain.sh"
        script.write_text(chain_script(src, ref_out, overrides, clones, per_value=False))
        work = Workload(
            f"profiles apply, {len(overrides)} overrides + {len(clones)} clones, 1,000 profiles",
            cli,
            ["sh", str(script)],
            1.0,
            reference_name=f"sed x{len(clones)} + xmlstarlet ed -P (vgpu4nixos)",
            same=same,
        )
        measure(work)
        return [work.row()]


def _canonical(path: Path) -> bytes:
    return bytes(etree.tostring(etree.parse(str(path)), method="c14n"))
