"""unpack: only the needed zip members, streamed; nothing ever lands outside its folder."""

from __future__ import annotations

import io
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from vgpubuild.catalog import Release
from vgpubuild.demo import DemoInputs
from vgpubuild.errors import InputError, UsageError
from vgpubuild.unpack import extract_members, extract_tarball, zip_members

HOST = "Host_Drivers/NVIDIA-Linux-x86_64-550.90.05-vgpu-kvm.run"


def _zip(path: Path, members: dict[str, bytes], symlinks: tuple[str, ...] = ()) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            info = zipfile.ZipInfo(name)
            info.create_system = 3
            mode = stat.S_IFLNK | 0o777 if name in symlinks else stat.S_IFREG | 0o644
            info.external_attr = mode << 16
            zf.writestr(info, data)
    return path


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("vgpu-kvm", ["NVIDIA-Linux-x86_64-550.999.05-vgpu-kvm.run"]),
        ("grid", ["NVIDIA-Linux-x86_64-550.999.07-grid.run"]),
        ("wsys", ["552.99_grid_win10_win11_server2022_dch_64bit_international.exe"]),
        (
            "grid-merge",
            [
                "NVIDIA-Linux-x86_64-550.999.05-vgpu-kvm.run",
                "NVIDIA-Linux-x86_64-550.999.07-grid.run",
            ],
        ),
        ("general-merge", ["NVIDIA-Linux-x86_64-550.999.05-vgpu-kvm.run"]),
        ("general", []),
    ],
)
def test_only_the_targets_members_are_extracted(
    tmp_path: Path, demo: DemoInputs, release: Release, target: str, expected: list[str]
) -> None:
    wanted = dict.fromkeys(zip_members(release, target), tmp_path / "work")
    out = extract_members(demo.zip_path, wanted, work_dir=tmp_path)
    folder = tmp_path / "work"
    assert (_files(folder) if folder.exists() else []) == expected
    for path in out.values():
        with zipfile.ZipFile(demo.zip_path) as zf:
            member = next(n for n in zf.namelist() if n.endswith("/" + path.name))
            assert path.read_bytes() == zf.read(member)


def test_unknown_target(release: Release) -> None:
    with pytest.raises(UsageError, match="unknown target"):
        zip_members(release, "vgpu")


@pytest.mark.parametrize(
    ("name", "reason"),
    [("../evil.run", "'..'"), ("Host_Drivers/../../evil.run", "'..'"), ("/tmp/evil", "absolute")],
)
def test_escaping_members_are_refused(tmp_path: Path, name: str, reason: str) -> None:
    z = _zip(tmp_path / "grid.zip", {HOST: b"run", name: b"evil"})
    work = tmp_path / "a" / "work"
    with pytest.raises(InputError, match=reason):
        extract_members(z, {"Host_Drivers/*.run": work}, work_dir=tmp_path / "a")
    assert not work.exists()
    assert not (tmp_path / "evil.run").exists() and not (tmp_path / "a" / "evil.run").exists()


def test_symlink_member_is_refused(tmp_path: Path) -> None:
    z = _zip(
        tmp_path / "g.zip",
        {HOST: b"run", "Host_Drivers/x.run": b"/etc/passwd"},
        ("Host_Drivers/x.run",),
    )
    with pytest.raises(InputError, match="symlink"):
        extract_members(z, {HOST: tmp_path / "w"})
    assert not (tmp_path / "w").exists()


def test_zip_without_host_drivers_says_so(tmp_path: Path) -> None:
    z = _zip(tmp_path / "g.zip", {"Guest_Drivers/NVIDIA-Linux-x86_64-550.90.07-grid.run": b"x"})
    with pytest.raises(InputError) as err:
        extract_members(z, {HOST: tmp_path / "w"})
    assert "no Host_Drivers/ folder" in err.value.message
    assert "NVIDIA-Linux-x86_64-550.90.07-grid.run" in err.value.message


def test_ambiguous_glob_is_refused(tmp_path: Path) -> None:
    z = _zip(tmp_path / "g.zip", {HOST: b"a", "Host_Drivers/other.run": b"b"})
    with pytest.raises(InputError, match="2 members"):
        extract_members(z, {"Host_Drivers/*.run": tmp_path / "w"})


def test_glob_matches_under_an_extra_top_folder(tmp_path: Path) -> None:
    z = _zip(tmp_path / "g.zip", {f"top/{HOST}": b"a", "top/readme.pdf": b"b"})
    out = extract_members(z, {"Host_Drivers/*-vgpu-kvm.run": tmp_path / "w"})
    assert out["Host_Drivers/*-vgpu-kvm.run"].read_bytes() == b"a"


def test_destination_outside_work_dir_is_refused(tmp_path: Path) -> None:
    z = _zip(tmp_path / "g.zip", {HOST: b"a"})
    with pytest.raises(InputError, match="outside the work folder"):
        extract_members(z, {HOST: tmp_path / "elsewhere"}, work_dir=tmp_path / "work")


def test_damaged_member_and_non_zip(tmp_path: Path) -> None:
    z = _zip(tmp_path / "g.zip", {HOST: b"A" * 5000})
    data = bytearray(z.read_bytes())
    data[data.index(b"AAAA") + 10] = ord("B")
    z.write_bytes(bytes(data))
    with pytest.raises(InputError, match="damaged"):
        extract_members(z, {HOST: tmp_path / "w"})
    assert not (tmp_path / "w" / Path(HOST).name).exists()
    (tmp_path / "plain.zip").write_bytes(b"not a zip")
    with pytest.raises(InputError, match="as a zip"):
        extract_members(tmp_path / "plain.zip", {HOST: tmp_path / "w"})


# ------------------------------------------------------------------------------ tarballs


def _tar(path: Path, members: list[tarfile.TarInfo], data: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for info in members:
            body = data.get(info.name)
            if body is not None:
                info.size = len(body)
            tf.addfile(info, io.BytesIO(body) if body is not None else None)
    return path


def _info(
    name: str, kind: bytes = tarfile.REGTYPE, link: str = "", mode: int = 0o644
) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, link, mode
    return info


def test_extract_tarball_strips_top_folder(tmp_path: Path) -> None:
    t = _tar(
        tmp_path / "a.tar.gz",
        [
            _info("repo-abc", tarfile.DIRTYPE, mode=0o755),
            _info("repo-abc/patch.sh", mode=0o775),
            _info("repo-abc/unlock", tarfile.DIRTYPE, mode=0o755),
            _info("repo-abc/patches/x.patch", mode=0o664),
            _info("repo-abc/link", tarfile.SYMTYPE, "patches/x.patch"),
        ],
        {"repo-abc/patch.sh": b"#!/bin/bash\n", "repo-abc/patches/x.patch": b"diff\n"},
    )
    out = extract_tarball(t, tmp_path / "out")
    assert _files(out) == ["link", "patch.sh", "patches", "patches/x.patch", "unlock"]
    assert (out / "patch.sh").stat().st_mode & 0o777 == 0o755
    assert (out / "patches" / "x.patch").stat().st_mode & 0o777 == 0o644
    assert (out / "link").read_bytes() == b"diff\n"


@pytest.mark.parametrize(
    ("member", "match"),
    [
        (_info("repo-abc/../../evil"), "'..'"),
        (_info("/abs/evil"), "absolute"),
        (_info("repo-abc/l", tarfile.SYMTYPE, "../../etc/passwd"), "outside"),
        (_info("repo-abc/l", tarfile.SYMTYPE, "/etc/passwd"), "outside"),
        (_info("repo-abc/h", tarfile.LNKTYPE, "repo-abc/a"), "hard link"),
        (_info("repo-abc/dev", tarfile.CHRTYPE), "special file"),
        (_info("other-top/x"), "outside its top folder"),
    ],
)
def test_extract_tarball_refuses_unsafe_members(
    tmp_path: Path, member: tarfile.TarInfo, match: str
) -> None:
    t = _tar(tmp_path / "a.tar.gz", [_info("repo-abc/a"), member], {"repo-abc/a": b"a"})
    with pytest.raises(InputError, match=match):
        extract_tarball(t, tmp_path / "out")
    assert not (tmp_path / "evil").exists()


def test_extract_tarball_refuses_writing_through_a_symlink(tmp_path: Path) -> None:
    (tmp_path / "outside").mkdir()
    t = _tar(
        tmp_path / "a.tar.gz",
        [_info("r/d", tarfile.SYMTYPE, "."), _info("r/d/../../outside/x")],
        {"r/d/../../outside/x": b"x"},
    )
    with pytest.raises(InputError):
        extract_tarball(t, tmp_path / "out")
    assert list((tmp_path / "outside").iterdir()) == []
