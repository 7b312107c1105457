"""Atomic writes: a temporary sibling, then ``rename``, so no reader ever sees half a file.

Every output vgpubuild writes (files, whole artifact folders, cache entries) goes through
here. The temporary lives in the destination's folder so the final rename never crosses a
filesystem; on any exception, including Ctrl-C, the temporary is removed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from vgpubuild.errors import OutputError, output_error

_WRITABLE = "Choose an output location you can write to."


def _parent(dest: Path) -> Path:
    parent = dest.parent
    with output_error(f"cannot create folder {str(parent)!r}", _WRITABLE):
        parent.mkdir(parents=True, exist_ok=True)
    return parent


@contextlib.contextmanager
def atomic_file(dest: str | os.PathLike[str], mode: int = 0o644) -> Iterator[BinaryIO]:
    """Open a temporary file that replaces ``dest`` only if the block succeeds."""
    dest = Path(dest)
    parent = _parent(dest)
    with output_error(f"cannot write to {str(parent)!r}", _WRITABLE):
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=parent)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_dir(dest: str | os.PathLike[str], *, replace: bool = False) -> Iterator[Path]:
    """Yield an empty temporary folder that becomes ``dest`` if the block succeeds.

    With ``replace`` an existing ``dest`` is swapped out; otherwise its existence is an
    error raised before any work is done.
    """
    dest = Path(dest)
    if dest.exists() and not replace:
        raise OutputError(
            f"{str(dest)!r} already exists", hint="Remove it or choose another output folder."
        )
    parent = _parent(dest)
    with output_error(f"cannot write to {str(parent)!r}", _WRITABLE):
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=parent))
    try:
        yield tmp
        os.chmod(tmp, 0o755)
        if dest.exists() and replace:
            old = dest.with_name(f".{dest.name}.old")
            os.replace(dest, old)
            os.replace(tmp, dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
