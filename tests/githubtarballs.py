"""Test helper: the demo patcher as GitHub would serve it (archive tarballs by rev)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from vgpubuild.atomic import atomic_file
from vgpubuild.compression import compressor
from vgpubuild.demo import PATCHER_REPO, UNLOCK_REPO, DemoInputs
from vgpubuild.runfile import write_tar


def _write_tar_gz(dest: Path, tree: Path, top: str, skip_unlock: bool) -> None:
    """A GitHub-archive-shaped .tar.gz: one top folder ``top/`` holding ``tree``'s content."""
    with tempfile.TemporaryDirectory(prefix=".demo-build.", dir=dest.parent) as name:
        scratch = Path(name)
        staged = scratch / top
        shutil.copytree(tree, staged, symlinks=True)
        if skip_unlock:
            shutil.rmtree(staged / "unlock")
            (staged / "unlock").mkdir()
        with (
            atomic_file(dest) as out,
            compressor(out, "gzip") as gz,
        ):
            write_tar(scratch, gz)


def make_patcher_tarballs(inputs: DemoInputs, serve_root: str | os.PathLike[str]) -> list[Path]:
    """Write the demo patcher as GitHub would serve it, under ``serve_root``.

    ``<serve_root>/<repo>/archive/<rev>.tar.gz`` for the patcher (top folder
    ``<repo name>-<rev>/``, an empty ``unlock/``) and for the unlock submodule, so an HTTP
    server rooted at ``serve_root`` stands in for ``https://github.com``. Returns both paths.
    """
    serve_root = Path(serve_root)
    rev, unlock_rev = inputs.patcher_revs()
    written = []
    for repo, this_rev, tree, skip_unlock in (
        (PATCHER_REPO, rev, inputs.patcher_dir, True),
        (UNLOCK_REPO, unlock_rev, inputs.unlock_dir, False),
    ):
        dest = serve_root / repo / "archive" / f"{this_rev}.tar.gz"
        dest.parent.mkdir(parents=True, exist_ok=True)
        _write_tar_gz(dest, tree, f"{repo.rsplit('/', 1)[1]}-{this_rev}", skip_unlock)
        written.append(dest)
    return written
