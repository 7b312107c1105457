"""Binary cache export, checked by real Nix: ``nix copy --from file://DIR`` into fresh stores."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import require_tool, run_cli
from nixenv import SandboxState, build_python

from vgpubuild.binarycache import export
from vgpubuild.errors import InputError, OutputError, UsageError
from vgpubuild.nar import nar_hash


def _tree(root: Path) -> Path:
    """A small tree with every NAR node kind: files, an executable, a symlink, empty dir."""
    (root / "kernel" / "empty").mkdir(parents=True)
    (root / "kernel" / "nvidia.c").write_text("int main(void) { return 0; }\n")
    (root / "nvidia-installer").write_bytes(b"#!/bin/sh\necho hi\n" + bytes(range(256)) * 40)
    (root / "nvidia-installer").chmod(0o755)
    (root / "link").symlink_to("kernel/nvidia.c")
    return root


def _narinfo(path: Path) -> dict[str, str]:
    return dict(line.split(": ", 1) for line in path.read_text().splitlines())


def _nix(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    nix = require_tool("nix")
    return subprocess.run(
        [nix, *args],
        capture_output=True,
        text=True, errors="backslashreplace",
        check=check,
        timeout=300,
    )


def _copy(cache: Path, store: Path, path: str, *extra: str) -> subprocess.CompletedProcess[str]:
    """``nix copy --from file://CACHE`` into the fresh local store at STORE."""
    return _nix(
        "copy", "--from", f"file://{cache}", "--store", str(store), *extra, path, check=False
    )


def _path_info(store: Path, path: str) -> dict[str, object]:
    out = _nix("path-info", "--store", str(store), "--json", path).stdout
    info: dict[str, object] = json.loads(out)[0]
    return info


def _realised(store: Path, path: str) -> Path:
    return store / path.lstrip("/")


def _valid(store: Path, path: str) -> bool:
    """Registered as valid in STORE (a failed import may leave files, never a valid path)."""
    return _nix("path-info", "--store", str(store), path, check=False).returncode == 0


def _gen_key(tmp: Path, name: str) -> tuple[Path, str]:
    nix_store = require_tool("nix-store")
    sec, pub = tmp / f"{name}.sec", tmp / f"{name}.pub"
    subprocess.run([nix_store, "--generate-binary-cache-key", name, str(sec), str(pub)], check=True)
    return sec, pub.read_text().strip()


@pytest.fixture(scope="module")
def built_path(tmp_path_factory: pytest.TempPathFactory, nix_sandbox: SandboxState) -> str:
    """An input-addressed store path (a derivation output) that mentions itself."""
    return _build_output(
        tmp_path_factory.mktemp("drv"),
        "vgpubuild-cache-test-output",
        "line = open(env['src']).readline().strip()\n"
        "os.mkdir(out)\n"
        "open(f'{out}/data', 'w').write(line + '\\n')\n"
        "open(f'{out}/self', 'w').write(out + '\\n')\n",
        ("data", "input-addressed output"),
    )


def _build_output(work: Path, name: str, code: str, src: tuple[str, str]) -> str:
    """Build a derivation whose Python builder runs CODE (``env``, ``out`` given); its path."""
    attrs = {"src": f'builtins.toFile "{src[0]}" "{src[1]}"'}
    prelude = "import os\nenv = os.environ\nout = env['out']\n"
    return build_python(work, name, prelude + code, attrs).out_path


# -- content-addressed artifacts (folders and files outside the store) ----------------------


def test_folder_export_is_realised_by_nix_copy_with_identical_contents(tmp_path: Path) -> None:
    nix_store = require_tool("nix-store")
    art = _tree(tmp_path / "NVIDIA-Linux-x86_64-550.90.05-vgpu-kvm-patched")
    cache = tmp_path / "cache"
    result = export(art, cache, name=None, secret_key_file=None)

    # The store path is the one nix-store --add-fixed --recursive gives the folder.
    added = subprocess.run(
        [
            nix_store,
            "--store",
            str(tmp_path / "ref"),
            "--add-fixed",
            "--recursive",
            "sha256",
            str(art),
        ],
        capture_output=True,
        text=True, errors="backslashreplace",
        check=True,
    ).stdout.strip()
    assert result.store_path == added

    info = _narinfo(result.narinfo)
    assert result.narinfo.name == Path(added).name[:32] + ".narinfo"
    assert info["StorePath"] == added
    assert info["URL"] == f"nar/{result.nar_hash.format('nix32')}.nar"
    assert info["Compression"] == "none"
    assert info["NarHash"] == info["FileHash"] == result.nar_hash.format("nix32", prefix=True)
    assert int(info["NarSize"]) == int(info["FileSize"]) == result.nar.stat().st_size
    assert info["References"] == ""
    assert info["CA"] == f"fixed:r:{result.nar_hash.format('nix32', prefix=True)}"
    assert "Sig" not in info
    cache_info = (cache / "nix-cache-info").read_text()
    assert "StoreDir: /nix/store\n" in cache_info and "WantMassQuery: 1\n" in cache_info
    # The NAR file is byte-for-byte what nix-store --dump writes.
    dumped = subprocess.run([nix_store, "--dump", str(art)], capture_output=True, check=True)
    assert result.nar.read_bytes() == dumped.stdout

    # Content-addressed: a fresh store takes it without --no-check-sigs or keys.
    store = tmp_path / "store"
    proc = _copy(cache, store, result.store_path)
    assert proc.returncode == 0, proc.stderr
    assert _path_info(store, result.store_path)["narHash"] == result.nar_hash.sri
    assert nar_hash(_realised(store, result.store_path)) == nar_hash(art)


def test_file_export_gets_the_flat_store_path(tmp_path: Path) -> None:
    nix_store = require_tool("nix-store")
    run = tmp_path / "NVIDIA-Linux-x86_64-550.90.05-vgpu-kvm-custom.run"
    run.write_bytes(b"#!/bin/sh\nskip=3\n" + os.urandom(4096))
    cache = tmp_path / "cache"
    result = export(run, cache, name=None, secret_key_file=None)
    added = subprocess.run(
        [nix_store, "--store", str(tmp_path / "ref"), "--add-fixed", "sha256", str(run)],
        capture_output=True,
        text=True, errors="backslashreplace",
        check=True,
    ).stdout.strip()
    assert result.store_path == added
    assert result.content_address is not None and result.content_address.startswith("fixed:sha256:")
    store = tmp_path / "store"
    proc = _copy(cache, store, added)
    assert proc.returncode == 0, proc.stderr
    assert _realised(store, added).read_bytes() == run.read_bytes()


def test_tampered_nar_hash_or_size_is_rejected(tmp_path: Path) -> None:
    art = _tree(tmp_path / "art")
    cache = tmp_path / "cache"
    result = export(art, cache, name=None, secret_key_file=None)
    original = result.narinfo.read_text()
    other = nar_hash(tmp_path / "art" / "kernel").format("nix32", prefix=True)
    good = result.nar_hash.format("nix32", prefix=True)
    for i, tampered in enumerate(
        [
            original.replace(f"NarHash: {good}", f"NarHash: {other}"),
            original.replace(f"NarSize: {result.nar_size}", f"NarSize: {result.nar_size + 8}"),
        ]
    ):
        assert tampered != original
        result.narinfo.write_text(tampered)
        proc = _copy(cache, tmp_path / f"store{i}", result.store_path)
        assert proc.returncode != 0
        assert re.search(r"mismatch", proc.stderr), proc.stderr
        assert not _valid(tmp_path / f"store{i}", result.store_path)


def test_name_option_and_several_artifacts_share_one_cache(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = export(_tree(tmp_path / "a"), cache, name="driver-a", secret_key_file=None)
    second = export(_tree(tmp_path / "b"), cache, name="driver-b", secret_key_file=None)
    assert first.store_path.endswith("-driver-a") and second.store_path.endswith("-driver-b")
    assert first.nar == second.nar  # same contents, one NAR
    assert sorted(p.name for p in cache.glob("*.narinfo")) == sorted(
        [first.narinfo.name, second.narinfo.name]
    )
    before = first.nar.stat().st_mtime_ns
    again = export(tmp_path / "a", cache, name="driver-a", secret_key_file=None)
    assert again == first
    assert first.nar.stat().st_mtime_ns == before  # the NAR already there is kept
    for path in (first.store_path, second.store_path):
        assert _copy(cache, tmp_path / "store", path).returncode == 0


def test_nothing_temporary_is_left_behind(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    export(_tree(tmp_path / "art"), cache, name=None, secret_key_file=None)
    left = [p for p in cache.rglob("*") if p.name.startswith(".")]
    assert left == []


# -- input-addressed store paths and signatures --------------------------------------------


def test_store_path_keeps_its_path_and_lists_its_self_reference(
    tmp_path: Path, built_path: str
) -> None:
    result = export(Path(built_path), tmp_path / "cache", name=None, secret_key_file=None)
    assert result.store_path == built_path
    assert result.content_address is None
    info = _narinfo(result.narinfo)
    assert info["References"] == Path(built_path).name
    assert "CA" not in info


def test_unsigned_store_path_needs_no_check_sigs(tmp_path: Path, built_path: str) -> None:
    cache = tmp_path / "cache"
    export(Path(built_path), cache, name=None, secret_key_file=None)
    refused = _copy(cache, tmp_path / "s1", built_path)
    assert refused.returncode != 0
    assert "signature" in refused.stderr
    accepted = _copy(cache, tmp_path / "s2", built_path, "--no-check-sigs")
    assert accepted.returncode == 0, accepted.stderr
    info = _path_info(tmp_path / "s2", built_path)
    assert info["references"] == [built_path]
    assert nar_hash(_realised(tmp_path / "s2", built_path)) == nar_hash(built_path)


def test_signed_store_path_is_accepted_with_its_key_only(tmp_path: Path, built_path: str) -> None:
    sec, pub = _gen_key(tmp_path, "vgpubuild-test-1")
    _, other_pub = _gen_key(tmp_path, "vgpubuild-test-2")
    cache = tmp_path / "cache"
    result = export(Path(built_path), cache, name=None, secret_key_file=sec)
    assert result.signed_by == "vgpubuild-test-1"
    assert _narinfo(result.narinfo)["Sig"].startswith("vgpubuild-test-1:")

    ok = _copy(cache, tmp_path / "s1", built_path, "--option", "trusted-public-keys", pub)
    assert ok.returncode == 0, ok.stderr
    assert _path_info(tmp_path / "s1", built_path)["signatures"] == [
        _narinfo(result.narinfo)["Sig"]
    ]
    wrong_key = _copy(
        cache, tmp_path / "s2", built_path, "--option", "trusted-public-keys", other_pub
    )
    assert wrong_key.returncode != 0 and "signature" in wrong_key.stderr


def test_tampered_signed_narinfo_is_rejected(tmp_path: Path, built_path: str) -> None:
    sec, pub = _gen_key(tmp_path, "vgpubuild-test-3")
    cache = tmp_path / "cache"
    result = export(Path(built_path), cache, name=None, secret_key_file=sec)
    original = result.narinfo.read_text()
    sig = _narinfo(result.narinfo)["Sig"]
    flipped = sig[:-4] + ("AAAA" if not sig.endswith("AAAA") else "BBBB")
    other_size = f"NarSize: {result.nar_size + 8}"
    for i, tampered in enumerate(
        [
            original.replace(sig, flipped),
            original.replace(f"NarSize: {result.nar_size}", other_size),
            original.replace(f"References: {Path(built_path).name}", "References: "),
        ]
    ):
        assert tampered != original
        result.narinfo.write_text(tampered)
        proc = _copy(cache, tmp_path / f"t{i}", built_path, "--option", "trusted-public-keys", pub)
        assert proc.returncode != 0, tampered
        assert not _valid(tmp_path / f"t{i}", built_path)


def test_name_conflicting_with_a_store_path_is_a_usage_error(
    tmp_path: Path, built_path: str
) -> None:
    with pytest.raises(UsageError, match="already in the store"):
        export(Path(built_path), tmp_path / "cache", name="other", secret_key_file=None)


# -- refusals -------------------------------------------------------------------------------


def test_artifact_mentioning_other_store_paths_is_refused(tmp_path: Path) -> None:
    art = tmp_path / "art"
    art.mkdir()
    # Split across the NAR's 1 MiB chunks to check the scan sees across chunk boundaries.
    ref = b"/nix/store/" + b"0" * 32 + b"-glibc-2.39/lib/ld.so"
    (art / "blob").write_bytes(b"x" * ((1 << 20) - 130) + ref)
    with pytest.raises(InputError, match="mentions other store paths") as info:
        export(art, tmp_path / "cache", name=None, secret_key_file=None)
    assert "0" * 32 in str(info.value)
    assert not (tmp_path / "cache").exists()


def test_store_path_mentioning_another_by_hash_only_is_refused(
    tmp_path: Path, nix_sandbox: SandboxState
) -> None:
    """Nix counts a bare hash part as a reference; so does the export of a store path."""
    nix_store = require_tool("nix-store")
    out = _build_output(
        tmp_path,
        "vgpubuild-cache-test-bare-ref",
        "os.mkdir(out)\nopen(f'{out}/name', 'w').write(os.path.basename(env['src']) + '\\n')\n",
        ("referenced", "x"),
    )
    (ref,) = subprocess.run(
        [nix_store, "-q", "--references", out], capture_output=True, text=True, errors="backslashreplace", check=True
    ).stdout.split()
    with pytest.raises(InputError, match="mentions other store paths") as info:
        export(Path(out), tmp_path / "cache", name=None, secret_key_file=None)
    assert Path(ref).name[:32] in str(info.value)


def test_cache_for_another_store_dir_is_refused(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "nix-cache-info").write_text("StoreDir: /gnu/store\n")
    with pytest.raises(OutputError, match="/gnu/store"):
        export(_tree(tmp_path / "art"), cache, name=None, secret_key_file=None)


def test_missing_artifact_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        export(tmp_path / "nope", tmp_path / "cache", name=None, secret_key_file=None)


# -- the command ----------------------------------------------------------------------------


def test_cli_export_json_and_text(tmp_path: Path) -> None:
    art = _tree(tmp_path / "art")
    sec, _ = _gen_key(tmp_path, "cli-key")
    res = run_cli(
        "cache", "export", str(art), "--to", str(tmp_path / "c"), "--sign-key", str(sec), "--json"
    )
    assert res.exit_code == 0, res.stderr
    data = json.loads(res.stdout)
    assert data["nar_hash"] == nar_hash(art).sri
    assert data["signed_by"] == "cli-key"
    assert data["store_path"].endswith("-art")
    assert Path(data["narinfo"]).is_file() and Path(data["nar"]).is_file()
    # The secret never reaches the output or the logs.
    secret = sec.read_text().strip().partition(":")[2]
    assert secret not in res.stdout + res.stderr

    text = run_cli("cache", "export", str(art), "--to", str(tmp_path / "c"))
    assert text.exit_code == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines[0] == data["store_path"]
    assert f"--from file://{tmp_path / 'c'} {data['store_path']}" in lines[2]


def test_cli_errors_have_their_exit_codes(tmp_path: Path) -> None:
    missing = run_cli("cache", "export", str(tmp_path / "nope"), "--to", str(tmp_path / "c"))
    assert missing.exit_code == 4
    assert missing.stderr.startswith("error: artifact") and "Traceback" not in missing.stderr
    art = _tree(tmp_path / "art")
    nokey = run_cli(
        "cache", "export", str(art), "--to", str(tmp_path / "c"), "--sign-key", str(tmp_path / "k")
    )
    assert nokey.exit_code == 4 and "--generate-binary-cache-key" in nokey.stderr
    assert not (tmp_path / "c").exists()


def test_help_teaches(tmp_path: Path) -> None:
    res = run_cli("cache", "export", "--help")
    assert res.exit_code == 0
    assert "Example:" in res.stdout and "--sign-key" in res.stdout


@pytest.mark.slow
def test_large_artifact_is_streamed(tmp_path: Path) -> None:
    """A 600 MiB file exports with far less memory than its size (peak RSS of the process)."""
    art = tmp_path / "big"
    art.mkdir()
    with open(art / "blob", "wb") as f:
        f.truncate(600 << 20)
    cmd = [
        sys.executable,
        "-m",
        "vgpubuild",
        "cache",
        "export",
        str(art),
        "--to",
        str(tmp_path / "c"),
    ]
    # A fresh parent whose only child is the export: its RUSAGE_CHILDREN is that child's peak.
    probe = (
        "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe, *cmd], capture_output=True, text=True, errors="backslashreplace", check=True
    )
    peak_kib = int(proc.stdout.strip().splitlines()[-1])
    assert peak_kib < 150 * 1024, peak_kib
    (nar,) = (tmp_path / "c" / "nar").iterdir()
    assert nar.stat().st_size > 600 << 20
