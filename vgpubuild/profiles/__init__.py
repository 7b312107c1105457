"""Edits of vgpuConfig.xml: what ``vgpubuild profiles`` and a build's profile settings do.

``settings`` parses the edits a build asks for into typed values (no lxml); ``names`` reads
the names a person types for profiles and raw XML edits; ``overrides``,
``clones`` and ``remap`` apply them to a :class:`~vgpubuild.vgpuconfig.model.VgpuConfig`;
``edits`` runs a build's edits in patch.sh + vgpu4nixos order; ``unlockrs`` translates
vgpu_unlock-rs's ``profile_override.toml`` to and from overrides. This file imports nothing.
"""
