"""Running ``patch.sh`` and judging what it did.

It runs from a staged copy with the .run files beside it (as its README says), in a clean
environment, in its own process group (so an interrupted build stops it and everything it
started, and the run's owner record lets the next run stop it after a crash), with its output streamed to the log and kept as a build log. Its result is judged
*after*: exit code, failed hunks in its output, ``*.rej`` files, the output folder, because
a patch that fails on ``kernel/`` is reported and ignored by patch.sh itself.
"""

from __future__ import annotations

import collections
import contextlib
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from vgpubuild import log
from vgpubuild.atomic import copy_tree
from vgpubuild.errors import (
    DiskFullError,
    PatcherError,
    UsageError,
    VgpubuildError,
    output_error,
)
from vgpubuild.ownership import record_process_group
from vgpubuild.patchercontract import Contract
from vgpubuild.patchsh import check_tools, read_expectations
from vgpubuild.profiles.replay import snapshot_script

if TYPE_CHECKING:
    pass

_FAILED_LINE = re.compile(r"FAILED|saving rejects to file|NOT APPLIED")
_NO_SPACE_LINE = re.compile(r"No space left on device|Disk quota exceeded")
"""How GNU tools say a write failed for want of space (patch.sh runs with LC_ALL=C)."""

_FULL_BELOW = 1 << 20
"""Free bytes under which a failed patch.sh is blamed on the disk, whatever it printed."""


def _stage(patcher_dir: Path, run_files: Sequence[Path], staging: Path) -> None:
    copy_tree(patcher_dir, staging)
    # A patcher from the Nix store is read-only, its top folder included; patch.sh writes in it.
    for folder, _dirs, files in os.walk(staging):
        os.chmod(folder, os.stat(folder).st_mode | 0o200)
        for name in files:
            path = os.path.join(folder, name)
            if not os.path.islink(path):
                os.chmod(path, os.stat(path).st_mode | 0o200)
    for run in run_files:
        dest = staging / run.name
        try:
            os.link(run, dest)
        except OSError:
            what = f"cannot copy {run.name} to {str(staging)!r}"
            with output_error(what, folder=staging, needed=run.stat().st_size):
                shutil.copyfile(run, dest)


PARALLELISM_VARS = ("NIX_BUILD_CORES", "MAKEFLAGS", "ZSTD_NBTHREADS")
"""The only variables passed through: how many cores to use (Nix's builder sets them)."""


def _clean_env(path: str, work_dir: Path) -> dict[str, str]:
    home = work_dir / "home"
    tmp = work_dir / "tmp"
    home.mkdir(exist_ok=True)
    tmp.mkdir(exist_ok=True)
    env = {"PATH": path, "LC_ALL": "C", "LANG": "C", "HOME": str(home), "TMPDIR": str(tmp)}
    env.update({k: os.environ[k] for k in PARALLELISM_VARS if k in os.environ})
    return env


@dataclass
class _Output:
    """What of patch.sh's output its judgement needs: failed patches, the last lines, ENOSPC."""

    failed: list[str] = field(default_factory=list)
    tail: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=15))
    no_space: bool = False

    def take(self, line: str, logger: log.Logger) -> None:
        logger.info(line)
        self.tail.append(line)
        if _FAILED_LINE.search(line):
            self.failed.append(line)
        self.no_space = self.no_space or bool(_NO_SPACE_LINE.search(line))


def _nearly_full(folder: Path) -> bool:
    try:
        return shutil.disk_usage(folder).free < _FULL_BELOW
    except OSError:
        return False


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """End patch.sh and everything it started (it runs in its own process group)."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=5)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def run_patch(
    patcher_dir: str | os.PathLike[str],
    run_files: Sequence[str | os.PathLike[str]],
    args: Sequence[str],
    work_dir: str | os.PathLike[str],
    log_path: str | os.PathLike[str],
    contract: Contract,
    search_path: str | None = None,
    snapshot: Path | None = None,
) -> Path:
    """Run ``bash patch.sh ARGS`` (``args`` from :func:`patch_args`, the target last); judge it.

    The patcher is copied to ``work_dir/patcher`` with the .run files beside ``patch.sh``,
    which then runs from there, as its README says, with only ``LC_ALL=C``, a checked
    ``PATH``, and ``HOME``/``TMPDIR`` inside ``work_dir``. With ``snapshot``, the staged
    script copies its vgpuConfig.xml there at its first built-in vcfgclone line (for
    :mod:`vgpubuild.profiles.replay`). Each output line goes to the log and to ``log_path``.
    ``patch.sh`` leads a process group of its own, recorded in ``work_dir`` at once (so a
    later run can end it should this one be killed outright); any exception, a signal's
    included, ends the whole group.
    Returns the ``<SOURCE>-patched`` folder; raises :class:`DiskFullError` when the disk
    filled up, else :class:`PatcherError` on a non-zero exit, failed hunks, ``*.rej``
    files, or no output.
    """
    patcher_dir, work_dir, log_path = Path(patcher_dir), Path(work_dir), Path(log_path)
    if not args or args[-1].startswith("--"):
        raise UsageError("the patch.sh arguments must end with the target", hint="Use patch_args.")
    target = args[-1]
    path = check_tools(contract, target, args, search_path)
    expectations = read_expectations(patcher_dir / "patch.sh")
    staging = work_dir / "patcher"
    shutil.rmtree(staging, ignore_errors=True)
    _stage(patcher_dir, [Path(r) for r in run_files], staging)
    if snapshot is not None:
        snapshot_script(staging / "patch.sh", contract, snapshot)
    env = _clean_env(path, work_dir)
    logger = log.get_logger(stage="patch.sh", target=target)
    logger.info("running patch.sh", args=" ".join(args), cwd=str(staging))
    seen = _Output()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as build_log:
        proc = subprocess.Popen(
            ["bash", "patch.sh", *args],
            cwd=staging,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        assert proc.stdout is not None
        try:
            record_process_group(work_dir, proc.pid)
            for raw in proc.stdout:
                build_log.write(raw)
                build_log.flush()
                seen.take(raw.decode("utf-8", "replace").rstrip("\r\n"), logger)
            returncode = proc.wait()
        except BaseException:
            _stop(proc)
            raise
        finally:
            proc.stdout.close()
    where = f"The full output is in {log_path}."

    def failure(message: str) -> VgpubuildError:
        # A full disk makes tar, cp and patch fail in ways that look like a bad patcher.
        if seen.no_space or _nearly_full(work_dir):
            return DiskFullError(work_dir)
        return PatcherError(message, hint=where)

    failed = seen.failed
    if returncode != 0:
        shown = failed[-3:] or list(seen.tail)[-3:]
        raise failure(f"patch.sh {target} failed with exit code {returncode}: " + " | ".join(shown))
    if failed:
        raise failure(f"patch.sh {target} reported failed patches: " + " | ".join(failed[:3]))
    rejects = sorted(str(p.relative_to(staging)) for p in staging.rglob("*.rej"))
    if rejects:
        raise failure(f"patch.sh {target} left rejected hunks: " + ", ".join(rejects[:5]))
    output = staging / contract.output_name(target, expectations)
    if not output.is_dir():
        raise failure(f"patch.sh {target} exited 0 but did not create {output.name}")
    logger.info("patch.sh done", output=str(output))
    return output
