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
import queue
import re
import stat
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Literal

from vgpubuild.errors import InputError, InvalidHashError

HashForm = Literal["sri", "nix32", "base16", "base64"]
HASH_FORMS: tuple[HashForm, ...] = ("sri", "nix32", "base16", "base64")

NIX32_ALPHABET = "0123456789abcdfghijklmnpqrsvwxyz"
_NIX32_INDEX = {c: i for i, c in enumerate(NIX32_ALPHABET)}

DIGEST_SIZES = {"md5": 16, "sha1": 20, "sha256": 32, "sha512": 64}

CHUNK_SIZE = 1 << 20
"""Read size for streaming: large enough that per-call overhead vanishes, small for RSS."""

READ_SIZE = 4 << 20
"""Read size when a reader thread feeds a hasher: fewer hand-overs between the threads."""

READAHEAD_DEPTH = 2
"""Chunks a reader thread may hold ahead of the hasher: memory stays ~4 x READ_SIZE."""

_HEX_RE = re.compile(r"[0-9a-fA-F]*")
_ALGO_RE = re.compile(r"[a-z][a-z0-9]*")


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
            # No hash body contains ':' or '-' (base64 uses '+' and '/'), so any word before
            # one is meant as an algorithm name and must be a known one.
            if found and _ALGO_RE.fullmatch(head):
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
            try:
                return base64.b64decode(body, validate=True)
            except binascii.Error:
                raise ValueError("invalid base64") from None
        if len(body) == size * 2:
            # fullmatch first: bytes.fromhex would also skip spaces inside the string.
            if not _HEX_RE.fullmatch(body):
                raise ValueError("invalid hex digit")
            return bytes.fromhex(body)
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


class _Failed:
    """An exception raised in the reader thread, carried to the consumer."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


_END = object()


def readahead(chunks: Iterable[bytes], depth: int = READAHEAD_DEPTH) -> Iterator[bytes]:
    """Produce ``chunks`` in a helper thread, at most ``depth`` ahead of the consumer.

    File reads and hashlib updates of large buffers both release the GIL, so a reader
    thread lets the kernel copy the next chunk while the current one is hashed: the total
    time becomes max(read, hash) instead of read + hash. Exceptions from the producer are
    re-raised in the consumer; stopping early (or an error) stops the producer.
    """
    slots: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                slots.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        source = iter(chunks)
        try:
            for chunk in source:
                if not put(chunk):
                    return
            put(_END)
        except BaseException as exc:
            put(_Failed(exc))
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=produce, name="vgpubuild-readahead", daemon=True)
    thread.start()
    try:
        while (item := slots.get()) is not _END:
            if isinstance(item, _Failed):
                raise item.exc
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        # The producer sees ``stop`` within 50 ms unless a read blocks (a silent pipe after
        # Ctrl-C); then it is left behind as a daemon thread that owns its own fd.
        thread.join(timeout=1.0)


def check_algo(algo: str) -> str:
    """Return ``algo`` if Nix knows it (md5, sha1, sha256, sha512), else raise."""
    if algo not in DIGEST_SIZES:
        raise InvalidHashError(
            f"unknown hash algorithm {algo!r}", hint="Use one of: " + ", ".join(DIGEST_SIZES) + "."
        )
    return algo


def hash_chunks(chunks: Iterable[bytes], algo: str = "sha256") -> tuple[Hash, int]:
    """Hash a stream of byte chunks (read ahead in a thread); returns (hash, byte count)."""
    h = hashlib.new(check_algo(algo))
    size = 0
    for chunk in readahead(chunks):
        h.update(chunk)
        size += len(chunk)
    return Hash(algo, h.digest()), size


def read_fd(fd: int, size: int = READ_SIZE) -> Iterator[bytes]:
    """Read ``fd`` to its end in ``size`` pieces, then close it (the reader owns it).

    Each chunk is fresh ``bytes``, so it stays valid while the next one is read.
    """
    try:
        while chunk := os.read(fd, size):
            yield chunk
    finally:
        os.close(fd)


def hash_file(path: str | os.PathLike[str], algo: str = "sha256") -> Hash:
    """Flat hash of a file: what ``nix-hash --flat`` and ``sha256sum`` compute.

    Symlinks are followed (as ``nix-store --add-fixed`` does). Pipes are read to their end,
    so ``hash file /dev/stdin`` works; devices and sockets are refused because reading
    them would never end or cannot work.
    """
    check_algo(algo)
    shown = os.fspath(path)
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
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise InputError(f"file {shown!r} does not exist", hint="Check the path.") from None
    except PermissionError:
        raise InputError(
            f"cannot read {shown!r}: permission denied",
            hint="Make the file readable (chmod u+r) or run as its owner.",
        ) from None
    except OSError as exc:
        raise InputError(f"cannot read {shown!r}: {exc.strerror}") from None
    try:
        return hash_chunks(read_fd(fd), algo)[0]
    except OSError as exc:
        raise InputError(f"cannot read {shown!r}: {exc.strerror}") from None


def special_kind(mode: int) -> str:
    """A reader's word for a file type that is neither regular, directory nor symlink."""
    if stat.S_ISFIFO(mode):
        return "fifo"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device node"
    return "special file"
