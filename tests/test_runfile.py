"""runfile: our .run archives really self-extract; check_run reads ours and makeself's."""

from __future__ import annotations

import gzip
import io
import lzma
import os
import subprocess
import tarfile
from pathlib import Path

import pytest
from conftest import require_tool

from vgpubuild.errors import InputError
from vgpubuild.runfile import RunCompression, check_run, make_run

NAME = "NVIDIA-Linux-x86_64-550.1.2-vgpu-kvm.run"


def _payload(root: Path) -> Path:
    (root / "kernel" / "nvidia").mkdir(parents=True)
    (root / "nvidia-installer").write_text("#!/bin/sh\necho installer\n")
    (root / "nvidia-installer").chmod(0o755)
    (root / "kernel" / "nvidia" / "nv.c").write_text("int nv;\n")
    (root / "vgpuConfig.xml").write_bytes(b"<vgpuconfig/>\n" * 1000)
    (root / "link").symlink_to("kernel/nvidia/nv.c")
    return root


def _tree(root: Path) -> dict[str, tuple[str, bytes | str, bool]]:
    out: dict[str, tuple[str, bytes | str, bool]] = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_symlink():
            out[rel] = ("link", os.readlink(path), False)
        elif path.is_dir():
            out[rel] = ("dir", "", False)
        else:
            out[rel] = ("file", path.read_bytes(), bool(path.stat().st_mode & 0o100))
    return out


def _names(raw: bytes) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        return tar.getnames()


def _sh(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["sh", *args], cwd=cwd, capture_output=True, text=True, errors="backslashreplace", check=False)


@pytest.mark.parametrize("compression", ["xz", "gzip"])
def test_make_run_extracts_with_sh_target(tmp_path: Path, compression: RunCompression) -> None:
    payload = _payload(tmp_path / "payload")
    run = make_run(
        tmp_path / NAME, payload, "Test driver 550.1.2", "550.1.2", compression=compression
    )
    result = _sh(str(run), "--extract-only", "--target", "out", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert _tree(tmp_path / "out") == _tree(payload)


def test_dash_x_extracts_to_the_name_like_nvidia(tmp_path: Path) -> None:
    payload = _payload(tmp_path / "payload")
    run = make_run(tmp_path / NAME, payload, "Test driver 550.1.2", "550.1.2")
    assert _sh(run.name, "-x", cwd=tmp_path).returncode == 0
    assert _tree(tmp_path / NAME.removesuffix(".run")) == _tree(payload)


def test_list_info_lsm(tmp_path: Path) -> None:
    run = make_run(tmp_path / NAME, _payload(tmp_path / "p"), "Test driver 550.1.2", "550.1.2")
    listed = _sh(str(run), "--list", cwd=tmp_path)
    assert listed.returncode == 0
    assert set(listed.stdout.split()) == {
        "kernel/",
        "kernel/nvidia/",
        "kernel/nvidia/nv.c",
        "link",
        "nvidia-installer",
        "vgpuConfig.xml",
    }
    info = _sh(str(run), "--info", cwd=tmp_path).stdout
    assert "Identification: Test driver 550.1.2" in info
    assert f"Target directory: {NAME.removesuffix('.run')}" in info
    assert "Title: Test driver 550.1.2" in _sh(str(run), "--lsm", cwd=tmp_path).stdout
    bad = _sh(str(run), "--bogus", cwd=tmp_path)
    assert bad.returncode != 0 and "unknown option --bogus" in bad.stderr


def test_payload_starts_at_skip_line_like_nvidia(tmp_path: Path) -> None:
    """nixpkgs' way: ``tail -n +$skip X.run | bsdtar xf -`` (bsdtar detects xz itself)."""
    bsdtar = require_tool("bsdtar")
    payload = _payload(tmp_path / "payload")
    run = make_run(tmp_path / NAME, payload, "Test driver 550.1.2", "550.1.2")
    skip = next(
        line.split("=", 1)[1]
        for line in run.read_text(errors="replace").splitlines()
        if line.startswith("skip=")
    )
    (tmp_path / "out").mkdir()
    subprocess.run(
        f"tail -n +{skip} {run} | {bsdtar} xf - -C out", shell=True, cwd=tmp_path, check=True
    )
    assert _tree(tmp_path / "out") == _tree(payload)


def test_make_run_is_deterministic(tmp_path: Path) -> None:
    a = _payload(tmp_path / "a")
    old = os.umask(0o077)
    try:
        b = _payload(tmp_path / "b")
    finally:
        os.umask(old)
    for path in b.rglob("*"):
        os.utime(path, (12345, 12345), follow_symlinks=False)
    ra = make_run(tmp_path / "x" / NAME, a, "Test driver 550.1.2", "550.1.2")
    rb = make_run(tmp_path / "y" / NAME, b, "Test driver 550.1.2", "550.1.2")
    assert ra.read_bytes() == rb.read_bytes()


def test_check_run_reads_our_header(tmp_path: Path) -> None:
    run = make_run(tmp_path / NAME, _payload(tmp_path / "p"), "Test driver 550.1.2", "550.1.2")
    info = check_run(run, "550.1.2")
    assert (info.version, info.compression, info.label) == ("550.1.2", "xz", "Test driver 550.1.2")
    with run.open("rb") as f:
        f.seek(info.offset)
        names = _names(lzma.decompress(f.read()))
    assert "kernel/nvidia/nv.c" in names


@pytest.mark.parametrize("flags", [[], ["--xz"]])
def test_check_run_recognises_makeself_archives(tmp_path: Path, flags: list[str]) -> None:
    """makeself 2.x means "payload after skip lines", NVIDIA "from line skip": both work."""
    makeself = require_tool("makeself")
    payload = _payload(tmp_path / "payload")
    run = tmp_path / "NVIDIA-Linux-x86_64-550.1.2.run"
    subprocess.run(
        [
            makeself,
            "--nox11",
            "--quiet",
            *flags,
            str(payload),
            str(run),
            "Test driver 550.1.2",
            "./nvidia-installer",
        ],
        check=True,
        capture_output=True,
    )
    info = check_run(run, "550.1.2")
    assert info.version == "550.1.2"
    assert info.compression == ("xz" if flags else "gzip")
    with run.open("rb") as f:
        f.seek(info.offset)
        data = f.read()
    raw = lzma.decompress(data) if flags else gzip.decompress(data)
    assert "./kernel/nvidia/nv.c" in _names(raw)


def test_check_run_wrong_version_names_both(tmp_path: Path) -> None:
    run = make_run(tmp_path / NAME, _payload(tmp_path / "p"), "Test driver 550.1.2", "550.1.2")
    with pytest.raises(InputError) as err:
        check_run(run, "550.90.05")
    assert "550.1.2" in err.value.message and "550.90.05" in err.value.message


def test_check_run_header_version_disagreeing_with_name(tmp_path: Path) -> None:
    run = make_run(tmp_path / NAME, _payload(tmp_path / "p"), "Test driver 550.7.7", "550.7.7")
    with pytest.raises(InputError, match=r"550\.7\.7.*from its header"):
        check_run(run, "550.1.2")


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"PK\x03\x04 not a script", "shell header"),
        (b"#!/bin/sh\necho hello\nexit 0\n", "skip="),
        (b"#!/bin/sh\nskip=3\nexit 0\nplain text, not a payload\nmore\n", "no compressed payload"),
        (b"#!/bin/sh\nskip=40\nexit 0\n", "does not point"),
    ],
)
def test_check_run_refuses_non_runs(tmp_path: Path, content: bytes, why: str) -> None:
    path = tmp_path / NAME
    path.write_bytes(content)
    with pytest.raises(InputError, match=why):
        check_run(path, "550.1.2")


def test_check_run_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot read"):
        check_run(tmp_path / NAME, None)
