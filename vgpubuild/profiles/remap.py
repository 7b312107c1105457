"""remap-p2v: ``GRID P40-x`` profiles renamed ``GRID V40-x`` with their V100D twin's ids.

What ``patch.sh --remap-p2v`` does on 17.x (vgpu4nixos's ``remapP40ProfilesToV100D``),
available on its own as ``vgpubuild profiles remap-p2v``. The P40->V100D map and the
fallback ids are data: ``profiles/p2v.toml``.
"""

from __future__ import annotations

import tomllib

from vgpubuild import resources
from vgpubuild.vgpuconfig.model import VgpuConfig


def remap_p2v_profiles(config: VgpuConfig) -> list[str]:
    """Rename ``GRID P40-x`` types to ``GRID V40-x`` with their V100D twin's devId ids.

    The P40->V100D map and the fallback ids are in ``profiles/p2v.toml``. Unlike VUP,
    a mapped V100D type missing from the file falls back to the default ids instead of
    writing empty ids. Running it twice changes nothing the second time.
    """
    with (resources.data_dir("profiles") / "p2v.toml").open("rb") as f:
        data = tomllib.load(f)
    mapping: dict[str, str] = data["map"]
    by_name = {el.get("name"): el for el in config.type_elements()}
    changes: list[str] = []
    for el in list(config.type_elements()):
        name = el.get("name") or ""
        if not name.startswith("GRID P40-"):
            continue
        p_name = name.removeprefix("GRID ")
        v_name = p_name.replace("P", "V", 1)
        twin = by_name.get(f"GRID {mapping.get(p_name, '')}")
        twin_dev = None if twin is None else twin.find("devId")
        if twin_dev is not None:
            device = twin_dev.get("deviceId", data["fallback_device"])
            subsystem = twin_dev.get("subsystemId", data["fallback_subsystem"])
            origin = mapping[p_name]
        else:
            device, subsystem = data["fallback_device"], data["fallback_subsystem"]
            origin = "V100D fallback"
        config.set_attr(el, "name", f"GRID {v_name}")
        dev, _ = config.ensure_child(el, "devId")
        config.set_attr(dev, "deviceId", device)
        config.set_attr(dev, "subsystemId", subsystem)
        changes.append(
            f"nvidia-{el.get('id')}: GRID {p_name} -> GRID {v_name} "
            f"(ids of {origin}: {device} {subsystem})"
        )
    return changes
