"""The first real build as a user lives it (issue 12): one test per step, through the real CLI."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
import zipfile
from pathlib import Path

import nixenv
import pytest
from conftest import require_tool, run_cli, run_on_a_terminal

from vgpubuild.cache import Cache
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
        capture_output=True, text=True, errors="backslashreplace", check=True,
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
            capture_output=True, text=True, errors="backslashreplace", check=False,
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
        [reference, "--print-path", src.as_uri()], capture_output=True, text=True, errors="backslashreplace", check=True
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
        ).stdout.decode(errors="backslashreplace").split()

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
    disabled = tmp_path / "disabled.toml"
    disabled.write_text("[patcher]\nenable = false\n")
    off = run_cli("patch", "--release", "17.3", "--config", str(disabled), "--offline", env=env)
    assert off.exit_code == 3, off.stderr  # a config setting: the config error code
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


# -- item 8: global options after the command ------------------------------------------------


def test_global_options_work_after_the_command(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_bytes(b"data")
    plain = run_cli("hash", "file", str(f))
    r = run_cli("hash", "file", str(f), "--log-format", "json", "-v")
    assert (r.exit_code, r.stdout) == (0, plain.stdout), r.stderr
    assert json.loads(r.stderr.splitlines()[0])["event"] == "hashed file"
    assert run_cli("hash", "file", str(f), "-q", "--debug").stdout == plain.stdout
    # a command's own option keeps its value, even one spelt like a global option
    extra = run_cli("patch", "--release", "17.3", "--extra", "-v", "--offline")
    assert "extra patcher option '-v'" in extra.stderr
    # after --, everything is an argument
    r = run_cli("hash", "file", "--", "-v")
    assert r.exit_code == 4 and "'-v' does not exist" in r.stderr


# -- item 10: help that teaches and shows what it says ----------------------------------------


def _commands() -> list[tuple[list[str], object]]:
    """Every command path of the CLI with its click command, groups included."""
    import typer

    from vgpubuild.cli.app import app

    found: list[tuple[list[str], object]] = []

    def walk(path: list[str], command: object) -> None:
        found.append((path, command))
        for name, sub in getattr(command, "commands", {}).items():
            walk([*path, name], sub)

    walk([], typer.main.get_command(app))
    return found


def _flat(text: str) -> str:
    return " ".join(text.split())


def test_help_shows_every_text_whole_with_examples_and_uniform_usage() -> None:
    import re

    placeholder = re.compile(r"\[OPTIONS\]|COMMAND|\[ARGS\]\.\.\.|\{[A-Z=.]+\}|\[[A-Z=.]+\]")
    for path, command in _commands():
        r = run_cli(*path, "--help", env={"COLUMNS": "1000"})
        assert r.exit_code == 0, (path, r.stderr)
        shown = _flat(r.stdout.replace("│", " "))
        for param in command.params:  # type: ignore[attr-defined]
            if param.help:  # e.g. releases."X" once vanished into rich markup
                assert _flat(param.help) in shown, (path, param.help)
        usage = next(line for line in r.stdout.splitlines() if "Usage:" in line)
        for word in usage.split()[2 + len(path) :]:
            assert placeholder.fullmatch(word), (path, word)
        assert "Example" in r.stdout or not path, path
    # The root examples fit an 80-column terminal: none wraps into a second line.
    root = run_cli("--help", env={"COLUMNS": "80"}).stdout.splitlines()
    examples = [i for i, line in enumerate(root) if line.strip().startswith("vgpubuild ")]
    assert len(examples) >= 3
    for i in examples:
        assert not root[i + 1].strip(), root[i : i + 2]


def _on_a_terminal(args: list[str], env: dict[str, str]) -> bytes:
    """stderr of the CLI when it is a terminal (colours are only ever for terminals)."""
    return run_on_a_terminal(args, env)[1]


def test_no_color_turns_log_colours_off_and_completion_is_on(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_bytes(b"data")
    coloured = _on_a_terminal(["-v", "hash", "file", str(f)], {"NO_COLOR": ""})
    assert b"hashed file" in coloured and b"\x1b[" in coloured
    plain = _on_a_terminal(["-v", "hash", "file", str(f)], {"NO_COLOR": "1"})
    assert b"hashed file" in plain and b"\x1b[" not in plain
    completion = {"_VGPUBUILD_COMPLETE": "complete_bash", "COMP_WORDS": "vgpubuild pro"}
    r = run_cli(env={**completion, "COMP_CWORD": "1"})
    assert r.exit_code == 0 and r.stdout.split() == ["profiles"]
    assert "--install-completion" in run_cli("--help").stdout


# -- item 12: the cache can be seen and trimmed ------------------------------------------------


def _demo_build_config(tmp_path: Path, demo: object, vram: int) -> Path:
    from vgpubuild.demo import DEMO_RELEASE

    config = tmp_path / f"build-{vram}.json"
    config.write_text(
        json.dumps(
            {
                "release": DEMO_RELEASE,
                "zip": str(demo.zip_path),  # type: ignore[attr-defined]
                "releases": demo.release_mapping(),  # type: ignore[attr-defined]
                "patcher": {"profileOverrides": {"333": {"vramAllocation": vram}}},
            }
        )
    )
    return config


def _kinds(env: dict[str, str]) -> list[str]:
    listed = run_cli("cache", "list", "--json", env=env)
    assert listed.exit_code == 0, listed.stderr
    return sorted(e["kind"] for e in json.loads(listed.stdout)["entries"])


def test_cache_list_clean_and_the_artifact_cap(tmp_path: Path, server: object) -> None:
    from httpserver import drop, status

    from vgpubuild.demo import make_demo_inputs

    demo = make_demo_inputs(tmp_path / "demo")
    env = {**_env(tmp_path), "VGPUBUILD_ARTIFACT_CACHE_MAX": "1"}  # one byte: keep the newest
    out = str(tmp_path / "out")
    for vram in (2048, 3072):
        config = _demo_build_config(tmp_path, demo, vram)
        r = run_cli("patch", "--config", str(config), "--patcher", str(demo.patcher_dir),
                    "--offline", "--out", out, "--json", env=env)  # fmt: skip
        assert r.exit_code == 0, r.stderr
    newest = json.loads(r.stdout)["build_key"]
    listed = json.loads(run_cli("cache", "list", "--json", env=env).stdout)["entries"]
    artifacts = [e for e in listed if e["kind"] == "artifact"]
    assert [e["build_key"] for e in artifacts] == [newest]  # the older one was evicted
    assert "17.99 vgpu-kvm" in artifacts[0]["what"]
    # a quarantined file and an interrupted download
    wrong = tmp_path / "wrong.zip"
    wrong.write_bytes(b"not it")
    assert run_cli("prefetch", str(wrong), Hash("sha256", bytes(32)).sri, env=env).exit_code == 6
    # Progress resets the attempt budget: the 503 after the drop is what gives up.
    body, script = os.urandom(200_000), [drop(50_000), status(503)]
    url = server.add("/big.zip", body, script=script)  # type: ignore[attr-defined]
    r = run_cli("prefetch", url, "--attempts", "1", "--retry-wait", "0", env=env)
    assert r.exit_code == 5, r.stderr
    assert _kinds(env) == ["artifact", "input", "log", "log", "partial", "quarantine"]

    assert run_cli("cache", "clean", env=env).exit_code == 2  # says what to clean
    assert run_cli("cache", "clean", "--quarantine", env=env).exit_code == 0
    assert run_cli("cache", "clean", "--partial", env=env).exit_code == 0
    assert _kinds(env) == ["artifact", "input", "log", "log"]
    assert run_cli("cache", "clean", "--older-than", "1h", env=env).exit_code == 0
    assert len(_kinds(env)) == 4  # everything is fresh
    zip_entry = next(
        Path(e["path"])
        for e in json.loads(run_cli("cache", "list", "--json", env=env).stdout)["entries"]
        if e["what"].endswith(".zip")
    )
    for f in [zip_entry, *zip_entry.iterdir()]:
        os.utime(f, (0, time.time() - 3 * 86400))
    dry = run_cli("cache", "clean", "--older-than", "2d", "--dry-run", env=env)
    assert dry.stdout.startswith("would remove input") and zip_entry.exists()
    assert run_cli("cache", "clean", "--older-than", "2d", env=env).exit_code == 0
    assert not zip_entry.exists() and _kinds(env) == ["artifact", "log", "log"]
    assert run_cli("cache", "clean", "--all", env=env).exit_code == 0
    assert _kinds(env) == []
    # A download that is running keeps its partial file.
    import sys

    from httpserver import slow

    url = server.add("/slow.zip", os.urandom(100_000), default=slow(3.0))  # type: ignore[attr-defined]
    running = subprocess.Popen(
        [sys.executable, "-m", "vgpubuild", "prefetch", url], env={**os.environ, **env},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    partial = tmp_path / "cache" / "partial"
    for _ in range(100):
        if any(partial.glob("*.part")):
            break
        time.sleep(0.05)
    clean = run_cli("cache", "clean", "--partial", env=env)
    assert "kept partial slow.zip (in use" in clean.stdout, clean.stdout
    assert running.wait(timeout=60) == 0, running.communicate()


# -- item 3: rehearse a real config on the demo release ---------------------------------------


def test_patch_release_demo_takes_every_option_and_matches_the_python_api(
    tmp_path: Path,
) -> None:
    from vgpubuild.cache import Cache
    from vgpubuild.config import BuildConfig
    from vgpubuild.demo import DEMO_RELEASE, make_demo_inputs
    from vgpubuild.fetch import FetchOptions
    from vgpubuild.pipeline import build

    config = tmp_path / "build.toml"  # a real user's config: release 17.3, their own zip
    config.write_text(
        'release = "17.3"\nzip = "/nowhere/NVIDIA-GRID.zip"\n'
        '[patcher.profileOverrides."333"]\nvramAllocation = 3584\nheads = 1\n'
    )
    overrides = tmp_path / "overrides.toml"
    overrides.write_text('["334"]\nframerateLimit = 144\n')
    r = run_cli(
        "patch", "--release", "demo", "--config", str(config), "--overrides", str(overrides),
        "--clone", "1E07:0000=1E30:12BA", "--repack", "--json", "--out", str(tmp_path / "cli"),
        env=_env(tmp_path),
    )  # fmt: skip
    assert r.exit_code == 0, r.stderr
    cli = json.loads(r.stdout)
    assert cli["repacked"] is not None

    demo = make_demo_inputs(tmp_path / "demo")
    same = BuildConfig.from_mapping(
        {
            "release": DEMO_RELEASE,
            "zip": str(demo.zip_path),
            "releases": demo.release_mapping(),
            "patcher": {
                "copyVGPUProfiles": {"1E07:0000": "1E30:12BA"},
                "profileOverrides": {
                    "333": {"vramAllocation": 3584, "heads": 1},
                    "334": {"framerateLimit": 144},
                },
            },
        },
        source="test",
    )
    api = build(
        same,
        out=tmp_path / "api",
        cache=Cache(tmp_path / "api-cache"),  # built anew, not the CLI's cached artifact
        fetch_options=FetchOptions(offline=True, progress=False),
        patcher_dir=demo.patcher_dir,
        repack=True,
    )
    assert api.cached is False
    assert cli["nar_hash"] == api.nar_hash.sri and cli["store_path"] == api.store_path
    assert api.repacked is not None and cli["repacked"]["sha256"] == api.repacked.flat_hash.sri


# -- the README tells the journey in its order ------------------------------------------------


def test_readme_quick_start_is_the_journey_in_order(repo_root: Path) -> None:
    readme = (repo_root / "README.md").read_text()
    quick = readme[readme.index("## Quick start") : readme.index("## Commands")]
    steps = ["vgpubuild gpus", "vgpubuild add ", "vgpubuild patch --release 17.3", "nix-store --add-fixed"]
    at = [quick.find(step) for step in steps]
    assert -1 not in at and at == sorted(at), dict(zip(steps, at, strict=True))
    assert "mkPatchedDriver" in quick and "--release demo" in quick


# -- item 1: local inputs first; --offline works; offline failures name the input ------------


def _proxied(env: dict[str, str], server: object) -> dict[str, str]:
    """Every download of the CLI goes to ``server`` (as a proxy): no request may arrive."""
    proxy = server.url("/").rstrip("/")  # type: ignore[attr-defined]
    return {**env, "HTTPS_PROXY": proxy, "HTTP_PROXY": proxy, "ALL_PROXY": proxy, "NO_PROXY": ""}


def test_local_inputs_first_and_offline_builds(tmp_path: Path, server: object) -> None:
    import shutil

    from vgpubuild.demo import DEMO_RELEASE, make_demo_inputs
    from vgpubuild.patchertree import patcher_cache_dir

    # The machine's Nix store may hold the (deterministic) demo zip: look in an empty one.
    env = {**_proxied(_env(tmp_path), server), "NIX_STORE_DIR": str(tmp_path / "no-store")}
    out = ["--out", str(tmp_path / "out")]
    patient = ["--retry-wait", "60", "--timeout", "60"]  # a download attempt would take minutes
    start = time.monotonic()
    r = run_cli("patch", "--release", "17.3", *patient, *out, env=env, timeout=50)
    assert r.exit_code == 7, r.stderr
    assert "NVIDIA-GRID-Linux-KVM-550.90.05-550.90.07-552.74.zip is needed" in r.stderr
    assert "vgpubuild add" in r.stderr
    assert server.connections == 0  # type: ignore[attr-defined]
    print(f"no zip: exit 7 after {time.monotonic() - start:.2f} s")

    demo = make_demo_inputs(tmp_path / "demo")
    mapping = demo.release_mapping()

    def config(name: str, **extra: object) -> str:
        path = tmp_path / f"{name}.json"
        table = {"release": DEMO_RELEASE, "releases": mapping, **extra}
        path.write_text(json.dumps(table))
        return str(path)

    def overrides(vram: int) -> dict[str, object]:
        return {"patcher": {"profileOverrides": {"333": {"vramAllocation": vram}}}}

    # no zip anywhere, offline: the zip, at once
    r = run_cli("patch", "--config", config("nozip"), "--offline", *out, env=env)
    assert r.exit_code == 7 and f"{demo.zip_path.name} is needed" in r.stderr
    # --offline with --patcher DIR builds (and the zip given is cached on the way)
    given = config("given", zip=str(demo.zip_path))
    r = run_cli("patch", "--config", given, "--patcher", str(demo.patcher_dir), "--offline", *out,
                env=env)  # fmt: skip
    assert r.exit_code == 0, r.stderr
    # offline, the zip cached, no patcher anywhere: names the patcher and the one command
    r = run_cli("patch", "--config", config("c1", **overrides(2048)), "--offline", *out, env=env)
    assert r.exit_code == 5, r.stderr
    assert "vGPU-Unlock-patcher" in r.stderr
    assert f"vgpubuild fetch --release {DEMO_RELEASE}" in r.stderr
    # a cached patcher (what an online `vgpubuild fetch` leaves) is enough
    cached = patcher_cache_dir(Cache(tmp_path / "cache"), Hash.parse(mapping[DEMO_RELEASE]["patcher"]["sha256"]))
    shutil.copytree(demo.patcher_dir, cached, symlinks=True)
    r = run_cli("patch", "--config", config("c1", **overrides(2048)), "--offline", *out, env=env)
    assert r.exit_code == 0, r.stderr
    # a merged build needs the consumer driver from a server: offline names it and the command
    mapping[DEMO_RELEASE]["patcher"]["general_url"] = server.url("/general.run")  # type: ignore[attr-defined]
    r = run_cli("patch", "--config", config("merged"), "--merged", "--offline", *out, env=env)
    assert r.exit_code == 5, r.stderr
    general = mapping[DEMO_RELEASE]["patcher"]["general_sha256"]
    assert f"vgpubuild prefetch {server.url('/general.run')} {general}" in r.stderr  # type: ignore[attr-defined]
    assert server.connections == 0  # type: ignore[attr-defined]


# -- item 4: config mistakes refused before patch.sh runs --------------------------------------


@pytest.mark.parametrize(
    ("table", "code", "says"),
    [
        ('[patcher.profileOverrides."333".display]\nwidth = 1920\n', 3, "both width and height"),
        (
            '[patcher.profileOverrides."999"]\nheads = 1\n',
            8,
            "the host driver NVIDIA-Linux-x86_64-550.999.05-vgpu-kvm.run has no profile",
        ),
    ],
)
def test_config_mistakes_stop_before_patch_sh(
    tmp_path: Path, table: str, code: int, says: str
) -> None:
    config = tmp_path / "build.toml"
    config.write_text(table)
    r = run_cli("--log-format", "json", "patch", "--release", "demo", "--config", str(config),
                "--out", str(tmp_path / "out"), env=_env(tmp_path))  # fmt: skip
    assert r.exit_code == code, r.stderr
    assert says in r.stderr
    events = [json.loads(line)["event"] for line in r.stderr.splitlines() if line.startswith("{")]
    assert "running patch.sh" not in events, events
    assert not (tmp_path / "out").exists()


def test_an_edit_error_after_patch_sh_names_no_deleted_folder(tmp_path: Path) -> None:
    config = tmp_path / "build.toml"
    config.write_text('[patcher.copyVGPUProfiles]\n"1E07:0000" = "FFFF:0000"\n')
    r = run_cli("patch", "--release", "demo", "--config", str(config),
                "--out", str(tmp_path / "out"), env=_env(tmp_path))  # fmt: skip
    assert r.exit_code == 8, r.stderr
    error = r.stderr.splitlines()[-1]
    assert "patched NVIDIA-Linux-x86_64-550.999.05-vgpu-kvm-patched/vgpuConfig.xml" in error
    assert ".vgpubuild-work" not in error


# -- item 5: what behaves differently from vgpu4nixos is said once ------------------------------


def test_settings_that_differ_from_vgpu4nixos_are_said_once(tmp_path: Path) -> None:
    from vgpubuild.vgpuconfig.model import VgpuConfig

    dump = tmp_path / "vgpu.json"  # builtins.toJSON config.hardware.nvidia.vgpu, abridged
    dump.write_text(json.dumps({"patcher": {
        "enable": True, "enablePatcherCmd": True, "runtimeOptions": {"enable": False},
        "copyVGPUProfiles": {},
        "profileOverrides": {"333": {"enableCuda": False, "vramAllocation": None, "heads": None}},
    }}))  # fmt: skip
    r = run_cli("--log-format", "json", "patch", "--release", "demo", "--config", str(dump),
                "--out", str(tmp_path / "out"), "--json", env=_env(tmp_path))  # fmt: skip
    assert r.exit_code == 0, r.stderr
    warnings = [
        event["event"]
        for event in map(json.loads, filter(None, r.stderr.splitlines()))
        if event["level"] == "warning"
    ]
    assert len(warnings) == 1, warnings
    assert 'profileOverrides."333".enableCuda = false takes effect' in warnings[0]
    assert "patcher.enablePatcherCmd" in warnings[0] and "runtimeOptions" not in warnings[0]
    artifact = Path(json.loads(r.stdout)["artifact"])
    assert VgpuConfig.load(artifact / "vgpuConfig.xml").profile(333).cuda_enabled is False
    plain = tmp_path / "plain.toml"
    plain.write_text('[patcher.profileOverrides."333"]\nheads = 1\n')
    r = run_cli("patch", "--release", "demo", "--config", str(plain),
                "--out", str(tmp_path / "out"), env=_env(tmp_path))  # fmt: skip
    assert r.exit_code == 0 and "vgpu4nixos" not in r.stderr
