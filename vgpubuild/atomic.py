"""Atomic writes: a temporary sibling, then ``rename``, so no reader ever sees half a file.

Every output vgpubuild writes (files, whole artifact folders, cache entries) goes through
here. The temporary lives on the destination's filesystem (its folder, or a scratch folder
the caller owns there) so the final rename never crosses a filesystem; on any exception,
including Ctrl-C, the temporary is removed. A full disk is reported once, here, as a
:class:`DiskFullError` naming the folder and the space needed, whatever wrote the bytes.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from vgpubuild.errors import OutputError, disk_full_as_error, output_error

_WRITABLE = "Choose an output location you can write to."


def _parent(dest: Path) -> Path:
    parent = dest.parent
    with output_error(f"cannot create folder {str(parent)!r}", _WRITABLE, folder=parent):
        parent.mkdir(parents=True, exist_ok=True)
    return parent


@contextlib.contextmanager
def atomic_file(
    dest: str | os.PathLike[str], mode: int = 0o644, *, needed: int | None = None
) -> Iterator[BinaryIO]:
    """Open a temporary file that replaces ``dest`` only if the block succeeds.

    ``needed`` (bytes about to be written) only makes a full-disk message more precise.
    """
    dest = Path(dest)
    parent = _parent(dest)
    with output_error(f"cannot write to {str(parent)!r}", _WRITABLE, folder=parent):
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=parent)
    try:
        with disk_full_as_error(parent, needed):
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
def atomic_dir(
    dest: str | os.PathLike[str],
    *,
    replace: bool = False,
    scratch: str | os.PathLike[str] | None = None,
    needed: int | None = None,
) -> Iterator[Path]:
    """Yield an empty temporary folder that becomes ``dest`` if the block succeeds.

    With ``replace`` an existing ``dest`` is swapped out; otherwise its existence is an
    error raised before any work is done. The temporary, and the old ``dest`` on its way
    out, live in ``scratch`` (default: ``dest``'s folder), which must be on ``dest``'s
    filesystem; each gets a fresh name, so no leftover of another run can block the swap.
    Callers that replace a ``dest`` others may replace too hold a lock around the block.
    """
    dest = Path(dest)
    if dest.exists() and not replace:
        raise OutputError(
            f"{str(dest)!r} already exists", hint="Remove it or choose another output folder."
        )
    parent = _parent(dest)
    room = Path(scratch) if scratch is not None else parent
    with output_error(f"cannot write to {str(room)!r}", _WRITABLE, folder=room):
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=room))
    try:
        with disk_full_as_error(parent, needed):
            yield tmp
            install_dir(tmp, dest, replace=replace, scratch=room)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def install_dir(tree: Path, dest: Path, *, replace: bool, scratch: Path) -> None:
    """Rename the finished ``tree`` to ``dest``, swapping an existing ``dest`` out if ``replace``.

    ``tree`` and ``scratch`` are on ``dest``'s filesystem. The old tree goes to a fresh
    folder in ``scratch`` (rename() may replace an empty folder) and is deleted after the
    swap, so no leftover of another run can block it; if the swap fails half-way, the old
    tree is put back.
    """
    os.chmod(tree, 0o755)
    old: Path | None = None
    try:
        if replace and dest.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".old", dir=scratch))
            os.replace(dest, old)
        os.replace(tree, dest)
    except BaseException:
        if old is not None and not os.path.lexists(dest):
            os.replace(old, dest)
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def copy_tree(
    src: Path, dest: Path, *, needed: int | None = None, skip: tuple[str, ...] = ()
) -> None:
    """Copy a tree (symlinks as links, modes kept, times not) into ``dest``, which may exist.

    Entries named in ``skip`` are left out wherever they are (``.git``). Stops at the first
    failure with one vgpubuild error instead of shutil's list of every file that failed: a
    full disk says so once, with the space the tree needs when ``needed`` is known.
    """

    what = f"cannot copy {str(src)!r} to {str(dest)!r}"

    def copy(s: str, d: str) -> None:
        with output_error(what, _WRITABLE, folder=dest, needed=needed):
            shutil.copy(s, d)

    try:
        with output_error(what, _WRITABLE, folder=dest, needed=needed):
            shutil.copytree(
                src,
                dest,
                symlinks=True,
                dirs_exist_ok=True,
                copy_function=copy,
                ignore=shutil.ignore_patterns(*skip) if skip else None,
            )
    except shutil.Error as exc:  # a folder's times or modes that could not be copied
        _src, where, reason = exc.args[0][0]
        raise OutputError(f"cannot copy to {where!r}: {reason}", hint=_WRITABLE) from None
