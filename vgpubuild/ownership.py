"""Which run owns what inside ``--out``: folder locks, owner records, dead runs' leftovers.

Several vgpubuild processes may build into one ``--out`` at once, and any of them may die
without cleaning up (``SIGKILL``, a power cut). Three rules make that safe:

* the ``--out`` folder itself is locked (``flock`` on the folder, so no lock file is ever
  left there) while a run creates its work folder, removes dead runs' leftovers, or puts an
  artifact in place; the later run waits, briefly;
* every work folder is locked by its run for the run's whole life (``owner.json`` names the
  run's pid), and records each process group the run starts (``.process-group`` files). A
  work folder whose lock can be taken belongs to a dead run;
* the next run removes such a folder, after killing what is left of the process groups
  recorded in it (an orphaned ``patch.sh`` would keep writing into it). A group is killed only
  if one of its processes still works inside that folder, so a recycled number never
  matches an unrelated program.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from vgpubuild import log
from vgpubuild.errors import output_error

OWNER_RECORD = "owner.json"
"""The run's pid, for people looking at a work folder; the lock says whether it lives."""

PROCESS_GROUP_RECORD = ".process-group"
"""A process group a run started, in the folder it works in."""

_WRITABLE = "Choose an output folder you can write to."

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
"""The signals that end a run with a cleanup (each raises ``Interrupted`` in the CLI)."""


def _open_dir(path: Path) -> int:
    return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)


@contextlib.contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``folder`` itself (waits for the holder, creates nothing)."""
    with output_error(f"cannot open the folder {str(folder)!r}", _WRITABLE, folder=folder):
        fd = _open_dir(folder)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the only descriptor releases the lock


def _write_owner(folder: Path) -> None:
    (folder / OWNER_RECORD).write_text(json.dumps({"pid": os.getpid()}))


def record_process_group(folder: Path, pgid: int) -> None:
    """Note in ``folder`` (inside a work folder) a process group the run started.

    If the run dies outright, the next run ends what is left of that group before it
    removes the folder (:func:`end_leftover_processes`).
    """
    with output_error(f"cannot write to {str(folder)!r}", _WRITABLE, folder=folder):
        (folder / PROCESS_GROUP_RECORD).write_text(str(pgid))


@contextlib.contextmanager
def owned_work_folder(out: Path, prefix: str) -> Iterator[Path]:
    """A fresh, locked work folder ``out/<prefix>XXXX``; dead runs' folders go first.

    The folder and everything in it are removed when the block ends, however it ends; the
    stop signals are held back meanwhile, so a second Ctrl-C cannot leave half of it.
    """
    with folder_lock(out):  # no other run judges this folder dead before it is locked
        remove_dead_work_folders(out, prefix)
        with output_error(f"cannot write to {str(out)!r}", _WRITABLE, folder=out):
            path = Path(tempfile.mkdtemp(prefix=prefix, dir=out))
            fd = _open_dir(path)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # new and ours: cannot be held
    try:
        with output_error(f"cannot write to {str(out)!r}", _WRITABLE, folder=out):
            _write_owner(path)
        yield path
    finally:
        with signals_deferred():
            shutil.rmtree(path, ignore_errors=True)
            os.close(fd)


def remove_dead_work_folders(out: Path, prefix: str) -> list[Path]:
    """Remove the work folders in ``out`` whose runs are dead; the caller holds ``out``'s lock."""
    removed = []
    for entry in sorted(out.glob(f"{prefix}*")):
        try:
            fd = _open_dir(entry)
        except OSError:
            continue  # not a folder (or gone): not ours to judge
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                    continue  # its run is alive
                raise
            end_leftover_processes(entry)
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
        finally:
            os.close(fd)
    if removed:
        log.get_logger(stage="out").info(
            "removed work folders of runs that died", folders=[p.name for p in removed]
        )
    return removed


def end_leftover_processes(folder: Path, wait: float = 10.0) -> None:
    """Kill the process groups a dead run recorded that still work inside ``folder``."""
    groups = []
    for record in folder.rglob(PROCESS_GROUP_RECORD):
        with contextlib.suppress(OSError, ValueError):
            groups.append(int(record.read_text()))
    for pgid in groups:
        if pgid > 1 and _group_works_in(pgid, folder):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)
            deadline = time.monotonic() + wait
            while _live_members(pgid) and time.monotonic() < deadline:
                time.sleep(0.05)


def _processes() -> Iterator[tuple[int, int, str]]:
    """(pid, process group, state) of every process in /proc."""
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                stat = Path(f"/proc/{name}/stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            yield int(name), int(fields[2]), fields[0]


def _live_members(pgid: int) -> list[int]:
    """The group's processes that still run (a zombie has stopped; its parent reaps it)."""
    return [pid for pid, group, state in _processes() if group == pgid and state != "Z"]


def _group_works_in(pgid: int, folder: Path) -> bool:
    """Whether a process of the group has its working folder or TMPDIR inside ``folder``."""
    inside = str(folder.resolve())
    for pid in _live_members(pgid):
        with contextlib.suppress(OSError):
            cwd = os.readlink(f"/proc/{pid}/cwd")
            if cwd == inside or cwd.startswith(inside + "/"):
                return True
        with contextlib.suppress(OSError):
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            for var in env:
                if var.startswith(b"TMPDIR=") and var[7:].decode(errors="replace").startswith(
                    inside + "/"
                ):
                    return True
    return False


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold the stop signals back while cleaning up, so a second one cannot interrupt it."""
    try:
        old = signal.pthread_sigmask(signal.SIG_BLOCK, set(STOP_SIGNALS))
    except ValueError:  # not the main thread's interpreter state: nothing to defer
        yield
        return
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
