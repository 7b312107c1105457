"""`vgpubuild patch` end to end on the generated demo release, as a user runs it.

Every build runs the real stages (zip, .run checks, patcher verification, a real patch.sh,
the vgpuConfig engine, GNU patch, NAR hashing) in a real process. Each failure case checks
its exit code, that the message says what happened, and that ``--out`` is left as it was.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import pytest
from conftest import Result, run_cli
from lxml import etree

from vgpubuild.artifact import MANIFEST_NAME
from vgpubuild.demo import DEMO_RELEASE, DemoInputs, make_demo_inputs
from vgpubuild.nar import nar_hash
from vgpubuild.nixhash import hash_file

HOST_TREE = "NVIDIA-Linux-x86_64-550.999.05-vgpu-kvm-patched"
GRID_TREE = "NVIDIA-Linux-x86_64-550.999.07-grid-patched"
MERGED_TREE = "NVIDIA-Linux-x86_64-550.999.07-merged-vgpu-kvm-patched"


# ------------------------------------------------------------------------------- helpers


def write_config(demo: DemoInputs, path: Path, **patcher: Any) -> Path:
    """A build config (JSON) naming the demo release, its definition and its zip."""
    data: dict[str, Any] = {
        "release": DEMO_RELEASE,
        "zip": str(demo.zip_path),
        "releases": demo.release_mapping(),
    }
    if patcher:
        data["patcher"] = patcher
    path.write_text(json.dumps(data))
    return path


def patch(
    demo: DemoInputs, tmp: Path, *args: str, out: Path | None = None, **kw: Any
) -> tuple[Result, Path]:
    """Run ``vgpubuild patch`` on the demo with its own cache; return (result, out)."""
    out = out or tmp / "out"
    config = write_config(demo, tmp / "build.json")
    env = {"VGPUBUILD_CACHE": str(tmp / "cache"), **kw.pop("env", {})}
    result = run_cli(
        "patch",
        "--config",
        str(config),
        "--patcher",
        str(demo.patcher_dir),
        "--out",
        str(out),
        "--json",
        *args,
        env=env,
        **kw,
    )
    return result, out


def ok(result: Result) -> dict[str, Any]:
    assert result.exit_code == 0, result.stderr
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def manifest(artifact: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((artifact / MANIFEST_NAME).read_text())
    return data


def vgpu_type(xml: Path, pid: str) -> etree._Element:
    (node,) = etree.parse(str(xml)).getroot().findall(f"vgpuType[@id='{pid}']")
    return node


def text(el: etree._Element, path: str) -> str:
    """The text (or, with ``@``, the attribute) at ``path``; its absence fails the test."""
    path, _, attr = path.partition("@")
    found = el.find(path) if path else el
    assert found is not None, path
    value = found.get(attr) if attr else found.text
    assert value is not None, f"{path}@{attr}"
    return value


def pgpu_ids(xml: Path) -> set[tuple[int, int]]:
    root = etree.parse(str(xml)).getroot()
    return {
        (int(text(d, "@deviceId"), 16), int(text(d, "@subsystemId"), 16))
        for d in root.findall("pgpu/devId")
    }


def assert_untouched(out: Path, before: list[str] | None) -> None:
    """``out`` is as it was: absent if it was, else the same entries (nothing hidden left)."""
    if before is None:
        assert not out.exists(), sorted(os.listdir(out))
    else:
        assert sorted(os.listdir(out)) == before


OVERRIDES = """
["333"]
vramAllocation = 3584
heads = 1
display = { width = 1920, height = 1080 }
framerateLimit = 144
"""


# ------------------------------------------------------------------- successful builds


def test_vgpu_kvm_with_overrides_and_clones(demo: DemoInputs, tmp_path: Path) -> None:
    (tmp_path / "o.toml").write_text(OVERRIDES)
    result, out = patch(
        demo,
        tmp_path,
        "--overrides",
        str(tmp_path / "o.toml"),
        "--clone",
        "1E07:0000=1E30:12BA",
        "--extra",
        "--no-klogtrace",
    )
    data = ok(result)
    artifact = out / HOST_TREE
    assert data["artifact"] == str(artifact) and sorted(os.listdir(out)) == [HOST_TREE]
    assert data["cached"] is False
    assert data["store_path"].endswith(f"-{HOST_TREE}")
    assert data["add_command"] == f"nix-store --add-fixed --recursive sha256 {artifact}"

    m = manifest(artifact)
    assert m["release"]["version"] == DEMO_RELEASE and m["target"] == "vgpu-kvm"
    assert m["options"]["extra"] == ["--no-klogtrace"]
    assert m["options"]["patch_sh_args"] == [
        "--enable-nvidia-gpl-for-experimenting",
        "--force-nvidia-gpl-I-know-it-is-wrong",
        "--no-klogtrace",
        "vgpu-kvm",
    ]
    assert m["inputs"][0] == {"name": demo.zip_path.name, "sha256": hash_file(demo.zip_path).sri}
    assert m["inputs"][1]["name"] == demo.host_run.name
    assert m["inputs"][1]["sha256"] == hash_file(demo.host_run).sri
    release = demo.release_mapping()[DEMO_RELEASE]["patcher"]
    assert m["patcher"]["rev"] == release["rev"] and m["patcher"]["sha256"] == release["sha256"]
    assert m["patcher"]["verified"] is True
    assert m["copyVGPUProfiles"] == {"1E07:0000": "1E30:12BA"}
    assert m["profileOverrides"]["333"]["vramAllocation"] == 3584
    assert m["vgpubuild"] and m["build_key"] == data["build_key"]
    assert any("1E07:0000" in line for line in m["vgpuconfig_changes"])

    xml = artifact / "vgpuConfig.xml"
    t = vgpu_type(xml, "333")
    assert int(text(t, "profileSize"), 16) == 3584 * 1048576
    assert int(text(t, "fbReservation"), 16) == 0x12000000
    assert int(text(t, "framebuffer"), 16) == 0xCE000000
    assert t.findtext("numHeads") == "1"
    assert text(t, "display@width") == "1920" and t.findtext("maxPixels") == "2073600"
    assert int(text(t, "frlConfig"), 16) == 144 and t.findtext("frame_rate_limiter") == "1"
    ids = pgpu_ids(xml)
    assert (0x1E07, 0) in ids and (0x1E30, 0x12BA) in ids
    assert (0x1E84, 0) in ids  # patch.sh's own built-in clone ran too
    # patch.sh really ran on the tree: its GPL switch and the unlock hooks are there.
    assert 'MODULE_LICENSE("Dual MIT/GPL")' in (artifact / "kernel/nvidia/nv.c").read_text()
    assert (artifact / "kernel/unlock/vgpu_unlock_hooks.c").is_file()


def test_grid_guest_build(demo: DemoInputs, tmp_path: Path) -> None:
    result, out = patch(demo, tmp_path, "--guest")
    data = ok(result)
    artifact = out / GRID_TREE
    assert data["artifact"] == str(artifact)
    m = manifest(artifact)
    assert m["target"] == "grid"
    # The guest .run came out of the zip (no host driver was extracted).
    assert [i["name"] for i in m["inputs"]] == [demo.zip_path.name, demo.guest_run.name]
    assert not (artifact / "vgpuConfig.xml").exists()
    assert (artifact / "nvidia-gridd").is_file()
    assert "GRID_BUILD=1" in (artifact / "kernel/conftest.sh").read_text()


def test_grid_refuses_profile_edits(demo: DemoInputs, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    result, _ = patch(demo, tmp_path, "--target", "grid", "--clone", "1E07:0000=1E30:12BA")
    assert result.exit_code == 2
    assert "has no vgpuConfig.xml" in result.stderr
    assert_untouched(out, [])


def test_general_merge_with_overrides_and_clones(demo: DemoInputs, tmp_path: Path) -> None:
    (tmp_path / "o.json").write_text(
        json.dumps(
            {
                "patcher": {
                    "profileOverrides": {"334": {"vramAllocation": 2048, "heads": 2}},
                    "copyVGPUProfiles": {"1B81:0000": "1B38:0"},
                }
            }
        )
    )
    result, out = patch(
        demo, tmp_path, "--merged", "--overrides", str(tmp_path / "o.json"), "--no-force-gpl"
    )
    data = ok(result)
    artifact = out / MERGED_TREE
    assert data["artifact"] == str(artifact)
    m = manifest(artifact)
    assert m["target"] == "general-merge"
    assert m["options"]["patch_sh_args"] == ["general-merge"]
    names = [i["name"] for i in m["inputs"]]
    assert names == [demo.zip_path.name, demo.host_run.name, demo.general_run.name]
    assert m["inputs"][2]["sha256"] == hash_file(demo.general_run).sri
    xml = artifact / "vgpuConfig.xml"
    t = vgpu_type(xml, "334")
    assert int(text(t, "profileSize"), 16) == 2048 << 20 and t.findtext("numHeads") == "2"
    assert (0x1B81, 0) in pgpu_ids(xml)
    # Both drivers are in the merged tree, and the GPL switch was left off.
    assert (artifact / "sriov-manage").is_file() and (artifact / "nvidia-installer").is_file()
    assert 'MODULE_LICENSE("Dual MIT/GPL")' not in (artifact / "kernel/nvidia/nv.c").read_text()


def test_second_identical_run_reuses_the_artifact(demo: DemoInputs, tmp_path: Path) -> None:
    first = ok(patch(demo, tmp_path)[0])
    artifact = Path(first["artifact"])
    readme = artifact / "README.txt"
    inode = readme.stat().st_ino
    # Same --out, artifact untouched: reused where it is, nothing copied.
    second = ok(patch(demo, tmp_path)[0])
    assert second["cached"] is True and first["cached"] is False
    for key in ("nar_hash", "store_path", "build_key", "artifact"):
        assert first[key] == second[key]
    assert readme.stat().st_ino == inode
    # Edited since: the cached copy replaces it.
    original = readme.read_text()
    with readme.open("a") as f:
        f.write("edited by hand\n")
    third = ok(patch(demo, tmp_path)[0])
    assert third["cached"] is True and readme.read_text() == original
    assert nar_hash(artifact).sri == first["nar_hash"]
    # Gone: copied from the cache.
    shutil.rmtree(tmp_path / "out")
    fourth = ok(patch(demo, tmp_path)[0])
    assert fourth["cached"] is True and nar_hash(artifact).sri == first["nar_hash"]
    # A different option is a different key: built afresh.
    other = ok(patch(demo, tmp_path, "--extra", "--no-klogtrace")[0])
    assert other["cached"] is False and other["build_key"] != first["build_key"]


def test_user_patch_applies_and_is_recorded(demo: DemoInputs, tmp_path: Path) -> None:
    fix = tmp_path / "notes.patch"
    fix.write_text("--- /dev/null\n+++ b/NOTES.txt\n@@ -0,0 +1 @@\n+Patched by a user patch.\n")
    result, _ = patch(demo, tmp_path, "--patch", str(fix))
    artifact = Path(ok(result)["artifact"])
    assert (artifact / "NOTES.txt").read_text() == "Patched by a user patch.\n"
    assert manifest(artifact)["patches"] == [
        {"origin": "user", "name": "notes.patch", "sha256": hash_file(fix).sri}
    ]
    assert not list(artifact.rglob("*.orig")) and not list(artifact.rglob("*.rej"))


def test_repack_writes_a_run_with_its_flat_hash(demo: DemoInputs, tmp_path: Path) -> None:
    data = ok(patch(demo, tmp_path, "--repack")[0])
    run = Path(data["repacked"]["path"])
    assert run.name == f"{HOST_TREE}.run" and run.parent == tmp_path / "out"
    assert data["repacked"]["sha256"] == hash_file(run).sri
    unpacked = tmp_path / "unpacked"
    subprocess.run(
        ["sh", str(run), "-x", "--target", str(unpacked)], check=True, capture_output=True
    )
    assert (unpacked / MANIFEST_NAME).read_bytes() == (
        Path(data["artifact"]) / MANIFEST_NAME
    ).read_bytes()
    # From the cache, the same .run again.
    shutil.rmtree(tmp_path / "out")
    again = ok(patch(demo, tmp_path, "--repack")[0])
    assert again["cached"] is True and again["repacked"]["sha256"] == data["repacked"]["sha256"]


def test_text_output_and_help(demo: DemoInputs, tmp_path: Path) -> None:
    config = write_config(demo, tmp_path / "build.json")
    r = run_cli(
        "patch", "--config", str(config), "--patcher", str(demo.patcher_dir),
        "--out", str(tmp_path / "out"), env={"VGPUBUILD_CACHE": str(tmp_path / "cache")},
    )  # fmt: skip
    assert r.exit_code == 0, r.stderr
    lines = dict(line.split(":", 1) for line in r.stdout.splitlines())
    assert lines["store path"].strip().startswith("/nix/store/")
    assert lines["add it with"].strip().startswith("nix-store --add-fixed --recursive sha256 ")
    assert lines["NAR hash"].strip().startswith("sha256-")
    help_text = run_cli("patch", "--help").stdout
    for flag in ("--release", "--zip", "--patcher-unverified", "--clone", "--repack", "Example"):
        assert flag in help_text


def test_demo_command(tmp_path: Path) -> None:
    r = run_cli("demo", "--json", env={"VGPUBUILD_CACHE": str(tmp_path / "cache")}, cwd=tmp_path)
    data = json.loads(r.stdout)
    assert r.exit_code == 0, r.stderr
    assert data["artifact"] == str(tmp_path / "demo-out" / HOST_TREE)
    assert data["store_path"].startswith("/nix/store/")


# ------------------------------------------------------------------------------ failures


def test_zip_hash_mismatch(demo: DemoInputs, tmp_path: Path) -> None:
    bad = tmp_path / demo.zip_path.name
    bad.write_bytes(demo.zip_path.read_bytes() + b"tampered")
    (tmp_path / "out").mkdir()
    result, out = patch(demo, tmp_path, "--zip", str(bad))
    assert result.exit_code == 6, result.stderr
    assert "hash mismatch" in result.stderr and hash_file(bad).sri in result.stderr
    assert_untouched(out, [])


def test_zip_without_host_drivers(demo: DemoInputs, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    stripped = src / demo.zip_path.name
    with zipfile.ZipFile(demo.zip_path) as zin, zipfile.ZipFile(stripped, "w") as zout:
        for info in zin.infolist():
            if not info.filename.startswith("Host_Drivers/"):
                zout.writestr(info, zin.read(info))
    # A release whose pinned zip is this one, so only the missing member can fail.
    mapping = demo.release_mapping()
    mapping[DEMO_RELEASE]["zip_sha256"] = hash_file(stripped).sri
    config = tmp_path / "build.json"
    config.write_text(
        json.dumps({"release": DEMO_RELEASE, "zip": str(stripped), "releases": mapping})
    )
    r = run_cli(
        "patch", "--config", str(config), "--patcher", str(demo.patcher_dir),
        "--out", str(tmp_path / "out"), env={"VGPUBUILD_CACHE": str(tmp_path / "cache")},
    )  # fmt: skip
    assert r.exit_code == 4, r.stderr
    assert "no Host_Drivers/ folder" in r.stderr
    assert_untouched(tmp_path / "out", None)


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--release", "16.8"], 9, "release 16.8 has no vGPU-Unlock-patcher support"),
        (["--release", "17.3", "--target", "vgpu_kvm"], 2, "unknown target 'vgpu_kvm'"),
        (["--release", "17.3", "--extra", "frobnicate"], 2, "does not start with '--'"),
        (["--release", "17.9"], 2, "unknown release '17.9'"),
    ],
)
def test_refused_before_any_work(tmp_path: Path, args: list[str], code: int, message: str) -> None:
    out = tmp_path / "out"
    out.mkdir()
    r = run_cli("patch", *args, "--out", str(out), "--offline",
                env={"VGPUBUILD_CACHE": str(tmp_path / "cache")})  # fmt: skip
    assert r.exit_code == code, r.stderr
    assert message in r.stderr and r.stderr.startswith("error: ") and "Traceback" not in r.stderr
    assert_untouched(out, [])


@pytest.mark.parametrize(
    ("failure", "message"),
    [
        ("versions", "patch.sh expects GNRL=NVIDIA-Linux-x86_64-550.998.07"),
        ("die", "failed with exit code 1"),
        ("reject", "reported failed patches"),
        ("nooutput", "did not create"),
    ],
)
def test_patcher_failures(tmp_path: Path, failure: str, message: str) -> None:
    bad = make_demo_inputs(tmp_path / "inputs", failure=failure)  # type: ignore[arg-type]
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    result, _ = patch(bad, tmp_path, out=out)
    assert result.exit_code == 9, result.stderr
    assert message in result.stderr
    assert_untouched(out, ["keep.txt"])
    if failure != "versions":  # the build log is kept and named
        assert "The full output is in" in result.stderr
        logs = list((tmp_path / "cache" / "logs").iterdir())
        assert len(logs) == 1 and logs[0].read_text()


def test_rej_file_left_behind(demo: DemoInputs, tmp_path: Path) -> None:
    patcher = tmp_path / "patcher"
    shutil.copytree(demo.patcher_dir, patcher, symlinks=True)
    script = patcher / "patch.sh"
    script.write_text(
        script.read_text().replace(
            'echo "patched driver is in ${TARGET}"',
            'echo stale > "${TARGET}/kernel/nvidia/nv.c.rej"\necho "patched driver is in ${TARGET}"',
        )
    )
    out = tmp_path / "out"
    config = write_config(demo, tmp_path / "build.json")
    r = run_cli(
        "patch", "--config", str(config), "--patcher", str(patcher), "--patcher-unverified",
        "--out", str(out), env={"VGPUBUILD_CACHE": str(tmp_path / "cache")},
    )  # fmt: skip
    assert r.exit_code == 9, r.stderr
    assert "left rejected hunks" in r.stderr and "nv.c.rej" in r.stderr
    assert_untouched(out, None)


def test_user_patch_that_does_not_apply(demo: DemoInputs, tmp_path: Path) -> None:
    bad = tmp_path / "bad.patch"
    bad.write_text("--- a/README.txt\n+++ b/README.txt\n@@ -1 +1 @@\n-no such line\n+x\n")
    out = tmp_path / "out"
    out.mkdir()
    result, _ = patch(demo, tmp_path, "--patch", str(bad), out=out)
    assert result.exit_code == 9, result.stderr
    assert "user patch bad.patch does not apply" in result.stderr
    assert_untouched(out, [])


def test_wrong_patcher_hash_and_unverified(demo: DemoInputs, tmp_path: Path) -> None:
    patcher = tmp_path / "patcher"
    shutil.copytree(demo.patcher_dir, patcher, symlinks=True)
    (patcher / "README.md").write_text("edited\n")
    out = tmp_path / "out"
    config = write_config(demo, tmp_path / "build.json")
    args = [
        "patch",
        "--config",
        str(config),
        "--patcher",
        str(patcher),
        "--out",
        str(out),
        "--json",
    ]
    env = {"VGPUBUILD_CACHE": str(tmp_path / "cache")}
    r = run_cli(*args, env=env)
    assert r.exit_code == 6 and "NAR hash" in r.stderr
    assert_untouched(out, None)
    data = ok(run_cli(*args, "--patcher-unverified", env=env))
    m = manifest(Path(data["artifact"]))
    assert m["patcher"]["verified"] is False and "rev" not in m["patcher"]


def test_missing_tool(demo: DemoInputs, tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "sh", "sed", "awk", "grep"):
        found = shutil.which(tool)
        assert found
        (bin_dir / tool).symlink_to(found)
    out = tmp_path / "out"
    result, _ = patch(demo, tmp_path, env={"PATH": str(bin_dir)}, out=out)
    assert result.exit_code == 10, result.stderr
    assert "patch (GNU patch)" in result.stderr and "tar (tar)" in result.stderr
    missing = result.stderr.split("not on PATH for ")[1].split(": ", 1)[1].split(". ")[0]
    assert "sed (" not in missing and "awk (" not in missing
    assert_untouched(out, None)


def test_unwritable_out(demo: DemoInputs, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a folder")
    result, _ = patch(demo, tmp_path, out=blocker / "out")
    assert result.exit_code == 11, result.stderr
    assert "cannot create the output folder" in result.stderr
    result, _ = patch(demo, tmp_path, out=blocker)
    assert result.exit_code == 11 and "is not a folder" in result.stderr
    assert blocker.read_text() == "a file, not a folder"


def test_foreign_folder_in_the_way(demo: DemoInputs, tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / HOST_TREE).mkdir(parents=True)
    (out / HOST_TREE / "mine.txt").write_text("not an artifact")
    result, _ = patch(demo, tmp_path, out=out)
    assert result.exit_code == 11 and "is not a vgpubuild artifact" in result.stderr
    assert os.listdir(out / HOST_TREE) == ["mine.txt"] and os.listdir(out) == [HOST_TREE]


def test_driver_source_run_file_under_another_name(demo: DemoInputs, tmp_path: Path) -> None:
    """driverSource.sha256 means a single .run (vgpu4nixos rule); patch.sh still finds it."""
    mine = tmp_path / "my-host-driver.run"
    shutil.copyfile(demo.host_run, mine)
    config = tmp_path / "build.json"
    source = {"name": mine.name, "url": mine.as_uri(), "sha256": hash_file(mine).sri}
    config.write_text(
        json.dumps(
            {"release": DEMO_RELEASE, "releases": demo.release_mapping(), "driverSource": source}
        )
    )
    env = {"VGPUBUILD_CACHE": str(tmp_path / "cache")}
    args = ["patch", "--config", str(config), "--patcher", str(demo.patcher_dir), "--json"]
    data = ok(run_cli(*args, "--out", str(tmp_path / "out"), env=env))
    m = manifest(Path(data["artifact"]))
    assert m["inputs"] == [{"name": mine.name, "sha256": hash_file(mine).sri}]
    assert Path(data["artifact"]).name == HOST_TREE
    # A target that needs two drivers cannot be served by one .run.
    r = run_cli(*args, "--target", "grid-merge", "--out", str(tmp_path / "out2"), env=env)
    assert r.exit_code == 2 and "needs the GRID zip" in r.stderr
    assert_untouched(tmp_path / "out2", None)


def test_credentials_never_reach_output_or_manifest(demo: DemoInputs, tmp_path: Path) -> None:
    config = tmp_path / "build.json"
    config.write_text(
        json.dumps(
            {
                "release": DEMO_RELEASE,
                "zip": str(demo.zip_path),
                "releases": demo.release_mapping(),
                "driverSource": {
                    "url": "https://admin:hunter2-url@files.example/grid.zip",
                    "curlOptsList": ["-u", "admin:hunter2-opt"],
                },
            }
        )
    )
    r = run_cli(
        "-v", "patch", "--config", str(config), "--patcher", str(demo.patcher_dir),
        "--out", str(tmp_path / "out"), "--json", env={"VGPUBUILD_CACHE": str(tmp_path / "cache")},
    )  # fmt: skip
    data = ok(r)
    seen = r.stdout + r.stderr + (Path(data["artifact"]) / MANIFEST_NAME).read_text()
    assert "hunter2" not in seen and "files.example" not in seen


def test_project_patch_series_in_process(
    demo: DemoInputs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Python API (what the Nix builder mode calls), with a project series of one patch."""
    from vgpubuild import resources
    from vgpubuild.cache import Cache
    from vgpubuild.config import BuildConfig
    from vgpubuild.errors import InputError
    from vgpubuild.fetch import FetchOptions
    from vgpubuild.pipeline import build

    data = tmp_path / "data"
    series = data / "patches" / "17"
    series.mkdir(parents=True)
    (series / "add-notes.patch").write_text("--- /dev/null\n+++ b/SERIES.txt\n@@ -0,0 +1 @@\n+ok\n")
    (series / "series").write_text("# our patches\n\nadd-notes.patch  # why: a test\n")
    monkeypatch.setattr(resources, "data_dir", lambda name: data / name)
    config = BuildConfig.load(write_config(demo, tmp_path / "build.json"))
    kwargs: dict[str, Any] = {
        "cache": Cache(tmp_path / "cache"),
        "fetch_options": FetchOptions(offline=True, progress=False),
        "patcher_dir": demo.patcher_dir,
    }
    result = build(config, out=tmp_path / "out", **kwargs)
    assert (result.artifact / "SERIES.txt").read_text() == "ok\n"
    assert result.manifest["patches"] == [
        {
            "origin": "project",
            "name": "17/add-notes.patch",
            "sha256": hash_file(series / "add-notes.patch").sri,
        }
    ]
    assert result.nar_hash == nar_hash(result.artifact) and not result.cached
    (series / "series").write_text("missing.patch\n")
    with pytest.raises(InputError, match=r"lists 'missing\.patch'"):
        build(config, out=tmp_path / "out2", **kwargs)
    assert not (tmp_path / "out2").exists()
