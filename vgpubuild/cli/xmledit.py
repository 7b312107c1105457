"""What the ``vgpubuild profiles`` edit commands share: the file options and the result.

Every edit reads ``--xml`` and writes to exactly one of ``-o OUT``, ``--in-place`` or
``--dry-run`` (a unified diff), then reports one line per change (or JSON).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NamedTuple

import typer

from vgpubuild.cli.common import print_json, print_line

if TYPE_CHECKING:
    from vgpubuild.vgpuconfig.model import VgpuConfig

XmlOption = Annotated[
    Path,
    typer.Option("--xml", help="The vgpuConfig.xml to read (never modified without --in-place)."),
]
OutputOption = Annotated[
    Path | None, typer.Option("-o", "--output", help="Write the edited file here (atomic).")
]
InPlaceOption = Annotated[
    bool, typer.Option("--in-place", help="Replace the --xml file (atomic; untouched on error).")
]
DryRunOption = Annotated[
    bool, typer.Option("--dry-run", help="Print a unified diff instead of writing anything.")
]


def load(xml: Path) -> VgpuConfig:
    from vgpubuild.vgpuconfig.model import VgpuConfig

    return VgpuConfig.load(xml)


class Destination(NamedTuple):
    """Where an edited vgpuConfig.xml goes, and how the result is shown."""

    output: Path | None
    in_place: bool
    dry_run: bool
    as_json: bool

    def check(self) -> None:
        """Exactly one of -o, --in-place and --dry-run, checked before any work."""
        from vgpubuild.errors import UsageError

        given = (("-o", self.output), ("--in-place", self.in_place), ("--dry-run", self.dry_run))
        chosen = [name for name, on in given if on]
        if len(chosen) != 1:
            raise UsageError(
                "say where the result goes"
                if not chosen
                else f"{' and '.join(chosen)} exclude each other",
                hint="Give exactly one of -o OUT, --in-place or --dry-run.",
            )

    def finish(
        self, config: VgpuConfig, xml: Path, changes: list[str], notes: list[str] | None = None
    ) -> None:
        """Write (or diff) the edited document and report what changed."""
        for note in notes or []:
            sys.stderr.write(f"note: {note}\n")
        result: dict[str, Any] = {"changes": changes}
        if self.dry_run:
            from vgpubuild.textdiff import unified_diff

            result["diff"] = unified_diff(
                config.original_bytes(), config.to_bytes(), str(xml), f"{xml} (edited)"
            )
        elif self.in_place:
            if changes:
                config.save(xml)
            result["output"] = str(xml)
        else:
            assert self.output is not None
            config.save(self.output)
            result["output"] = str(self.output)
        if self.as_json:
            print_json(result)
            return
        if self.dry_run:
            sys.stdout.write(result["diff"])
            for line in changes:
                sys.stderr.write(line + "\n")
            return
        for line in changes or ["no changes"]:
            print_line(line)
