"""``vgpubuild releases list|show``: the vGPU releases vgpubuild knows."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from vgpubuild.cli.common import JsonFlag, print_json, print_line

if TYPE_CHECKING:
    from collections.abc import Mapping

releases_app = typer.Typer(
    help="The vGPU releases vgpubuild can build (built in, plus your own).\n\n"
    "Example: vgpubuild releases show 17.3",
    no_args_is_help=True,
)

ReleasesFile = Annotated[
    Path | None,
    typer.Option(
        "--releases",
        help='A TOML file of your own releases."X" tables (same fields as the built-in ones).',
        metavar="FILE",
    ),
]


def user_releases(path: Path | None) -> Mapping[str, Mapping[str, Any]] | None:
    """The user-defined release tables of ``--releases FILE`` (None without the option)."""
    if path is None:
        return None
    from vgpubuild.catalog import load_releases_file

    return load_releases_file(path)


@releases_app.command("list")
def list_cmd(releases_file: ReleasesFile = None, as_json: JsonFlag = False) -> None:
    """List every release: GRID version, host/guest/general driver versions, patcher support.

    Example: vgpubuild releases list --json
    """
    from vgpubuild.catalog import all_releases

    releases = all_releases(user_releases(releases_file))
    if as_json:
        print_json([r.to_json() for r in releases.values()])
        return
    rows = [("RELEASE", "HOST", "GUEST", "GENERAL", "PATCHER")]
    rows += [
        (
            r.version,
            r.host_version,
            r.guest_version,
            r.general_version,
            "yes" if r.patcher else "no",
        )
        for r in releases.values()
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print_line("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


@releases_app.command("show")
def show_cmd(
    version: Annotated[str, typer.Argument(help="The GRID release, e.g. 17.3.", metavar="VERSION")],
    releases_file: ReleasesFile = None,
    as_json: JsonFlag = False,
) -> None:
    """Show one release: versions, file names, hashes (SRI) and the patcher revision.

    Example: vgpubuild releases show 17.3
    """
    from vgpubuild.catalog import get_release

    release = get_release(version, user_releases(releases_file))
    data = release.to_json()
    if as_json:
        print_json(data)
        return
    patcher = data.pop("patcher")
    for key, value in data.items():
        print_line(f"{key}: {value if value is not None else '-'}")
    if patcher is None:
        print_line("patcher: not supported")
        return
    for key, value in patcher.items():
        print_line(f"patcher.{key}: {value if value is not None else '-'}")


def register(app: typer.Typer) -> None:
    app.add_typer(releases_app, name="releases")
