"""Where inputs are looked for (and in what order), driverSource rules, ``fetch`` and ``add``."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest
from conftest import require_tool, run_cli
from httpserver import FaultServer

from vgpubuild.cache import Cache
from vgpubuild.catalog import get_release
from vgpubuild.config import BuildConfig, DriverSource
from vgpubuild.errors import (
    ConfigError,
    HashMismatchError,
    InputError,
    SourceNotFoundError,
    UsageError,
)
from vgpubuild.fetch import FetchOptions
from vgpubuild.nixhash import Hash
from vgpubuild.sources import InputSpec, driver_sources, obtain

OPTIONS = FetchOptions(progress=False, retry_wait=0.01)


def sha(data: bytes) -> Hash:
    return Hash("sha256", hashlib.sha256(data).digest())


pytestmark = pytest.mark.usefixtures("no_user_netrc")




# -- search order ------------------------------------------------------------------------


def test_explicit_path_comes_first_and_is_verified(
    tmp_path: Path, server: FaultServer, cache: Cache
) -> None:
    data = os.urandom(5000)
    url = server.add("/x.zip", data)
    wrong = tmp_path / "x.zip"
    wrong.write_bytes(b"something else")
    spec = InputSpec("x.zip", sha(data), url=url, path=wrong)
    with pytest.raises(HashMismatchError):
        obtain(spec, cache, OPTIONS)
    assert server.connections == 0  # the user's explicit file is not silently replaced
    wrong.write_bytes(data)
    path = obtain(spec, cache, OPTIONS)
    assert path == cache.entry(sha(data), "x.zip") and path.read_bytes() == data


def test_missing_explicit_path_is_an_input_error(tmp_path: Path, cache: Cache) -> None:
    spec = InputSpec("x.zip", sha(b"x"), path=tmp_path / "nope.zip")
    with pytest.raises(InputError, match=r"nope\.zip"):
        obtain(spec, cache, OPTIONS)


def test_cache_comes_before_the_url(tmp_path: Path, server: FaultServer, cache: Cache) -> None:
    data = os.urandom(5000)
    src = tmp_path / "x.zip"
    src.write_bytes(data)
    cached = cache.add_file(src, sha(data), "x.zip")
    spec = InputSpec("x.zip", sha(data), url=server.add("/x.zip", data), nix_store=True)
    assert obtain(spec, cache, OPTIONS) == cached
    assert server.connections == 0


def test_url_is_the_last_resort(server: FaultServer, cache: Cache) -> None:
    data = os.urandom(5000)
    spec = InputSpec("x.zip", sha(data), url=server.add("/x.zip", data), nix_store=True)
    assert obtain(spec, cache, OPTIONS).read_bytes() == data
    assert len(server.requests()) == 1


def test_nix_store_path_is_found_where_add_fixed_put_it(
    tmp_path: Path, server: FaultServer, cache: Cache
) -> None:
    nix_store = require_tool("nix-store")
    data = os.urandom(4096)
    name = f"vgpubuild-test-{data[:6].hex()}.zip"
    src = tmp_path / name
    src.write_bytes(data)
    added = subprocess.run(
        [nix_store, "--add-fixed", "sha256", str(src)], capture_output=True, text=True, errors="backslashreplace", check=True
    ).stdout.strip()
    try:
        spec = InputSpec(name, sha(data), url=server.add("/x", data), nix_store=True)
        assert spec.store_path() == added
        assert obtain(spec, cache, OPTIONS) == Path(added)
        assert server.connections == 0
        # without nix_store the same spec goes to the URL
        plain = InputSpec(name, sha(data), url=server.url("/x"))
        assert obtain(plain, cache, OPTIONS).read_bytes() == data
    finally:
        subprocess.run([nix_store, "--delete", added], capture_output=True, check=False)


def test_nowhere_gives_the_requirefile_message(cache: Cache) -> None:
    release = get_release("17.3")
    (spec,) = driver_sources(release, None, guest=False, zip_path=None)
    with pytest.raises(SourceNotFoundError) as info:
        obtain(spec, cache, OPTIONS)
    message = str(info.value)
    name = "NVIDIA-GRID-Linux-KVM-550.90.05-550.90.07-552.74.zip"
    assert message.startswith(f"{name} is needed but was not found")
    assert "sha256-ydNOnbhbqkO2gVaUQXsIWCZsbjw0NMEYl9iV0T01OX0=" in message
    assert release.zip_sha256.format("nix32") in message
    assert f"vgpubuild add /path/to/{name}" in message
    assert f"nix-store --add-fixed sha256 /path/to/{name}" in message
    assert spec.store_path() in message
    assert "nvidia.com" in message


# -- driverSource rules --------------------------------------------------------------------


R = get_release("17.3")


def test_host_takes_the_grid_zip() -> None:
    (spec,) = driver_sources(R, None, guest=False, zip_path=None)
    assert (spec.name, spec.sha256, spec.url) == (R.zip_name, R.zip_sha256, None)
    assert spec.nix_store


def test_guest_takes_the_public_grid_run() -> None:
    (spec,) = driver_sources(R, DriverSource(), guest=True, zip_path=None)
    assert spec.name == "NVIDIA-Linux-x86_64-550.90.07-grid.run"
    assert spec.sha256 == R.guest_sha256
    assert spec.url == R.guest_url


def test_a_driver_source_hash_means_a_run_file() -> None:
    h = sha(b"my run").sri
    (spec,) = driver_sources(
        R,
        DriverSource(url="https://files.example/d.run", sha256=h, curlOptsList=("-u", "a:b")),
        guest=False,
        zip_path=None,
    )
    assert spec.name == "NVIDIA-Linux-x86_64-550.90.05-vgpu-kvm.run"
    assert spec.sha256.sri == h and spec.url == "https://files.example/d.run"
    assert spec.curl_opts == ("-u", "a:b")
    with pytest.raises(ConfigError, match=r"a \.run is expected"):
        driver_sources(R, DriverSource(name="x.zip", sha256=h), guest=False, zip_path=None)
    with pytest.raises(ConfigError, match=r"not a \.zip"):
        driver_sources(R, DriverSource(name="x.run"), guest=False, zip_path=None)


def test_guest_from_a_zip_name_takes_the_zip_hash() -> None:
    (spec,) = driver_sources(R, DriverSource(name=R.zip_name), guest=True, zip_path=None)
    assert (spec.name, spec.sha256, spec.url) == (R.zip_name, R.zip_sha256, None)


def test_zip_location_as_path_or_url() -> None:
    (by_path,) = driver_sources(R, None, guest=False, zip_path="/tmp/grid.zip")
    assert by_path.path == Path("/tmp/grid.zip") and by_path.url is None
    (by_url,) = driver_sources(R, None, guest=False, zip_path="https://me.example/g.zip")
    assert by_url.url == "https://me.example/g.zip" and by_url.name == R.zip_name
    with pytest.raises(UsageError):
        driver_sources(
            R, DriverSource(sha256=sha(b"x").sri), guest=False, zip_path="/tmp/grid.zip"
        )


def test_merged_adds_the_general_driver() -> None:
    zip_spec, general = driver_sources(R, None, guest=False, zip_path=None, merged=True)
    assert zip_spec.name == R.zip_name
    assert general.name == "NVIDIA-Linux-x86_64-550.90.07.run"
    assert R.patcher is not None and general.sha256 == R.patcher.general_sha256
    with pytest.raises(ConfigError, match="merged"):
        driver_sources(get_release("18.3"), None, guest=False, zip_path=None, merged=True)


def test_driver_source_unknown_key_and_empty_hash() -> None:
    # Keys are checked once, where the config is read (the typed value has no other keys).
    with pytest.raises(ConfigError, match=r"Did you mean 'driverSource\.curlOptsList'"):
        BuildConfig.from_mapping({"driverSource": {"curlOptList": []}})
    with pytest.raises(ConfigError, match="prefetch"):
        driver_sources(R, DriverSource(sha256=""), guest=False, zip_path=None)


# -- the add and fetch commands --------------------------------------------------------------


def _env(tmp_path: Path) -> dict[str, str]:
    return {"VGPUBUILD_CACHE": str(tmp_path / "cache"), "HOME": str(tmp_path / "home")}


def _custom_release(tmp_path: Path, data: bytes) -> Path:
    f = tmp_path / "releases.toml"
    f.write_text(
        '[releases."17.1"]\nhost_version = "550.54.10"\nguest_version = "550.54.14"\n'
        'general_version = "550.54.14"\n'
        'zip_name = "NVIDIA-GRID-Linux-KVM-550.54.10-550.54.14-551.78.zip"\n'
        f'zip_sha256 = "{sha(data).sri}"\n'
    )
    return f


def test_add_refuses_a_catalog_name_with_wrong_content(tmp_path: Path) -> None:
    fake = tmp_path / R.zip_name
    fake.write_bytes(b"not the real zip")
    r = run_cli("add", "--no-nix-store", str(fake), env=_env(tmp_path))
    assert r.exit_code == HashMismatchError.exit_code
    assert f"specified: {R.zip_sha256.sri}" in r.stderr
    assert not (tmp_path / "cache" / "sha256").exists()
    assert fake.read_bytes() == b"not the real zip"


def test_add_checks_against_a_user_release(tmp_path: Path) -> None:
    data = os.urandom(10_000)
    releases = _custom_release(tmp_path, data)
    zip_file = tmp_path / "NVIDIA-GRID-Linux-KVM-550.54.10-550.54.14-551.78.zip"
    zip_file.write_bytes(data)
    r = run_cli("add", "--no-nix-store", str(zip_file), "--releases", str(releases), "--json", env=_env(tmp_path))
    assert r.exit_code == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["release"] == "17.1" and out["sha256"] == sha(data).sri
    assert Path(out["path"]).read_bytes() == data
    # the same bytes under another name are recognised by hash and stored by catalog name
    renamed = tmp_path / "download.bin"
    renamed.write_bytes(data)
    r = run_cli("add", "--no-nix-store", str(renamed), "--releases", str(releases), "--json", env=_env(tmp_path))
    assert json.loads(r.stdout)["name"] == zip_file.name


def test_add_unknown_file_needs_a_hash(tmp_path: Path) -> None:
    f = tmp_path / "thing.run"
    f.write_bytes(b"abc")
    r = run_cli("add", "--no-nix-store", str(f), env=_env(tmp_path))
    assert r.exit_code == InputError.exit_code and "--sha256" in r.stderr
    r = run_cli("add", "--no-nix-store", str(f), "--sha256", sha(b"abc").sri, env=_env(tmp_path))
    assert r.exit_code == 0, r.stderr
    assert Path(r.stdout.splitlines()[0].split(maxsplit=1)[1]).read_bytes() == b"abc"


def test_fetch_after_add_works_offline(tmp_path: Path) -> None:
    data = os.urandom(10_000)
    releases = _custom_release(tmp_path, data)
    env = _env(tmp_path)
    missing = run_cli(
        "fetch", "--release", "17.1", "--releases", str(releases), "--offline", env=env
    )
    assert missing.exit_code == SourceNotFoundError.exit_code
    assert "vgpubuild add" in missing.stderr and "nix-store --add-fixed sha256" in missing.stderr
    src = tmp_path / "grid.zip"
    src.write_bytes(data)
    first = run_cli(
        "fetch", "--release", "17.1", "--releases", str(releases), "--zip", str(src), env=env
    )
    assert first.exit_code == 0, first.stderr
    again = run_cli(
        "fetch", "--release", "17.1", "--releases", str(releases), "--offline", "--json", env=env
    )
    assert again.exit_code == 0, again.stderr
    (entry,) = json.loads(again.stdout)
    assert entry["name"] == "NVIDIA-GRID-Linux-KVM-550.54.10-550.54.14-551.78.zip"
    assert Path(entry["path"]).read_bytes() == data


def test_cache_serves_the_same_content_under_another_name(tmp_path: Path, cache: Cache) -> None:
    src = tmp_path / "a.zip"
    src.write_bytes(b"same bytes")
    first = cache.add_file(src, None, "a.zip")
    assert cache.lookup(sha(b"same bytes"), "b.zip") == cache.entry(sha(b"same bytes"), "b.zip")
    assert cache.entry(sha(b"same bytes"), "b.zip").read_bytes() == b"same bytes"
    assert first.stat().st_ino == cache.entry(sha(b"same bytes"), "b.zip").stat().st_ino
    assert cache.lookup(sha(b"other"), "a.zip") is None
