"""Streaming compressors with fixed settings: the same input always gives the same bytes.

Used for NARs in binary caches (``none``, ``xz``, ``zstd``: what Nix 2.8 reads) and for the
tar payloads of ``.run`` files (``xz``, ``gzip``). Each writer compresses chunk by chunk
into ``out`` with a bounded amount of memory and never closes ``out``: the caller's atomic
file decides whether the bytes are kept. No names, times or thread counts go into a stream.
"""

from __future__ import annotations

import contextlib
import gzip
import lzma
from collections.abc import Iterator
from typing import BinaryIO, Literal, Protocol, cast

Compression = Literal["none", "xz", "zstd", "gzip"]

ZSTD_LEVEL = 3
"""zstd's own default (and Nix's): about 400 MB/s here, a 2 MiB window, a few MiB of memory."""


class Sink(Protocol):
    """Anything bytes can be written to (a file, a hashing wrapper)."""

    def write(self, data: bytes, /) -> int: ...


class _Plain:
    """``none``: bytes pass through unchanged; closing leaves ``out`` open."""

    def __init__(self, out: Sink) -> None:
        self._out = out

    def write(self, data: bytes, /) -> int:
        return self._out.write(data)

    def close(self) -> None:
        pass


def _open(out: Sink, kind: Compression, xz_dict_size: int | None) -> BinaryIO:
    # The standard library's stubs want a whole file object; the writers only call write().
    target = cast(BinaryIO, out)
    if kind == "none":
        return cast(BinaryIO, _Plain(out))
    if kind == "xz":
        if xz_dict_size is None:
            return cast(BinaryIO, lzma.LZMAFile(target, "wb", format=lzma.FORMAT_XZ, preset=6))
        lzma2 = {"id": lzma.FILTER_LZMA2, "preset": 6, "dict_size": xz_dict_size}
        return cast(BinaryIO, lzma.LZMAFile(target, "wb", format=lzma.FORMAT_XZ, filters=[lzma2]))
    if kind == "zstd":
        import zstandard

        cctx = zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_checksum=True)
        return cast(BinaryIO, cctx.stream_writer(target, closefd=False))
    return cast(BinaryIO, gzip.GzipFile(filename="", mode="wb", fileobj=target, mtime=0))


@contextlib.contextmanager
def compressor(
    out: Sink, kind: Compression, *, xz_dict_size: int | None = None
) -> Iterator[BinaryIO]:
    """A writer compressing into ``out``; the stream is finished when the block ends.

    ``xz`` is preset 6 (xz's default); ``xz_dict_size`` lowers its dictionary (8 MiB) where
    memory matters more than the last few percent of size: compression needs about ten
    times the dictionary.
    """
    writer = _open(out, kind, xz_dict_size)
    try:
        yield writer
    finally:
        writer.close()
