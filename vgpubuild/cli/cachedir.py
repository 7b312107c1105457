"""``vgpubuild cache list|clean``: see and trim vgpubuild's own cache."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from vgpubuild.cli.common import JsonFlag, print_json, print_line


def list_cmd(as_json: JsonFlag = False) -> None:
    """List what the cache holds: inputs, patchers, built artifacts, logs, partial downloads, quarantine.

    Each line gives the kind, size, when it was last used (artifacts) or written, and what it
    is; artifacts and logs name their build (release, target, build key).

    Example: vgpubuild cache list
    """
    from vgpubuild.cache import Cache
    from vgpubuild.housekeeping import artifact_cap, entries, human

    cache = Cache()
    found = entries(cache)
    if as_json:
        print_json({"root": str(cache.root), "entries": [e.to_json() for e in found]})
        return
    print_line(f"cache: {cache.root}")
    print_line(f"{'KIND':<10}  {'SIZE':>10}  {'USED':<16}  WHAT")
    for e in found:
        used = time.strftime("%Y-%m-%d %H:%M", time.localtime(e.used))
        key = f" [{e.build_key[:12]}]" if e.build_key else ""
        print_line(f"{e.kind:<10}  {human(e.size):>10}  {used:<16}  {e.what}{key}")
    cap = artifact_cap()
    artifacts = sum(e.size for e in found if e.kind == "artifact")
    print_line(
        f"total {human(sum(e.size for e in found))}; artifacts {human(artifacts)} of "
        f"{human(cap) if cap is not None else 'no'} cap"
    )


def clean_cmd(
    older_than: Annotated[
        str | None,
        typer.Option(
            "--older-than",
            metavar="AGE",
            help="Inputs, patchers, artifacts and logs not used (or written) for AGE: 30d, 12h, 2w.",
        ),
    ] = None,
    quarantine: Annotated[
        bool, typer.Option("--quarantine", help="Files that failed verification.")
    ] = False,
    partial: Annotated[
        bool, typer.Option("--partial", help="Interrupted downloads (not running ones).")
    ] = False,
    everything: Annotated[bool, typer.Option("--all", help="Everything in the cache.")] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only print what would be removed.")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Remove cache entries: old ones, quarantined files, partial downloads, or all.

    Builds never see half an entry: each is moved aside in one step before it is deleted.
    Removed inputs are fetched again (or must be added again) when a build needs them.

    Example: vgpubuild cache clean --older-than 30d --quarantine --partial
    """
    from vgpubuild.cache import Cache
    from vgpubuild.errors import UsageError
    from vgpubuild.housekeeping import entries, human, parse_age, remove, select

    if not (older_than or quarantine or partial or everything):
        raise UsageError(
            "say what to clean", hint="Give --older-than AGE, --quarantine, --partial or --all."
        )
    cache = Cache()
    age = parse_age(older_than) if older_than else None
    chosen = select(
        entries(cache),
        older_than=age,
        quarantine=quarantine,
        partial=partial,
        everything=everything,
    )
    done = chosen if dry_run else [e for e in chosen if remove(cache, e)]
    kept = [e for e in chosen if e not in done]
    if as_json:
        print_json(
            {
                "removed" if not dry_run else "would_remove": [e.to_json() for e in done],
                "in_use": [e.to_json() for e in kept],
            }
        )
        return
    verb = "would remove" if dry_run else "removed"
    for e in done:
        print_line(f"{verb} {e.kind} {human(e.size)} {e.what}")
    for e in kept:
        print_line(f"kept {e.kind} {e.what} (in use by a running download)")
    print_line(f"{verb} {len(done)} entries, {human(sum(e.size for e in done))}")


def register(cache_app: typer.Typer) -> None:
    cache_app.command("list")(list_cmd)
    cache_app.command("clean")(clean_cmd)
