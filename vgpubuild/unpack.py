"""Take what a build needs out of archives, and never anything outside the work folder.

A GRID zip is hundreds of MB and holds far more than one target uses, so only the members
the chosen ``patch.sh`` target reads are extracted (:func:`zip_members` says which), each
streamed to disk. Archives come from users and from the network, so names are checked
before anything is written: an absolute path, a ``..`` component or a symlink member makes
the whole archive unusable (a well-formed GRID zip or GitHub tarball has none of them).

:func:`extract_tarball` unpacks GitHub archive tarballs (vGPU-Unlock-patcher and its
``unlock`` submodule) under the same rules, dropping the ``<repo>-<rev>/`` top folder.
"""

from __future__ import annotations

import os
import shutil
import stat
import tarfile
import zipfile
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

from vgpubuild.atomic import atomic_file
from vgpubuild.catalog import Release
from vgpubuild.errors import InputError, input_error
from vgpubuild.nixhash import CHUNK_SIZE
from vgpubuild.targets import Role, get_target


def _unsafe_reason(name: str) -> str | None:
    """Why an archive member name could write outside its folder (None when it cannot)."""
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return "an absolute path"
    if "\0" in name:
        return "a NUL byte"
    if ".." in name.replace("\\", "/").split("/"):
        return "a '..' component"
    return None


def _unsafe_archive(archive: Path, member: str, reason: str) -> InputError:
    return InputError(
        f"{archive.name!r} has a member {member!r} with {reason}, so it is not used",
        hint="Use an unmodified archive from its publisher; this one could write outside "
        "its folder.",
    )


def zip_members(release: Release, target: str) -> dict[str, Role]:
    """The GRID zip members (as patterns for :func:`extract_members`) ``target`` needs."""
    members: dict[str, Role] = {}
    for role in get_target(target).inputs:
        if role == "host":
            members[f"Host_Drivers/{release.host_run_name}"] = role
        elif role == "guest":
            members[f"Guest_Drivers/{release.guest_run_name}"] = role
        elif role == "windows":
            p = release.patcher
            name = p.windows_guest_name if p and p.windows_guest_name else "*_64bit*.exe"
            members[f"Guest_Drivers/{name}"] = role
    return members


def _is_symlink(info: zipfile.ZipInfo) -> bool:
    return info.create_system == 3 and stat.S_ISLNK(info.external_attr >> 16)


def extract_members(
    zip_path: str | os.PathLike[str],
    wanted: Mapping[str, str | os.PathLike[str]],
    work_dir: str | os.PathLike[str] | None = None,
) -> dict[str, Path]:
    """Extract one member per pattern of ``wanted`` into that pattern's folder.

    A pattern is a member path or a glob (``Host_Drivers/*.run``), matched from the right
    segment by segment, so a zip with an extra top folder still matches. Each member keeps
    its base name in the destination folder (``patch.sh`` finds its inputs by name). Every
    destination must lie inside ``work_dir`` when one is given. Returns pattern -> file.

    Raises :class:`InputError` for an unreadable zip, an unsafe member anywhere in it, or a
    pattern matching no member or several.
    """
    zip_path = Path(zip_path)
    root = Path(work_dir).resolve() if work_dir is not None else None
    try:
        zf = zipfile.ZipFile(zip_path)
    except (OSError, zipfile.BadZipFile) as exc:
        raise InputError(
            f"cannot read {zip_path.name!r} as a zip: {exc}",
            hint="Check that the download is complete and the file is the GRID zip.",
        ) from None
    with zf:
        infos = zf.infolist()
        for info in infos:
            reason = _unsafe_reason(info.filename)
            if reason is None and _is_symlink(info):
                reason = "a symlink"
            if reason:
                raise _unsafe_archive(zip_path, info.filename, reason)
        files = [i for i in infos if not i.is_dir()]
        chosen: dict[str, tuple[zipfile.ZipInfo, Path]] = {}
        for pattern, folder in wanted.items():
            hits = [i for i in files if PurePosixPath(i.filename).match(pattern)]
            if len(hits) != 1:
                raise _no_single_match(zip_path, pattern, hits, files)
            dest_dir = Path(folder).resolve()
            if root is not None and not dest_dir.is_relative_to(root):
                raise InputError(
                    f"destination {str(folder)!r} is outside the work folder {str(root)!r}"
                )
            chosen[pattern] = (hits[0], dest_dir / PurePosixPath(hits[0].filename).name)
        out: dict[str, Path] = {}
        for pattern, (info, dest) in chosen.items():
            mode = 0o755 if (info.external_attr >> 16) & stat.S_IXUSR else 0o644
            try:
                with (
                    zf.open(info) as src,
                    atomic_file(dest, mode=mode, needed=info.file_size) as dst,
                ):
                    shutil.copyfileobj(src, dst, CHUNK_SIZE)
            except (zipfile.BadZipFile, OSError) as exc:  # a full disk is an OutputError
                raise InputError(
                    f"member {info.filename!r} of {zip_path.name!r} is damaged: {exc}",
                    hint="Download the zip again; it failed its own checksum.",
                ) from None
            out[pattern] = dest
        return out


def _no_single_match(
    zip_path: Path, pattern: str, hits: list[zipfile.ZipInfo], files: list[zipfile.ZipInfo]
) -> InputError:
    if hits:
        return InputError(
            f"{zip_path.name!r} has {len(hits)} members matching {pattern!r}: "
            + ", ".join(i.filename for i in hits),
            hint="Name the member exactly.",
        )
    runs = sorted(i.filename for i in files if i.filename.endswith((".run", ".exe")))
    folder = PurePosixPath(pattern).parts[0] if "/" in pattern else None
    where = (
        f"it has no {folder}/ folder"
        if folder and not any(f"{folder}/" in i.filename for i in files)
        else "it has no such member"
    )
    listing = ("; its drivers are: " + ", ".join(runs)) if runs else "; it holds no drivers"
    return InputError(
        f"{zip_path.name!r} lacks {pattern!r}: {where}{listing}",
        hint="Check that this is the GRID zip of the release you asked for.",
    )


# --------------------------------------------------------------------------------- tarballs


def _strip(name: str, top: str | None) -> str:
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if top is not None:
        if not parts or parts[0] != top:
            raise ValueError(name)
        parts = parts[1:]
    return "/".join(parts)


def extract_tarball(
    tar_path: str | os.PathLike[str], dest: str | os.PathLike[str], strip_top: bool = True
) -> Path:
    """Unpack ``tar_path`` (any compression tarfile reads) into ``dest``, safely.

    With ``strip_top`` every member must sit under one top folder, which is dropped (GitHub's
    ``<repo>-<rev>/``). Symlinks may only point inside ``dest``; hard links, devices and
    fifos are refused. Files keep only their executable bit (0755/0644), like git.
    """
    tar_path, dest = Path(tar_path), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    root = dest.resolve()
    try:
        tf = tarfile.open(tar_path, mode="r|*", bufsize=CHUNK_SIZE)  # noqa: SIM115 - with below
    except (OSError, tarfile.TarError) as exc:
        raise InputError(f"cannot read {tar_path.name!r} as a tarball: {exc}") from None
    top: str | None = None
    with tf:
        try:
            for info in tf:
                if (reason := _unsafe_reason(info.name)) is not None:
                    raise _unsafe_archive(tar_path, info.name, reason)
                if strip_top and top is None:
                    top = _strip(info.name, None).split("/", 1)[0]
                try:
                    rel = _strip(info.name, top if strip_top else None)
                except ValueError:
                    raise InputError(
                        f"{tar_path.name!r} has {info.name!r} outside its top folder {top!r}",
                        hint="Only GitHub archive tarballs (one top folder) can be used here.",
                    ) from None
                if not rel:
                    continue
                _extract_one(tf, info, rel, root, tar_path)
        except tarfile.TarError as exc:
            raise InputError(
                f"{tar_path.name!r} is damaged: {exc}", hint="Download it again."
            ) from None
    return dest


def _extract_one(
    tf: tarfile.TarFile, info: tarfile.TarInfo, rel: str, root: Path, tar_path: Path
) -> None:
    target = root / rel
    parent = target.parent
    if not parent.resolve().is_relative_to(root):
        raise _unsafe_archive(tar_path, info.name, "a path through a symlink")
    with input_error(f"cannot write {str(target)!r}"):
        try:
            parent.mkdir(parents=True, exist_ok=True)
            _write_member(tf, info, target, root, tar_path)
        except FileExistsError:
            raise InputError(
                f"{tar_path.name!r} holds {info.name!r} twice or over a folder"
            ) from None


def _write_member(
    tf: tarfile.TarFile, info: tarfile.TarInfo, target: Path, root: Path, tar_path: Path
) -> None:
    parent = target.parent
    if info.isdir():
        target.mkdir(exist_ok=True)
        os.chmod(target, 0o755)
    elif info.issym():
        link = info.linkname
        resolved = os.path.normpath(os.path.join(parent, link))
        if os.path.isabs(link) or not Path(resolved).is_relative_to(root):
            raise _unsafe_archive(tar_path, info.name, f"a symlink to {link!r} outside it")
        os.symlink(link, target)
    elif info.isreg():
        src = tf.extractfile(info)
        assert src is not None  # a regular member always has data
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with src, os.fdopen(fd, "wb") as out:
            shutil.copyfileobj(src, out, CHUNK_SIZE)
        os.chmod(target, 0o755 if info.mode & stat.S_IXUSR else 0o644)
    else:
        kind = "hard link" if info.islnk() else "special file"
        raise _unsafe_archive(tar_path, info.name, f"a {kind}")
