"""Hash values in every form Nix reads and prints.

One digest, four spellings: base16, Nix base32, base64 and SRI (``sha256-<base64>``), each
optionally prefixed ``<algo>:``. :meth:`Hash.parse` accepts them all; printing defaults to
SRI. Nix base32 is not RFC 4648: its alphabet omits ``e o u t`` and it reads the digest as a
little-endian number, emitting the most significant 5-bit group first.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from dataclasses import dataclass
from typing import BinaryIO, Literal

from vgpubuild.errors import InputError, InvalidHashError

HashForm = Literal["sri", "nix32", "base16", "base64"]
HASH_FORMS: tuple[HashForm, ...] = ("sri", "nix32", "base16", "base64")

NIX32_ALPHABET = "0123456789abcdfghijklmnpqrsvwxyz"
_NIX32_INDEX = {c: i for i, c in enumerate(NIX32_ALPHABET)}

DIGEST_SIZES = {"md5": 16, "sha1": 20, "sha256": 32, "sha512": 64}

CHUNK_SIZE = 1 << 20
"""Read size for streaming: large enough that per-call overhead vanishes, small for RSS."""


def nix32_length(size: int) -> int:
    """Length of the Nix base32 spelling of a ``size``-byte digest."""
    return (size * 8 - 1) // 5 + 1


def nix32_encode(digest: bytes) -> str:
    """Encode bytes the way Nix's ``printHash32`` does."""
    value = int.from_bytes(digest, "little")
    n = nix32_length(len(digest))
    return "".join(NIX32_ALPHABET[(value >> (5 * i)) & 31] for i in range(n - 1, -1, -1))


def nix32_decode(text: str, size: int) -> bytes:
    """Decode Nix base32 to ``size`` bytes; refuses bad characters and overflow bits."""
    if len(text) != nix32_length(size):
        raise ValueError("wrong length")
    value = 0
    for char in text:
        digit = _NIX32_INDEX.get(char)
        if digit is None:
            raise ValueError(f"invalid character {char!r}")
        value = (value << 5) | digit
    if value >> (size * 8):
        raise ValueError("value does not fit the digest size")
    return value.to_bytes(size, "little")


@dataclass(frozen=True)
class Hash:
    """A digest with its algorithm; immutable, comparable, printable in any form."""

    algo: str
    digest: bytes

    def __post_init__(self) -> None:
        if DIGEST_SIZES.get(self.algo) != len(self.digest):
            raise InvalidHashError(f"a {self.algo} digest cannot be {len(self.digest)} bytes")

    @classmethod
    def parse(cls, text: str, algo: str | None = None) -> Hash:
        """Parse any Nix spelling of a hash.

        ``algo`` is the expected algorithm; it is taken from an ``sha256-``/``sha256:``
        prefix when present (and must agree), and defaults to sha256 otherwise.
        """
        raw = text.strip()
        shown = raw if len(raw) <= 100 else raw[:100] + "..."
        prefix_algo: str | None = None
        body = raw
        sri = False
        for sep in (":", "-"):
            head, found, rest = raw.partition(sep)
            if found and head in DIGEST_SIZES:
                prefix_algo, body, sri = head, rest, sep == "-"
                break
        if prefix_algo and algo and prefix_algo != algo:
            raise InvalidHashError(
                f"hash {shown!r} is {prefix_algo}, but a {algo} hash is expected",
                hint=f"Give the {algo} hash of the file.",
            )
        algo = prefix_algo or algo or "sha256"
        if algo not in DIGEST_SIZES:
            raise InvalidHashError(
                f"unknown hash algorithm {algo!r}",
                hint="Use one of: " + ", ".join(DIGEST_SIZES) + ".",
            )
        size = DIGEST_SIZES[algo]
        try:
            digest = cls._decode_body(body, size, sri)
        except ValueError as exc:
            raise InvalidHashError(
                f"{shown!r} is not a valid {algo} hash ({exc})",
                hint=(
                    f"Give {size * 2} hex digits, {nix32_length(size)} Nix base32 characters, "
                    f"base64, or SRI '{algo}-...'."
                ),
            ) from None
        return cls(algo, digest)

    @staticmethod
    def _decode_body(body: str, size: int, sri: bool) -> bytes:
        b64_len = 4 * ((size + 2) // 3)
        if sri:
            if len(body) != b64_len:
                raise ValueError(f"SRI base64 part must be {b64_len} characters")
            return base64.b64decode(body, validate=True)
        if len(body) == size * 2:
            try:
                return bytes.fromhex(body)
            except ValueError:
                raise ValueError("invalid hex digit") from None
        if len(body) == nix32_length(size):
            return nix32_decode(body, size)
        if len(body) == b64_len:
            try:
                return base64.b64decode(body, validate=True)
            except binascii.Error:
                raise ValueError("invalid base64") from None
        raise ValueError(f"length {len(body)} fits no encoding")

    def format(self, form: HashForm = "sri", *, prefix: bool = False) -> str:
        """Spell the hash; ``prefix`` adds ``algo:`` to the non-SRI forms."""
        if form == "sri":
            return f"{self.algo}-{base64.b64encode(self.digest).decode()}"
        if form == "nix32":
            body = nix32_encode(self.digest)
        elif form == "base16":
            body = self.digest.hex()
        elif form == "base64":
            body = base64.b64encode(self.digest).decode()
        else:
            raise InvalidHashError(f"unknown hash form {form!r}", hint=f"Use one of {HASH_FORMS}.")
        return f"{self.algo}:{body}" if prefix else body

    @property
    def sri(self) -> str:
        return self.format("sri")

    @property
    def hex(self) -> str:
        return self.digest.hex()

    def __str__(self) -> str:
        return self.sri


def hash_stream(stream: BinaryIO, algo: str = "sha256") -> Hash:
    """Hash a binary stream in fixed-size chunks (never the whole file in memory)."""
    h = hashlib.new(algo)
    buf = bytearray(CHUNK_SIZE)
    view = memoryview(buf)
    while n := stream.readinto(view):  # type: ignore[attr-defined]
        h.update(view[:n])
    return Hash(algo, h.digest())


def hash_file(path: str | os.PathLike[str], algo: str = "sha256") -> Hash:
    """Flat hash of a file: what ``nix-hash --flat`` and ``sha256sum`` compute."""
    try:
        with open(path, "rb", buffering=0) as f:
            return hash_stream(f, algo)
    except FileNotFoundError:
        raise InputError(
            f"file {os.fspath(path)!r} does not exist", hint="Check the path."
        ) from None
    except IsADirectoryError:
        raise InputError(
            f"{os.fspath(path)!r} is a directory, not a file",
            hint="Use the recursive (NAR) form for directories.",
        ) from None
    except OSError as exc:
        raise InputError(f"cannot read {os.fspath(path)!r}: {exc.strerror}") from None
