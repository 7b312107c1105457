"""The one exception hierarchy of vgpubuild.

Every failure a user can cause or meet is a :class:`VgpubuildError` subclass. Each class
carries the process exit code for its failure class, so scripts can tell "your input is
wrong" from "the network failed" from "the patcher broke" without parsing messages. The CLI
prints ``error: <message>`` (one sentence saying what happened and what to do) and exits
with ``exit_code``; tracebacks appear only with ``--debug``.

Subclasses share their parent's exit code unless they name a failure class of their own.
"""

from __future__ import annotations

import errno
import os


class VgpubuildError(Exception):
    """Any other expected failure (base class; ``hint`` says what to do)."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if not self.hint:
            return self.message
        # A message ending in a hash block ("  got: sha256-...") must not get a full stop
        # glued to the hash: the hint goes on a line of its own.
        return (
            f"{self.message}\n{self.hint}"
            if "\n" in self.message
            else f"{self.message}. {self.hint}"
        )


class UsageError(VgpubuildError):
    """A command-line value is invalid (bad hash string, store name, id, option, target)."""

    exit_code = 2


class InvalidHashError(UsageError):
    """A hash string has the wrong length, alphabet or algorithm."""


class InvalidStoreNameError(UsageError):
    """A store path name uses characters or a length Nix refuses."""


class UnknownReleaseError(UsageError):
    """A release version is not in the catalog nor defined in the build config."""


class ConfigError(VgpubuildError):
    """The build configuration file is unreadable, malformed or has unknown keys."""

    exit_code = 3


class InputError(VgpubuildError):
    """A local input path is missing, unreadable, or of a kind that cannot be used."""

    exit_code = 4


class NetworkError(VgpubuildError):
    """A download failed: HTTP status, timeout, connection, or offline mode."""

    exit_code = 5


class OfflineError(NetworkError):
    """The network is needed but ``--offline`` (or builder mode) forbids it."""


class HashMismatchError(VgpubuildError):
    """Bytes did not hash to the expected value (the file was quarantined, not used)."""

    exit_code = 6


class SourceNotFoundError(VgpubuildError):
    """A required input is nowhere: not given, not cached, not in the Nix store, no URL."""

    exit_code = 7


class XmlConfigError(VgpubuildError):
    """vgpuConfig.xml is malformed, unsafe, or an edit names something that is not there."""

    exit_code = 8


class PatcherError(VgpubuildError):
    """vGPU-Unlock-patcher is unsuitable for the release or ``patch.sh`` failed."""

    exit_code = 9


class ToolMissingError(VgpubuildError):
    """An external program the step needs (bash, patch, nix-store, ...) is not on PATH."""

    exit_code = 10


class OutputError(VgpubuildError):
    """The output or cache location cannot be written, or its disk is full (nothing partial was left there)."""

    exit_code = 11


class DiskFullError(OutputError):
    """The filesystem of an output, cache or work folder is full (or over quota)."""

    def __init__(self, folder: str | os.PathLike[str], needed: int | None = None) -> None:
        """One sentence for a full disk: the folder, the space needed, the space free."""
        import shutil
        from pathlib import Path

        self.folder = Path(folder)
        self.needed = needed
        try:
            free: int | None = shutil.disk_usage(folder).free
        except OSError:
            free = None
        if needed is not None and free is not None:
            want = f"it needs {_size(needed)}, {_size(free)} is free"
        elif free is not None:
            want = f"it needs more than the {_size(free)} free"
        else:
            want = f"it needs {_size(needed)}" if needed is not None else "it needs more space"
        super().__init__(
            f"no space left on the disk of {str(folder)!r}: {want}",
            hint="Free some space there, or choose a folder on another disk.",
        )


def is_disk_full(exc: BaseException) -> bool:
    """True for the OS's "no space left" and "quota exceeded" errors."""
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} bytes"
    exp = min(3, (n.bit_length() - 1) // 10)
    return f"{n / 1024**exp:.1f} {('KiB', 'MiB', 'GiB')[exp - 1]}"


class Interrupted(VgpubuildError):
    """The run was stopped by Ctrl-C (130), SIGHUP (129) or SIGTERM (143); output was removed."""

    exit_code = 130

    def __init__(self, message: str, *, hint: str | None = None, signum: int = 2) -> None:
        super().__init__(message, hint=hint)
        self.exit_code = 128 + signum


EXIT_CODES: tuple[type[VgpubuildError], ...] = (
    VgpubuildError,
    UsageError,
    ConfigError,
    InputError,
    NetworkError,
    HashMismatchError,
    SourceNotFoundError,
    XmlConfigError,
    PatcherError,
    ToolMissingError,
    OutputError,
    Interrupted,
)
"""The failure classes with distinct exit codes, in the order the docs list them."""


def _label(cls: type[VgpubuildError]) -> str:
    import re  # only --help and the docs need it: not worth every command's start-up

    if cls is VgpubuildError:
        return "other failure"
    words = re.findall(r"[A-Z][a-z]*", cls.__name__.removesuffix("Error"))
    return " ".join(words).lower()


def exit_code_summary() -> str:
    """One line for ``--help``: every exit code with a short label."""
    return (
        "Exit codes: 0 success, "
        + ", ".join(f"{cls.exit_code} {_label(cls)}" for cls in EXIT_CODES)
        + "."
    )


def exit_code_table() -> str:
    """A Markdown table for the README: code, class, what it means."""
    rows = ["| code | class | meaning |", "|---|---|---|", "| 0 | | success |"]
    for cls in EXIT_CODES:
        doc = (cls.__doc__ or "").strip().splitlines()[0]
        rows.append(f"| {cls.exit_code} | `{cls.__name__}` | {doc} |")
    return "\n".join(rows)


class _Reported:
    """A ``with`` block whose ``OSError`` becomes a vgpubuild error (see the functions below).

    A small class rather than ``contextlib.contextmanager``: every command imports this
    module, and contextlib (with what it loads) would add to each one's start-up.
    """

    def __init__(
        self,
        error: type[VgpubuildError] | None,
        what: str,
        hint: str | None,
        folder: str | os.PathLike[str] | None,
        needed: int | None,
    ) -> None:
        self.error, self.what, self.hint = error, what, hint
        self.folder, self.needed = folder, needed

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, exc: BaseException | None, tb: object) -> None:
        if not isinstance(exc, OSError):
            return
        if self.error is not InputError and is_disk_full(exc):  # writing: a full disk says so
            raise DiskFullError(self.folder or _folder_of(exc), self.needed) from None
        if self.error is not None:
            raise self.error(f"{self.what}: {exc.strerror or exc}", hint=self.hint) from None


def input_error(what: str, hint: str | None = None) -> _Reported:
    """Report an ``OSError`` in the block as ``InputError("<what>: <reason>")``.

    The one place the reading side turns the OS's words into a vgpubuild error; callers
    that have a better sentence for a particular ``OSError`` catch it inside the block.
    """
    return _Reported(InputError, what, hint, None, None)


def output_error(
    what: str,
    hint: str | None = None,
    *,
    folder: str | os.PathLike[str] | None = None,
    needed: int | None = None,
) -> _Reported:
    """Report an ``OSError`` in the block as ``OutputError("<what>: <reason>")``.

    A full disk becomes a :class:`DiskFullError` naming ``folder`` (default: the folder of
    the file the OS named) and the ``needed`` bytes when the caller knows them.
    """
    return _Reported(OutputError, what, hint, folder, needed)


def disk_full_as_error(folder: str | os.PathLike[str], needed: int | None = None) -> _Reported:
    """Turn only a "no space left" ``OSError`` in the block into a :class:`DiskFullError`.

    For blocks that also read (a zip, a source file), whose other ``OSError`` callers judge.
    """
    return _Reported(None, "", None, folder, needed)


def _folder_of(exc: OSError) -> str:
    if not isinstance(exc.filename, str | os.PathLike):
        return "."
    return os.path.dirname(os.fspath(exc.filename)) or "."
