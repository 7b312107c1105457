"""NVIDIA's ``vgpuConfig.xml``, the document: its vocabulary, a safe model, minimal writes.

``vocabulary`` (names and number spelling, no lxml) < ``safeparse`` (lxml, no network, no
entities) and ``spans`` (byte-span scanner and minimal writer) < ``model`` (the read model
and edit primitives, :class:`~vgpubuild.vgpuconfig.model.VgpuConfig`).
The edits made to it (overrides, clones, remap, vgpu_unlock-rs) live above, in
:mod:`vgpubuild.profiles`. This file imports nothing, so reading the vocabulary never
loads lxml.
"""
