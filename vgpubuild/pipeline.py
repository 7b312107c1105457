"""The whole build, one direction: config in, artifact out.

::

    plan: release, target, patch.sh options, tools, pinned input hashes   (plan.py; fail fast)
    -> build key -> cached artifact? done                                   (artifactcache.py)
    -> the inputs only this machine has (the zip), offline: all of them     (sources.py)
    -> patcher (verified tree) -> its GNRL/VGPU/GRID lines vs the release   (patchertree.py)
    -> patch.sh's contract read; target, options, tools checked against it (patchsh.py)
    -> inputs (obtained verified) -> only the needed zip members -> .run checks
    -> override ids vs the host .run's own vgpuConfig.xml                   (releasexml.py)
    -> patch.sh run and judged                                              (patchrun.py)
    -> its clone list replayed and checked; user clones first, then it; overrides (profiles/)
    -> project patches/ + --patch files                                      (patchseries.py)
    -> artifact (deterministic, manifest, NAR hash, store path) renamed into --out

All scratch work happens in a hidden folder inside ``--out`` (:mod:`vgpubuild.outfolder`).
Whatever goes wrong, including Ctrl-C, SIGTERM or SIGHUP, that folder is removed and
``--out`` is left as it was; the folder of a run that was killed outright is removed by the
next run. Concurrent builds into one ``--out`` take turns only to put the artifact in place.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path

from vgpubuild import log, migration, releasexml
from vgpubuild.artifact import BuildResult, finalise
from vgpubuild.artifactcache import ArtifactCache
from vgpubuild.atomic import install_dir
from vgpubuild.cache import Cache
from vgpubuild.config import BuildConfig
from vgpubuild.errors import PatcherError, XmlConfigError
from vgpubuild.fetch import FetchOptions
from vgpubuild.nixhash import hash_file
from vgpubuild.outfolder import check_dest, move_run, placing, session
from vgpubuild.patchercontract import Contract, read_contract
from vgpubuild.patchertree import fetch_patcher, require_cached_offline
from vgpubuild.patchrun import run_patch
from vgpubuild.patchseries import apply_patches
from vgpubuild.patchsh import check_args, check_expectations, check_tools
from vgpubuild.plan import BuildPlan, resolve
from vgpubuild.profiles.overrides import apply_overrides
from vgpubuild.profiles.remap import remap_p2v_profiles
from vgpubuild.profiles.replay import builtin_steps, check_builtin, replay
from vgpubuild.runfile import check_run
from vgpubuild.sources import obtain, require_on_hand
from vgpubuild.unpack import extract_members, zip_members
from vgpubuild.vgpuconfig.model import VgpuConfig


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
    with session(out) as work:
        plan = resolve(
            config,
            patcher_dir=patcher_dir,
            patcher_unverified=patcher_unverified,
            extra_patches=extra_patches,
            work=work,
        )
        migration.warn(config)
        logger.info("build key", key=plan.key, release=plan.release.version, target=plan.target)
        artifacts = ArtifactCache(cache)
        version = plan.release.host_version if repack else None
        result = artifacts.place(plan.key, out, work, repack_version=version)
        if result is not None:
            logger.info(
                "same inputs as an earlier build: artifact reused", path=str(result.artifact)
            )
            return result
        return _build(plan, out, cache, fetch_options, work, repack)


def _build(
    plan: BuildPlan,
    out: Path,
    cache: Cache,
    fetch_options: FetchOptions,
    work: Path,
    repack: bool,
) -> BuildResult:
    logger = log.get_logger(stage="pipeline")
    release = plan.release

    # What only this machine can supply first (the GRID zip: given, cached or in the Nix
    # store), and with --offline everything: a missing one fails now, before any download.
    require_on_hand([s for s in (plan.driver, plan.general) if s], cache, fetch_options)
    if fetch_options.offline and plan.patcher_tree is None:
        require_cached_offline(plan.patcher, cache, release)
    # Then the patcher: it is small, and a wrong one should stop us before 500 MB move.
    pdir = plan.patcher_tree or fetch_patcher(plan.patcher, cache, fetch_options)
    expectations = check_expectations(pdir / "patch.sh", release)
    contract = read_contract(
        pdir / "patch.sh", plan.patcher.branch if plan.patcher_verified else None
    )
    check_args(contract, plan.patch_sh_args, clones=bool(plan.clones))
    search_path = check_tools(contract, plan.target, plan.patch_sh_args)
    name = contract.output_name(plan.target, expectations)
    dest = out / name
    check_dest(dest)  # fail fast; checked again when the artifact is put in place

    inputs_dir = work / "inputs"
    inputs_dir.mkdir()
    run_files, input_records = _inputs(plan, cache, fetch_options, inputs_dir)
    _check_override_ids(plan, run_files)

    log_path = cache.root / "logs" / f"{plan.key[:16]}-{plan.target}.log"
    snapshot = work / "vgpuConfig.before-clones.xml"
    instrument = plan.target.has_vgpuconfig and any(s.kind == "clone" for s in contract.steps)
    tree = run_patch(
        pdir,
        run_files,
        plan.patch_sh_args,
        work / "run",
        log_path,
        contract,
        search_path=search_path,
        snapshot=snapshot if instrument else None,
    )
    changes = _edit_vgpuconfig(plan, tree, contract, snapshot)
    apply_patches(plan.patches, tree, search_path)

    # Finished in the work folder; only the final renames happen under --out's lock.
    manifest = plan.manifest(input_records, changes)
    artifact = finalise(tree, manifest, name=name, build_dirs=[work, out])
    artifacts = ArtifactCache(cache)
    artifacts.store(plan.key, tree, name, artifact, manifest)
    repacked = (
        artifacts.repack(plan.key, tree, work, name, release.host_version) if repack else None
    )
    with placing(out, name) as replace_old:
        install_dir(tree, dest, replace=replace_old, scratch=work)
        repacked = move_run(repacked, out)
        artifacts.remember(plan.key, dest, repacked)
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
    plan: BuildPlan, cache: Cache, fetch_options: FetchOptions, inputs_dir: Path
) -> tuple[list[Path], list[dict[str, str]]]:
    """Obtain the verified inputs and lay out the .run files under the names patch.sh wants."""
    release = plan.release
    roles = plan.target.inputs
    wanted = {
        "host": (release.host_run_name, release.host_version),
        "guest": (release.guest_run_name, release.guest_version),
        "general": (release.general_run_name, release.general_version),
    }
    runs: list[Path] = []
    records: list[dict[str, str]] = []
    if plan.driver is not None:
        path = obtain(plan.driver, cache, fetch_options)
        records.append(plan.driver.record())
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
        records.append(plan.general.record())
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


def _edit_vgpuconfig(plan: BuildPlan, tree: Path, contract: Contract, snapshot: Path) -> list[str]:
    """Check patch.sh's clone list against vgpubuild's model, then make the user's edits.

    From the copy patch.sh made at its first built-in vcfgclone line: the built-in steps
    replayed must give what it wrote (every build); the user's clones then go first and the
    built-in steps after them, as vgpu4nixos orders them, and the overrides last. Without
    user edits patch.sh's file is left as it wrote it.
    """
    if not plan.target.has_vgpuconfig:
        return []
    xml = tree / "vgpuConfig.xml"
    if not xml.is_file():
        raise XmlConfigError(
            f"the patched tree {tree.name} has no vgpuConfig.xml to apply overrides to",
            hint="Profile overrides and copied profiles apply to host targets only.",
        )
    target, args = str(plan.target), plan.patch_sh_args[:-1]
    written = VgpuConfig.load(xml)
    if snapshot.is_file():
        base = snapshot.read_bytes()
        check_builtin(VgpuConfig.parse(base, str(snapshot)), written, contract, target, args)
    elif contract.steps and builtin_steps(contract, target, args):
        raise PatcherError(
            f"patch.sh of branch {contract.branch} ran its vgpuConfig.xml steps without "
            "passing its first vcfgclone line, so its clone list cannot be checked",
            hint="Report this patcher branch; vgpubuild cannot place copied profiles in it.",
        )
    else:
        base = written.original_bytes()
        contract = dataclasses.replace(contract, steps=())
    if not plan.edits_vgpuconfig:
        return []
    final = VgpuConfig.parse(base, f"the patched {tree.name}/vgpuConfig.xml")  # work goes
    changes = replay(final, contract, target, args, plan.clones)
    changes += apply_overrides(final, plan.overrides)
    final.save(xml)
    return changes


def _check_override_ids(plan: BuildPlan, run_files: list[Path]) -> None:
    """Every profile id an override names is in the release's vgpuConfig.xml, or stop now.

    Read from the host .run's payload before patch.sh runs (minutes of work otherwise
    wasted), with remap-p2v's renumbering applied when patch.sh will make it; the error
    names that .run, a file the user has, not a file in the work folder.
    """
    host = next((f for f in run_files if f.name == plan.release.host_run_name), None)
    if not plan.overrides or host is None:
        return
    config = releasexml.from_run(host, plan.release).parse()
    if plan.options.remapP40ProfilesToV100D:
        remap_p2v_profiles(config)
    for profile_id in sorted(plan.overrides):
        config.find_type(profile_id)
