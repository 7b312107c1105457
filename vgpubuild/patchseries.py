"""Patches applied after patch.sh: the project's series for a GRID series, then the user's.

The project keeps fixes it carries for a driver series in ``patches/<GRID series>/``, listed
in order in that folder's ``series`` file (quilt's format: one name a line, ``#`` comments).
Users add their own with ``--patch`` or ``patches`` in the build config. Each patch is known
by its content hash before the build starts, so it is part of the build's description (and
its key); each is applied with GNU patch, and any reject fails the build.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from vgpubuild import log, resources
from vgpubuild.catalog import Release
from vgpubuild.errors import InputError, PatcherError
from vgpubuild.nixhash import Hash, hash_file
from vgpubuild.store import content_name

Origin = Literal["project", "user"]


@dataclass(frozen=True)
class PatchRef:
    """One patch to apply: who ships it, the name it is shown and recorded by, its hash."""

    origin: Origin
    name: str
    path: Path
    sha256: Hash

    def record(self) -> dict[str, str]:
        """How the build description (and so the manifest) names this patch: no paths."""
        return {"origin": self.origin, "name": self.name, "sha256": self.sha256.sri}


def project_patches(release: Release) -> list[PatchRef]:
    """The project's patch series for the release's GRID series (``patches/<series>/series``)."""
    try:
        folder = resources.data_dir("patches") / release.grid_series
    except FileNotFoundError:
        return []
    series = folder / "series"
    if not series.is_file():
        return []
    found = []
    for raw in series.read_text(encoding="utf-8").splitlines():
        name = raw.split("#", 1)[0].strip()
        if name:
            path = folder / name
            if not path.is_file():
                raise InputError(
                    f"{series} lists {name!r}, which does not exist",
                    hint="Fix the project's patch series (this is a vgpubuild bug if unedited).",
                )
            found.append(
                PatchRef("project", f"{release.grid_series}/{name}", path, hash_file(path))
            )
    return found


def user_patch(path: Path) -> PatchRef:
    """A user's patch, recorded by its content name (a store path's hash part dropped)."""
    if not path.is_file():
        raise InputError(f"patch file {str(path)!r} does not exist", hint="Check the --patch path.")
    return PatchRef("user", content_name(path), path, hash_file(path))


def apply_patches(patches: tuple[PatchRef, ...], tree: Path, search_path: str) -> None:
    """Apply ``patches`` in order with GNU patch (``-p1``); a reject or failure stops the build."""
    logger = log.get_logger(stage="patches")
    env = {"PATH": search_path, "LC_ALL": "C"}
    for ref in patches:
        proc = subprocess.run(
            [
                "patch",
                "-p1",
                "--forward",
                "--batch",
                "--no-backup-if-mismatch",
                "--reject-file=-",
                "-d",
                str(tree),
                "-i",
                str(ref.path.resolve()),
            ],
            env=env,
            capture_output=True,
            check=False,
        )
        output = (proc.stdout + proc.stderr).decode("utf-8", "replace").strip()
        for line in output.splitlines():
            logger.info(line, patch=ref.name)
        rejects = sorted(str(p.relative_to(tree)) for p in tree.rglob("*.rej"))
        if proc.returncode != 0 or rejects:
            detail = " | ".join(output.splitlines()[-3:]) or f"exit code {proc.returncode}"
            raise PatcherError(
                f"{ref.origin} patch {ref.name} does not apply to the patched tree: {detail}",
                hint="Update the patch for this release (it was written for other sources).",
            )
        logger.info("applied", patch=ref.name, origin=ref.origin)
