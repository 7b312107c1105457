"""The vGPU-Unlock-patcher ("VUP") stage: get a trusted patcher, run ``patch.sh``, judge it.

``patch.sh`` is forgiving in ways a reproducible build cannot be: an unknown option is only
printed, a patch that fails on ``kernel/`` is reported and ignored, and a version mismatch
shows up as "package not found" after minutes of work. So everything that can be checked is
checked *before* it runs (patcher NAR hash, GNRL/VGPU/GRID lines against the release,
option names for the patcher's branch, every external tool), and its result is judged
*after* (exit code, failed hunks in its output, ``*.rej`` files, the output folder).

The patcher comes from a folder (``--patcher DIR``, verified against the catalog's NAR hash)
or from GitHub archive tarballs of VUP and its ``unlock`` submodule, assembled the way the
catalog hash was formed (DOMAIN.md section 2) and cached by that hash. It runs from a staged
copy with the .run files beside it, in a clean environment, with its output streamed to the
log and kept as a build log.

Target and option mapping follow the NixOS module vgpu4nixos, so a config copied from it
builds the same driver.
"""

from __future__ import annotations

import collections
import contextlib
import difflib
import os
import re
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

from vgpubuild import log
from vgpubuild.cache import Cache
from vgpubuild.catalog import PatcherInfo, Release
from vgpubuild.errors import PatcherError, ToolMissingError, UsageError
from vgpubuild.fetch import FetchOptions, download
from vgpubuild.nixhash import Hash
from vgpubuild.targets import get_target
from vgpubuild.unpack import extract_tarball
from vgpubuild.verify import Pinned

GPL_FLAGS = ("--enable-nvidia-gpl-for-experimenting", "--force-nvidia-gpl-I-know-it-is-wrong")
"""Added unless ``doNotForceGPLLicense`` (vgpu4nixos's default is to add them)."""

_COMMON_OPTIONS = frozenset(
    {
        "--no-klogtrace",
        "--no-libs-patch",
        "--no-testsign",
        "--create-cert",
        "--spoof-devid",
        "--repack",
        "--force-nvidia-gpl-I-know-it-is-wrong",
        "--enable-nvidia-gpl-for-experimenting",
        "--test-dmabuf-export",
        "--envy-probes",
    }
)
KNOWN_OPTIONS: dict[str, frozenset[str]] = {
    "535": _COMMON_OPTIONS,
    "550": _COMMON_OPTIONS | {"--nvoss", "--nvoss-debug", "--remap-p2v"},
}
"""Options ``patch.sh`` understands, by driver series (the host driver's major version)."""

_NOT_PINNED = "the tree's NAR hash is not the one the catalog pins"
_LINUX = "NVIDIA-Linux-x86_64-"
_EXPECT_LINE = re.compile(r'^(GNRL|VGPU|GRID|WSYS)=["\']?([^"\'\s]+)["\']?\s*(?:#.*)?$')
_EXPECT_SCAN_LINES = 100
_FAILED_LINE = re.compile(r"FAILED|saving rejects to file|NOT APPLIED")

_BASE_TOOLS: tuple[tuple[str, str], ...] = (
    ("bash", "bash"),
    ("sh", "dash or bash"),
    *((tool, "coreutils") for tool in ("cat", "chmod", "cp", "dirname", "head", "ls", "mkdir")),
    *((tool, "coreutils") for tool in ("mv", "rm", "sha256sum", "sort", "tail", "tr", "wc")),
    ("find", "findutils"),
    ("grep", "grep"),
    ("sed", "sed"),
    ("awk", "gawk"),
    ("patch", "GNU patch"),
    ("tar", "tar"),
    ("xz", "xz-utils"),
    ("gzip", "gzip"),
    ("patchelf", "patchelf"),
)
_EXTRA_TOOLS: dict[str, tuple[tuple[str, str], ...]] = {
    "--repack": (("zstd", "zstd"),),
    "--nvoss": (("gcc", "gcc"), ("make", "make")),
    "--nvoss-debug": (("gcc", "gcc"), ("make", "make")),
}
_WSYS_TOOLS: tuple[tuple[str, str], ...] = (
    ("7z", "p7zip-full"),
    ("msexpand", "mscompress"),
    ("mono", "mono-runtime"),
    ("osslsigncode", "osslsigncode"),
)


def _series(release: Release) -> str:
    return release.host_version.split(".", 1)[0]


def require_patcher(release: Release) -> PatcherInfo:
    """The release's patcher facts; an error when vGPU-Unlock-patcher does not support it."""
    if release.patcher is None:
        raise PatcherError(
            f"release {release.version} has no vGPU-Unlock-patcher support in the catalog",
            hint="Pick a release that has it (vgpubuild releases list), disable the patcher, "
            "or define the patcher for this release in your build config.",
        )
    return release.patcher


# ------------------------------------------------------------------ target and options


def validate_options(options: Iterable[str], series: str) -> None:
    """Refuse any option ``patch.sh`` of driver series ``series`` does not know.

    patch.sh itself only prints ``Unknown option X`` and carries on, building something
    other than what was asked for; this stops before it runs.
    """
    known = KNOWN_OPTIONS.get(series)
    if known is None:
        newest = max(KNOWN_OPTIONS, key=int)
        log.get_logger(stage="patcher").warning(
            "unknown driver series; checking options against the newest known",
            series=series,
            using=newest,
        )
        known = KNOWN_OPTIONS[newest]
    for option in options:
        if not option.startswith("--"):
            raise UsageError(
                f"extra patcher option {option!r} does not start with '--'",
                hint="patch.sh would take it as the target; give the target with --target.",
            )
        if option not in known:
            near = difflib.get_close_matches(option, sorted(known), n=1)
            hint = f"Did you mean {near[0]!r}? " if near else ""
            raise UsageError(
                f"patch.sh of the {series}.x series does not know the option {option!r}",
                hint=hint + "Known: " + " ".join(sorted(known)) + ".",
            )


def patch_args(
    target: str,
    do_not_force_gpl: bool,
    remap_p2v: bool,
    extra: Sequence[str],
    release: Release,
) -> list[str]:
    """The ``patch.sh`` command line after ``patch.sh``, mapped as vgpu4nixos maps it."""
    require_patcher(release)
    checked = get_target(target)
    args: list[str] = [] if do_not_force_gpl else list(GPL_FLAGS)
    if remap_p2v:
        if release.grid_series != "17":
            raise UsageError(
                f"--remap-p2v works only on 17.x releases, not on {release.version}",
                hint="Drop --remap-p2v (remapP40ProfilesToV100D) or pick a 17.x release.",
            )
        args.append("--remap-p2v")
    validate_options(extra, _series(release))
    args.extend(extra)
    args.append(checked.value)
    return args


# -------------------------------------------------------------------------- tools


def check_tools(target: str, args: Sequence[str] = (), search_path: str | None = None) -> str:
    """Find every program ``patch.sh`` will call for ``target`` and ``args``; return a PATH.

    The PATH returned holds only the folders where those programs were found, so the run
    sees no stray user tools. Every missing program is named at once.
    """
    search = os.environ.get("PATH", os.defpath) if search_path is None else search_path
    needed = list(_WSYS_TOOLS if target == "wsys" else ())
    needed += _BASE_TOOLS
    for option in args:
        needed += _EXTRA_TOOLS.get(option, ())
    folders: list[str] = []
    missing: dict[str, str] = {}
    for tool, package in needed:
        found = shutil.which(tool, path=search)
        if found is None:
            missing[tool] = package
        elif (folder := os.path.dirname(found)) not in folders:
            folders.append(folder)
    if missing:
        names = ", ".join(f"{tool} ({package})" for tool, package in missing.items())
        raise ToolMissingError(
            f"patch.sh needs programs that are not on PATH: {names}",
            hint="Install them (the package is in brackets) and run again.",
        )
    return os.pathsep.join(folders)


# --------------------------------------------------------------------- expectations


def read_expectations(patch_sh: str | os.PathLike[str]) -> dict[str, str]:
    """The GNRL/VGPU/GRID (and WSYS, when present) lines near the top of ``patch.sh``."""
    patch_sh = Path(patch_sh)
    found: dict[str, str] = {}
    try:
        with patch_sh.open(encoding="utf-8", errors="replace") as f:
            for _, line in zip(range(_EXPECT_SCAN_LINES), f, strict=False):
                if (m := _EXPECT_LINE.match(line.strip())) and m.group(1) not in found:
                    found[m.group(1)] = m.group(2)
    except OSError as exc:
        raise PatcherError(
            f"cannot read {str(patch_sh)!r}: {exc.strerror}",
            hint="Point --patcher at a vGPU-Unlock-patcher checkout (the folder with patch.sh).",
        ) from None
    lacking = [key for key in ("GNRL", "VGPU", "GRID") if key not in found]
    if lacking:
        raise PatcherError(
            f"{patch_sh.name} has no {'/'.join(lacking)} line near its top",
            hint="This does not look like vGPU-Unlock-patcher's patch.sh; check --patcher.",
        )
    return found


def check_expectations(patch_sh: str | os.PathLike[str], release: Release) -> dict[str, str]:
    """Stop when patch.sh was written for other driver versions than ``release``'s."""
    found = read_expectations(patch_sh)
    wanted = {
        "GNRL": (f"{_LINUX}{release.general_version}", "general"),
        "VGPU": (f"{_LINUX}{release.host_version}-vgpu-kvm", "host"),
        "GRID": (f"{_LINUX}{release.guest_version}-grid", "guest"),
    }
    for key, (name, role) in wanted.items():
        if found[key] != name:
            raise PatcherError(
                f"patch.sh expects {key}={found[key]} but release {release.version} has the "
                f"{role} driver {name}",
                hint="Use the patcher revision the catalog names for this release "
                "(or the release this patcher was written for).",
            )
    return found


# ----------------------------------------------------------------- getting a patcher


def stage_patcher(
    source_dir: str | os.PathLike[str],
    expected: Hash | None,
    unverified: bool,
    work_dir: str | os.PathLike[str] | None = None,
) -> Path:
    """Check a patcher folder (``--patcher DIR``) against the catalog; return what to run.

    The catalog hash covers the tree without ``.git``; a git checkout is therefore copied
    without its ``.git`` entries into ``work_dir`` first (required then). ``unverified``
    skips the hash check (``--patcher-unverified``) and says so in the log.
    """
    source = Path(source_dir).resolve()
    if not (source / "patch.sh").is_file():
        raise PatcherError(
            f"{str(source)!r} has no patch.sh",
            hint="Point --patcher at a vGPU-Unlock-patcher checkout (the folder with patch.sh).",
        )
    logger = log.get_logger(stage="patcher", patcher=str(source))
    if any(source.rglob(".git")):
        if work_dir is None:
            raise PatcherError(
                f"{str(source)!r} contains .git, which the catalog hash does not cover",
                hint="Export it without .git (git archive) or let the pipeline stage a copy.",
            )
        copy = Path(work_dir) / "patcher-src"
        shutil.copytree(source, copy, symlinks=True, ignore=shutil.ignore_patterns(".git"))
        source = copy
    if not (source / "unlock").is_dir() or not any((source / "unlock").iterdir()):
        logger.warning("the patcher's unlock/ folder is empty (submodule not fetched)")
    if unverified:
        logger.warning("using the patcher without checking its hash (--patcher-unverified)")
        return source
    if expected is None:
        raise PatcherError(
            "the catalog has no patcher hash to check this patcher against",
            hint="Add the patcher's sha256 to the release, or pass --patcher-unverified.",
        )
    got = Pinned(expected, f"patcher {str(source_dir)!r}").check_tree(
        source,
        note=_NOT_PINNED,
        hint="Check out the rev the catalog names with its unlock submodule (git submodule "
        "update --init), or pass --patcher-unverified to use this tree anyway.",
    )
    logger.info("patcher verified", nar_hash=got.sri)
    return source


def patcher_cache_dir(cache: Cache, expected: Hash) -> Path:
    """Where an assembled, verified patcher tree with NAR hash ``expected`` is kept."""
    return cache.root / "patchers" / expected.hex


def fetch_patcher(
    info: PatcherInfo,
    cache: Cache,
    options: FetchOptions,
    base_url: str = "https://github.com",
) -> Path:
    """The patcher tree of ``info``: from the cache, or downloaded, assembled and verified.

    Downloads ``{base_url}/{repo}/archive/{rev}.tar.gz`` for VUP and for its ``unlock``
    submodule, strips each top folder, fills ``unlock/``, and checks the NAR hash of the
    result against ``info.sha256``, which is how the catalog hash was made. Only a tree that
    verified is renamed into the cache.
    """
    final = patcher_cache_dir(cache, info.sha256)
    if (final / "patch.sh").is_file():
        return final
    base = base_url.rstrip("/")
    tarballs = []
    for repo, rev in ((info.repo, info.rev), (info.unlock_repo, info.unlock_rev)):
        name = f"{repo.rsplit('/', 1)[-1]}-{rev}.tar.gz"
        tarballs.append(download(f"{base}/{repo}/archive/{rev}.tar.gz", None, cache, options, name))
    final.parent.mkdir(parents=True, exist_ok=True)
    with cache.lock(f"patcher-{info.sha256.hex}"):
        if (final / "patch.sh").is_file():
            return final
        scratch = Path(tempfile.mkdtemp(prefix=".assemble.", dir=final.parent))
        try:
            tree = extract_tarball(tarballs[0], scratch / "tree")
            unlock = tree / "unlock"
            if unlock.is_dir() and any(unlock.iterdir()):
                raise PatcherError(
                    f"the {info.repo} archive already has files in unlock/",
                    hint="The catalog's repo/rev pair does not look like vGPU-Unlock-patcher.",
                )
            unlock.mkdir(exist_ok=True)
            extract_tarball(tarballs[1], unlock)
            subject = f"{info.repo} at {info.rev} with {info.unlock_repo} at {info.unlock_rev}"
            Pinned(info.sha256, subject).check_tree(
                tree,
                note=_NOT_PINNED,
                hint="The revs or the hash in the catalog entry are wrong, or the server sent "
                "other content; check the release definition.",
            )
            os.replace(tree, final)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    log.get_logger(stage="patcher").info("patcher assembled", rev=info.rev, path=str(final))
    return final


# ----------------------------------------------------------------------- running it


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
    target: str,
    args: Sequence[str],
    work_dir: str | os.PathLike[str],
    log_path: str | os.PathLike[str],
    search_path: str | None = None,
) -> Path:
    """Run ``bash patch.sh ARGS`` (``args`` from :func:`patch_args`, target last) and judge it.

    The patcher is copied to ``work_dir/patcher`` with the .run files beside ``patch.sh``,
    which then runs from there, as its README says, with only ``LC_ALL=C``, a checked
    ``PATH``, and ``HOME``/``TMPDIR`` inside ``work_dir``. Each output line goes to the log
    and to ``log_path``. Returns the ``<SOURCE>-patched`` folder; raises
    :class:`PatcherError` on a non-zero exit, failed hunks, ``*.rej`` files, or no output.
    """
    patcher_dir, work_dir, log_path = Path(patcher_dir), Path(work_dir), Path(log_path)
    if not args or args[-1] != target:
        raise UsageError("the patch.sh arguments must end with the target", hint="Use patch_args.")
    path = check_tools(target, args, search_path)
    expectations = read_expectations(patcher_dir / "patch.sh")
    staging = work_dir / "patcher"
    shutil.rmtree(staging, ignore_errors=True)
    _stage(patcher_dir, [Path(r) for r in run_files], staging)
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
    output = staging / get_target(target).output_name(expectations)
    if not output.is_dir():
        raise PatcherError(
            f"patch.sh {target} exited 0 but did not create {output.name}", hint=where
        )
    logger.info("patch.sh done", output=str(output))
    return output
