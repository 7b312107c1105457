"""The ``--out`` folder: checked before work starts, scratch space inside it, clean exits.

All scratch work happens in a hidden folder inside ``--out`` (same filesystem, so the
patched tree is moved, never copied, and the final step is one ``rename``). An artifact of
an earlier vgpubuild run may be replaced; anything else in the way is an error raised before
any work is done.
"""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path

from vgpubuild.artifact import RepackedRun, read_manifest
from vgpubuild.errors import OutputError, output_error

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


def work_dir(out: Path) -> Path:
    """A fresh hidden scratch folder inside ``out``."""
    with output_error(f"cannot write to the output folder {str(out)!r}", _WRITABLE):
        return Path(tempfile.mkdtemp(prefix=WORK_PREFIX, dir=out))


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


@contextlib.contextmanager
def sigint_deferred() -> Iterator[None]:
    """Hold Ctrl-C back while cleaning up, so a second one cannot leave half a folder."""
    try:
        old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    except ValueError:  # not the main thread's interpreter state: nothing to defer
        yield
        return
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
