"""The first real build as a user lives it (issue 12): one test per step, through the real CLI."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import zipfile
from pathlib import Path

import nixenv
import pytest
from conftest import require_tool, run_cli

from vgpubuild.nixhash import Hash

pytestmark = pytest.mark.usefixtures("no_user_netrc")

ZIP_NAME = "NVIDIA-GRID-Linux-KVM-550.54.10-550.54.14-551.78.zip"


def _env(tmp_path: Path) -> dict[str, str]:
    return {"VGPUBUILD_CACHE": str(tmp_path / "cache"), "HOME": str(tmp_path / "home")}


def _user_release(tmp_path: Path) -> tuple[Path, Path, Hash]:
    """A small generated zip (random content) and a releases file defining its release."""
    src = tmp_path / "download.zip"  # a browser's name, not the catalog's
    with zipfile.ZipFile(src, "w") as zf:
        zf.writestr("Host_Drivers/README.txt", os.urandom(2000).hex())
    digest = Hash("sha256", hashlib.sha256(src.read_bytes()).digest())
    releases = tmp_path / "releases.toml"
    releases.write_text(
        '[releases."17.97"]\nhost_version = "550.54.10"\nguest_version = "550.54.14"\n'
        f'general_version = "550.54.14"\nzip_name = "{ZIP_NAME}"\nzip_sha256 = "{digest.sri}"\n'
    )
    return src, releases, digest


# -- item 2: `add` reaches the Nix store -------------------------------------------------------


REQUIRE_FILE_BUILDER = """\
import sys
sys.exit("the builder ran: the file was not in the store")
"""


def test_add_puts_the_zip_where_require_file_finds_it(tmp_path: Path, nix_store: str) -> None:
    require_tool("nix-build")
    src, releases, digest = _user_release(tmp_path)
    r = run_cli("add", str(src), "--releases", str(releases), "--json", env=_env(tmp_path))
    assert r.exit_code == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["in_nix_store"] and out["name"] == ZIP_NAME
    fixed = subprocess.run(
        [nix_store, "--print-fixed-path", "sha256", digest.hex, ZIP_NAME],
        capture_output=True, text=True, check=True,
    ).stdout.strip()
    drv_path = None
    try:
        assert out["store_path"] == fixed
        subprocess.run([nix_store, "--check-validity", fixed], check=True)
        assert Path(fixed).read_bytes() == src.read_bytes()
        # What requireFile makes: a fixed-output derivation, the name and the flat sha256.
        # Its builder fails if it runs, so success means Nix found the output already there.
        built = nixenv.build_python(
            tmp_path,
            ZIP_NAME,
            REQUIRE_FILE_BUILDER,
            {
                "outputHashMode": '"flat"',
                "outputHashAlgo": '"sha256"',
                "outputHash": f'"{digest.hex}"',
            },
        )
        assert built.returncode == 0, built.stderr
        assert built.out_path == fixed
        assert "will be built" not in built.stderr
        drv_path = subprocess.run(
            ["nix-instantiate", str(tmp_path / f"{ZIP_NAME}.nix")],
            capture_output=True, text=True, check=False,
        ).stdout.strip()
    finally:
        # The store is the machine's: leave it as it was (both paths are unreferenced).
        for path in (drv_path, fixed):
            if path and path.startswith("/"):
                subprocess.run([nix_store, "--delete", path], capture_output=True, check=False)


def test_prefetch_prints_what_nix_prefetch_url_prints(tmp_path: Path, nix_store: str) -> None:
    reference = require_tool("nix-prefetch-url")
    src, _, digest = _user_release(tmp_path)
    nix32, ref_path = subprocess.run(
        [reference, "--print-path", src.as_uri()], capture_output=True, text=True, check=True
    ).stdout.split()
    try:
        alone = run_cli("prefetch", src.as_uri(), env=_env(tmp_path))
        assert alone.exit_code == 0, alone.stderr
        assert alone.stdout == digest.sri + "\n"
        ours = run_cli("prefetch", src.as_uri(), "--nix-store", "--print-path", env=_env(tmp_path))
        assert ours.exit_code == 0, ours.stderr
        assert ours.stdout.split() == [Hash.parse(f"sha256:{nix32}").sri, ref_path]
    finally:
        subprocess.run([nix_store, "--delete", ref_path], capture_output=True, check=False)


def test_add_without_nix_prints_the_command(tmp_path: Path) -> None:
    src, releases, _ = _user_release(tmp_path)
    r = run_cli("add", str(src), "--releases", str(releases), env={**_env(tmp_path), "PATH": ""})
    assert r.exit_code == 0, r.stderr
    cached, command = r.stdout.splitlines()
    cached_path = Path(cached.removeprefix("cached:").strip())
    assert cached_path.name == ZIP_NAME
    assert command == f"add it with: nix-store --add-fixed sha256 {cached_path}"


# -- item 11: Nix users' habits in `hash` ------------------------------------------------------


def test_hash_takes_nixs_names_several_files_and_stdin(tmp_path: Path) -> None:
    nix = require_tool("nix")
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(os.urandom(3000))
    b.write_bytes(b"")
    piped = os.urandom(70_000)

    def reference(*args: str, data: bytes | None = None) -> list[str]:
        return subprocess.run(
            [nix, "hash", *args], input=data, capture_output=True, check=True
        ).stdout.decode().split()

    r = run_cli("hash", "file", "--to", "base32", str(a), "-", str(b), input=piped)
    assert r.exit_code == 0, r.stderr
    want = reference("file", "--base32", str(a)) + reference(
        "file", "--base32", "/dev/stdin", data=piped
    ) + reference("file", "--base32", str(b))
    assert r.stdout.split() == want
    listed = json.loads(run_cli("hash", "file", "--json", str(a), str(b)).stdout)
    assert [d["path"] for d in listed] == [str(a), str(b)]
    sri = reference("file", str(a))[0]
    converted = run_cli("hash", "convert", sri, "--to", "base32")
    assert converted.stdout.split() == reference("to-base32", sri)


# -- items 6 and 7: profiles named as the user sees them; raw edits checked -------------------


@pytest.fixture
def demo_xml(tmp_path: Path) -> Path:
    """The demo release's vgpuConfig.xml: ids 11-13, 40, 41 and 333-335."""
    import vgpubuild

    src = Path(vgpubuild.__file__).parent / "demo_data/driver/vgpu-kvm/vgpuConfig.xml"
    path = tmp_path / "vgpuConfig.xml"
    path.write_bytes(src.read_bytes())
    return path


def test_profiles_show_takes_every_name_of_a_profile(demo_xml: Path) -> None:
    by_id = run_cli("profiles", "show", "333", "--xml", str(demo_xml), "--json")
    assert by_id.exit_code == 0, by_id.stderr
    for name in ("nvidia-333", "GRID RTX6000-1Q", "rtx6000-1q"):
        r = run_cli("profiles", "show", name, "--xml", str(demo_xml), "--json")
        assert (r.exit_code, r.stdout) == (0, by_id.stdout), (name, r.stderr)
    typo = run_cli("profiles", "show", "33", "--xml", str(demo_xml))
    assert typo.exit_code == 8 and "Did you mean 333?" in typo.stderr
    wrong_name = run_cli("profiles", "show", "GRID RTX6000-1X", "--xml", str(demo_xml))
    assert wrong_name.exit_code == 8 and "'GRID RTX6000-1Q'" in wrong_name.stderr


@pytest.mark.parametrize(
    ("edit", "closest"), [("eccSuported=1", "'eccSupported'"), ("display@widht=1", "'width'")]
)
def test_set_refuses_names_no_profile_uses(demo_xml: Path, edit: str, closest: str) -> None:
    out = demo_xml.with_name("out.xml")
    args = ("profiles", "override", "nvidia-333", "--xml", str(demo_xml), "--set", edit)
    refused = run_cli(*args, "-o", str(out))
    assert refused.exit_code == 8, refused.stderr
    assert f"Did you mean {closest}?" in refused.stderr and "--create" in refused.stderr
    assert not out.exists()
    insisted = run_cli(*args, "--create", "-o", str(out))
    assert insisted.exit_code == 0, insisted.stderr
    assert "created" in insisted.stdout
    name = edit.split("=")[0].split("@")[-1]
    assert name.encode() in out.read_bytes()


# -- item 9: hints that say what is true ------------------------------------------------------


def test_hints_fit_the_command_that_failed(tmp_path: Path, demo_xml: Path) -> None:
    import shutil

    from vgpubuild.demo import DEMO_RELEASE, make_demo_inputs

    env = _env(tmp_path)
    folder = run_cli("add", str(tmp_path), env=env)
    assert folder.exit_code == 4 and "hash path" not in folder.stderr
    assert "takes one file" in folder.stderr
    named = run_cli("store", "path", "--flat", "--name", "a b", str(demo_xml))
    assert named.exit_code == 2 and "--name" not in named.stderr
    unnamed = run_cli("store", "path", "--flat", str(demo_xml.rename(tmp_path / "a b")))
    assert unnamed.exit_code == 2 and "pass --name" in unnamed.stderr
    device = run_cli("profiles", "list", "--xml", str(tmp_path / "a b"), "--device", "zz")
    assert device.exit_code == 2 and "'zz'" in device.stderr and "zz:0" not in device.stderr
    unsupported = run_cli("patch", "--release", "17.4", "--offline", env=env)
    assert unsupported.exit_code == 9 and "disable the patcher" not in unsupported.stderr
    # A hash mismatch ends with the hash: the hint goes on its own line, no full stop after it.
    demo = make_demo_inputs(tmp_path / "demo")
    changed = tmp_path / "patcher"
    shutil.copytree(demo.patcher_dir, changed, symlinks=True)
    (changed / "README.md").write_text("changed\n")
    config = tmp_path / "build.json"
    config.write_text(json.dumps({"release": DEMO_RELEASE, "releases": demo.release_mapping()}))
    mismatch = run_cli(
        "patch", "--config", str(config), "--patcher", str(changed), "--offline",
        "--out", str(tmp_path / "out"), env=env,
    )  # fmt: skip
    assert mismatch.exit_code == 6, mismatch.stderr
    got = next(line for line in mismatch.stderr.splitlines() if line.startswith("  got:"))
    assert got.endswith("=")  # the SRI hash, nothing glued to it
