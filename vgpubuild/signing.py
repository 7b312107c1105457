"""Nix binary-cache signing keys: the ``NAME:base64`` key files, Ed25519 from ``cryptography``.

``nix-store --generate-binary-cache-key NAME SECRET PUBLIC`` writes two one-line files:
the secret one holds ``NAME:base64(seed || public key)`` (libsodium's 64-byte layout), the
public one ``NAME:base64(public key)``, the form Nix's ``trusted-public-keys`` takes. A
narinfo's ``Sig:`` field is ``NAME:base64(signature)``. Only this text format is ours; the
signing and verifying are ``cryptography``'s Ed25519 (OpenSSL: constant-time, maintained).
Ed25519 is deterministic, so a key signs a message with the same bytes Nix would.
"""

from __future__ import annotations

import base64
import binascii
import os
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from vgpubuild.errors import InputError

_SECRET_HINT = "Give the secret key file written by nix-store --generate-binary-cache-key."
_PUBLIC_HINT = "Give the public key (NAME:BASE64) written by nix-store --generate-binary-cache-key."


def _split(text: str, source: str, hint: str) -> tuple[str, bytes]:
    """``NAME:BASE64`` into the name and the decoded bytes, or a clear error."""
    name, colon, body = text.strip().partition(":")
    if not colon or not name or not body:
        raise InputError(f"{source} is not of the form NAME:BASE64", hint=hint)
    try:
        return name, base64.b64decode(body, validate=True)
    except binascii.Error:
        raise InputError(f"{source} has an invalid base64 part", hint=hint) from None


def _raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


@dataclass(frozen=True)
class PublicKey:
    """A key Nix's ``trusted-public-keys`` would list: its name and 32 raw bytes."""

    name: str
    raw: bytes

    @classmethod
    def parse(cls, text: str, source: str = "the public key") -> PublicKey:
        name, raw = _split(text, source, _PUBLIC_HINT)
        if len(raw) != 32:
            raise InputError(f"{source} holds {len(raw)} bytes, not 32", hint=_PUBLIC_HINT)
        return cls(name, raw)

    @property
    def text(self) -> str:
        """``NAME:base64(public)``: the line for Nix's ``trusted-public-keys``."""
        return f"{self.name}:{base64.b64encode(self.raw).decode()}"

    def verify(self, message: bytes, signature: bytes) -> bool:
        """True if ``signature`` (64 raw bytes) is this key's signature of ``message``."""
        try:
            Ed25519PublicKey.from_public_bytes(self.raw).verify(signature, message)
        except (InvalidSignature, ValueError):
            return False
        return True

    def verify_sig(self, message: bytes, sig: str) -> bool:
        """True if the narinfo ``Sig:`` value ``NAME:BASE64`` is this key's, and valid."""
        name, _, body = sig.partition(":")
        if name != self.name:
            return False
        try:
            raw = base64.b64decode(body, validate=True)
        except binascii.Error:
            return False
        return self.verify(message, raw)


@dataclass(frozen=True)
class SecretKey:
    """A Nix binary cache signing key: its name and the private key (never printed)."""

    name: str
    _key: Ed25519PrivateKey = field(repr=False, compare=False)

    @classmethod
    def parse(cls, text: str, source: str = "the secret key") -> SecretKey:
        """Parse ``NAME:base64(64 bytes)`` as written by ``nix-store --generate-binary-cache-key``."""
        from vgpubuild.log import add_secret

        add_secret(text.strip().partition(":")[2])
        name, raw = _split(text, source, _SECRET_HINT)
        if len(raw) == 32:
            raise InputError(f"{source} is a public key, not a secret key", hint=_SECRET_HINT)
        if len(raw) != 64:
            raise InputError(f"{source} holds {len(raw)} bytes, not 64", hint=_SECRET_HINT)
        key = Ed25519PrivateKey.from_private_bytes(raw[:32])
        if _raw_public(key.public_key()) != raw[32:]:
            raise InputError(
                f"{source} is corrupt (its two halves do not match)", hint=_SECRET_HINT
            )
        return cls(name, key)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> SecretKey:
        """Read and parse a secret key file."""
        shown = os.fspath(path)
        try:
            with open(path, encoding="ascii") as f:
                text = f.read(4096)
        except FileNotFoundError:
            raise InputError(
                f"secret key file {shown!r} does not exist",
                hint="Create one with nix-store --generate-binary-cache-key NAME sec.key pub.key.",
            ) from None
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not ASCII text"
            raise InputError(f"cannot read secret key file {shown!r}: {reason}") from None
        return cls.parse(text, f"secret key file {shown!r}")

    @property
    def public(self) -> PublicKey:
        return PublicKey(self.name, _raw_public(self._key.public_key()))

    def sign(self, message: bytes) -> bytes:
        """The 64-byte Ed25519 signature of ``message``."""
        return self._key.sign(message)

    def signature(self, message: bytes) -> str:
        """``NAME:base64(signature)``: the value of a narinfo ``Sig:`` field."""
        return f"{self.name}:{base64.b64encode(self.sign(message)).decode()}"
