"""The release catalog and the ``releases`` commands."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
from conftest import run_cli

from vgpubuild.catalog import Release, get_release, load_catalog
from vgpubuild.errors import ConfigError, UnknownReleaseError
from vgpubuild.nixhash import Hash

ALL = [
    "16.2",
    "16.5",
    "16.8",
    "16.9",
    "16.10",
    "17.3",
    "17.4",
    "17.5",
    "17.6",
    "18.0",
    "18.1",
    "18.2",
    "18.3",
]
WITH_PATCHER = ["16.2", "16.5", "17.3"]

CUSTOM = {
    "host_version": "550.54.10",
    "guest_version": "550.54.14",
    "general_version": "550.54.14",
    "zip_name": "NVIDIA-GRID-Linux-KVM-550.54.10-550.54.14-551.78.zip",
    "zip_sha256": "sha256-" + "A" * 43 + "=",
}


def test_package_data_is_the_shared_file(repo_root: Path) -> None:
    shared = repo_root.parent / "shared" / "releases.toml"
    if not shared.exists():
        pytest.skip("no shared releases.toml beside this checkout")
    assert (repo_root / "vgpubuild" / "releases.toml").read_bytes() == shared.read_bytes()


def test_all_thirteen_releases_three_with_patcher() -> None:
    catalog = load_catalog()
    assert list(catalog) == ALL
    assert [v for v, r in catalog.items() if r.patcher] == WITH_PATCHER


def test_every_field_matches_the_toml(repo_root: Path) -> None:
    raw = tomllib.loads((repo_root / "vgpubuild" / "releases.toml").read_text())["releases"]
    for version, release in load_catalog().items():
        data = raw[version]
        assert release.zip_name == data["zip_name"]
        assert release.zip_sha256 == Hash.parse(data["zip_sha256"])
        assert release.guest_sha256 == Hash.parse(data["guest_sha256"])
        assert release.guest_url == data["guest_url"]
        if release.patcher:
            assert release.patcher.rev == data["patcher"]["rev"]
            assert release.patcher.sha256.sri == data["patcher"]["sha256"]


def test_17_3_names_and_series() -> None:
    r = get_release("17.3")
    assert r.grid_series == "17"
    assert r.host_run_name == "NVIDIA-Linux-x86_64-550.90.05-vgpu-kvm.run"
    assert r.guest_run_name == "NVIDIA-Linux-x86_64-550.90.07-grid.run"
    assert r.general_run_name == "NVIDIA-Linux-x86_64-550.90.07.run"
    assert r.patcher is not None and r.patcher.branch == "550.90"
    assert r.patcher.sha256.sri == "sha256-TyZkZcv7RI40U8czvcE/kIagpUFS/EJhVN0SYPzdNJM="
    assert get_release("16.10").grid_series == "16"


def test_unknown_release_lists_the_closest() -> None:
    with pytest.raises(UnknownReleaseError) as info:
        get_release("17.7")
    message = str(info.value)
    assert "17.7" in message and "17.6" in message and "releases list" in message


def test_user_defined_release() -> None:
    r = get_release("17.1", {"17.1": CUSTOM})
    assert r.zip_name == CUSTOM["zip_name"] and r.patcher is None
    # a user's definition of a built-in version wins
    assert get_release("17.3", {"17.3": CUSTOM}).host_version == "550.54.10"


def test_unknown_key_names_the_closest_valid_one() -> None:
    with pytest.raises(ConfigError, match=r"'zip_sha256s'.*Did you mean 'zip_sha256'"):
        Release.from_mapping("x", {**CUSTOM, "zip_sha256s": "x"})
    with pytest.raises(ConfigError, match="Did you mean 'unlock_rev'"):
        Release.from_mapping("x", {**CUSTOM, "patcher": {"unlock_revv": "x"}})


def test_bad_values_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="zip_sha256"):
        Release.from_mapping("x", {**CUSTOM, "zip_sha256": "sha256-short"})
    with pytest.raises(ConfigError, match="lacks required"):
        Release.from_mapping("x", {k: v for k, v in CUSTOM.items() if k != "zip_name"})
    with pytest.raises(ConfigError, match="must be a string"):
        Release.from_mapping("x", {**CUSTOM, "host_version": 550})


def test_cli_list_and_json() -> None:
    r = run_cli("releases", "list")
    assert r.exit_code == 0
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["RELEASE", "HOST", "GUEST", "GENERAL", "PATCHER"]
    assert [line.split()[0] for line in lines[1:]] == ALL
    assert "17.3     550.90.05   550.90.07   550.90.07   yes" in r.stdout
    data = json.loads(run_cli("releases", "list", "--json").stdout)
    assert [d["version"] for d in data] == ALL
    assert [d["version"] for d in data if d["patcher"]] == WITH_PATCHER


def test_cli_show_json_and_text() -> None:
    r = run_cli("releases", "show", "17.3", "--json")
    data = json.loads(r.stdout)
    assert data["zip_sha256"] == "sha256-ydNOnbhbqkO2gVaUQXsIWCZsbjw0NMEYl9iV0T01OX0="
    assert data["patcher"]["rev"] == "8f19e550540dcdeccaded6cb61a71483ea00d509"
    assert data["host_run_name"] == "NVIDIA-Linux-x86_64-550.90.05-vgpu-kvm.run"
    text = run_cli("releases", "show", "18.3").stdout
    assert "zip_name: NVIDIA-GRID-Linux-KVM-570.158.02-570.158.01-573.39.zip" in text
    assert "patcher: not supported" in text


def test_cli_unknown_release_is_a_usage_error() -> None:
    r = run_cli("releases", "show", "18.9")
    assert r.exit_code == UnknownReleaseError.exit_code
    assert "Closest: 18.3" in r.stderr or "Closest: 18.0" in r.stderr


def test_cli_user_releases_file(tmp_path: Path) -> None:
    f = tmp_path / "mine.toml"
    f.write_text('[releases."17.1"]\n' + "".join(f'{k} = "{v}"\n' for k, v in CUSTOM.items()))
    r = run_cli("releases", "list", "--releases", str(f), "--json")
    assert "17.1" in [d["version"] for d in json.loads(r.stdout)]
    f.write_text('[releases."17.1"]\nhost_versoin = "1"\n')
    r = run_cli("releases", "show", "17.1", "--releases", str(f))
    assert r.exit_code == ConfigError.exit_code and "host_version" in r.stderr
