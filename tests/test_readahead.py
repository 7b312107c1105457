"""The read-ahead ring: errors cross the thread, an early stop ends the producer, buffers
are page-aligned, and NAR reads land where the kernel copies fast."""

from __future__ import annotations

import ctypes
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from treegen import write_file

from vgpubuild import nar, readahead
from vgpubuild.errors import OutputError
from vgpubuild.readahead import Ring, stream

Batch = tuple[int, list[memoryview]]
Producer = Callable[[Callable[[], int], Callable[[Batch], None]], None]


def _address(view: memoryview) -> int:
    return ctypes.addressof(ctypes.c_char.from_buffer(view))


def test_buffers_are_page_aligned() -> None:
    for view in Ring().views:
        assert _address(view) % 4096 == 0


def _numbers(count: int, fail_after: int | None = None) -> tuple[Ring, Producer]:
    """A two-buffer ring and a producer writing 0, 1, 2, ... one number per buffer (raising
    before ``fail_after``)."""
    ring = Ring(count=2, size=4096)

    def produce(take: Callable[[], int], emit: Callable[[Batch], None]) -> None:
        for n in range(count):
            if n == fail_after:
                raise OSError(5, "Input/output error")
            index = take()
            ring.views[index][:8] = n.to_bytes(8, "little")
            emit((index, [ring.views[index][:8]]))

    return ring, produce


@pytest.mark.parametrize("threaded", [True, False])
def test_items_arrive_in_order_through_a_small_ring(threaded: bool) -> None:
    ring, produce = _numbers(50)
    got = [int.from_bytes(views[0], "little") for _, views in stream(ring, produce, threaded)]
    assert got == list(range(50))


def test_the_producers_error_is_raised_in_the_consumer() -> None:
    ring, produce = _numbers(50, fail_after=3)
    seen = []
    with pytest.raises(OSError, match="Input/output error"):
        for _, views in stream(ring, produce):
            seen.append(int.from_bytes(views[0], "little"))
    assert seen == [0, 1, 2]


def test_a_consumer_that_stops_early_stops_the_producer() -> None:
    cleaned = threading.Event()
    ring = Ring(count=2, size=4096)

    def endless(take: Callable[[], int], emit: Callable[[Batch], None]) -> None:
        try:
            while True:
                emit((take(), []))
        finally:
            cleaned.set()

    items = stream(ring, endless)
    next(items)
    items.close()
    assert cleaned.wait(5)
    assert not [t for t in threading.enumerate() if t.name == "vgpubuild-readahead"]


def test_nar_reads_of_larger_files_land_at_fast_offsets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read into 8, 16 or 24 mod 64 runs ~5x slower; the packer must step past them.

    Files of many sizes after names of many lengths put the framing at every offset."""
    tree = tmp_path / "tree"
    tree.mkdir()
    for i in range(40):
        write_file(tree / ("n" * (1 + i % 9) + str(i)), 4096 + 13 * i, seed=i)
    offsets: list[int] = []
    real_readv = os.readv

    def recording_readv(fd: int, buffers: list[memoryview]) -> int:
        offsets.append(_address(buffers[0]) % 64)
        return real_readv(fd, buffers)

    monkeypatch.setattr(os, "readv", recording_readv)
    nar.nar_hash(tree)
    assert len(offsets) >= 40
    assert not set(offsets) & {8, 16, 24}, offsets


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture
def big_files(tmp_path: Path) -> Path:
    """Thirty files a dump sends with sendfile, each with a small neighbour."""
    tree = tmp_path / "tree"
    tree.mkdir()
    for i in range(30):
        write_file(tree / f"big{i:02d}", nar.SEND_MIN + i, seed=i)
        write_file(tree / f"small{i:02d}", 100 + i, seed=i)
    return tree


def test_a_dump_holds_few_files_open(big_files: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Files handed to the consumer hold a ring buffer each, so a producer running ahead
    of a slow reader cannot open the whole tree."""
    baseline = _open_fds()
    seen: list[int] = []
    real_send = nar._send

    def slow_send(out_fd: int, item: nar._Send) -> None:
        time.sleep(0.01)  # the producer gets every chance to run ahead
        seen.append(_open_fds() - baseline)
        real_send(out_fd, item)

    monkeypatch.setattr(nar, "_send", slow_send)
    with open(os.devnull, "wb") as out:
        nar.dump(big_files, out)
    assert len(seen) == 30
    assert max(seen) <= readahead.BUFFERS + 3  # + the tree's fd, the output, one in hand
    assert _open_fds() == baseline


def test_a_dump_that_fails_leaves_no_file_open(big_files: Path) -> None:
    baseline = _open_fds()
    read_end, write_end = os.pipe()
    os.close(read_end)
    with open(write_end, "wb") as out, pytest.raises(OutputError, match="closed the pipe"):
        nar.dump(big_files, out)
    time.sleep(0.2)  # the producer thread notices the stop and ends
    assert _open_fds() == baseline
