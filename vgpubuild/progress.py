"""Progress bars for long transfers and copies: on a terminal only.

A bar is drawn (with rich, on stderr) only when stderr is a TTY, logs are not JSON and the
caller did not turn it off (``--json``). Everywhere else the same calls do nothing, so
callers never branch. The description should be a file name, never a URL (URLs can carry
tokens).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from vgpubuild import log


def enabled(wanted: bool = True) -> bool:
    """Whether a bar would be shown now."""
    return wanted and sys.stderr.isatty() and not log.json_mode()


class Bar:
    """One task's bar; all methods are no-ops when bars are off."""

    def __init__(self, progress: Progress | None = None, task: TaskID | None = None) -> None:
        self._progress = progress
        self._task = task

    def start(self, total: int | None, completed: int = 0) -> None:
        """(Re)start at ``completed`` bytes of ``total`` (None when the size is unknown)."""
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, total=total, completed=completed)

    def advance(self, n: int) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.advance(self._task, n)


@contextlib.contextmanager
def bar(description: str, wanted: bool = True) -> Iterator[Bar]:
    """A transient byte-progress bar for ``description`` (removed when the block ends)."""
    if not enabled(wanted):
        yield Bar()
        return
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        yield Bar(progress, progress.add_task(description, total=None))
