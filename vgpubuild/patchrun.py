"""Running ``patch.sh`` and judging what it did.

It runs from a staged copy with the .run files beside it (as its README says), in a clean
environment, in its own process group (so an interrupted build stops it and everything it
started), with its output streamed to the log and kept as a build log. Its result is judged
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
from pathlib import Path

from vgpubuild import log
from vgpubuild.errors import PatcherError, UsageError
from vgpubuild.patchercontract import Contract
from vgpubuild.patchsh import check_tools, read_expectations
from vgpubuild.profiles.replay import snapshot_script

_FAILED_LINE = re.compile(r"FAILED|saving rejects to file|NOT APPLIED")


def _stage(patcher_dir: Path, run_files: Sequence[Path], staging: Path) -> None:
    shutil.copytree(patcher_dir, staging, symlinks=True)
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
    Returns the ``<SOURCE>-patched`` folder; raises :class:`PatcherError` on a non-zero
    exit, failed hunks, ``*.rej`` files, or no output.
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
    failed: list[str] = []
    tail: collections.deque[str] = collections.deque(maxlen=15)
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
            for raw in proc.stdout:
                build_log.write(raw)
                build_log.flush()
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                logger.info(line)
                tail.append(line)
                if _FAILED_LINE.search(line):
                    failed.append(line)
            returncode = proc.wait()
        except BaseException:
            _stop(proc)
            raise
        finally:
            proc.stdout.close()
    where = f"The full output is in {log_path}."
    if returncode != 0:
        shown = failed[-3:] or list(tail)[-3:]
        raise PatcherError(
            f"patch.sh {target} failed with exit code {returncode}: " + " | ".join(shown),
            hint=where,
        )
    if failed:
        raise PatcherError(
            f"patch.sh {target} reported failed patches: " + " | ".join(failed[:3]),
            hint=where,
        )
    rejects = sorted(str(p.relative_to(staging)) for p in staging.rglob("*.rej"))
    if rejects:
        raise PatcherError(
            f"patch.sh {target} left rejected hunks: " + ", ".join(rejects[:5]), hint=where
        )
    output = staging / contract.output_name(target, expectations)
    if not output.is_dir():
        raise PatcherError(
            f"patch.sh {target} exited 0 but did not create {output.name}", hint=where
        )
    logger.info("patch.sh done", output=str(output))
    return output
