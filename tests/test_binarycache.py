"""Binary cache export, checked by real Nix: ``nix copy --from file://DIR`` into fresh stores."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import require_tool, run_cli
from nixenv import SandboxState, build_python

from vgpubuild.binarycache import NAR_SUFFIX, export
from vgpubuild.errors import InputError, OutputError, UsageError
from vgpubuild.nar import nar_hash
from vgpubuild.nixhash import Hash


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
        text=True,
        errors="backslashreplace",
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


def _decompress(data: bytes, compression: str) -> bytes:
    """Unpack with the reference tools (xz, zstd), not with the library that packed it."""
    if compression == "none":
        return data
    tool = require_tool({"xz": "xz", "zstd": "zstd"}[compression])
    return subprocess.run([tool, "-dc"], input=data, capture_output=True, check=True).stdout


@pytest.mark.parametrize("compression", ["none", "xz", "zstd"])
def test_folder_export_round_trips_through_nix_copy(tmp_path: Path, compression: str) -> None:
    nix_store = require_tool("nix-store")
    art = _tree(tmp_path / "NVIDIA-Linux-x86_64-550.90.05-vgpu-kvm-patched")
    cache = tmp_path / "cache"
    result = export(art, cache, compression=compression)

    # The store path is the one nix-store --add-fixed --recursive gives the folder.
    added = subprocess.run(
        [nix_store, "--store", str(tmp_path / "ref"), "--add-fixed", "--recursive", "sha256", str(art)],
        capture_output=True, text=True, errors="backslashreplace", check=True,
    ).stdout.strip()  # fmt: skip
    assert result.store_path == added

    info = _narinfo(result.narinfo)
    nar_file = result.nar.read_bytes()
    file_hash = Hash("sha256", hashlib.sha256(nar_file).digest())
    nar32 = result.info.path.nar_hash.format("nix32", prefix=True)
    assert result.narinfo.name == Path(added).name[:32] + ".narinfo"
    assert info["StorePath"] == added
    assert info["Compression"] == compression
    assert info["URL"] == f"nar/{file_hash.format('nix32')}{NAR_SUFFIX[compression]}"
    assert cache / info["URL"] == result.nar
    assert info["FileHash"] == file_hash.format("nix32", prefix=True)
    assert int(info["FileSize"]) == len(nar_file)
    assert info["NarHash"] == nar32
    assert info["References"] == ""
    assert info["CA"] == f"fixed:r:{nar32}"
    assert "Sig" not in info
    cache_info = (cache / "nix-cache-info").read_text()
    assert cache_info == "StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 50\n"
    # Unpacked, the NAR file is byte-for-byte what nix-store --dump writes.
    dumped = subprocess.run([nix_store, "--dump", str(art)], capture_output=True, check=True)
    assert _decompress(nar_file, compression) == dumped.stdout
    assert int(info["NarSize"]) == len(dumped.stdout)
    if compression != "none":
        assert len(nar_file) < len(dumped.stdout)

    # Content-addressed: a fresh store takes it without --no-check-sigs or keys.
    store = tmp_path / "store"
    proc = _copy(cache, store, result.store_path)
    assert proc.returncode == 0, proc.stderr
    assert _path_info(store, result.store_path)["narHash"] == result.info.path.nar_hash.sri
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
        text=True,
        errors="backslashreplace",
        check=True,
    ).stdout.strip()
    assert result.store_path == added
    ca = result.info.path.content_address
    assert ca is not None and ca.startswith("fixed:sha256:")
    store = tmp_path / "store"
    proc = _copy(cache, store, added)
    assert proc.returncode == 0, proc.stderr
    assert _realised(store, added).read_bytes() == run.read_bytes()


def test_tampered_nar_hash_or_size_is_rejected(tmp_path: Path) -> None:
    art = _tree(tmp_path / "art")
    cache = tmp_path / "cache"
    result = export(art, cache, name=None, secret_key_file=None)
    original = result.narinfo.read_text()
    size = result.info.path.nar_size
    other = nar_hash(tmp_path / "art" / "kernel").format("nix32", prefix=True)
    good = result.info.path.nar_hash.format("nix32", prefix=True)
    for i, tampered in enumerate(
        [
            original.replace(f"NarHash: {good}", f"NarHash: {other}"),
            original.replace(f"NarSize: {size}", f"NarSize: {size + 8}"),
        ]
    ):
        assert tampered != original
        result.narinfo.write_text(tampered)
        proc = _copy(cache, tmp_path / f"store{i}", result.store_path)
        assert proc.returncode != 0
        assert re.search(r"mismatch", proc.stderr), proc.stderr
        assert not _valid(tmp_path / f"store{i}", result.store_path)


def _snapshot(cache: Path) -> dict[str, tuple[int, int, bytes]]:
    """Every file of the cache: inode, mtime and bytes (a rewrite changes at least one)."""
    return {
        str(p.relative_to(cache)): (p.stat().st_ino, p.stat().st_mtime_ns, p.read_bytes())
        for p in sorted(cache.rglob("*"))
        if p.is_file()
    }


def test_several_artifacts_share_one_cache_and_nothing_is_rewritten(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = export(_tree(tmp_path / "a"), cache, name="driver-a", compression="zstd")
    before = _snapshot(cache)
    # Another name for the same tree: a new narinfo, the same NAR file (kept, not rewritten).
    second = export(tmp_path / "a", cache, name="driver-b", compression="zstd")
    assert second.nar == first.nar and not second.kept
    # A third artifact with another compression.
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "f").write_text("third\n")
    third = export(tmp_path / "c", cache, compression="xz")
    after = _snapshot(cache)
    assert {k: after[k] for k in before} == before
    assert len(after) == len(before) + 3  # two narinfos and one .nar.xz
    # Exporting again, even asking for another compression: the entry is kept as it is.
    again = export(tmp_path / "a", cache, name="driver-a", compression="xz")
    assert again.kept and again.info == first.info and again.nar == first.nar
    assert _snapshot(cache) == after
    for result in (first, second, third):
        proc = _copy(cache, tmp_path / "store", result.store_path)
        assert proc.returncode == 0, proc.stderr


def test_adding_to_a_cache_nix_made_keeps_every_file_of_it(tmp_path: Path) -> None:
    nix, nix_store = require_tool("nix"), require_tool("nix-store")
    source = tmp_path / "source-store"
    (tmp_path / "by-nix").mkdir()
    (tmp_path / "by-nix" / "f").write_text("copied by nix\n")
    theirs = subprocess.run(
        [nix_store, "--store", str(source), "--add", str(tmp_path / "by-nix")],
        capture_output=True, text=True, errors="backslashreplace", check=True,
    ).stdout.strip()  # fmt: skip
    cache = tmp_path / "cache"
    subprocess.run(
        [nix, "copy", "--from", str(source), "--to", f"file://{cache}?compression=xz", theirs],
        capture_output=True, check=True,
    )  # fmt: skip
    before = _snapshot(cache)
    ours = export(_tree(tmp_path / "art"), cache)
    assert {k: v for k, v in _snapshot(cache).items() if k in before} == before
    for path in (theirs, ours.store_path):
        proc = _copy(cache, tmp_path / "store", path)
        assert proc.returncode == 0, proc.stderr


def test_damaged_nar_file_in_the_cache_is_not_reused(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = export(_tree(tmp_path / "a"), cache, name="driver-a")
    first.nar.write_bytes(first.nar.read_bytes()[:-1] + b"\0")
    damaged = _snapshot(cache)
    with pytest.raises(OutputError, match="does not match its name"):
        export(tmp_path / "a", cache, name="driver-b")
    assert _snapshot(cache) == damaged


def test_nothing_temporary_is_left_behind(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    export(_tree(tmp_path / "art"), cache, name=None, secret_key_file=None)
    left = [p for p in cache.rglob("*") if p.name.startswith(".")]
    assert left == []
    # A refused export (found only after the NAR was compressed) leaves the cache as it was.
    before = _snapshot(cache)
    (tmp_path / "refs").mkdir()
    (tmp_path / "refs" / "f").write_bytes(b"/nix/store/" + b"1" * 32 + b"-glibc-2.39/lib")
    with pytest.raises(InputError, match="mentions other store paths"):
        export(tmp_path / "refs", cache, compression="xz")
    assert _snapshot(cache) == before


# -- input-addressed store paths and signatures --------------------------------------------


def test_store_path_keeps_its_path_and_lists_its_self_reference(
    tmp_path: Path, built_path: str
) -> None:
    result = export(Path(built_path), tmp_path / "cache", name=None, secret_key_file=None)
    assert result.store_path == built_path
    assert result.info.path.content_address is None
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
    size = result.info.path.nar_size
    other_size = f"NarSize: {size + 8}"
    for i, tampered in enumerate(
        [
            original.replace(sig, flipped),
            original.replace(f"NarSize: {size}", other_size),
            original.replace(f"References: {Path(built_path).name}", "References: "),
        ]
    ):
        assert tampered != original
        result.narinfo.write_text(tampered)
        proc = _copy(cache, tmp_path / f"t{i}", built_path, "--option", "trusted-public-keys", pub)
        assert proc.returncode != 0, tampered
        assert not _valid(tmp_path / f"t{i}", built_path)


def test_signed_entry_is_kept_when_exported_again_with_its_key(
    tmp_path: Path, built_path: str
) -> None:
    sec, _ = _gen_key(tmp_path, "vgpubuild-test-4")
    cache = tmp_path / "cache"
    first = export(Path(built_path), cache, secret_key_file=sec)
    before = _snapshot(cache)
    again = export(Path(built_path), cache, secret_key_file=sec, compression="none")
    assert again.kept and again.info == first.info
    assert _snapshot(cache) == before


def test_unsigned_entry_is_kept_and_signing_it_afterwards_is_refused(
    tmp_path: Path, built_path: str
) -> None:
    sec, _ = _gen_key(tmp_path, "vgpubuild-test-5")
    cache = tmp_path / "cache"
    export(Path(built_path), cache)
    before = _snapshot(cache)
    with pytest.raises(OutputError, match="without a signature by 'vgpubuild-test-5'") as info:
        export(Path(built_path), cache, secret_key_file=sec)
    assert "remove" in str(info.value)
    assert _snapshot(cache) == before


def test_entry_with_other_contents_for_the_same_path_is_refused_and_kept(
    tmp_path: Path, built_path: str
) -> None:
    """An input-addressed path built twice differently: the cache keeps the first build."""
    cache = tmp_path / "cache"
    result = export(Path(built_path), cache)
    text = result.narinfo.read_text()
    good = result.info.path.nar_hash.format("nix32", prefix=True)
    other = Hash("sha256", hashlib.sha256(b"another build").digest()).format("nix32", prefix=True)
    result.narinfo.write_text(text.replace(f"NarHash: {good}", f"NarHash: {other}"))
    shutil.rmtree(cache / "nar")
    before = _snapshot(cache)
    with pytest.raises(OutputError, match=r"already has .* with other contents") as info:
        export(Path(built_path), cache)
    assert info.value.exit_code == 11
    assert _snapshot(cache) == before and not (cache / "nar").exists()
    (cache / result.narinfo.name).write_text("StorePath: /nix/store/x\n")
    with pytest.raises(OutputError, match="not a valid narinfo"):
        export(Path(built_path), cache)


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
        [nix_store, "-q", "--references", out],
        capture_output=True,
        text=True,
        errors="backslashreplace",
        check=True,
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
    assert [p.name for p in cache.iterdir()] == ["nix-cache-info"]  # refused before writing


def test_missing_artifact_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        export(tmp_path / "nope", tmp_path / "cache", name=None, secret_key_file=None)


# -- the command ----------------------------------------------------------------------------


def test_cli_export_json_and_text(tmp_path: Path) -> None:
    art = _tree(tmp_path / "art")
    sec, pub = _gen_key(tmp_path, "cli-key")
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

    assert data["compression"] == "zstd" and data["url"].endswith(".nar.zst")
    assert data["public_key"] == pub and data["kept"] is False

    text = run_cli("cache", "export", str(art), "--to", str(tmp_path / "c"))
    assert text.exit_code == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines[0] == data["store_path"]
    assert "already in the cache (zstd); kept as it is" in lines
    assert lines[-1].endswith(f"copy --from file://{tmp_path / 'c'} {data['store_path']}")

    signed = run_cli(
        "cache", "export", str(art), "--to", str(tmp_path / "c"), "--sign-key", str(sec)
    )
    assert f"public key: {pub}" in signed.stdout.splitlines()
    assert f"--option trusted-public-keys {shlex.quote(pub)} {data['store_path']}" in signed.stdout


def test_cli_errors_have_their_exit_codes(tmp_path: Path) -> None:
    missing = run_cli("cache", "export", str(tmp_path / "nope"), "--to", str(tmp_path / "c"))
    assert missing.exit_code == 4
    assert missing.stderr.startswith("error: artifact") and "Traceback" not in missing.stderr
    art = _tree(tmp_path / "art")
    nokey = run_cli(
        "cache", "export", str(art), "--to", str(tmp_path / "c"), "--sign-key", str(tmp_path / "k")
    )
    assert nokey.exit_code == 4 and "--generate-binary-cache-key" in nokey.stderr
    bad = run_cli("cache", "export", str(art), "--to", str(tmp_path / "c"), "--compression", "bz2")
    assert bad.exit_code == 2 and "zstd, xz, none" in bad.stderr
    assert not (tmp_path / "c").exists()


def test_help_teaches(tmp_path: Path) -> None:
    res = run_cli("cache", "export", "--help")
    assert res.exit_code == 0
    assert "Example:" in res.stdout and "--sign-key" in res.stdout and "--compression" in res.stdout


@pytest.mark.slow
@pytest.mark.parametrize("compression", ["none", "xz", "zstd"])
def test_large_artifact_is_streamed(tmp_path: Path, compression: str) -> None:
    """A 600 MiB file exports with far less memory than its size (peak RSS of the process).

    The size of the whole ``cache export`` process, interpreter included; bench/bench_cache.py
    measures 1 GiB of less compressible data and reports it beside ``nix copy``.
    """
    art = tmp_path / "big"
    art.mkdir()
    with open(art / "blob", "wb") as f:
        f.truncate(600 << 20)
    cmd = [sys.executable, "-m", "vgpubuild", "cache", "export", str(art), "--to", str(tmp_path / "c"),
           "--compression", compression, "--json"]  # fmt: skip
    # A fresh parent whose only child is the export: its RUSAGE_CHILDREN is that child's peak.
    probe = (
        "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe, *cmd],
        capture_output=True,
        text=True,
        errors="backslashreplace",
        check=True,
    )
    *output, peak = proc.stdout.strip().splitlines()
    assert int(peak) < 64 * 1024, peak
    data = json.loads("\n".join(output))
    assert data["nar_size"] > 600 << 20
    assert Path(data["nar"]).stat().st_size == data["file_size"]
