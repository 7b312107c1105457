"""Logging: structlog to stderr, readable on a terminal, JSON for machines.

Data results go to stdout; everything said *about* the work goes here. structlog is imported
on first use, not at start-up, so ``vgpubuild --help`` stays fast.

Secrets (passwords, tokens, header values) are registered with :func:`add_secret` and
replaced by ``***`` in every event before it is rendered: defence in depth on top of never
logging them on purpose. A secret is replaced where it stands as a token of its own, not
where its characters happen to occur inside a longer word: a short password must not turn
a hash in an error message into something that cannot be copied.
"""

from __future__ import annotations

import re
import sys
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from collections.abc import MutableMapping

    import structlog

LogFormat = Literal["auto", "console", "json"]

# The stdlib's level numbers (structlog filters on them), without importing logging at start-up.
DEBUG, INFO, WARNING = 10, 20, 30

_state: dict[str, Any] = {"format": "auto", "level": INFO, "applied": False}
_secrets: set[str] = set()
_pattern: list[re.Pattern[str] | None] = [None]
"""The secrets as one regular expression, rebuilt when one is added."""

_WORD = "A-Za-z0-9_"
"""Characters that continue a token: a secret next to one of them is part of a longer word."""


def configure(fmt: LogFormat = "auto", level: int = INFO) -> None:
    """Choose the format and level; applied lazily when the first logger is made."""
    _state.update(format=fmt, level=level, applied=False)


def add_secret(value: str) -> None:
    """Make ``value`` unprintable in logs from now on (empty strings are ignored)."""
    if value and value not in _secrets:
        _secrets.add(value)
        alternatives = "|".join(re.escape(v) for v in sorted(_secrets, key=len, reverse=True))
        _pattern[0] = re.compile(f"(?<![{_WORD}])(?:{alternatives})(?![{_WORD}])")


def redact(text: str) -> str:
    """Replace every registered secret standing as a token in ``text`` with ``***``."""
    pattern = _pattern[0]
    return pattern.sub("***", text) if pattern is not None else text


def is_enabled_for(level: int) -> bool:
    """True when events at ``level`` are shown; lets hot paths skip importing structlog."""
    return bool(level >= _state["level"])


def json_mode() -> bool:
    """True when logs are JSON: progress bars and colours stay off then."""
    return bool(_state["format"] == "json")


def _redact_event(
    _logger: Any, _name: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    if _secrets:
        for key, value in event.items():
            if isinstance(value, str):
                event[key] = redact(value)
            elif not isinstance(value, int | float | bool | type(None)):
                event[key] = redact(str(value))
    return event


class _CurrentStderr:
    """Write to whatever ``sys.stderr`` is now (test runners swap it)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def _colours() -> bool:
    """Colour on a terminal, unless ``NO_COLOR`` is set to anything (no-color.org)."""
    import os

    return sys.stderr.isatty() and not os.environ.get("NO_COLOR")


def _apply() -> None:
    import structlog

    fmt = _state["format"]
    if fmt == "auto":
        fmt = "console"
    renderer: Any
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer(sort_keys=True)
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=_colours())
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            _redact_event,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_state["level"]),
        logger_factory=structlog.PrintLoggerFactory(file=_CurrentStderr()),  # type: ignore[arg-type]
        cache_logger_on_first_use=False,
    )
    _state["applied"] = True


class Logger:
    """A logger bound to some key/values; structlog is made (and configured) for the first
    event the level shows.

    structlog loads rich's tracebacks and asyncio (about 0.1 s): a command run with -q, or
    one that logs nothing worth showing, never pays for it.
    """

    __slots__ = ("_initial", "_real")

    def __init__(self, initial: dict[str, Any]) -> None:
        self._initial = initial
        self._real: structlog.typing.FilteringBoundLogger | None = None

    def _log(self, level: int, method: str, event: str, values: dict[str, Any]) -> None:
        if not is_enabled_for(level):
            return
        if self._real is None:
            import structlog

            if not _state["applied"]:
                _apply()
            self._real = structlog.get_logger().bind(**self._initial)
        getattr(self._real, method)(event, **values)

    def debug(self, event: str, **values: Any) -> None:
        self._log(DEBUG, "debug", event, values)

    def info(self, event: str, **values: Any) -> None:
        self._log(INFO, "info", event, values)

    def warning(self, event: str, **values: Any) -> None:
        self._log(WARNING, "warning", event, values)


def get_logger(**initial: Any) -> Logger:
    """Return a logger bound to ``initial`` key/values."""
    return Logger(initial)
