"""Getting a trusted vGPU-Unlock-patcher ("VUP") tree: a checked folder or the pinned rev.

The patcher comes from a folder (``--patcher DIR``, verified against the catalog's NAR
hash) or from GitHub archive tarballs of VUP and its ``unlock`` submodule, assembled the way
the catalog hash was formed (the tree with ``unlock/`` filled in, without ``.git``, with
``.gitignore`` and ``.gitmodules`` kept) and cached by that hash. Only a tree that
verified is ever used or cached.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from vgpubuild import log
from vgpubuild.atomic import copy_tree
from vgpubuild.cache import Cache
from vgpubuild.catalog import PatcherInfo, Release, get_release
from vgpubuild.errors import OfflineError, PatcherError, UsageError
from vgpubuild.fetch import FetchOptions, download
from vgpubuild.nixhash import Hash
from vgpubuild.patchercontract import Contract, read_contract
from vgpubuild.unpack import extract_tarball
from vgpubuild.verify import Pinned
from vgpubuild.vgpuconfig.vocabulary import DISABLED_SUBSYSTEM_VENDOR

_NOT_PINNED = "the tree's NAR hash is not the one the catalog pins"


def require_patcher(release: Release) -> PatcherInfo:
    """The release's patcher facts; an error when vGPU-Unlock-patcher does not support it."""
    if release.patcher is None:
        raise PatcherError(
            f"release {release.version} has no vGPU-Unlock-patcher support in the catalog",
            hint="vgpubuild patch always runs the patcher: pick a release that has it "
            '(vgpubuild releases list), or give this one a releases."X".patcher table in '
            "your build config (--config).",
        )
    return release.patcher


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
        copy_tree(source, copy, skip=(".git",))
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


def cached_patcher(info: PatcherInfo, cache: Cache) -> Path | None:
    """The assembled tree of ``info`` if the cache has it (it was verified when stored)."""
    final = patcher_cache_dir(cache, info.sha256)
    return final if (final / "patch.sh").is_file() else None


def require_cached_offline(info: PatcherInfo, cache: Cache, release: Release) -> None:
    """With ``--offline`` and no ``--patcher DIR``: fail now unless the tree is cached."""
    if cached_patcher(info, cache) is None:
        raise OfflineError(
            f"vGPU-Unlock-patcher at {info.rev[:12]} (release {release.version}) is not in the "
            "vgpubuild cache and --offline forbids downloading it",
            hint=f"Cache it once online with: vgpubuild fetch --release {release.version} (or "
            f"pass --patcher DIR: a checkout of {info.repo} at that rev with its unlock "
            "submodule)",
        )


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
    if (cached := cached_patcher(info, cache)) is not None:
        return cached
    final = patcher_cache_dir(cache, info.sha256)
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


def patcher_contract(
    release: str | None,
    patcher_dir: Path | None,
    cache: Cache,
    options: FetchOptions,
    releases: dict[str, Any] | None = None,
) -> Contract | None:
    """The contract of ``--patcher DIR`` or of ``--release X``'s catalog patcher.

    The release's patcher comes from the cache (fetched and verified the first time, as a
    build does). None when neither is given: the caller uses the newest branches' rules.
    """
    if patcher_dir is not None and release is not None:
        raise UsageError(
            "--release and --patcher both choose the clone rules; give one",
            hint="--patcher DIR reads them from that patch.sh, --release X from X's patcher.",
        )
    if patcher_dir is not None:
        return read_contract(Path(patcher_dir) / "patch.sh")
    if release is None:
        return None
    info = require_patcher(get_release(release, extra=releases))
    return read_contract(fetch_patcher(info, cache, options) / "patch.sh", info.branch)


def clone_rule(
    release: str | None,
    patcher_dir: Path | None,
    *,
    remap: bool = False,
    releases: dict[str, Any] | None = None,
) -> int | None:
    """The vendor id the chosen patch.sh's vcfgclone disables an existing card with (None:
    it only copies); the newest branches' 0x9999 when none is chosen. ``remap`` checks the
    branch has ``--remap-p2v``."""
    contract = patcher_contract(
        release, patcher_dir, Cache(), FetchOptions(progress=False), releases
    )
    if contract is None:
        return DISABLED_SUBSYSTEM_VENDOR
    if remap:
        contract.check_remap()
    return contract.clone_disables
