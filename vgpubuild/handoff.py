"""The hand-off to the NixOS module vgpu4nixos: what to paste for a repacked ``.run``.

vgpu4nixos builds its driver package from ``hardware.nvidia.vgpu.driverSource``: with
``sha256`` set it expects a ``.run`` named ``name``, from ``url`` or, with ``url = null``,
from the Nix store (``requireFile``: the flat fixed-output path ``nix-store --add-fixed
sha256 NAME`` gives). It unpacks it with ``sh FILE.run -x`` (falling back to ``skip=`` +
``tail | bsdtar``), and with ``patcher.enable = false`` runs neither patch.sh nor its own
``profileOverrides`` edit of vgpuConfig.xml. vgpubuild has done both already: the module
applying them again would be wrong (clones would be added twice), so the snippet turns
the patcher off and carries no overrides.
"""

from __future__ import annotations

from vgpubuild.artifact import RepackedRun


def nixos_snippet(run: RepackedRun) -> str:
    """Ready-to-paste NixOS configuration for the host, and how the file gets there."""
    return f"""\
# 1. Put the driver into the Nix store of the machine that builds the system (once):
#      {run.add_command}
#    which prints {run.store_path}
# 2. In the host's NixOS configuration (vgpu4nixos), for the same driver version:
hardware.nvidia.vgpu = {{
  patcher.enable = false;  # patched by vgpubuild, with its profileOverrides and clones
  driverSource = {{
    name = "{run.path.name}";
    url = null;  # from the Nix store (step 1)
    sha256 = "{run.flat_hash.sri}";
  }};
}};
"""
