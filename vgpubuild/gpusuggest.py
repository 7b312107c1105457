"""The build settings a card needs, as a TOML build config and as a Nix attribute set.

Both say the same thing in the NixOS module's option names (``patcher.enable``,
``patcher.options.remapP40ProfilesToV100D``, ``patcher.copyVGPUProfiles``), so the TOML
goes to ``vgpubuild patch --config`` and the Nix set to ``mkPatchedDriver`` (its ``config``
also fits ``hardware.nvidia.vgpu``). Only what differs from the defaults is written: a
built-in clone needs no ``copyVGPUProfiles`` line, a card that needs no remap no option.
"""

from __future__ import annotations

import json
from typing import Any

from vgpubuild.gpus import Card, Verdict


def settings(card: Card, verdict: Verdict) -> dict[str, Any]:
    """The option tree (without ``release``) that builds a driver ``card`` runs on."""
    patcher: dict[str, Any] = {"enable": verdict.target is not None}
    if verdict.remap_p2v:
        patcher["options"] = {"remapP40ProfilesToV100D": True}
    if verdict.status == "user-clone" and verdict.source is not None:
        patcher["copyVGPUProfiles"] = {f"{card.device:04X}:0000": str(verdict.source)}
    return {"patcher": patcher}


def _key(name: str) -> str:
    return name if name.replace("_", "").isalnum() else json.dumps(name)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)  # str and int read the same in TOML and Nix


def to_toml(release: str, tree: dict[str, Any]) -> str:
    """A build config: ``release`` first, then one table per option group."""
    lines = [f"release = {_value(release)}"]

    def table(path: list[str], node: dict[str, Any]) -> None:
        scalars = {k: v for k, v in node.items() if not isinstance(v, dict)}
        if scalars:
            lines.extend(["", "[" + ".".join(_key(p) for p in path) + "]"])
            lines.extend(f"{_key(k)} = {_value(v)}" for k, v in scalars.items())
        for k, v in node.items():
            if isinstance(v, dict):
                table([*path, k], v)

    for key, node in tree.items():
        table([key], node)
    return "\n".join(lines) + "\n"


def to_nix(release: str, tree: dict[str, Any]) -> str:
    """``mkPatchedDriver``'s argument set, one dotted attribute path per line."""

    def leaves(path: list[str], node: dict[str, Any]) -> list[str]:
        out: list[str] = []
        for k, v in node.items():
            if isinstance(v, dict):
                out += leaves([*path, k], v)
            else:
                out.append(".".join(_key(p) for p in [*path, k]) + f" = {_value(v)};")
        return out

    body = "\n".join(f"    {line}" for line in leaves([], tree))
    return (
        "vgpubuild.mkPatchedDriver {\n"
        f"  release = {_value(release)};\n"
        "  config = {  # also valid as hardware.nvidia.vgpu\n"
        f"{body}\n"
        "  };\n"
        "}\n"
    )
