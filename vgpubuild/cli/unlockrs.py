"""``vgpubuild profiles import-unlockrs`` / ``export-unlockrs``: vgpu_unlock-rs's override file.

vgpu_unlock-rs applies ``/etc/vgpu_unlock/profile_override.toml`` at run time; these two
commands translate between it and vgpuConfig.xml or a build config's
``profileOverrides``, so one set of overrides can move between the two tools.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from vgpubuild.cli.common import JsonFlag
from vgpubuild.cli.xmledit import (
    Destination,
    DryRunOption,
    InPlaceOption,
    OutputOption,
    XmlOption,
    load,
)


def import_unlockrs_cmd(
    toml_file: Annotated[
        Path, typer.Argument(help="A vgpu_unlock-rs profile_override.toml.", metavar="TOML")
    ],
    xml: XmlOption,
    output: OutputOption = None,
    in_place: InPlaceOption = False,
    dry_run: DryRunOption = False,
    as_json: JsonFlag = False,
) -> None:
    """Bake a vgpu_unlock-rs profile_override.toml into vgpuConfig.xml.

    Fields without a vgpuConfig.xml counterpart are listed on stderr, not dropped silently.

    Example: vgpubuild profiles import-unlockrs /etc/vgpu_unlock/profile_override.toml --xml vgpuConfig.xml -o out.xml
    """
    from vgpubuild.errors import InputError
    from vgpubuild.profiles.overrides import apply_overrides
    from vgpubuild.profiles.settings import parse_overrides
    from vgpubuild.profiles.unlockrs import apply_type_attributes, import_unlockrs

    dest = Destination(output, in_place, dry_run, as_json)
    dest.check()
    try:
        text = toml_file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read {str(toml_file)!r}: {exc}") from None
    imported = import_unlockrs(text, str(toml_file))
    overrides = parse_overrides(imported.overrides)
    config = load(xml)
    changes = apply_type_attributes(config, imported.attributes)
    changes += apply_overrides(config, overrides)
    notes = [f"not representable in vgpuConfig.xml, skipped: {item}" for item in imported.skipped]
    dest.finish(config, xml, changes, notes)


def export_unlockrs_cmd(
    config_file: Annotated[
        Path,
        typer.Argument(
            help="Build config (TOML/JSON) whose patcher.profileOverrides to export.",
            metavar="CONFIG",
        ),
    ],
    xml: Annotated[
        Path | None,
        typer.Option("--xml", help="Check that every profile id exists in this vgpuConfig.xml."),
    ] = None,
    output: OutputOption = None,
) -> None:
    """Write a build config's profileOverrides as a vgpu_unlock-rs profile_override.toml.

    Example: vgpubuild profiles export-unlockrs vgpubuild.toml -o /etc/vgpu_unlock/profile_override.toml
    """
    from vgpubuild.atomic import atomic_file
    from vgpubuild.config import BuildConfig
    from vgpubuild.profiles.unlockrs import export_unlockrs

    overrides = BuildConfig.load(Path(config_file)).overrides
    if xml is not None:
        config = load(xml)
        for pid in overrides:
            config.find_type(pid)
    text, skipped = export_unlockrs(overrides)
    for item in skipped:
        sys.stderr.write(f"note: vgpu_unlock-rs has no field for {item}; skipped\n")
    if output is None:
        sys.stdout.write(text)
        return
    with atomic_file(output) as f:
        f.write(text.encode())
