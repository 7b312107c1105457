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
    "16.11",
    "17.3",
    "17.4",
    "17.5",
    "17.6",
    "18.0",
    "18.1",
    "18.2",
    "18.3",
    "18.4",
]
WITH_PATCHER = ["16.2", "16.5", "17.3"]

CUSTOM = {
    "host_version": "550.54.10",
    "guest_version": "550.54.14",
    "general_version": "550.54.14",
    "zip_name": "NVIDIA-GRID-Linux-KVM-550.54.10-550.54.14-551.78.zip",
    "zip_sha256": "sha256-" + "A" * 43 + "=",
}


def test_all_fifteen_releases_three_with_patcher() -> None:
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


# The facts of the two newest releases, as the vgpu4nixos fork that added them gives them.
NEWEST = {
    "18.4": {
        "host_version": "570.172.07",
        "guest_version": "570.172.08",
        "general_version": "570.169",
        "zip_name": "NVIDIA-GRID-Linux-KVM-570.172.07-570.172.08-573.48.zip",
        "zip_sha256": "sha256-gnfbx+EHgabI2ZrsvunsS4LBCZnfLQI0yZRpAzqXFIw=",
        "guest_sha256": "sha256-4oPQAXl2ScAi0D1EfR6wAltZlfhb9e08i1jsiJT0j8w=",
        "guest_url": "https://storage.googleapis.com/nvidia-drivers-us-public/GRID/vGPU18.4/"
        "NVIDIA-Linux-x86_64-570.172.08-grid.run",
        "grid_series": "18",
        "host_run_name": "NVIDIA-Linux-x86_64-570.172.07-vgpu-kvm.run",
        "guest_run_name": "NVIDIA-Linux-x86_64-570.172.08-grid.run",
        "general_run_name": "NVIDIA-Linux-x86_64-570.169.run",
        "patcher": None,
    },
    "16.11": {
        "host_version": "535.261.04",
        "guest_version": "535.261.03",
        "general_version": "535.216.01",
        "zip_name": "NVIDIA-GRID-Linux-KVM-535.261.04-535.261.03-539.41.zip",
        "zip_sha256": "sha256-bJ0sV1gn6JVlRmbt2MYhajb1t59FPzi/ypA3CVyh9Ug=",
        "guest_sha256": "sha256-wkpKenOh7Rni3hDdrM3tOXnSH2JEub5H6EH0Mn1iBdc=",
        "guest_url": "https://storage.googleapis.com/nvidia-drivers-us-public/GRID/vGPU16.11/"
        "NVIDIA-Linux-x86_64-535.261.03-grid.run",
        "grid_series": "16",
        "host_run_name": "NVIDIA-Linux-x86_64-535.261.04-vgpu-kvm.run",
        "guest_run_name": "NVIDIA-Linux-x86_64-535.261.03-grid.run",
        "general_run_name": "NVIDIA-Linux-x86_64-535.216.01.run",
        "patcher": None,
    },
}


@pytest.mark.parametrize("version", sorted(NEWEST))
def test_cli_show_json_newest_releases(version: str) -> None:
    r = run_cli("releases", "show", version, "--json")
    assert r.exit_code == 0
    data = json.loads(r.stdout)
    assert {key: data.get(key) for key in NEWEST[version]} == NEWEST[version]
    assert data["version"] == version


def test_cli_list_shows_newest_releases_without_patcher() -> None:
    rows = {
        line.split()[0]: line.split() for line in run_cli("releases", "list").stdout.splitlines()
    }
    assert rows["16.11"] == ["16.11", "535.261.04", "535.261.03", "535.216.01", "no"]
    assert rows["18.4"] == ["18.4", "570.172.07", "570.172.08", "570.169", "no"]


def test_cli_unknown_release_is_a_usage_error() -> None:
    r = run_cli("releases", "show", "18.9")
    assert r.exit_code == UnknownReleaseError.exit_code
    assert "Closest: 18.4" in r.stderr or "Closest: 18.0" in r.stderr


def test_cli_user_releases_file(tmp_path: Path) -> None:
    f = tmp_path / "mine.toml"
    f.write_text('[releases."17.1"]\n' + "".join(f'{k} = "{v}"\n' for k, v in CUSTOM.items()))
    r = run_cli("releases", "list", "--releases", str(f), "--json")
    assert "17.1" in [d["version"] for d in json.loads(r.stdout)]
    f.write_text('[releases."17.1"]\nhost_versoin = "1"\n')
    r = run_cli("releases", "show", "17.1", "--releases", str(f))
    assert r.exit_code == ConfigError.exit_code and "host_version" in r.stderr
