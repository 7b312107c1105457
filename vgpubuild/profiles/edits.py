"""A build's vgpuConfig.xml edits, in the order patch.sh and vgpu4nixos make them.

remap-p2v and vcfgclone run inside patch.sh, vgpu4nixos's xmlstarlet overrides after it;
so an override of a profile also reaches the cards cloned to it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from vgpubuild.profiles.clones import copy_profiles
from vgpubuild.profiles.overrides import apply_overrides
from vgpubuild.profiles.remap import remap_p2v_profiles
from vgpubuild.profiles.settings import CloneMap, ProfileOverride
from vgpubuild.vgpuconfig.model import VgpuConfig
from vgpubuild.vgpuconfig.vocabulary import DISABLED_SUBSYSTEM_VENDOR


def apply_edits(
    config: VgpuConfig,
    *,
    overrides: Mapping[int, ProfileOverride],
    clones: CloneMap,
    remap_p2v: bool = False,
    disable_with: int | None = DISABLED_SUBSYSTEM_VENDOR,
) -> list[str]:
    """Apply edits to ``config``: remap-p2v, then clones, then overrides.

    ``disable_with`` is the patcher branch's clone rule (None: a plain copy, as 535.x).
    """
    changes: list[str] = []
    if remap_p2v:
        changes += remap_p2v_profiles(config)
    changes += copy_profiles(config, clones, disable_with)
    changes += apply_overrides(config, overrides)
    return changes


def apply_build_edits(
    xml_path: Path,
    *,
    overrides: Mapping[int, ProfileOverride],
    clones: CloneMap,
    remap_p2v: bool = False,
    shown: str | None = None,
) -> list[str]:
    """Apply a build's vgpuConfig.xml edits to ``xml_path`` in place (atomically).

    On any error the file is untouched. Returns one human-readable line per change,
    including elements that had to be created. ``shown`` names the file in errors.
    """
    config = VgpuConfig.load(xml_path, shown)
    changes = apply_edits(config, overrides=overrides, clones=clones, remap_p2v=remap_p2v)
    if changes:
        config.save(xml_path)
    return changes
