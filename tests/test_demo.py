"""demo: the generated release is deterministic, GRID-shaped, and a valid catalog entry."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from vgpubuild.catalog import get_release
from vgpubuild.demo import DEMO_RELEASE, FAILURES, make_demo_inputs
from vgpubuild.nar import nar_hash
from vgpubuild.runfile import check_run


def _without_urls(mapping: dict[str, dict[str, object]]) -> dict[str, object]:
    table = dict(mapping[DEMO_RELEASE])
    patcher = dict(table.pop("patcher"))  # type: ignore[call-overload]
    table.pop("guest_url")
    patcher.pop("general_url")
    return {**table, "patcher": patcher}


def test_same_bytes_every_time(tmp_path: Path) -> None:
    a = make_demo_inputs(tmp_path / "a")
    b = make_demo_inputs(tmp_path / "b")
    assert a.zip_path.read_bytes() == b.zip_path.read_bytes()
    for run in ("host_run", "guest_run", "general_run"):
        assert getattr(a, run).read_bytes() == getattr(b, run).read_bytes()
    assert nar_hash(a.patcher_dir) == nar_hash(b.patcher_dir)
    assert _without_urls(a.release_mapping()) == _without_urls(b.release_mapping())


def test_grid_shape_and_catalog_entry(tmp_path: Path) -> None:
    demo = make_demo_inputs(tmp_path)
    release = get_release(DEMO_RELEASE, extra=demo.release_mapping())
    with zipfile.ZipFile(demo.zip_path) as zf:
        names = set(zf.namelist())
    assert demo.zip_path.name == release.zip_name
    assert f"Host_Drivers/{release.host_run_name}" in names
    assert f"Guest_Drivers/{release.guest_run_name}" in names
    assert release.patcher is not None
    assert f"Guest_Drivers/{release.patcher.windows_guest_name}" in names
    assert any(n.startswith("Signing_Keys/") for n in names)
    assert check_run(demo.host_run, release.host_version).version == release.host_version
    assert check_run(demo.general_run, release.general_version)
    assert (demo.patcher_dir / ".gitmodules").is_file() and (demo.patcher_dir / "unlock").is_dir()
    assert release.patcher.sha256 == nar_hash(demo.patcher_dir)


@pytest.mark.parametrize("failure", FAILURES)
def test_failure_variants_change_the_patcher(tmp_path: Path, failure: str) -> None:
    good = make_demo_inputs(tmp_path / "good")
    bad = make_demo_inputs(tmp_path / "bad", failure=failure)  # type: ignore[arg-type]
    assert nar_hash(good.patcher_dir) != nar_hash(bad.patcher_dir)
