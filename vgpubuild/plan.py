"""The build plan: a config resolved into one immutable description of the build.

Everything that decides what the artifact will be is settled here, before any input is
read: the release, the ``patch.sh`` target and command line, the pinned hash of every input,
the patcher's identity, the vgpuConfig.xml edits and the patches. :meth:`BuildPlan.description`
is that list of facts; the build key is its hash and the manifest is it plus what the build
learnt on the way (the members taken out of the zip, the changes made). Because both come
from one method, an input cannot be in the manifest yet missing from the key, where a
changed setting would silently return a stale cached artifact.

Where things are (the zip's path or URL, credentials, the folders tools were found in, a
staged patcher copy) is deliberately *not* described: the same content from another place
is the same build.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vgpubuild import __version__
from vgpubuild.catalog import PatcherInfo, Release, get_release
from vgpubuild.config import BuildConfig, PatcherOptions
from vgpubuild.errors import ConfigError, UsageError
from vgpubuild.nar import nar_hash
from vgpubuild.nixhash import Hash
from vgpubuild.patchertree import require_patcher, stage_patcher
from vgpubuild.patchseries import PatchRef, project_patches, user_patch
from vgpubuild.patchsh import patch_args
from vgpubuild.profiles.settings import CloneMap, OverrideMap
from vgpubuild.sources import InputSpec, driver_sources
from vgpubuild.targets import Target, choose_target

KEY_FORMAT = 2
"""Bumped when the description's shape or the cache entry layout changes."""

_LOCATION = {"location": True}
"""Field metadata: where something is, not what it is; left out of the description."""


@dataclass(frozen=True)
class BuildPlan:
    """Everything decided before any input is read. Build key and manifest derive from it."""

    release: Release
    patcher: PatcherInfo
    target: Target
    options: PatcherOptions
    patch_sh_args: tuple[str, ...]
    driver: InputSpec | None
    """The driver input (GRID zip or a single .run); None for the consumer-only target."""
    general: InputSpec | None
    """The consumer driver the merged targets combine with the vGPU one."""
    patcher_hash: Hash
    patcher_verified: bool
    clones: CloneMap
    """``copyVGPUProfiles``, parsed."""
    overrides: OverrideMap
    """``profileOverrides``, parsed."""
    patches: tuple[PatchRef, ...]
    """The project's series, then the user's patches, in the order they are applied."""
    patcher_tree: Path | None = field(default=None, metadata=_LOCATION)
    """The checked ``--patcher DIR`` tree; None means the pinned rev is fetched."""

    def description(self) -> dict[str, Any]:
        """Every fact that decides the artifact, as plain data (the manifest's core)."""
        patcher: dict[str, Any] = {
            "sha256": self.patcher_hash.sri,
            "verified": self.patcher_verified,
        }
        if self.patcher_verified:
            p = self.patcher
            patcher.update(
                repo=p.repo, rev=p.rev, unlock_repo=p.unlock_repo, unlock_rev=p.unlock_rev
            )
        r = self.release
        return {
            "format": KEY_FORMAT,
            "vgpubuild": __version__,
            "release": {
                "version": r.version,
                "host_version": r.host_version,
                "guest_version": r.guest_version,
                "general_version": r.general_version,
            },
            "target": self.target.value,
            "options": {
                "doNotForceGPLLicense": self.options.doNotForceGPLLicense,
                "remapP40ProfilesToV100D": self.options.remapP40ProfilesToV100D,
                "extra": list(self.options.extra),
                "patch_sh_args": list(self.patch_sh_args),
            },
            "inputs": [s.record() for s in (self.driver, self.general) if s is not None],
            "patcher": patcher,
            "copyVGPUProfiles": {str(new): str(src) for new, src in self.clones},
            "profileOverrides": {str(i): o.to_mapping() for i, o in sorted(self.overrides.items())},
            "patches": [p.record() for p in self.patches],
        }

    @functools.cached_property
    def key(self) -> str:
        """The build key: sha256 of the canonical JSON of :meth:`description`."""
        text = json.dumps(self.description(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def manifest(
        self, inputs: Sequence[Mapping[str, str]], changes: Sequence[str]
    ) -> dict[str, Any]:
        """The artifact's manifest: the description, its key, and what the build found.

        ``inputs`` are the obtained input records: the described ones, each followed by the
        files taken out of it (whose hashes follow from the described ones).
        """
        described = self.description()
        missing = [i for i in described["inputs"] if i not in inputs]
        if missing:  # pragma: no cover - the pipeline records every input it obtained
            raise AssertionError(f"inputs not recorded: {missing}")
        return {
            **described,
            "build_key": self.key,
            "inputs": [dict(i) for i in inputs],
            "vgpuconfig_changes": list(changes),
        }

    @property
    def edits_vgpuconfig(self) -> bool:
        return bool(self.overrides or self.clones)


def resolve(
    config: BuildConfig,
    *,
    patcher_dir: Path | None = None,
    patcher_unverified: bool = False,
    extra_patches: Sequence[Path] = (),
    work: Path | None = None,
) -> BuildPlan:
    """Check ``config`` and settle every decision (cheap checks only; no input is read).

    ``patcher_dir`` (``--patcher DIR``) is checked against the catalog's NAR hash now, and
    staged without ``.git`` into ``work`` when it is a checkout.
    """
    if not config.release:
        raise UsageError(
            "no release was given", hint="Pass --release (e.g. 17.3) or set release in --config."
        )
    if not config.enable:  # a setting of the build config, so a config error (exit 3)
        raise ConfigError(
            "patcher.enable is false, so there is nothing for 'vgpubuild patch' to build",
            hint="Set patcher.enable = true (vgpubuild patch always runs vGPU-Unlock-patcher).",
        )
    release = get_release(config.release, extra=config.releases)
    target = choose_target(config.guest, config.merged, config.target)
    info = require_patcher(release)
    opts = config.options
    args = patch_args(target, opts.doNotForceGPLLicense, opts.remapP40ProfilesToV100D, opts.extra)
    for option in opts.extra:
        if not option.startswith("--"):
            raise UsageError(
                f"extra patcher option {option!r} does not start with '--'",
                hint="patch.sh would take it as the target; give the target with --target.",
            )
    if (config.overrides or config.clones) and not target.has_vgpuconfig:
        raise UsageError(
            f"profile overrides and copied profiles need a host driver, but target {target!r} "
            "has no vgpuConfig.xml",
            hint="Drop them for guest builds, or build a host target (vgpu-kvm, general-merge).",
        )
    driver, general = _driver_inputs(config, release, target)

    staged: Path | None = None
    patcher_hash, verified = info.sha256, True
    if patcher_dir is not None:
        expected = None if patcher_unverified else info.sha256
        staged = stage_patcher(patcher_dir, expected, patcher_unverified, work_dir=work)
        if patcher_unverified:
            patcher_hash, verified = nar_hash(staged), False

    patches = project_patches(release) + [user_patch(p) for p in (*config.patches, *extra_patches)]
    return BuildPlan(
        release=release,
        patcher=info,
        target=target,
        options=opts,
        patch_sh_args=tuple(args),
        driver=driver,
        general=general,
        patcher_hash=patcher_hash,
        patcher_verified=verified,
        clones=config.clones,
        overrides=config.overrides,
        patches=tuple(patches),
        patcher_tree=staged,
    )


def _driver_inputs(
    config: BuildConfig, release: Release, target: Target
) -> tuple[InputSpec | None, InputSpec | None]:
    """The driver and consumer-driver inputs ``target`` reads, by vgpu4nixos's rules."""
    roles = target.inputs
    specs = driver_sources(
        release,
        config.driverSource,
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
    return driver, specs[1] if "general" in roles else None
