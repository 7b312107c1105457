"""Downloading inputs: streamed, hashed on arrival, resumable, retried, verified.

A download:

* returns at once when the cache already has the expected content (no socket at all);
* takes ``file://`` URLs and plain paths through the cache's copy-and-hash;
* with ``offline`` raises :class:`OfflineError` before any connection is made;
* otherwise streams the body with httpx into ``<cache>/partial/<key>-<name>.part``, feeding
  every received byte to SHA-256 as it is written, so the file is never read back to hash
  it. A broken transfer resumes from the ``.part`` with ``Range`` and ``If-Range`` (ETag or
  Last-Modified); a server that answers 200 instead of 206 restarts cleanly from byte 0.
  When a *new process* resumes a ``.part`` left by an earlier one, the bytes already there
  are hashed once before the transfer continues (they arrived in another process);
* retries with tenacity: exponential backoff with jitter on connection errors, timeouts,
  5xx, 408 and 429 (honouring ``Retry-After``, capped); other 4xx and an unverifiable TLS
  certificate fail at once. ``attempts`` counts attempts *without progress*: one that
  brought new bytes resets the count and the backoff, so a flaky link still finishes;
* verifies the hash: a mismatch moves the bytes to ``<cache>/quarantine/``; a match renames
  the file into the cache.

The HTTP side (client, redirects that keep credentials with the origin, statuses, retry
policy) is :mod:`vgpubuild.httpget`; the ``.part`` file and its hash so far are
:mod:`vgpubuild.partfile`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import httpx

from vgpubuild import log, progress
from vgpubuild.cache import Cache
from vgpubuild.credentials import Credentials, default_netrc
from vgpubuild.errors import NetworkError, OfflineError, UsageError
from vgpubuild.httpget import (
    RETRY_STATUSES,
    Retryable,
    RetryBudget,
    TransportError,
    body_reader,
    certificate_error,
    content_range_start,
    content_range_total,
    describe,
    make_client,
    open_following,
    retry_after,
    retrying,
    status_error,
    validator,
)
from vgpubuild.nixhash import Hash
from vgpubuild.partfile import PartFile
from vgpubuild.store import check_name
from vgpubuild.verify import Pinned


@dataclass(frozen=True)
class FetchOptions:
    """How downloads behave; the CLI's ``--offline --attempts --timeout --retry-wait``."""

    offline: bool = False
    attempts: int = 5
    timeout: float = 30.0
    """Seconds allowed for connecting and for each wait on the server (not the whole file)."""
    max_retry_after: float = 60.0
    """Longest ``Retry-After`` wait honoured; a longer one is shortened to this."""
    credentials: Credentials | None = None
    insecure: bool = False
    """Skip TLS certificate checks: only on the user's explicit request (``-k``)."""
    progress: bool = True
    retry_wait: float = 1.0
    """First backoff in seconds; it doubles per attempt, with jitter, up to ``max_retry_wait``."""
    max_retry_wait: float = 30.0


def is_url(location: str) -> bool:
    """True for ``scheme://...`` locations (http, https, file); False for plain paths."""
    return "://" in location


def local_path(location: str) -> Path | None:
    """The file a ``file://`` URL or plain path names; None for http(s) URLs."""
    if not is_url(location):
        return Path(location).expanduser()
    parts = urllib.parse.urlsplit(location)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise UsageError(f"file URL {location!r} names a remote host", hint="Use file:///path.")
        return Path(urllib.parse.unquote(parts.path))
    if parts.scheme in ("http", "https"):
        return None
    raise UsageError(
        f"unsupported URL scheme {parts.scheme!r}", hint="Use http://, https://, file:// or a path."
    )


def strip_userinfo(url: str) -> tuple[str, str | None, str | None]:
    """Split ``user:pass@`` out of a URL (registering the password, not the user, as a secret)."""
    parts = urllib.parse.urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, None, None
    user = urllib.parse.unquote(parts.username or "")
    password = urllib.parse.unquote(parts.password or "")
    for value in (parts.password, password):
        if value:
            log.add_secret(value)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc)), user, password


def name_from_url(url: str) -> str:
    """The file name a URL points at (its last path segment), checked as a store name."""
    path = urllib.parse.urlsplit(url).path if is_url(url) else url
    name = urllib.parse.unquote(path.rstrip("/").rsplit("/", 1)[-1])
    if not name:
        raise UsageError(f"cannot take a file name from {url!r}", hint="Pass --name NAME.")
    return check_name(name)


def download(
    url: str, expected: Hash | None, cache: Cache, options: FetchOptions, name: str | None = None
) -> Path:
    """Obtain ``url``'s content verified against ``expected``; return its cache path.

    ``expected`` None (``vgpubuild prefetch``) stores whatever arrives under its hash.
    """
    url, user, password = strip_userinfo(url)
    name = check_name(name, chosen=True) if name else name_from_url(url)
    if expected is not None and (hit := cache.lookup(expected, name)):
        return hit
    local = local_path(url)
    if local is not None:
        return cache.add_file(local, expected, name)
    if options.offline:
        raise OfflineError(
            f"{name} is not in the cache and --offline forbids downloading it",
            hint="Run once without --offline, or add the file with 'vgpubuild add FILE'.",
        )
    try:
        httpx.URL(url)
    except httpx.InvalidURL:  # its message may quote part of a password: not shown
        raise UsageError(
            f"the URL of {name} is not valid",
            hint="Check it; a password holding '/', '@', ':' or '#' must be percent-encoded "
            "(%2F, %40, %3A, %23).",
        ) from None
    creds = options.credentials or Credentials(netrc_file=default_netrc())
    if user is not None:
        creds = dataclasses.replace(creds, user=user, password=password)
    key = expected.hex if expected else hashlib.sha256(url.encode()).hexdigest()
    with cache.lock(key):
        if expected is not None and (hit := cache.lookup(expected, name)):
            return hit
        return _Transfer(url, name, creds, cache, options).run(expected, key)


class _Transfer:
    """One file's download across attempts; the .part keeps the hash state between them."""

    def __init__(
        self, url: str, name: str, creds: Credentials, cache: Cache, options: FetchOptions
    ) -> None:
        self.url = url
        self.name = name
        self.shown = display_url(url)
        self.creds = creds
        self.cache = cache
        self.options = options
        self.log = log.get_logger(file=name, url=self.shown)

    def run(self, expected: Hash | None, key: str) -> Path:
        """Download (resuming what an earlier attempt or process left), verify, store."""
        name = self.name
        part = PartFile(self.cache.partial, key, name, self.url)
        self.log.info("downloading")
        opts = self.options
        budget = RetryBudget(opts.attempts, lambda: part.offset)
        retry = retrying(
            budget, opts.retry_wait, opts.max_retry_wait, opts.max_retry_after, self.log
        )
        try:
            with (
                make_client(self.creds, timeout=opts.timeout, insecure=opts.insecure) as client,
                progress.bar(name, opts.progress) as bar,
            ):
                retry(self._attempt, client, part, expected is not None, bar)
        except Retryable as exc:
            raise self._gave_up(exc.reason, budget, part) from None
        except TransportError as exc:
            raise self._gave_up(describe(exc, opts.timeout), budget, part) from None
        got = part.finish()
        Pinned(expected, name).check(
            got, set_aside=lambda: self.cache.quarantine_file(part.path, got, name)
        )
        path = self.cache.store(part.path, got, name)
        self.log.info("downloaded", bytes=part.offset, sha256=got.sri)
        return path

    def _attempt(
        self, client: httpx.Client, part: PartFile, hash_known: bool, bar: progress.Bar
    ) -> None:
        start = part.resume_point(hash_known)
        headers: dict[str, str] = {}
        if start > 0:
            headers["Range"] = f"bytes={start}-"
            if saved := part.meta().get("validator"):
                headers["If-Range"] = saved
        try:
            response = open_following(client, self.url, headers, self.creds, self.shown, self.log)
        except TransportError as exc:
            if (refused := certificate_error(exc, self.shown)) is not None:
                raise refused from None
            raise
        with contextlib.closing(response):
            total = self._check_answer(response, part, start)
            if total is None and response.status_code == 416:
                return  # the .part was already complete
            bar.start(total, part.offset)
            try:
                part.append(body_reader(response, self.options.timeout), bar.advance, total)
            except TransportError as exc:
                # Bytes before the break are kept (and hashed): the next attempt resumes.
                reason = describe(exc, self.options.timeout)
                raise Retryable(f"{reason} (have {part.offset} of {total} bytes)") from None
            if total is not None and part.offset < total:
                raise Retryable(f"the body ended early (have {part.offset} of {total} bytes)")

    def _check_answer(self, response: httpx.Response, part: PartFile, start: int) -> int | None:
        """What the status means for the .part; returns the total length when known."""
        status = response.status_code
        content_range = response.headers.get("content-range")
        if status == 416 and start > 0:
            total = content_range_total(content_range)
            if total == start and part.meta().get("total") in (None, start):
                return None
            part.reset()
            raise Retryable("the server refused to resume; starting over")
        if status >= 500 or status in RETRY_STATUSES:
            raise Retryable(f"HTTP {status}", retry_after(response.headers.get("retry-after")))
        if status == 206:
            if content_range_start(content_range) != start:
                part.reset()
                raise Retryable("the server sent the wrong byte range; starting over")
            return content_range_total(content_range)
        if status != 200:
            raise status_error(status, self.shown)
        if start > 0:
            self.log.info("server ignored the range request; starting over")
        part.reset()
        length = response.headers.get("content-length")
        total = int(length) if length and length.isdigit() else None
        part.write_meta(validator(response), total)
        return total

    def _gave_up(self, reason: str, budget: RetryBudget, part: PartFile) -> NetworkError:
        tries = f"{budget.tries} attempts" if budget.tries > 1 else "1 attempt"
        if budget.tries > budget.attempts:
            tries += f", the last {budget.attempts} without progress"
        try:
            kept = part.path.stat().st_size
        except OSError:
            kept = 0
        if kept:
            after = f"the {kept} bytes received are kept and the next run resumes from there"
        else:
            after = "nothing was received"
        return NetworkError(
            f"downloading {self.shown} failed after {tries}: {reason}",
            hint=f"Check the network and the server; {after} (--attempts and --timeout allow "
            "more patience).",
        )


def display_url(url: str) -> str:
    """The URL as errors, logs and manifests may show it: no userinfo, no query (tokens)."""
    url = strip_userinfo(url)[0]
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(query="", fragment="")) + (
        "?..." if parts.query else ""
    )
