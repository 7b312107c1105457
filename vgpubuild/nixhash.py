"""Hash values in every form Nix reads and prints.

One digest, four spellings: base16, Nix base32, base64 and SRI (``sha256-<base64>``), each
optionally prefixed ``<algo>:``. :meth:`Hash.parse` accepts them all; printing defaults to
SRI. Nix base32 is not RFC 4648: its alphabet omits ``e o u t`` and it reads the digest as a
little-endian number, emitting the most significant 5-bit group first.
"""

from __future__ import annotations

import binascii
import hashlib
import os
import stat

from vgpubuild import readahead
from vgpubuild.errors import InputError, InvalidHashError

TYPE_CHECKING = False  # importing typing (and re, which it loads) costs start-up; mypy
if TYPE_CHECKING:  # reads the name as typing's
    from _hashlib import HASH
    from collections.abc import Callable, Iterable
    from typing import Literal


    HashForm = Literal["sri", "nix32", "base16", "base64"]

HASH_FORMS: tuple[HashForm, ...] = ("sri", "nix32", "base16", "base64")

NIX32_ALPHABET = "0123456789abcdfghijklmnpqrsvwxyz"
_NIX32_INDEX = {c: i for i, c in enumerate(NIX32_ALPHABET)}
_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")
_ALGO_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")

DIGEST_SIZES = {"md5": 16, "sha1": 20, "sha256": 32, "sha512": 64}

CHUNK_SIZE = 1 << 20
"""Read size for streaming copies elsewhere: per-call overhead vanishes, memory stays small."""


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


def _b64decode(text: str) -> bytes:
    try:
        return binascii.a2b_base64(text, strict_mode=True)
    except (binascii.Error, ValueError):
        raise ValueError("invalid base64") from None


def _b64encode(digest: bytes) -> str:
    return binascii.b2a_base64(digest, newline=False).decode()


class Hash:
    """A digest with its algorithm; immutable, comparable, printable in any form.

    A plain class rather than a dataclass: the dataclasses module alone costs a ``hash``
    command a quarter of its start-up.
    """

    __slots__ = ("algo", "digest")
    algo: str
    digest: bytes

    def __init__(self, algo: str, digest: bytes) -> None:
        if DIGEST_SIZES.get(algo) != len(digest):
            raise InvalidHashError(f"a {algo} digest cannot be {len(digest)} bytes")
        object.__setattr__(self, "algo", algo)
        object.__setattr__(self, "digest", digest)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Hash is immutable: cannot set {name!r}")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Hash):
            return NotImplemented
        return self.algo == other.algo and self.digest == other.digest

    def __hash__(self) -> int:
        return hash((self.algo, self.digest))

    def __repr__(self) -> str:
        return f"Hash(algo={self.algo!r}, digest={self.digest!r})"

    def __reduce__(self) -> tuple[type[Hash], tuple[str, bytes]]:
        return Hash, (self.algo, self.digest)

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
            # No hash body contains ':' or '-' (base64 uses '+' and '/'), so any word before
            # one is meant as an algorithm name and must be a known one.
            if found and head[:1].isalpha() and _ALGO_CHARS.issuperset(head):
                prefix_algo, body, sri = head, rest, sep == "-"
                break
        if prefix_algo and algo and prefix_algo != algo:
            raise InvalidHashError(
                f"hash {shown!r} is {prefix_algo}, but a {algo} hash is expected",
                hint=f"Give the {algo} hash of the file.",
            )
        algo = check_algo(prefix_algo or algo or "sha256")
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
            return _b64decode(body)
        if len(body) == size * 2:
            # Checked first: bytes.fromhex would also skip spaces inside the string.
            if not _HEX_DIGITS.issuperset(body):
                raise ValueError("invalid hex digit")
            return bytes.fromhex(body)
        if len(body) == nix32_length(size):
            return nix32_decode(body, size)
        if len(body) == b64_len:
            return _b64decode(body)
        raise ValueError(f"length {len(body)} fits no encoding")

    def format(self, form: HashForm = "sri", *, prefix: bool = False) -> str:
        """Spell the hash; ``prefix`` adds ``algo:`` to the non-SRI forms."""
        if form == "sri":
            return f"{self.algo}-{_b64encode(self.digest)}"
        if form == "nix32":
            body = nix32_encode(self.digest)
        elif form == "base16":
            body = self.digest.hex()
        elif form == "base64":
            body = _b64encode(self.digest)
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


def check_algo(algo: str) -> str:
    """Return ``algo`` if Nix knows it (md5, sha1, sha256, sha512), else raise."""
    if algo not in DIGEST_SIZES:
        raise InvalidHashError(
            f"unknown hash algorithm {algo!r}", hint="Use one of: " + ", ".join(DIGEST_SIZES) + "."
        )
    return algo


def new_hasher(algo: str = "sha256") -> HASH:
    """A hashlib object for a Nix algorithm (its ``update`` releases the GIL on big data)."""
    return hashlib.new(check_algo(algo))


def hash_views(views: Iterable[memoryview], algo: str = "sha256") -> tuple[Hash, int]:
    """Hash a stream of views (of :mod:`vgpubuild.readahead` buffers); (hash, byte count)."""
    h = new_hasher(algo)
    size = 0
    for view in views:
        h.update(view)
        size += len(view)
    return Hash(algo, h.digest()), size


def feed(
    hasher: HASH,
    readinto: Callable[[memoryview], int],
    *,
    keep: Callable[[memoryview], object] | None = None,
    progress: Callable[[int], object] | None = None,
    threaded: bool = True,
) -> int:
    """Hash all ``readinto`` delivers into ``hasher``; return the byte count.

    The one streaming path of every hash vgpubuild computes: a thread reads ahead into the
    reused buffers of a :class:`~vgpubuild.readahead.Ring` while this thread hashes whole
    buffers with the GIL released. ``keep`` sees each buffer first (to write a copy: a
    download, a file copied into the cache); ``progress`` gets the bytes after each one.
    When ``readinto`` fails, what arrived before is hashed (and kept) before the error is
    raised here.
    """
    ring = readahead.Ring()
    batches = readahead.stream(ring, readahead.filled(ring, readinto, keep), threaded)
    size = 0
    try:
        for _, views in batches:
            for view in views:
                hasher.update(view)
                size += len(view)
                if progress is not None:
                    progress(len(view))
    finally:
        batches.close()
    return size


def _open_flat(path: str | os.PathLike[str]) -> tuple[int, os.stat_result]:
    """Open what ``hash file`` may read (a file, or a pipe read to its end)."""
    shown = os.fsdecode(path)
    try:
        st = os.stat(path)
        if stat.S_ISDIR(st.st_mode):
            raise InputError(
                f"{shown!r} is a directory, not a file",
                hint="Use the recursive (NAR) form for directories: vgpubuild hash path.",
            )
        if not (stat.S_ISREG(st.st_mode) or stat.S_ISFIFO(st.st_mode)):
            raise InputError(
                f"{shown!r} is a {special_kind(st.st_mode)}, not a regular file",
                hint="Give a regular file.",
            )
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC), st
    except FileNotFoundError:
        raise InputError(f"file {shown!r} does not exist", hint="Check the path.") from None
    except PermissionError:
        raise InputError(
            f"cannot read {shown!r}: permission denied",
            hint="Make the file readable (chmod u+r) or run as its owner.",
        ) from None
    except OSError as exc:
        raise InputError(f"cannot read {shown!r}: {exc.strerror}") from None


def hash_file(path: str | os.PathLike[str], algo: str = "sha256") -> Hash:
    """Flat hash of a file: what ``nix-hash --flat`` and ``sha256sum`` compute.

    Symlinks are followed (as ``nix-store --add-fixed`` does). Pipes are read to their end,
    so ``hash file /dev/stdin`` works; devices and sockets are refused because reading
    them would never end or cannot work. Read ahead in a thread into reused buffers
    (:mod:`vgpubuild.readahead`) while the main thread hashes.
    """
    h = new_hasher(algo)
    fd, st = _open_flat(path)
    try:
        small = stat.S_ISREG(st.st_mode) and st.st_size < readahead.BUFFER_SIZE
        feed(h, lambda view: os.readv(fd, [view]), threaded=not small)
    except OSError as exc:
        raise InputError(f"cannot read {os.fsdecode(path)!r}: {exc.strerror}") from None
    finally:
        os.close(fd)
    return Hash(algo, h.digest())


def special_kind(mode: int) -> str:
    """A reader's word for a file type that is neither regular, directory nor symlink."""
    if stat.S_ISFIFO(mode):
        return "fifo"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device node"
    return "special file"
