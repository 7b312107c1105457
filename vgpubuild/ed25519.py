"""Ed25519 signatures (RFC 8032, section 5.1) in pure Python, for signing narinfo files.

Nix signs binary cache entries with Ed25519 keys made by ``nix-store
--generate-binary-cache-key NAME SECRET PUBLIC``. The secret file holds
``NAME:base64(seed || public key)`` (libsodium's 64-byte layout). Signing a few narinfos per
run is all vgpubuild needs, so a small, readable implementation of the RFC beats adding a
cryptography dependency.

Not constant-time: Python integers leak timing. That is acceptable here because signing
happens once per export, on the user's own machine, with no attacker able to request
signatures and measure them; do not reuse this module as a signing service.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from dataclasses import dataclass, field

from vgpubuild.errors import InputError

# Curve constants (RFC 8032 section 5.1): edwards25519 over GF(p).
P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493
D = -121665 * pow(121666, P - 2, P) % P
SQRT_M1 = pow(2, (P - 1) // 4, P)

Point = tuple[int, int, int, int]
"""Extended homogeneous coordinates (X, Y, Z, T) with x = X/Z, y = Y/Z, x*y = T/Z."""

_IDENTITY: Point = (0, 1, 1, 0)


def _add(p: Point, q: Point) -> Point:
    # RFC 8032 section 5.1.4, "add-2008-hwcd-3": complete for every pair of points.
    a = (p[1] - p[0]) * (q[1] - q[0]) % P
    b = (p[1] + p[0]) * (q[1] + q[0]) % P
    c = 2 * p[3] * q[3] * D % P
    d = 2 * p[2] * q[2] % P
    e, f, g, h = b - a, d - c, d + c, b + a
    return (e * f % P, g * h % P, f * g % P, e * h % P)


def _multiply(scalar: int, point: Point) -> Point:
    result = _IDENTITY
    while scalar:
        if scalar & 1:
            result = _add(result, point)
        point = _add(point, point)
        scalar >>= 1
    return result


def _equal(p: Point, q: Point) -> bool:
    # x1/z1 == x2/z2 and y1/z1 == y2/z2 without inversions.
    return (p[0] * q[2] - q[0] * p[2]) % P == 0 and (p[1] * q[2] - q[1] * p[2]) % P == 0


def _recover_x(y: int, sign: int) -> int | None:
    """The x with x^2 = (y^2 - 1) / (d y^2 + 1) and the given low bit (section 5.1.3)."""
    if y >= P:
        return None
    x2 = (y * y - 1) * pow(D * y * y + 1, P - 2, P) % P
    if x2 == 0:
        return None if sign else 0
    x = pow(x2, (P + 3) // 8, P)
    if (x * x - x2) % P:
        x = x * SQRT_M1 % P
    if (x * x - x2) % P:
        return None
    if x & 1 != sign:
        x = P - x
    return x


_BY = 4 * pow(5, P - 2, P) % P
_BX = _recover_x(_BY, 0)
assert _BX is not None
BASE: Point = (_BX, _BY, 1, _BX * _BY % P)


def _encode(point: Point) -> bytes:
    zinv = pow(point[2], P - 2, P)
    x, y = point[0] * zinv % P, point[1] * zinv % P
    return (y | ((x & 1) << 255)).to_bytes(32, "little")


def _decode(data: bytes) -> Point | None:
    if len(data) != 32:
        return None
    value = int.from_bytes(data, "little")
    y = value & ((1 << 255) - 1)
    x = _recover_x(y, value >> 255)
    if x is None:
        return None
    return (x, y, 1, x * y % P)


def _sha512_int(*parts: bytes) -> int:
    return int.from_bytes(hashlib.sha512(b"".join(parts)).digest(), "little")


def _expand(seed: bytes) -> tuple[int, bytes]:
    """Secret scalar (clamped) and nonce prefix from a 32-byte seed (section 5.1.5)."""
    if len(seed) != 32:
        raise ValueError("an Ed25519 seed is 32 bytes")
    digest = hashlib.sha512(seed).digest()
    scalar = int.from_bytes(digest[:32], "little")
    scalar &= (1 << 254) - 8
    scalar |= 1 << 254
    return scalar, digest[32:]


def public_key(seed: bytes) -> bytes:
    """The 32-byte public key of a 32-byte seed."""
    scalar, _ = _expand(seed)
    return _encode(_multiply(scalar, BASE))


def sign(seed: bytes, message: bytes) -> bytes:
    """The 64-byte Ed25519 signature of ``message`` (section 5.1.6)."""
    scalar, prefix = _expand(seed)
    encoded_a = _encode(_multiply(scalar, BASE))
    r = _sha512_int(prefix, message) % L
    encoded_r = _encode(_multiply(r, BASE))
    k = _sha512_int(encoded_r, encoded_a, message) % L
    s = (r + k * scalar) % L
    return encoded_r + s.to_bytes(32, "little")


def verify(public: bytes, message: bytes, signature: bytes) -> bool:
    """True if ``signature`` is valid for ``message`` under ``public`` (section 5.1.7)."""
    if len(signature) != 64:
        return False
    a = _decode(public)
    r = _decode(signature[:32])
    s = int.from_bytes(signature[32:], "little")
    if a is None or r is None or s >= L:
        return False
    k = _sha512_int(signature[:32], public, message) % L
    return _equal(_multiply(s, BASE), _add(r, _multiply(k, a)))


@dataclass(frozen=True)
class SecretKey:
    """A Nix binary cache signing key: its name and seed (the public half is derived)."""

    name: str
    seed: bytes = field(repr=False)

    @classmethod
    def parse(cls, text: str, source: str = "the secret key") -> SecretKey:
        """Parse ``NAME:base64(64 bytes)`` as written by ``nix-store --generate-binary-cache-key``."""
        hint = "Give the secret key file written by nix-store --generate-binary-cache-key."
        name, colon, body = text.strip().partition(":")
        if not colon or not name or not body:
            raise InputError(f"{source} is not of the form NAME:BASE64", hint=hint)
        from vgpubuild.log import add_secret

        add_secret(body)
        try:
            raw = base64.b64decode(body, validate=True)
        except binascii.Error:
            raise InputError(f"{source} has an invalid base64 part", hint=hint) from None
        if len(raw) == 32:
            raise InputError(f"{source} is a public key, not a secret key", hint=hint)
        if len(raw) != 64:
            raise InputError(f"{source} holds {len(raw)} bytes, not 64", hint=hint)
        seed, stored_public = raw[:32], raw[32:]
        if public_key(seed) != stored_public:
            raise InputError(f"{source} is corrupt (its two halves do not match)", hint=hint)
        return cls(name, seed)

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
    def public(self) -> bytes:
        return public_key(self.seed)

    @property
    def public_text(self) -> str:
        """``NAME:base64(public)``: the line for Nix's ``trusted-public-keys``."""
        return f"{self.name}:{base64.b64encode(self.public).decode()}"

    def signature(self, message: bytes) -> str:
        """``NAME:base64(signature)``: the value of a narinfo ``Sig:`` field."""
        return f"{self.name}:{base64.b64encode(sign(self.seed, message)).decode()}"
