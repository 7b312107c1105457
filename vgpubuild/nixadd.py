"""Hand a verified file to Nix: the store path ``requireFile`` looks for.

``mkPatchedDriver`` takes the GRID zip through ``requireFile``: a fixed-output derivation
with the catalog's name and flat sha256 whose output Nix never builds, only finds. The file
is found when ``nix-store --add-fixed sha256 FILE`` added it under that very name, so the
file given is the cache entry (already checked, already carrying the catalog's name).

Where Nix is not installed, or may not write its store, the caller gets the exact command
instead of an error: the file is already in vgpubuild's own cache, which builds use.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from vgpubuild.nixhash import Hash
from vgpubuild.store import fixed_output_path


@dataclass(frozen=True)
class NixAdd:
    """Where a file is (or would be) in the Nix store, and how to put it there."""

    store_path: str
    command: str
    added: bool
    why_not: str | None = None
    """Why the file was not added (no ``nix-store``, or its one-line error)."""
    failed: bool = False
    """``nix-store`` ran and refused (a problem to report, unlike Nix being absent)."""


def add_command(path: Path) -> str:
    """The command that adds ``path`` the way ``requireFile`` expects."""
    return f"nix-store --add-fixed sha256 {shlex.quote(str(path))}"


def add_flat(path: Path, sha256: Hash, *, run: bool = True) -> NixAdd:
    """Add ``path`` (verified to hash to ``sha256``) to the Nix store, flat, under its name.

    With ``run`` False, or without ``nix-store`` on PATH, nothing runs and the result says
    why; a failing ``nix-store`` (no write access to the store, say) is reported the same
    way, with its last error line.
    """
    predicted = fixed_output_path(sha256, path.name, "flat")
    command = add_command(path)
    if not run:
        return NixAdd(predicted, command, False, "not asked to")
    exe = shutil.which("nix-store")
    if exe is None:
        return NixAdd(predicted, command, False, "nix-store is not on PATH")
    proc = subprocess.run(
        [exe, "--add-fixed", "sha256", str(path)], capture_output=True, check=False
    )
    printed = proc.stdout.decode(errors="replace").strip()
    if proc.returncode != 0 or not printed:
        errors = proc.stderr.decode(errors="replace").strip().splitlines()
        why = errors[-1] if errors else f"nix-store exited with {proc.returncode}"
        return NixAdd(predicted, command, False, why, failed=True)
    return NixAdd(printed.splitlines()[-1], command, True)
