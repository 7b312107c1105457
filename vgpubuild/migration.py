"""Settings that mean something else here than in vgpu4nixos, said once per build.

A vgpu4nixos configuration loads unchanged (``builtins.toJSON config.hardware.nvidia.vgpu``),
and almost every option does what it did. Where one does not, silence would be the
migration's trap: ``enableCuda = false`` was ignored by the module and now turns CUDA off.
:func:`differences` lists those settings for one config; :func:`warn` says them in one
warning before the build starts.
"""

from __future__ import annotations

from vgpubuild import log
from vgpubuild.config import BuildConfig


def differences(config: BuildConfig) -> list[str]:
    """One sentence per setting of ``config`` that behaves differently from the module."""
    found = []
    for pid, override in sorted(config.overrides.items()):
        where = f'profileOverrides."{pid}"'
        if override.enable_cuda is not None:
            found.append(
                f"{where}.enableCuda = {str(override.enable_cuda).lower()} takes effect "
                f"(cudaEnabled {int(override.enable_cuda)}); vgpu4nixos declared the option "
                "but never applied it"
            )
        if override.xml_config:
            found.append(
                f"{where}.xmlConfig creates the elements and attributes the profile lacks "
                "(each is reported as created); vgpu4nixos's xmlstarlet -u skipped them"
            )
    found += [
        f"{name} is a setting of the running system: the NixOS module acts on it, a driver "
        "build ignores it"
        for name in config.system_options
    ]
    return found


def warn(config: BuildConfig) -> None:
    """Log :func:`differences` as one warning (nothing when there are none)."""
    found = differences(config)
    if found:
        log.get_logger(stage="config").warning(
            "settings that behave differently from vgpu4nixos: " + "; ".join(found)
        )
