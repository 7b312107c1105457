"""The build plan: one description from which both the cache key and the manifest come.

A key that misses an input returns a stale cached artifact when that input changes, and
every other test still passes (the build itself is right). So each input is changed here,
one at a time, through the real config and catalog, and the key must change; and each
*location* (where an input is, not what it is) is changed and the key must stay.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from vgpubuild import plan as plan_module
from vgpubuild.config import BuildConfig
from vgpubuild.demo import DEMO_RELEASE, DemoInputs
from vgpubuild.nixhash import Hash
from vgpubuild.plan import BuildPlan, resolve
from vgpubuild.profiles.settings import PciId, ProfileOverride
from vgpubuild.targets import Target

OTHER_HASH = "sha256-" + "A" * 43 + "="


def _base(demo: DemoInputs) -> dict[str, Any]:
    return {
        "release": DEMO_RELEASE,
        "zip": str(demo.zip_path),
        "releases": demo.release_mapping(),
        "patcher": {"profileOverrides": {"333": {"vramAllocation": 3584}}},
    }


def _key(data: dict[str, Any], **kw: Any) -> str:
    return resolve(BuildConfig.from_mapping(data, source="test"), **kw).key


def _edit(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """Set a dotted path (``releases.<demo>.zip_sha256``) in the config table."""

    def apply(data: dict[str, Any]) -> None:
        *parents, last = [DEMO_RELEASE if p == "<demo>" else p for p in path.split(".")]
        table = data
        for name in parents:
            table = table.setdefault(name, {})
        table[last] = value

    return apply


def _single_run(data: dict[str, Any]) -> None:
    del data["zip"]
    data["driverSource"] = {"name": "x.run", "sha256": OTHER_HASH}


def _other_release(data: dict[str, Any]) -> None:
    data["releases"]["17.98"] = copy.deepcopy(data["releases"][DEMO_RELEASE])
    data["release"] = "17.98"


# Every BuildConfig field, and how to change what it says. A field added to BuildConfig
# without an entry here (or in LOCATIONS) fails test_every_config_field_is_covered.
CHANGES: dict[str, list[tuple[str, Callable[[dict[str, Any]], None]]]] = {
    "release": [("another release of the same files", _other_release)],
    "enable": [],  # False is refused: there is nothing to build (tested in test_pipeline)
    "target": [("explicit grid-merge", _edit("patcher.target", "grid-merge"))],
    "options": [
        ("doNotForceGPLLicense", _edit("patcher.options.doNotForceGPLLicense", True)),
        ("remapP40ProfilesToV100D", _edit("patcher.options.remapP40ProfilesToV100D", True)),
        ("extra", _edit("patcher.options.extra", ["--no-klogtrace"])),
    ],
    "copyVGPUProfiles": [
        ("a clone", _edit("patcher.copyVGPUProfiles", {"1E07:0000": "1E30:12BA"}))
    ],
    "profileOverrides": [
        ("another value", _edit("patcher.profileOverrides", {"333": {"vramAllocation": 2048}})),
        ("another profile", _edit("patcher.profileOverrides", {"334": {"vramAllocation": 3584}})),
        ("xmlConfig", _edit("patcher.profileOverrides.333.xmlConfig", {"eccSupported": "0"})),
    ],
    "driverSource": [
        ("a single .run by its hash", _single_run),
        ("the zip under another name", _edit("driverSource.name", "renamed.zip")),
    ],
    "guest": [],  # guest builds take no profile edits: see test_guest_and_merged_change_the_key
    "merged": [],
    "patches": [],  # see test_each_patch_and_its_content_change_the_key
    "releases": [
        ("the zip's hash", _edit("releases.<demo>.zip_sha256", OTHER_HASH)),
        ("the host version", _edit("releases.<demo>.host_version", "550.999.06")),
        ("the guest version", _edit("releases.<demo>.guest_version", "550.999.08")),
        ("the patcher's hash", _edit("releases.<demo>.patcher.sha256", OTHER_HASH)),
        ("the patcher's rev", _edit("releases.<demo>.patcher.rev", "0" * 40)),
        ("the unlock rev", _edit("releases.<demo>.patcher.unlock_rev", "1" * 40)),
        ("the patcher's repo", _edit("releases.<demo>.patcher.repo", "someone/else")),
    ],
}
LOCATIONS: dict[str, Callable[[dict[str, Any]], None] | None] = {
    "zip": _edit("zip", "https://files.example/grid.zip"),
    "source": None,  # a label for messages: see test_the_config_source_label_is_not_an_input
    "system_options": None,  # the running system's, only warned about: see the test below
}
DRIVER_SOURCE_LOCATIONS = {
    "url": _edit("driverSource.url", "https://files.example/grid.zip"),
    "curlOptsList": _edit("driverSource.curlOptsList", ["-u", "me:secret"]),
}


DERIVED = {"clones": "copyVGPUProfiles", "overrides": "profileOverrides"}
"""Fields parsed from another field (covered through it)."""


def test_every_config_field_is_covered() -> None:
    fields = {f.name for f in dataclasses.fields(BuildConfig)}
    assert fields == set(CHANGES) | set(LOCATIONS) | set(DERIVED)


@pytest.mark.parametrize(
    ("field", "what", "change"),
    [(field, what, change) for field, cases in CHANGES.items() for what, change in cases],
)
def test_each_input_changes_the_key(
    demo: DemoInputs, field: str, what: str, change: Callable[[dict[str, Any]], None]
) -> None:
    data = _base(demo)
    before = _key(data)
    change(data)
    assert _key(data) != before, f"{field}: {what} left the build key unchanged"


@pytest.mark.parametrize(
    "change",
    [c for c in LOCATIONS.values() if c] + list(DRIVER_SOURCE_LOCATIONS.values()),
    ids=["zip", *DRIVER_SOURCE_LOCATIONS],
)
def test_locations_do_not_change_the_key(
    demo: DemoInputs, change: Callable[[dict[str, Any]], None]
) -> None:
    data = _base(demo)
    before = _key(data)
    change(data)
    assert _key(data) == before


def test_the_running_systems_options_are_not_inputs(demo: DemoInputs) -> None:
    data = _base(demo)
    before = _key(data)
    _edit("patcher.enablePatcherCmd", True)(data)
    _edit("patcher.runtimeOptions", {"enable": True, "vgpukvm": True})(data)
    assert _key(data) == before


def test_the_config_source_label_is_not_an_input(demo: DemoInputs) -> None:
    labels = {"build.toml", "command line"}
    keys = {resolve(BuildConfig.from_mapping(_base(demo), source=s)).key for s in labels}
    assert len(keys) == 1


def test_guest_and_merged_change_the_key(demo: DemoInputs) -> None:
    data = _base(demo)
    del data["patcher"]
    keys = {_key(data)}
    for flag in ("guest", "merged"):
        keys.add(_key({**data, flag: True}))
    data["releases"][DEMO_RELEASE]["patcher"]["general_sha256"] = OTHER_HASH
    keys.add(_key({**data, "merged": True}))  # the consumer driver's hash
    assert len(keys) == 4


def test_each_patch_and_its_content_change_the_key(demo: DemoInputs, tmp_path: Path) -> None:
    data = _base(demo)
    one, two = tmp_path / "one.patch", tmp_path / "two.patch"
    one.write_text("--- /dev/null\n+++ b/A\n@@ -0,0 +1 @@\n+a\n")
    two.write_text("--- /dev/null\n+++ b/B\n@@ -0,0 +1 @@\n+b\n")
    keys = [_key(data), _key({**data, "patches": [str(one)]})]
    keys.append(_key({**data, "patches": [str(one), str(two)]}))
    keys.append(_key({**data, "patches": [str(one)]}, extra_patches=[two]))
    assert keys[2] == keys[3]  # --patch FILE is the same as patches = [FILE]
    keys.append(_key({**data, "patches": [str(two), str(one)]}))  # order
    one.write_text("--- /dev/null\n+++ b/A\n@@ -0,0 +1 @@\n+changed\n")
    keys.append(_key({**data, "patches": [str(one), str(two)]}))
    assert len(set(keys)) == 5


def test_the_vgpubuild_version_changes_the_key(
    demo: DemoInputs, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = _key(_base(demo))
    monkeypatch.setattr(plan_module, "__version__", "0.0.0-other")
    assert _key(_base(demo)) != before


def test_an_unverified_patcher_is_keyed_by_its_own_hash(demo: DemoInputs, tmp_path: Path) -> None:
    data = _base(demo)
    verified = _key(data, patcher_dir=demo.patcher_dir, work=tmp_path)
    assert verified == _key(data)  # the checked --patcher DIR is the pinned patcher
    unverified = _key(data, patcher_dir=demo.patcher_dir, patcher_unverified=True, work=tmp_path)
    assert unverified != verified


def _mutations(plan: BuildPlan) -> dict[str, Any]:
    """A different value for every described field of a plan."""
    assert plan.driver is not None
    return {
        "release": dataclasses.replace(plan.release, general_version="1.2.3"),
        "patcher": dataclasses.replace(plan.patcher, unlock_repo="someone/unlock"),
        "target": Target.GRID_MERGE,
        "options": dataclasses.replace(plan.options, extra=("--no-klogtrace",)),
        "patch_sh_args": (*plan.patch_sh_args, "--no-klogtrace"),
        "driver": dataclasses.replace(plan.driver, sha256=Hash.parse(OTHER_HASH)),
        "general": plan.driver,
        "patcher_hash": Hash.parse(OTHER_HASH),
        "patcher_verified": False,
        "clones": ((PciId(0x1E07, 0), PciId(0x1E30, 0x12BA)),),
        "overrides": {333: ProfileOverride(heads=2)},
        "patches": plan.patches[1:],
    }


def test_every_described_plan_field_is_in_the_key(demo: DemoInputs, tmp_path: Path) -> None:
    fix = tmp_path / "fix.patch"
    fix.write_text("--- /dev/null\n+++ b/A\n@@ -0,0 +1 @@\n+a\n")
    plan = resolve(BuildConfig.from_mapping({**_base(demo), "patches": [str(fix)]}))
    described = {f.name for f in dataclasses.fields(plan) if not f.metadata.get("location")}
    mutations = _mutations(plan)
    assert set(mutations) == described
    for name, value in mutations.items():
        assert dataclasses.replace(plan, **{name: value}).key != plan.key, name
    elsewhere: dict[str, Any] = {"patcher_tree": Path("/x")}
    assert set(elsewhere) == {f.name for f in dataclasses.fields(plan)} - described
    for name, value in elsewhere.items():
        assert dataclasses.replace(plan, **{name: value}).key == plan.key, name


def test_key_and_manifest_come_from_one_description(demo: DemoInputs) -> None:
    plan = resolve(BuildConfig.from_mapping(_base(demo)))
    described = plan.description()
    text = json.dumps(described, sort_keys=True, separators=(",", ":"))
    assert plan.key == hashlib.sha256(text.encode()).hexdigest()
    assert plan.driver is not None
    member = {"name": "x.run", "from": plan.driver.name, "sha256": OTHER_HASH}
    manifest = plan.manifest([plan.driver.record(), member], ["a change"])
    assert manifest["build_key"] == plan.key
    assert {k: v for k, v in manifest.items() if k in described and k != "inputs"} == {
        k: v for k, v in described.items() if k != "inputs"
    }
    assert set(manifest) - set(described) == {"build_key", "vgpuconfig_changes"}
    assert manifest["inputs"][0] == described["inputs"][0] and manifest["inputs"][1] == member
