"""The whole build, one direction: config in, artifact out.

::

    resolve release, target, patch.sh options, tools        (cheap checks; fail fast)
    -> build key (every input's pinned hash + every setting) -> cached artifact? done
    -> patcher (verified tree) -> its GNRL/VGPU/GRID lines vs the release
    -> inputs (obtained verified) -> only the needed zip members -> .run checks
    -> patch.sh -> vgpuConfig.xml edits -> project patches/ + --patch files
    -> artifact (deterministic, manifest, NAR hash, store path) renamed into --out

All scratch work happens in a hidden folder inside ``--out`` (same filesystem, so the
patched tree is moved, never copied, and the final step is one ``rename``). Whatever goes
wrong, including Ctrl-C, that folder is removed and ``--out`` is left as it was.

The build key is a hash of the *pinned* input hashes and the settings, known before any
input is read: the same inputs and options give the earlier artifact at once, from the
vgpubuild cache, without re-reading hundreds of MB (they were verified when it was built).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import signal
import stat
import subprocess
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vgpubuild import __version__, log
from vgpubuild.artifact import (
    MANIFEST_NAME,
    ArtifactInfo,
    RepackedRun,
    finalise,
    normalise_tree,
    read_manifest,
)
from vgpubuild.artifact import (
    repack as repack_tree,
)
from vgpubuild.atomic import atomic_dir, atomic_file
from vgpubuild.cache import Cache
from vgpubuild.catalog import PatcherInfo, Release, get_release
from vgpubuild.config import BuildConfig
from vgpubuild.errors import (
    InputError,
    OutputError,
    PatcherError,
    UsageError,
    XmlConfigError,
)
from vgpubuild.fetch import FetchOptions
from vgpubuild.nar import nar_hash
from vgpubuild.nixhash import Hash, hash_file
from vgpubuild.sources import InputSpec
from vgpubuild.store import content_name

KEY_FORMAT = 1
"""Bumped when the key's material or the cache entry layout changes."""

_WORK_PREFIX = ".vgpubuild-work."

_GUEST_TARGETS = ("grid", "general", "wsys")
"""Targets whose tree has no vgpuConfig.xml (so no profile overrides or clones)."""


@dataclass(frozen=True)
class BuildResult:
    """What a build produced and where Nix will put it."""

    artifact: Path
    nar_hash: Hash
    nar_size: int
    store_path: str
    manifest: dict[str, Any]
    repacked: RepackedRun | None = None
    cached: bool = False
    """True when the artifact came from the input-keyed cache (nothing was rebuilt)."""
    build_log: Path | None = None

    @property
    def add_command(self) -> str:
        return ArtifactInfo(
            self.artifact, self.nar_hash, self.nar_size, self.store_path
        ).add_command

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` output of ``vgpubuild patch``."""
        data: dict[str, Any] = {
            "artifact": str(self.artifact),
            "nar_hash": self.nar_hash.sri,
            "nar_size": self.nar_size,
            "store_path": self.store_path,
            "add_command": self.add_command,
            "cached": self.cached,
            "build_key": self.manifest.get("build_key"),
            "build_log": str(self.build_log) if self.build_log else None,
            "repacked": None,
        }
        if self.repacked is not None:
            data["repacked"] = {
                "path": str(self.repacked.path),
                "sha256": self.repacked.flat_hash.sri,
                "store_path": self.repacked.store_path,
                "add_command": self.repacked.add_command,
            }
        return data


@dataclass(frozen=True)
class _Plan:
    """Everything decided before any input is read; the build key is a hash of it."""

    release: Release
    target: str
    args: list[str]
    search_path: str
    driver: InputSpec | None
    general: InputSpec | None
    patcher_hash: Hash
    patcher_verified: bool
    patcher_tree: Path | None
    """The checked ``--patcher DIR`` tree; None means the pinned rev is fetched."""
    patches: list[tuple[str, str, Path, Hash]]
    """(origin, shown name, path, sha256) in the order they are applied."""
    config: BuildConfig
    key: str = field(default="")


# ------------------------------------------------------------------------ the entry point


def build(
    config: BuildConfig,
    *,
    out: Path,
    cache: Cache,
    fetch_options: FetchOptions,
    patcher_dir: Path | None = None,
    patcher_unverified: bool = False,
    extra_patches: Sequence[Path] = (),
    repack: bool = False,
) -> BuildResult:
    """Run the pipeline for ``config`` and place the artifact folder inside ``out``.

    ``out`` receives ``out/<patched tree name>`` (and ``<name>.run`` with ``repack``);
    an earlier vgpubuild artifact of that name is replaced, anything else there is an error.
    ``patcher_dir`` is a local vGPU-Unlock-patcher tree (verified against the catalog's NAR
    hash unless ``patcher_unverified``); without it the pinned rev is fetched. ``extra_patches``
    are applied after ``config.patches``. On any failure nothing is left in ``out``.
    """
    logger = log.get_logger(stage="pipeline")
    out = Path(out).absolute()
    created = _prepare_out(out)
    work: Path | None = None
    succeeded = False
    try:
        work = _work_dir(out)
        plan = _plan(config, patcher_dir, patcher_unverified, extra_patches, work)
        logger.info("build key", key=plan.key, release=plan.release.version, target=plan.target)
        result = _from_cache(plan, out, cache, work, repack)
        if result is not None:
            logger.info(
                "same inputs as an earlier build: artifact reused", path=str(result.artifact)
            )
        else:
            result = _build(plan, out, cache, fetch_options, work, repack)
        succeeded = True
        return result
    finally:
        with _sigint_deferred():
            if work is not None:
                shutil.rmtree(work, ignore_errors=True)
            if created and not succeeded:
                with contextlib.suppress(OSError):
                    out.rmdir()  # only if still empty: it was ours


# ---------------------------------------------------------------------------- planning


def _plan(
    config: BuildConfig,
    patcher_dir: Path | None,
    patcher_unverified: bool,
    extra_patches: Sequence[Path],
    work: Path,
) -> _Plan:
    from vgpubuild.patcher import check_tools, choose_target, patch_args, require_patcher
    from vgpubuild.sources import driver_sources
    from vgpubuild.unpack import TARGET_INPUTS

    if not config.release:
        raise UsageError(
            "no release was given", hint="Pass --release (e.g. 17.3) or set release in --config."
        )
    if not config.enable:
        raise UsageError(
            "patcher.enable is false, so there is nothing for 'vgpubuild patch' to build",
            hint="Set patcher.enable = true (vgpubuild patch always runs vGPU-Unlock-patcher).",
        )
    release = get_release(config.release, extra=config.releases)
    target = choose_target(config.guest, config.merged, config.target)
    info = require_patcher(release)
    args = patch_args(
        target,
        config.options.doNotForceGPLLicense,
        config.options.remapP40ProfilesToV100D,
        config.options.extra,
        release,
    )
    search_path = check_tools(target, args)
    if (config.profileOverrides or config.copyVGPUProfiles) and target in _GUEST_TARGETS:
        raise UsageError(
            f"profile overrides and copied profiles need a host driver, but target {target!r} "
            "has no vgpuConfig.xml",
            hint="Drop them for guest builds, or build a host target (vgpu-kvm, general-merge).",
        )

    roles = TARGET_INPUTS[target]
    specs = driver_sources(
        release,
        _driver_source(config),
        guest=config.guest or ("guest" in roles and "host" not in roles),
        zip_path=config.zip,
        merged="general" in roles,
    )
    driver = specs[0] if set(roles) & {"host", "guest", "windows"} else None
    single_file = driver is not None and not driver.name.endswith(".zip")
    if single_file and (len(set(roles) - {"general"}) > 1 or "windows" in roles):
        raise UsageError(
            f"target {target!r} needs the GRID zip, but the driver source is a single .run",
            hint="Use the GRID zip (remove driverSource.sha256) or another target.",
        )
    general = specs[1] if "general" in roles else None

    staged: Path | None = None
    patcher_hash, verified = info.sha256, True
    if patcher_dir is not None:
        from vgpubuild.patcher import stage_patcher

        expected = None if patcher_unverified else info.sha256
        staged = stage_patcher(patcher_dir, expected, patcher_unverified, work_dir=work)
        if patcher_unverified:
            patcher_hash, verified = nar_hash(staged), False

    patches = _project_patches(release) + [
        ("user", content_name(p), p, _patch_hash(p)) for p in (*config.patches, *extra_patches)
    ]
    plan = _Plan(
        release=release,
        target=target,
        args=args,
        search_path=search_path,
        driver=driver,
        general=general,
        patcher_hash=patcher_hash,
        patcher_verified=verified,
        patcher_tree=staged,
        patches=patches,
        config=config,
    )
    return _with_key(plan)


def _driver_source(config: BuildConfig) -> dict[str, Any]:
    ds = config.driverSource
    return {
        "name": ds.name,
        "url": ds.url,
        "sha256": ds.sha256,
        "curlOptsList": list(ds.curlOptsList),
    }


def _patch_hash(path: Path) -> Hash:
    if not path.is_file():
        raise InputError(f"patch file {str(path)!r} does not exist", hint="Check the --patch path.")
    return hash_file(path)


def _project_patches(release: Release) -> list[tuple[str, str, Path, Hash]]:
    """The project's patch series for the release's GRID series (patches/<series>/series)."""
    from vgpubuild.resources import data_dir

    try:
        folder = data_dir("patches") / release.grid_series
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
            found.append(("project", f"{release.grid_series}/{name}", path, hash_file(path)))
    return found


def _release_facts(r: Release) -> dict[str, str]:
    """The release as the cache key and the manifest both record it."""
    return {
        "version": r.version,
        "host_version": r.host_version,
        "guest_version": r.guest_version,
        "general_version": r.general_version,
    }


def _key_material(plan: _Plan) -> dict[str, Any]:
    r = plan.release
    cfg = plan.config
    return {
        "format": KEY_FORMAT,
        "vgpubuild": __version__,
        "release": _release_facts(r),
        "inputs": [
            {"name": s.name, "sha256": s.sha256.sri} for s in (plan.driver, plan.general) if s
        ],
        "patcher": {"sha256": plan.patcher_hash.sri, "verified": plan.patcher_verified},
        "target": plan.target,
        "patch_sh_args": plan.args,
        "copyVGPUProfiles": cfg.copyVGPUProfiles,
        "profileOverrides": cfg.profileOverrides,
        "patches": [{"origin": o, "name": n, "sha256": h.sri} for o, n, _, h in plan.patches],
    }


def _with_key(plan: _Plan) -> _Plan:
    material = json.dumps(_key_material(plan), sort_keys=True, separators=(",", ":"))
    return dataclasses.replace(plan, key=hashlib.sha256(material.encode()).hexdigest())


# ------------------------------------------------------------------------- output folder


def _prepare_out(out: Path) -> bool:
    """Make sure ``out`` is a folder we can write to; True when this call created it."""
    if out.exists() and not out.is_dir():
        raise OutputError(
            f"--out {str(out)!r} exists and is not a folder", hint="Choose a folder for --out."
        )
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(
            f"cannot create the output folder {str(out)!r}: {exc.strerror}",
            hint="Choose an output folder you can write to.",
        ) from None
    return created


def _work_dir(out: Path) -> Path:
    try:
        return Path(tempfile.mkdtemp(prefix=_WORK_PREFIX, dir=out))
    except OSError as exc:
        raise OutputError(
            f"cannot write to the output folder {str(out)!r}: {exc.strerror}",
            hint="Choose an output folder you can write to.",
        ) from None


def _check_dest(dest: Path) -> bool:
    """True when ``dest`` holds an earlier vgpubuild artifact (to replace); error if foreign."""
    if not os.path.lexists(dest):
        return False
    if dest.is_dir() and not dest.is_symlink() and read_manifest(dest) is not None:
        return True
    raise OutputError(
        f"{str(dest)!r} already exists and is not a vgpubuild artifact",
        hint="Move it away or choose another --out folder.",
    )


@contextlib.contextmanager
def _sigint_deferred() -> Iterator[None]:
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


# --------------------------------------------------------------------------------- cache


def _entry(cache: Cache, key: str) -> Path:
    return cache.root / "artifacts" / key


def _from_cache(
    plan: _Plan, out: Path, cache: Cache, work: Path, repack: bool
) -> BuildResult | None:
    entry = _entry(cache, plan.key)
    try:
        record = json.loads((entry / "result.json").read_text(encoding="utf-8"))
        tree = entry / record["name"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not (tree / MANIFEST_NAME).is_file():
        return None
    name = record["name"]
    dest = out / name
    repacked = None
    if _still_placed(entry, dest):
        # The artifact this cache entry put here is untouched: nothing to copy.
        run = out / f"{name}.run"
        if repack and _still_placed(entry, run):
            repacked = _describe_run(run)
        elif repack:
            repacked = _repack(plan, dest, work, name, entry)
    else:
        replace_old = _check_dest(dest)
        with atomic_dir(dest, replace=replace_old) as tmp:
            shutil.copytree(tree, tmp, symlinks=True, dirs_exist_ok=True, copy_function=shutil.copy)
            normalise_tree(tmp)
            if repack:
                repacked = _repack(plan, tmp, work, name, entry)
    repacked = _move_run(repacked, out)
    _remember_placement(entry, dest, repacked)
    return BuildResult(
        artifact=dest,
        nar_hash=Hash.parse(record["nar_hash"]),
        nar_size=int(record["nar_size"]),
        store_path=record["store_path"],
        manifest=record["manifest"],
        repacked=repacked,
        cached=True,
    )


def _fingerprint(path: Path) -> str:
    """Identity of a placed file or tree: any write, chmod, rename or swap changes it.

    Inode numbers and change times (ctime, which no user call can set back) of every entry;
    a folder's own times change when an entry is added or removed. Only ``stat`` calls, so a
    driver-sized tree is checked in milliseconds instead of being hashed or copied again.
    """
    digest = hashlib.sha256()

    def visit(p: str, rel: str) -> None:
        st = os.lstat(p)
        digest.update(
            f"{rel}\0{st.st_ino}\0{st.st_mode}\0{st.st_size}\0{st.st_mtime_ns}\0"
            f"{st.st_ctime_ns}\n".encode(errors="surrogateescape")
        )
        if stat.S_ISDIR(st.st_mode):
            for name in sorted(os.listdir(p)):
                visit(os.path.join(p, name), f"{rel}/{name}")

    visit(str(path), "")
    return digest.hexdigest()


def _still_placed(entry: Path, dest: Path) -> bool:
    try:
        placed = json.loads((entry / "placed.json").read_text(encoding="utf-8"))
        return bool(placed.get(str(dest)) == _fingerprint(dest))
    except (OSError, ValueError, AttributeError):
        return False


def _remember_placement(entry: Path, dest: Path, run: RepackedRun | None) -> None:
    """Note what this entry put at ``dest`` (best effort: a miss only costs a copy)."""
    try:
        placed = json.loads((entry / "placed.json").read_text(encoding="utf-8"))
        if not isinstance(placed, dict):
            placed = {}
    except (OSError, ValueError):
        placed = {}
    try:
        placed[str(dest)] = _fingerprint(dest)
        if run is not None:
            placed[str(run.path)] = _fingerprint(run.path)
        with atomic_file(entry / "placed.json") as f:
            f.write(json.dumps(placed, sort_keys=True, indent=1).encode())
    except (OSError, OutputError):
        pass


def _describe_run(path: Path) -> RepackedRun:
    from vgpubuild.store import fixed_output_path

    digest = hash_file(path)
    return RepackedRun(path, digest, fixed_output_path(digest, path.name, "flat"))


def _store_in_cache(
    cache: Cache, key: str, tree: Path, info: ArtifactInfo, name: str, manifest: Mapping[str, Any]
) -> None:
    """Keep a copy of the artifact under its key; best effort (a failure only logs)."""
    entry = _entry(cache, key)
    record = {
        "name": name,
        "nar_hash": info.nar_hash.sri,
        "nar_size": info.nar_size,
        "store_path": info.store_path,
        "manifest": manifest,
    }
    try:
        if entry.exists():
            return
        with atomic_dir(entry) as tmp:
            shutil.copytree(tree, tmp / name, symlinks=True, copy_function=shutil.copy)
            with atomic_file(tmp / "result.json") as f:
                f.write(json.dumps(record, sort_keys=True, indent=2).encode())
    except (OSError, OutputError) as exc:
        log.get_logger(stage="cache").warning("could not cache the artifact", error=str(exc))


def _repack(plan: _Plan, tree: Path, work: Path, name: str, entry: Path) -> RepackedRun:
    """Write ``<name>.run`` into ``work`` (a copy of the cached one when there is one)."""
    made = work / f"{name}.run"
    cached = entry / made.name
    if cached.is_file():
        shutil.copyfile(cached, made)
        return _describe_run(made)
    result = repack_tree(tree, made, version=plan.release.host_version)
    if entry.is_dir():
        with contextlib.suppress(OSError):
            shutil.copyfile(made, cached)
    return result


def _move_run(repacked: RepackedRun | None, out: Path) -> RepackedRun | None:
    """Rename a .run made in the work folder into ``out`` (after the tree is in place)."""
    if repacked is None:
        return None
    final = out / repacked.path.name
    os.chmod(repacked.path, 0o755)
    os.replace(repacked.path, final)
    return RepackedRun(final, repacked.flat_hash, repacked.store_path)


# --------------------------------------------------------------------------------- build


def _build(
    plan: _Plan,
    out: Path,
    cache: Cache,
    fetch_options: FetchOptions,
    work: Path,
    repack: bool,
) -> BuildResult:
    from vgpubuild.patcher import (
        check_expectations,
        fetch_patcher,
        output_name,
        run_patch,
    )

    logger = log.get_logger(stage="pipeline")
    release = plan.release
    info = release.patcher
    assert info is not None  # _plan required it

    # The patcher first: it is small, and a wrong one should stop us before 500 MB move.
    pdir = plan.patcher_tree or fetch_patcher(info, cache, fetch_options)
    expectations = check_expectations(pdir / "patch.sh", release)
    name = output_name(plan.target, expectations)
    dest = out / name
    replace_old = _check_dest(dest)

    inputs_dir = work / "inputs"
    inputs_dir.mkdir()
    run_files, input_records = _inputs(plan, cache, fetch_options, inputs_dir)

    log_path = cache.root / "logs" / f"{plan.key[:16]}-{plan.target}.log"
    tree = run_patch(
        pdir,
        run_files,
        plan.target,
        plan.args,
        work / "run",
        log_path,
        search_path=plan.search_path,
    )
    changes = _edit_vgpuconfig(plan, tree)
    _apply_patches(plan, tree)

    manifest = _manifest(plan, info, input_records, changes)
    repacked: RepackedRun | None = None
    with atomic_dir(dest, replace=replace_old) as tmp:
        for child in tree.iterdir():
            os.rename(child, tmp / child.name)
        artifact = finalise(tmp, manifest, name=name, build_dirs=[work, out])
        _store_in_cache(cache, plan.key, tmp, artifact, name, manifest)
        if repack:
            repacked = _repack(plan, tmp, work, name, _entry(cache, plan.key))
    repacked = _move_run(repacked, out)
    if _entry(cache, plan.key).is_dir():
        _remember_placement(_entry(cache, plan.key), dest, repacked)
    logger.info("artifact ready", path=str(dest), nar_hash=artifact.nar_hash.sri)
    return BuildResult(
        artifact=dest,
        nar_hash=artifact.nar_hash,
        nar_size=artifact.nar_size,
        store_path=artifact.store_path,
        manifest=manifest,
        repacked=repacked,
        cached=False,
        build_log=log_path,
    )


def _inputs(
    plan: _Plan, cache: Cache, fetch_options: FetchOptions, inputs_dir: Path
) -> tuple[list[Path], list[dict[str, Any]]]:
    """Obtain the verified inputs and lay out the .run files under the names patch.sh wants."""
    from vgpubuild.runfile import check_run
    from vgpubuild.sources import obtain
    from vgpubuild.unpack import TARGET_INPUTS, extract_members, zip_members

    release = plan.release
    roles = TARGET_INPUTS[plan.target]
    wanted = {
        "host": (release.host_run_name, release.host_version),
        "guest": (release.guest_run_name, release.guest_version),
        "general": (release.general_run_name, release.general_version),
    }
    runs: list[Path] = []
    records: list[dict[str, Any]] = []
    if plan.driver is not None:
        path = obtain(plan.driver, cache, fetch_options)
        records.append({"name": plan.driver.name, "sha256": plan.driver.sha256.sri})
        if plan.driver.name.endswith(".zip"):
            members = zip_members(release, plan.target)
            got = extract_members(path, dict.fromkeys(members, inputs_dir), work_dir=inputs_dir)
            for file in got.values():
                records.append(
                    {"name": file.name, "from": plan.driver.name, "sha256": hash_file(file).sri}
                )
                runs.append(file)  # the Windows .exe too: wsys finds it beside patch.sh
        else:
            role = "guest" if "guest" in roles and "host" not in roles else "host"
            runs.append(_link(path, inputs_dir / wanted[role][0]))
    if plan.general is not None:
        path = obtain(plan.general, cache, fetch_options)
        records.append({"name": plan.general.name, "sha256": plan.general.sha256.sri})
        runs.append(_link(path, inputs_dir / wanted["general"][0]))
    versions = {name: version for name, version in wanted.values()}
    for run in runs:
        if run.name.endswith(".run"):
            check_run(run, versions.get(run.name))
    return runs, records


def _link(src: Path, dest: Path) -> Path:
    """Give an input the file name patch.sh looks for, without copying its bytes."""
    if src.name == dest.name:
        return src
    os.symlink(src.resolve(), dest)
    return dest


def _edit_vgpuconfig(plan: _Plan, tree: Path) -> list[str]:
    from vgpubuild.vgpuconfig import apply_build_edits

    cfg = plan.config
    if not (cfg.profileOverrides or cfg.copyVGPUProfiles):
        return []
    xml = tree / "vgpuConfig.xml"
    if not xml.is_file():
        raise XmlConfigError(
            f"the patched tree {tree.name} has no vgpuConfig.xml to apply overrides to",
            hint="Profile overrides and copied profiles apply to host targets only.",
        )
    # remapP40ProfilesToV100D went to patch.sh as --remap-p2v, as vgpu4nixos does.
    return apply_build_edits(
        xml, overrides=cfg.profileOverrides, clones=cfg.copyVGPUProfiles, remap_p2v=False
    )


def _apply_patches(plan: _Plan, tree: Path) -> None:
    """Apply the project's series and the user's patches with GNU patch; a reject fails."""
    logger = log.get_logger(stage="patches")
    env = {"PATH": plan.search_path, "LC_ALL": "C"}
    for origin, shown, path, _digest in plan.patches:
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
                str(path.resolve()),
            ],
            env=env,
            capture_output=True,
            check=False,
        )
        output = (proc.stdout + proc.stderr).decode("utf-8", "replace").strip()
        for line in output.splitlines():
            logger.info(line, patch=shown)
        rejects = sorted(str(p.relative_to(tree)) for p in tree.rglob("*.rej"))
        if proc.returncode != 0 or rejects:
            detail = " | ".join(output.splitlines()[-3:]) or f"exit code {proc.returncode}"
            raise PatcherError(
                f"{origin} patch {shown} does not apply to the patched tree: {detail}",
                hint="Update the patch for this release (it was written for other sources).",
            )
        logger.info("applied", patch=shown, origin=origin)


def _manifest(
    plan: _Plan, info: PatcherInfo, inputs: list[dict[str, Any]], changes: list[str]
) -> dict[str, Any]:
    cfg = plan.config
    r = plan.release
    patcher: dict[str, Any] = {"sha256": plan.patcher_hash.sri, "verified": plan.patcher_verified}
    if plan.patcher_verified:
        patcher.update(
            repo=info.repo, rev=info.rev, unlock_repo=info.unlock_repo, unlock_rev=info.unlock_rev
        )
    return {
        "build_key": plan.key,
        "format": KEY_FORMAT,
        "vgpubuild": __version__,
        "release": _release_facts(r),
        "target": plan.target,
        "options": {
            "doNotForceGPLLicense": cfg.options.doNotForceGPLLicense,
            "remapP40ProfilesToV100D": cfg.options.remapP40ProfilesToV100D,
            "extra": list(cfg.options.extra),
            "patch_sh_args": plan.args,
        },
        "inputs": inputs,
        "patcher": patcher,
        "copyVGPUProfiles": cfg.copyVGPUProfiles,
        "profileOverrides": cfg.profileOverrides,
        "vgpuconfig_changes": changes,
        "patches": [{"origin": o, "name": n, "sha256": h.sri} for o, n, _, h in plan.patches],
    }
