"""``profiles apply``: a config's vgpuConfig.xml edits on a file outside a build.

remap-p2v (on request), the clones with the chosen branch's rule, then the overrides, so an
override of a profile also reaches the cards cloned to it. A build orders the clones around
patch.sh's own list instead (:mod:`vgpubuild.profiles.replay`).
"""

from __future__ import annotations

from collections.abc import Mapping

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
