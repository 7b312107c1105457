"""Nix store paths computed without Nix: the path ``nix-store --add[-fixed]`` would print.

A store path is ``<store dir>/<digest>-<name>``, where the digest is sha256 of a
"fingerprint" string, XOR-folded to 20 bytes and spelled in Nix base32. Knowing it in
advance lets vgpubuild tell the user (and a Nix expression) where an artifact will land,
and look for a user's GRID zip where ``nix-store --add-fixed`` would have put it.
"""

from __future__ import annotations

import hashlib
import os
import re
from typing import Literal

from vgpubuild.errors import InputError, InvalidStoreNameError
from vgpubuild.nar import nar_hash
from vgpubuild.nixhash import Hash, hash_file, nix32_encode

DEFAULT_STORE_DIR = "/nix/store"
MAX_NAME_LENGTH = 211
_NAME_RE = re.compile(r"[A-Za-z0-9+\-._?=]+")

Ingestion = Literal["flat", "recursive"]


def store_dir() -> str:
    """The store directory: ``$NIX_STORE_DIR`` when set, as Nix itself honours it."""
    return os.environ.get("NIX_STORE_DIR") or DEFAULT_STORE_DIR


def check_name(name: str, *, chosen: bool = False) -> str:
    """Return ``name`` if Nix accepts it as a store path name, else raise.

    ``chosen``: the user typed the name (``--name``), so the hint does not suggest it.
    """
    rules = (
        "Use only letters, digits and + - . _ ? =, at most 211 characters, not starting with '.'"
    )
    hint = f"{rules}." if chosen else f"{rules}; pass --name to choose one."
    if not name:
        raise InvalidStoreNameError("a store path name cannot be empty", hint=hint)
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidStoreNameError(
            f"store path name is {len(name)} characters long, more than {MAX_NAME_LENGTH}",
            hint=hint,
        )
    if name.startswith("."):
        raise InvalidStoreNameError(f"store path name {name!r} starts with '.'", hint=hint)
    if not _NAME_RE.fullmatch(name):
        bad = sorted({c for c in name if not _NAME_RE.fullmatch(c)})
        raise InvalidStoreNameError(
            f"store path name {name!r} contains invalid characters {''.join(bad)!r}", hint=hint
        )
    return name


def content_name(path: str | os.PathLike[str]) -> str:
    """The name a file is known by, without the hash part of a store path.

    ``/nix/store/<32 chars>-x.patch`` -> ``x.patch``. Recording the hashed name in an
    artifact would make Nix see a reference to that store path (and vary with it).
    """
    name = os.path.basename(os.fspath(path))
    inside_store = os.path.dirname(os.path.abspath(path)) == store_dir()
    if inside_store and len(name) > 33 and name[32] == "-":
        return name[33:]
    return name


def _compress(digest: bytes, size: int = 20) -> bytes:
    out = bytearray(size)
    for i, byte in enumerate(digest):
        out[i % size] ^= byte
    return bytes(out)


def make_store_path(kind: str, inner: Hash, name: str, directory: str | None = None) -> str:
    """``makeStorePath``: digest of ``<kind>:sha256:<hex>:<store dir>:<name>``."""
    directory = directory or store_dir()
    fingerprint = f"{kind}:{inner.algo}:{inner.hex}:{directory}:{check_name(name)}"
    digest = _compress(hashlib.sha256(fingerprint.encode()).digest())
    return f"{directory}/{nix32_encode(digest)}-{name}"


def fixed_output_path(
    content: Hash, name: str, ingestion: Ingestion, directory: str | None = None
) -> str:
    """Store path of fixed-output content (``nix-store --add-fixed [--recursive]``).

    ``content`` is the flat file hash for ``flat`` and the NAR hash for ``recursive``.
    Recursive sha256 is the "source" kind (also what ``nix-store --add`` makes); anything
    else goes through the ``fixed:out:`` indirection.
    """
    if ingestion == "recursive" and content.algo == "sha256":
        return make_store_path("source", content, name, directory)
    method = "r:" if ingestion == "recursive" else ""
    inner = hashlib.sha256(f"fixed:out:{method}{content.algo}:{content.hex}:".encode())
    return make_store_path("output:out", Hash("sha256", inner.digest()), name, directory)


def path_for(
    path: str | os.PathLike[str], ingestion: Ingestion, name: str | None = None
) -> tuple[Hash, str]:
    """Hash ``path`` the way ``ingestion`` says and return (hash, store path)."""
    if name is None:
        name = check_name(os.path.basename(os.path.abspath(path)))
    else:
        check_name(name, chosen=True)
    if ingestion == "flat" and os.path.islink(path):
        # Nix 2.8 hashes the link's target but then stores the link itself, and fails with
        # "ca hash mismatch": there is no store path to predict.
        raise InputError(
            f"{os.fspath(path)!r} is a symlink, which nix-store --add-fixed cannot add flat",
            hint=f"Give the file it points to, with --name {name} to keep this name.",
        )
    content = hash_file(path) if ingestion == "flat" else nar_hash(path)
    return content, fixed_output_path(content, name, ingestion)
