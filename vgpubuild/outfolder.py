"""The ``--out`` folder: checked before work starts, scratch space inside it, clean exits.

All scratch work happens in a hidden folder inside ``--out`` (same filesystem, so the
patched tree is moved, never copied, and the final step is one ``rename``). This module is
the one owner of that folder and of the artifact's place in ``--out``:

* :func:`session` gives the run its work folder, locked by the run and removed however
  the run ends; folders of runs that died (``SIGKILL``) are removed first, their orphaned
  ``patch.sh`` stopped (:mod:`vgpubuild.ownership`);
* :func:`placing` holds ``--out``'s lock while an artifact (and its ``.run``) is put in
  place, so concurrent builds into one ``--out`` take turns instead of failing.

An artifact of an earlier vgpubuild run may be replaced; anything else in the way is an
error raised before any work is done.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from vgpubuild.artifact import RepackedRun, read_manifest
from vgpubuild.errors import DiskFullError, OutputError, output_error
from vgpubuild.ownership import folder_lock, owned_work_folder

WORK_PREFIX = ".vgpubuild-work."

_WRITABLE = "Choose an output folder you can write to."


def prepare_out(out: Path) -> bool:
    """Make sure ``out`` is a folder we can write to; True when this call created it."""
    if out.exists() and not out.is_dir():
        raise OutputError(
            f"--out {str(out)!r} exists and is not a folder", hint="Choose a folder for --out."
        )
    created = not out.exists()
    with output_error(f"cannot create the output folder {str(out)!r}", _WRITABLE):
        out.mkdir(parents=True, exist_ok=True)
    return created


@contextlib.contextmanager
def session(out: Path) -> Iterator[Path]:
    """The run's work folder inside ``out`` (created if missing); ``out`` as it was on failure.

    A full disk met anywhere in the work folder is reported as ``out``'s: that is the
    folder the user chose and can free or change.
    """
    created = prepare_out(out)
    succeeded = False
    try:
        with owned_work_folder(out, WORK_PREFIX) as work:
            try:
                yield work
            except DiskFullError as exc:
                if not exc.folder.is_relative_to(work):
                    raise
                raise DiskFullError(out, exc.needed) from None
        succeeded = True
    finally:
        if created and not succeeded:
            with contextlib.suppress(OSError):
                out.rmdir()  # only if still empty: it was ours


@contextlib.contextmanager
def placing(out: Path, name: str) -> Iterator[bool]:
    """Hold ``out``'s lock to put the artifact ``name`` in place; yields whether to replace.

    Under the lock no other run is placing anything, so the ``.NAME.old`` and
    ``.NAME.*.tmp`` folders older versions left beside the artifact are leftovers of dead
    runs: they are removed. A foreign folder named ``name`` is an error (see
    :func:`check_dest`).
    """
    with folder_lock(out):
        for leftover in (out / f".{name}.old", *out.glob(f".{name}.*.tmp")):
            if leftover.is_dir() and not leftover.is_symlink():
                shutil.rmtree(leftover, ignore_errors=True)
        yield check_dest(out / name)


def check_dest(dest: Path) -> bool:
    """True when ``dest`` holds an earlier vgpubuild artifact (to replace); error if foreign."""
    if not os.path.lexists(dest):
        return False
    if dest.is_dir() and not dest.is_symlink() and read_manifest(dest) is not None:
        return True
    raise OutputError(
        f"{str(dest)!r} already exists and is not a vgpubuild artifact",
        hint="Move it away or choose another --out folder.",
    )


def move_run(repacked: RepackedRun | None, out: Path) -> RepackedRun | None:
    """Rename a .run made in the work folder into ``out`` (after the tree is in place)."""
    if repacked is None:
        return None
    final = out / repacked.path.name
    os.chmod(repacked.path, 0o755)
    os.replace(repacked.path, final)
    return RepackedRun(final, repacked.flat_hash, repacked.store_path)
