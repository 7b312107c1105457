"""``vgpubuild gpus``: which NVIDIA GPUs this machine has and what each can do with vGPU."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from vgpubuild.cli.common import JsonFlag, print_json, print_line

if TYPE_CHECKING:
    from vgpubuild.catalog import Release
    from vgpubuild.releasexml import ReleaseXml

HELP = """List this machine's NVIDIA GPUs and what each can do with vGPU.

For every NVIDIA display device under /sys/bus/pci/devices: its PCI address and ids, its
name from the system's pci.ids, and per release whether it is natively supported, unlocked
by a clone (from which card; with --remap-p2v where needed), unlockable with a
copyVGPUProfiles line of your own, or not supported (and why). Also the release and
patch.sh target to use and, for SR-IOV cards, the VF state and the command that enables
them. With the release's vgpuConfig.xml (its GRID zip in vgpubuild's cache, or --xml) it
lists the profiles the card gets, cloned ones included. Only reads: sysfs is never written.

Examples:

  vgpubuild gpus

  vgpubuild gpus --release 17.3 --suggest

  vgpubuild gpus --device 2684 --json

  vgpubuild gpus --xml ./result/NVIDIA-Linux-x86_64-550.90.05-vgpu-kvm-patched
"""


def _releases(release: str | None, xml: ReleaseXml | None) -> list[Release]:
    from vgpubuild.catalog import all_releases, get_release
    from vgpubuild.errors import UsageError

    version = release or (xml.release if xml else None)
    if version is not None:
        return [get_release(version)]
    if xml is not None:
        raise UsageError(
            f"which release is {xml.origin} from?",
            hint="Add --release X (an artifact folder names its own release).",
        )
    return list(all_releases().values())


def gpus_cmd(
    sysfs: Annotated[
        Path, typer.Option("--sysfs", help="The sysfs root to read (a copy, a chroot's).")
    ] = Path("/sys"),
    release: Annotated[
        str | None,
        typer.Option("--release", help="Judge for this release only, with its profiles."),
    ] = None,
    xml: Annotated[
        Path | None,
        typer.Option(
            "--xml",
            help="A vgpuConfig.xml, or an artifact folder, to take the profiles from "
            "(default: the release's GRID zip in vgpubuild's cache).",
        ),
    ] = None,
    device: Annotated[
        str | None,
        typer.Option(
            "--device",
            help="Judge a card by its ids (DEV or DEV:SUB, hex) instead of reading sysfs.",
        ),
    ] = None,
    pci_ids: Annotated[
        Path | None,
        typer.Option(
            "--pci-ids",
            help="The pci.ids database (default: $VGPUBUILD_PCI_IDS, else the system's).",
        ),
    ] = None,
    suggest: Annotated[
        bool,
        typer.Option("--suggest", help="Print the build settings as TOML and as Nix."),
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    from vgpubuild import pciids
    from vgpubuild.cache import Cache
    from vgpubuild.errors import UsageError
    from vgpubuild.gpureport import Survey, report
    from vgpubuild.gpus import NVIDIA, Knowledge
    from vgpubuild.pcidevices import named, scan
    from vgpubuild.profiles.settings import parse_pci_id
    from vgpubuild.releasexml import from_cache, from_path

    database = pciids.locate(pci_ids)
    know = Knowledge(pciids.load(database, [NVIDIA]) if database else None)
    given_xml = from_path(xml) if xml is not None else None
    releases = _releases(release, given_xml)
    if given_xml is not None:
        know.xml[releases[0].version] = given_xml
    if device is not None:
        found = named(parse_pci_id(device if ":" in device else f"{device}:0", error=UsageError))
    else:
        found = scan(sysfs)
    cache = Cache()
    survey = Survey(releases, know, lambda r: from_cache(r, cache), suggest)
    result = report(found, survey, database, sysfs=device is None)
    if as_json:
        print_json(result)
        return
    for note in result["notes"]:
        sys.stderr.write(f"note: {note}\n")
    if not result["gpus"]:
        print_line(f"no NVIDIA GPU among the {found.seen} PCI devices in {found.devices_dir}")
    for n, gpu in enumerate(result["gpus"]):
        if n:
            print_line("")
        for line in _render(gpu):
            print_line(line)


def _render(gpu: dict[str, Any]) -> list[str]:
    """The text view of one GPU of the report (the same data --json prints)."""
    sub = gpu["subsystem_id"]
    board = gpu["subsystem_name"] or gpu["subsystem_vendor_name"]
    facts = [f"{gpu['device_id'][2:]}:{sub[2:] if sub else '?'}"]
    facts.append(", ".join(x for x in (gpu["architecture"], gpu["consumer"] and "consumer") if x))
    facts += [f"board: {board}" if board else "", f"driver: {gpu['driver'] or 'none'}"]
    facts.append(f"IOMMU group: {gpu['iommu_group'] or 'none'}")
    lines = [f"{gpu['address']}  {gpu['name'] or 'NVIDIA device ' + gpu['device_id']}"]
    lines.append("  " + "; ".join(f for f in facts if f))
    groups: dict[tuple[str, str, bool], list[str]] = {}
    for v in gpu["verdicts"]:
        groups.setdefault((v["status"], v["reason"], v["remap_p2v"]), []).append(v["release"])
    for (status, reason, remap), versions in groups.items():
        flag = " (needs --remap-p2v)" if remap else ""
        lines.append(f"  {', '.join(versions)}: {status}{flag}: {reason}")
    rec = gpu["recommended"]
    if rec:
        target = f"patch.sh target {rec['target']}" if rec["target"] else "no patcher"
        lines.append(f"  use: release {rec['release']}, {target}")
    sriov = gpu["sriov"]
    if sriov:
        state = f"  SR-IOV: {sriov['enabled_vfs'] or 0} of {sriov['total_vfs']} VFs enabled"
        command = sriov["enable_command"]
        lines.append(state + (f"; enable them with: {command}" if command else ""))
    lines += _render_profiles(gpu["profiles"])
    suggest = gpu["suggest"]
    if suggest:
        lines.append("  build config (vgpubuild patch --config FILE):")
        lines += [f"    {line}".rstrip() for line in suggest["toml"].splitlines()]
        lines.append("  Nix:")
        lines += [f"    {line}".rstrip() for line in suggest["nix"].splitlines()]
    return lines


def _render_profiles(profiles: dict[str, Any] | None) -> list[str]:
    if profiles is None:
        return []
    lines = [f"  profiles on {profiles['release']} (from {profiles['xml']}):"]
    rows: list[tuple[str, ...]] = [("ID", "TYPE", "NAME", "FB MiB", "HEADS", "MAX")]
    rows += [
        tuple(
            "-" if p[k] is None else str(p[k])
            for k in ("id", "type", "name", "framebuffer_mib", "heads", "max_instances")
        )
        for p in profiles["profiles"]
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    if len(rows) > 1:
        lines += [
            "    " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
            for row in rows
        ]
    lines += [f"    note: {note}" for note in profiles["notes"]]
    return lines


def register(app: typer.Typer) -> None:
    app.command("gpus", help=HELP)(gpus_cmd)
