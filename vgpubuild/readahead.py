"""Read ahead in a thread, into a ring of reused, page-aligned buffers.

Hashing and reading both run near memory speed and both release the GIL, so a producer
thread that fills the next buffer while the main thread hashes (or writes) the previous
one takes max(read, hash) instead of their sum. The buffers are few (memory stays a few
MiB whatever the input size) and reused: a fresh ``bytes`` per read costs a page fault per
4 KiB. They are page-aligned because where a read lands matters: on this project's
reference machine (AMD EPYC) the kernel copies into a destination at 8, 16 or 24 mod 64
about 5x slower than at 0 or 32 — which is where a ``bytearray``'s data starts.

The producer is a function given ``take`` (the next free buffer, blocking while the
consumer holds them all) and ``emit`` (hand an item over). Every item is a tuple whose
first element is the index of the buffer it holds: a batch ``(index, [views of it])``, or
more (the NAR dump adds a file to send). The consumer iterates :func:`stream`; an item's
buffer goes back to the producer when the consumer asks for the next item, so a view is
valid until then (hash it, write it, never keep it). Items in flight are bounded by the
buffers, whatever they carry.
"""

from __future__ import annotations

import mmap

TYPE_CHECKING = False  # importing typing (and re, which it loads) costs start-up; mypy
if TYPE_CHECKING:  # reads the name as typing's
    from collections.abc import Callable, Generator, Iterable
    from queue import SimpleQueue
    from typing import Any, TypeVar

    T = TypeVar("T", bound=tuple[Any, ...])  # (buffer index, ...)
    Batch = tuple[int, list[memoryview]]
    """A filled buffer: its index in the ring and the views of it to consume, in order."""
    Producer = Callable[[Callable[[], int], Callable[[T], None]], None]

BUFFER_SIZE = 1 << 20
"""One buffer: big enough that per-buffer costs vanish, small enough to stay in cache."""

BUFFERS = 4
"""Buffers in the ring: the producer can be up to three ahead of the consumer."""

FAST_ALIGN = 32
"""A read into an offset that is a multiple of this (mod 64: 0 or 32) runs at full speed."""

_JOIN_SECONDS = 1.0


class Stopped(Exception):
    """Raised in the producer by ``take`` when the consumer has stopped early."""


class Ring:
    """A few page-aligned buffers of ``size`` bytes passed between producer and consumer."""

    def __init__(self, count: int = BUFFERS, size: int = BUFFER_SIZE) -> None:
        self.size = size
        self.views = [memoryview(mmap.mmap(-1, size)) for _ in range(count)]
        self._free: list[int] = list(range(count))
        self._queue: SimpleQueue[int] | None = None

    def take(self) -> int:
        """The index of a free buffer; waits while the consumer holds them all.

        Unthreaded, there is nobody to wait for: the ring grows instead (only an input that
        grew after it was measured as small needs that).
        """
        if self._queue is None:
            if not self._free:
                self._free.append(len(self.views))
                self.views.append(memoryview(mmap.mmap(-1, self.size)))
            return self._free.pop()
        index = self._queue.get()
        if index < 0:
            raise Stopped
        return index

    def give(self, index: int) -> None:
        """Return buffer ``index`` (the consumer is done with every view of it)."""
        if self._queue is None:
            self._free.append(index)
        else:
            self._queue.put(index)

    def _go_threaded(self) -> None:
        from queue import SimpleQueue

        self._queue = SimpleQueue()
        for index in self._free:
            self._queue.put(index)
        self._free = []

    def _stop(self) -> None:
        if self._queue is not None:
            self._queue.put(-1)


class _Failed:
    """An exception raised in the producer thread, carried to the consumer."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


_END = object()


def stream(
    ring: Ring,
    produce: Producer[T],
    threaded: bool = True,
    discard: Callable[[T], None] = lambda item: None,
) -> Generator[T, None, None]:
    """The items ``produce`` emits, in order; it runs in a thread when ``threaded``.

    Unthreaded, the producer runs to its end first: for inputs of a buffer or so, where
    starting a thread costs more than it saves. Exceptions in the producer are raised
    here; when the consumer stops early (or fails), the producer is stopped at its next
    ``take`` and its own cleanup (closing files) runs, and items it emitted that were never
    delivered go to ``discard`` (to close an open file handed over, say).
    """
    if not threaded:
        items: list[T] = []
        produce(ring.take, items.append)
        undelivered = iter(items)
        try:
            yield from undelivered
        finally:
            for item in undelivered:
                discard(item)
        return
    import threading
    from queue import SimpleQueue

    ring._go_threaded()
    full: SimpleQueue[Any] = SimpleQueue()  # the items, then _END or a _Failed

    def run() -> None:
        try:
            produce(ring.take, full.put)
            full.put(_END)
        except Stopped:
            pass
        except BaseException as exc:  # carried to the consumer, raised there
            full.put(_Failed(exc))

    thread = threading.Thread(target=run, name="vgpubuild-readahead", daemon=True)
    thread.start()
    try:
        while (item := full.get()) is not _END:
            if type(item) is _Failed:
                raise item.exc
            yield item
            ring.give(item[0])
    finally:
        ring._stop()
        # A read of a regular file returns promptly, so the producer reaches its next
        # ``take`` and ends; a hung network file system leaves it behind as a daemon.
        thread.join(_JOIN_SECONDS)
        while not full.empty():
            if type(left := full.get_nowait()) is not _Failed and left is not _END:
                discard(left)


def filled(
    ring: Ring,
    readinto: Callable[[memoryview], int],
    keep: Callable[[memoryview], object] | None = None,
) -> Producer[Batch]:
    """A producer filling whole buffers from ``readinto`` (a file's, a socket's) until it
    returns 0; ``keep`` sees each buffer before it is handed over (to write a copy, say).

    A failure of ``readinto`` (a broken connection) still hands over what arrived before
    it, so a consumer hashing a download keeps the hash of every byte written.
    """

    def produce(take: Callable[[], int], emit: Callable[[Batch], None]) -> None:
        while True:
            index = take()
            view = ring.views[index]
            pos = 0
            try:
                while pos < ring.size and (n := readinto(view[pos:])):
                    pos += n  # a pipe or a socket delivers in pieces, a file all at once
            finally:
                if pos:
                    if keep is not None:
                        keep(view[:pos])
                    emit((index, [view[:pos]]))
                else:
                    ring.give(index)
            if pos < ring.size:
                return

    return produce


class ChunkReader:
    """``readinto`` over an iterator of byte chunks (an HTTP body as httpx yields it)."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._rest = memoryview(b"")

    def readinto(self, view: memoryview) -> int:
        while not self._rest:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._rest = memoryview(chunk)
        n = min(len(view), len(self._rest))
        view[:n] = self._rest[:n]
        self._rest = self._rest[n:]
        return n
