"""Pinned hashes: every comparison of bytes with the hash they must have goes through here.

Like pip's ``Hashes``: the expected hash travels with a name for the thing it pins, and
one method compares and raises, so every mismatch anywhere (a download, a file copied
into the cache, a Nix store path, a patcher tree, a NAR being exported) is reported the
same way, in the ``specified:``/``got:`` form Nix users know, with the same exit code.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from vgpubuild.errors import HashMismatchError, VgpubuildError
from vgpubuild.nar import nar_hash
from vgpubuild.nixhash import Hash, hash_file

_CHECK = "check that you have the right file, or correct the expected hash if it is yours"


@dataclass(frozen=True)
class Pinned:
    """What ``subject`` must hash to; ``expected`` None pins nothing (anything is accepted).

    ``subject`` is how messages name the thing: a file name, ``patcher '/src/vup'``.
    """

    expected: Hash | None
    subject: str

    def check(
        self,
        got: Hash,
        *,
        note: str = "",
        hint: str | None = None,
        set_aside: Callable[[], Path] | None = None,
        copied_from: str | os.PathLike[str] | None = None,
        error: type[VgpubuildError] = HashMismatchError,
    ) -> Hash:
        """Return ``got`` when it is the pinned hash; otherwise raise ``error``.

        ``set_aside`` moves the bytes out of the way first (quarantine) and returns where
        they went, which the message then says; ``copied_from`` names the user's file they
        were copied from, which stays where it is (the message must not say it moved).
        ``note`` explains the mismatch in place.
        """
        if self.expected is None or got == self.expected:
            return got
        if set_aside is not None:
            kept = set_aside()
            if copied_from is not None:
                note = f"{copied_from} was left as it is, the copy read from it is in {kept}"
            else:
                note = f"the file was moved to {kept}"
            note += f"; {_CHECK}"
        raise error(_message(self.subject, self.expected, got, note), hint=hint)

    def check_file(
        self, path: str | os.PathLike[str], *, note: str = "", hint: str | None = None
    ) -> Hash:
        """Hash ``path`` flat (as ``nix-store --add-fixed sha256``) and :meth:`check` it."""
        return self.check(hash_file(path), note=note, hint=hint)

    def check_tree(
        self, path: str | os.PathLike[str], *, note: str = "", hint: str | None = None
    ) -> Hash:
        """Hash ``path`` as a NAR (as ``nix-store --add --recursive``) and :meth:`check` it."""
        return self.check(nar_hash(path), note=note, hint=hint)


def _message(subject: str, expected: Hash, got: Hash, note: str = "") -> str:
    """``hash mismatch in X (note)`` then Nix's ``specified:``/``got:`` lines."""
    detail = f" ({note})" if note else ""
    return (
        f"hash mismatch in {subject}{detail}\n"
        f"  specified: {expected.sri}\n"
        f"  got:       {got.sri}"
    )
