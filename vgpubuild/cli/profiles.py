"""``vgpubuild profiles``: read and edit vgpuConfig.xml (overrides, clones, remap-p2v)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from vgpubuild.cli.common import JsonFlag, print_json, print_line
from vgpubuild.cli.unlockrs import export_unlockrs_cmd, import_unlockrs_cmd
from vgpubuild.cli.xmledit import (
    Destination,
    DryRunOption,
    InPlaceOption,
    OutputOption,
    XmlOption,
    load,
)

profiles_app = typer.Typer(
    help="Inspect and edit vgpuConfig.xml: list profiles, override sizes and displays, "
    "clone GPUs, remap P40 profiles. Edits keep the file byte-identical except the "
    "changed values.\n\n"
    "Example: vgpubuild profiles show nvidia-333 --xml vgpuConfig.xml",
    no_args_is_help=True,
)

ProfileArg = Annotated[
    str,
    typer.Argument(
        help='The profile: its vgpuType id (333), nvidia-333, or its name ("GRID RTX6000-1Q").',
        metavar="PROFILE",
    ),
]
ReleaseRules = Annotated[
    str | None,
    typer.Option(
        "--release",
        help="Clone as this release's patcher does (its patch.sh read from the vgpubuild cache, "
        "fetched the first time). Default: the newest branches' rule.",
    ),
]
PatcherRules = Annotated[
    Path | None,
    typer.Option("--patcher", help="Clone as the patch.sh in this folder does."),
]


@profiles_app.command("list")
def list_cmd(
    xml: XmlOption,
    device: Annotated[
        str | None,
        typer.Option(
            "--device", help="Only profiles a physical GPU offers: 0x1E30 or 0x1E30:0x12BA."
        ),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """List the profiles (vgpuType entries) with sizes, heads, display and frame-rate limit.

    Example: vgpubuild profiles list --xml vgpuConfig.xml --device 0x1E30
    """
    config = load(xml)
    profiles = config.profiles
    if device is not None:
        wanted = _device_filter(device)
        profiles = [p for p in profiles if any(wanted(key) for key in p.pgpus)]
    if as_json:
        print_json([p.to_json() for p in profiles])
        return
    print_line(
        f"{'ID':>5}  {'NAME':<26} {'CLASS':<8} {'FB MiB':>7} {'HEADS':>5} {'DISPLAY':>10} {'FRL':>4}  PGPUS"
    )
    for p in profiles:
        display = f"{p.display_width}x{p.display_height}" if p.display_width else "-"
        print_line(
            f"{p.id:>5}  {p.name:<26} {p.vgpu_class:<8} {_dash(p.framebuffer_mib):>7} "
            f"{_dash(p.heads):>5} {display:>10} {_dash(p.frame_rate_limit):>4}  {len(p.pgpus)}"
        )


def _dash(value: int | None) -> str:
    return "-" if value is None else str(value)


def _device_filter(text: str) -> Callable[[str], bool]:
    from vgpubuild.errors import UsageError
    from vgpubuild.profiles.settings import parse_pci_id

    if ":" in text:
        pci = parse_pci_id(text, error=UsageError)
        return lambda key: key == str(pci)
    try:
        device = parse_pci_id(f"{text}:0", error=UsageError).device
    except UsageError:
        raise UsageError(
            f"--device {text!r} is not a PCI device id",
            hint="Write a hex device id (0x1E30) or DEVICE:SUBSYSTEM (0x1E30:0x12BA).",
        ) from None
    return lambda key: key.startswith(f"{device:04X}:")


@profiles_app.command("show")
def show_cmd(profile: ProfileArg, xml: XmlOption, as_json: JsonFlag = False) -> None:
    """Show one profile: every field vgpubuild understands and the GPUs that offer it.

    Example: vgpubuild profiles show nvidia-333 --xml vgpuConfig.xml
    """
    from vgpubuild.profiles.names import resolve_profile

    config = load(xml)
    data = config.profile(resolve_profile(config, profile)).to_json()
    if as_json:
        print_json(data)
        return
    for key, value in data.items():
        if isinstance(value, dict):
            value = "x".join(str(v) for v in value.values())
        elif isinstance(value, list):
            value = ", ".join(value) or "-"
        print_line(f"{key + ':':<20}{'-' if value is None else value}")


@profiles_app.command("override")
def override_cmd(
    profile: ProfileArg,
    xml: XmlOption,
    vram: Annotated[
        int | None,
        typer.Option(
            "--vram", help="vramAllocation in MiB (sets profileSize, framebuffer, fbReservation)."
        ),
    ] = None,
    heads: Annotated[
        int | None, typer.Option("--heads", help="Virtual displays (numHeads).")
    ] = None,
    display: Annotated[
        str | None, typer.Option("--display", help="WIDTHxHEIGHT (sets display and maxPixels).")
    ] = None,
    frl: Annotated[
        int | None, typer.Option("--frl", help="Frame-rate limit in fps; 0 turns the limiter off.")
    ] = None,
    cuda: Annotated[
        bool | None, typer.Option("--cuda/--no-cuda", help="Enable or disable CUDA (cudaEnabled).")
    ] = None,
    sets: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="Raw element text ELEM=VALUE or attribute ELEM@ATTR=VALUE (repeatable); "
            "names no profile uses are refused.",
        ),
    ] = None,
    create: Annotated[
        bool,
        typer.Option("--create", help="Let --set add an element or attribute no profile has."),
    ] = False,
    output: OutputOption = None,
    in_place: InPlaceOption = False,
    dry_run: DryRunOption = False,
    as_json: JsonFlag = False,
) -> None:
    """Override one profile as vgpu4nixos's profileOverrides."ID" does, but loudly.

    Missing elements are created and reported; an unknown id names the closest ids. A --set
    name that no profile in the file uses is refused with the closest one (--create insists).

    Example: vgpubuild profiles override 333 --xml vgpuConfig.xml --vram 3584 --heads 1 --display 1920x1080 --frl 144 --cuda -o vgpuConfig.new.xml
    """
    from vgpubuild.errors import UsageError
    from vgpubuild.profiles.names import check_raw_names, resolve_profile
    from vgpubuild.profiles.overrides import apply_overrides
    from vgpubuild.profiles.settings import parse_overrides

    dest = Destination(output, in_place, dry_run, as_json)
    dest.check()
    options: dict[str, Any] = {}
    if vram is not None:
        options["vramAllocation"] = vram
    if heads is not None:
        options["heads"] = heads
    if display is not None:
        width, _, height = display.lower().partition("x")
        if not (width.isdigit() and height.isdigit()):
            raise UsageError(
                f"--display {display!r} is not WIDTHxHEIGHT", hint="E.g. --display 1920x1080."
            )
        options["display"] = {"width": int(width), "height": int(height)}
    if frl is not None:
        options["framerateLimit"] = frl
    if cuda is not None:
        options["enableCuda"] = cuda
    if sets:
        options["xmlConfig"] = _parse_sets(sets)
    if not options:
        raise UsageError(
            "nothing to override", hint="Give --vram, --heads, --display, --frl, --cuda or --set."
        )
    config = load(xml)
    profile_id = resolve_profile(config, profile)
    overrides = parse_overrides({str(profile_id): options}, error=UsageError)
    if sets and not create:
        check_raw_names(config, options["xmlConfig"])
    changes = apply_overrides(config, overrides)
    dest.finish(config, xml, changes)


def _parse_sets(sets: list[str]) -> dict[str, Any]:
    from vgpubuild.errors import UsageError

    table: dict[str, Any] = {}
    for item in sets:
        target, sep, value = item.partition("=")
        if not sep or not target:
            raise UsageError(
                f"--set {item!r} is not ELEM=VALUE or ELEM@ATTR=VALUE",
                hint="E.g. --set eccSupported=0.",
            )
        element, at, attr = target.partition("@")
        if at:
            existing = table.setdefault(element, {})
            if not isinstance(existing, dict):
                raise UsageError(f"--set gives {element} both text and attributes")
            existing[attr] = value
        else:
            table[element] = value
    return table


def _disable_with(
    release: str | None, patcher: Path | None, *, remap: bool, config: Any = None
) -> int | None:
    """The clone rule of the chosen patch.sh: the vendor id it disables with, or None."""
    from vgpubuild.cache import Cache
    from vgpubuild.fetch import FetchOptions
    from vgpubuild.patchertree import patcher_contract
    from vgpubuild.vgpuconfig.vocabulary import DISABLED_SUBSYSTEM_VENDOR

    releases = getattr(config, "releases", None)
    contract = patcher_contract(release, patcher, Cache(), FetchOptions(progress=False), releases)
    if contract is None:
        return DISABLED_SUBSYSTEM_VENDOR
    if remap:
        contract.check_remap()
    return contract.clone_disables


@profiles_app.command("clone")
def clone_cmd(
    pairs: Annotated[
        list[str],
        typer.Argument(
            help="NEW=SRC PCI id pairs, e.g. 0x1E07:0x0000=0x1E30:0x12BA.", metavar="NEW=SRC..."
        ),
    ],
    xml: XmlOption,
    patch: Annotated[
        bool,
        typer.Option(
            "--patch", help="Change SRC's ids to NEW in place (VUP's vcfgpatch) instead of copying."
        ),
    ] = False,
    release: ReleaseRules = None,
    patcher: PatcherRules = None,
    output: OutputOption = None,
    in_place: InPlaceOption = False,
    dry_run: DryRunOption = False,
    as_json: JsonFlag = False,
) -> None:
    """Give a GPU the profiles of a supported one (vcfgclone; copyVGPUProfiles).

    Ids are compared as numbers. An existing entry for NEW is disabled first on the rule of
    VUP 550.90 and later (the default); 535.x only copies: choose with --release/--patcher.

    Example: vgpubuild profiles clone 1E07:0000=1DB6:124A --release 16.5 --xml vgpuConfig.xml --dry-run
    """
    from vgpubuild.errors import UsageError
    from vgpubuild.patchertree import clone_rule
    from vgpubuild.profiles.clones import copy_profiles, vcfgpatch
    from vgpubuild.profiles.settings import parse_clone_map

    dest = Destination(output, in_place, dry_run, as_json)
    dest.check()
    table: dict[str, str] = {}
    for pair in pairs:
        new, sep, src = pair.partition("=")
        if not sep:
            raise UsageError(f"{pair!r} is not NEW=SRC", hint="E.g. 0x1E07:0x0000=0x1E30:0x12BA.")
        table[new] = src
    parsed = parse_clone_map(table, error=UsageError)
    config = load(xml)
    if patch:
        changes = [line for new, src in parsed for line in vcfgpatch(config, src, new)]
    else:
        changes = copy_profiles(config, parsed, clone_rule(release, patcher))
    dest.finish(config, xml, changes)


@profiles_app.command("remap-p2v")
def remap_p2v_cmd(
    xml: XmlOption,
    output: OutputOption = None,
    in_place: InPlaceOption = False,
    dry_run: DryRunOption = False,
    as_json: JsonFlag = False,
) -> None:
    """Rename GRID P40-x profiles to GRID V40-x with V100D ids (patch.sh --remap-p2v).

    Example: vgpubuild profiles remap-p2v --xml vgpuConfig.xml --dry-run
    """
    from vgpubuild.profiles.remap import remap_p2v_profiles

    dest = Destination(output, in_place, dry_run, as_json)
    dest.check()
    config = load(xml)
    changes = remap_p2v_profiles(config)
    dest.finish(config, xml, changes)


@profiles_app.command("apply")
def apply_cmd(
    config_file: Annotated[
        Path,
        typer.Argument(
            help="Build config (TOML/JSON) with patcher.profileOverrides / copyVGPUProfiles.",
            metavar="CONFIG",
        ),
    ],
    xml: XmlOption,
    remap_p2v: Annotated[
        bool, typer.Option("--remap-p2v", help="Run remap-p2v first (as patch.sh --remap-p2v).")
    ] = False,
    release: ReleaseRules = None,
    patcher: PatcherRules = None,
    output: OutputOption = None,
    in_place: InPlaceOption = False,
    dry_run: DryRunOption = False,
    as_json: JsonFlag = False,
) -> None:
    """Apply a build config's copyVGPUProfiles, then its profileOverrides.

    The clones follow the rule of --release's or --patcher's patch.sh (default: the newest).

    Example: vgpubuild profiles apply vgpubuild.toml --release 17.3 --xml vgpuConfig.xml -o vgpuConfig.new.xml
    """
    from vgpubuild.config import BuildConfig
    from vgpubuild.patchertree import clone_rule
    from vgpubuild.profiles.edits import apply_edits

    dest = Destination(output, in_place, dry_run, as_json)
    dest.check()
    build = BuildConfig.load(Path(config_file))
    config = load(xml)
    changes = apply_edits(
        config,
        overrides=build.overrides,
        clones=build.clones,
        remap_p2v=remap_p2v,
        disable_with=clone_rule(release, patcher, remap=remap_p2v, releases=build.releases),
    )
    dest.finish(config, xml, changes)


# The vgpu_unlock-rs translations live in their own module; they are profiles commands too.
profiles_app.command("import-unlockrs")(import_unlockrs_cmd)
profiles_app.command("export-unlockrs")(export_unlockrs_cmd)


def register(app: typer.Typer) -> None:
    app.add_typer(profiles_app, name="profiles")
