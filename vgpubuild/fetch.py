"""Downloading inputs: streamed, hashed on arrival, resumable, retried, verified.

This is the only module that opens network connections. A download:

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
  5xx, 408 and 429 (honouring ``Retry-After``, capped); other 4xx fail at once;
* verifies the hash: a mismatch moves the bytes to ``<cache>/quarantine/``; a match renames
  the file into the cache.

Redirects are followed here, not by httpx, so that credentials (``-u``, every ``-H``
header, netrc entries for the first host) are only ever sent to the origin the user named.
"""

from __future__ import annotations

import contextlib
import dataclasses
import email.utils
import hashlib
import json
import os
import threading
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vgpubuild import __version__, log, progress
from vgpubuild.cache import Cache
from vgpubuild.credentials import Credentials, default_netrc
from vgpubuild.errors import NetworkError, OfflineError, OutputError, UsageError
from vgpubuild.nixhash import Hash
from vgpubuild.store import check_name
from vgpubuild.verify import Pinned

if TYPE_CHECKING:
    import httpx
    import tenacity

MAX_REDIRECTS = 10
_READ_SIZE = 1 << 20
_QUEUE_CHUNKS = 8
_RETRY_STATUSES = frozenset({408, 429})


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
    """Split ``user:pass@`` out of a URL (registering it as a secret)."""
    parts = urllib.parse.urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, None, None
    user = urllib.parse.unquote(parts.username or "")
    password = urllib.parse.unquote(parts.password or "")
    for value in (parts.username, parts.password, password):
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
    name = check_name(name) if name else name_from_url(url)
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
    creds = options.credentials or Credentials(netrc_file=default_netrc())
    if user is not None:
        creds = dataclasses.replace(creds, user=user, password=password)
    key = expected.hex if expected else hashlib.sha256(url.encode()).hexdigest()
    with cache.lock(key):
        if expected is not None and (hit := cache.lookup(expected, name)):
            return hit
        return _Transfer(url, expected, cache, options, creds, name, key).run()


class _Retryable(Exception):
    """A failure worth another attempt; ``retry_after`` comes from the server."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _origin(url: httpx.URL) -> tuple[str, str, int]:
    default = 443 if url.scheme == "https" else 80
    return url.scheme, url.host, url.port or default


def _status_error(status: int, shown: str) -> NetworkError:
    hints = {
        401: "The server wants credentials: give them with curlOptsList ('-u', 'user:pass') "
        "or a ~/.netrc entry.",
        403: "The server refused access: check the credentials and the URL.",
        404: "Check the URL, or add the file yourself with 'vgpubuild add FILE'.",
    }
    return NetworkError(
        f"{shown} answered HTTP {status}",
        hint=hints.get(status, "Check the URL; this status is not retried."),
    )


class _Transfer:
    """One file's download across attempts; keeps the hash state between them."""

    def __init__(
        self,
        url: str,
        expected: Hash | None,
        cache: Cache,
        options: FetchOptions,
        creds: Credentials,
        name: str,
        key: str,
    ) -> None:
        self.url = url
        self.shown = display_url(url)
        self.expected = expected
        self.cache = cache
        self.options = options
        self.creds = creds
        self.name = name
        self.part = cache.partial / f"{key[:32]}-{name}.part"
        self.meta_path = self.part.with_name(self.part.name + ".json")
        self.url_id = hashlib.sha256(url.encode()).hexdigest()
        self.hasher: Any = None  # sha256 of part[0:offset], valid while offset == file size
        self.offset = 0
        self.log = log.get_logger(file=name, url=self.shown)

    # -- state of the .part file -------------------------------------------------------

    def _meta(self) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads(self.meta_path.read_text())
        except (OSError, ValueError):
            return {}
        return data if data.get("url") == self.url_id else {}

    def _write_meta(self, validator: str | None, total: int | None) -> None:
        data = {"url": self.url_id, "validator": validator, "total": total}
        self.meta_path.write_text(json.dumps(data))

    def _reset(self) -> None:
        self.part.parent.mkdir(parents=True, exist_ok=True)
        self.part.write_bytes(b"")
        with contextlib.suppress(FileNotFoundError):
            self.meta_path.unlink()
        self.hasher = hashlib.sha256()
        self.offset = 0

    def _resume_point(self) -> int:
        """Bytes already held; a .part from an earlier process is hashed once here."""
        try:
            size = self.part.stat().st_size
        except FileNotFoundError:
            size = -1
        if self.hasher is not None and size == self.offset:
            return self.offset
        # Resuming without a validator is safe only when the final hash is known.
        meta = self._meta()
        if size <= 0 or not (meta.get("validator") or self.expected is not None):
            self._reset()
            return 0
        self.log.info("resuming partial download", have_bytes=size)
        h = hashlib.sha256()
        with open(self.part, "rb", buffering=0) as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
        self.hasher, self.offset = h, size
        return size

    # -- HTTP ----------------------------------------------------------------------------

    def _client(self) -> httpx.Client:
        import ssl

        import httpcore
        import httpx

        # httpcore reads 64 KiB per recv(); at LAN/loopback speed that per-read overhead made
        # a 1 GiB download ~2x slower than curl. 1 MiB reads (bounded memory) close the gap.
        conn = httpcore.HTTP11Connection
        conn.READ_NUM_BYTES = max(getattr(conn, "READ_NUM_BYTES", 0), _READ_SIZE)

        verify: ssl.SSLContext | bool = True
        if self.options.insecure or self.creds.insecure:
            verify = False
        elif self.creds.cacert is not None:
            verify = ssl.create_default_context(cafile=os.fspath(self.creds.cacert))
        agent = self.creds.user_agent or f"vgpubuild/{__version__}"
        return httpx.Client(
            timeout=httpx.Timeout(self.options.timeout),
            verify=verify,
            follow_redirects=False,
            headers={"User-Agent": agent, "Accept-Encoding": "identity"},
        )

    def _open(self, client: httpx.Client, headers: dict[str, str]) -> httpx.Response:
        """Send the GET, following redirects; credentials stay with the first origin."""
        import httpx

        target = httpx.URL(self.url)
        origin = _origin(target)
        for _ in range(MAX_REDIRECTS + 1):
            if _origin(target) == origin:
                auth = self.creds.origin_headers(target.host)
            else:
                auth = self.creds.other_host_headers(target.host)
            request = client.build_request("GET", target, headers={**headers, **auth})
            response = client.send(request, stream=True)
            location = response.headers.get("location")
            if not (response.is_redirect and location):
                return response
            response.close()
            target = target.join(location).copy_with(username=None, password=None)
            if target.scheme not in ("http", "https"):
                raise NetworkError(f"{self.shown} redirected to a non-HTTP URL")
            self.log.debug("redirect", to_host=target.host)
        raise NetworkError(f"{self.shown} redirected more than {MAX_REDIRECTS} times")

    def _attempt(self, client: httpx.Client, bar: progress.Bar) -> None:
        start = self._resume_point()
        headers: dict[str, str] = {}
        if start > 0:
            headers["Range"] = f"bytes={start}-"
            if validator := self._meta().get("validator"):
                headers["If-Range"] = validator
        with contextlib.closing(self._open(client, headers)) as response:
            status = response.status_code
            if status == 416 and start > 0:
                total = _content_range_total(response.headers.get("content-range"))
                announced = self._meta().get("total")
                if total == start and announced in (None, start):
                    return  # the .part was already complete
                self._reset()
                raise _Retryable("the server refused to resume; starting over")
            if status >= 500 or status in _RETRY_STATUSES:
                after = _retry_after(response.headers.get("retry-after"))
                raise _Retryable(f"HTTP {status}", after)
            if status == 206:
                first = _content_range_start(response.headers.get("content-range"))
                if first != start:
                    self._reset()
                    raise _Retryable("the server sent the wrong byte range; starting over")
                total = _content_range_total(response.headers.get("content-range"))
            elif status == 200:
                if start > 0:
                    self.log.info("server ignored the range request; starting over")
                self._reset()
                length = response.headers.get("content-length")
                total = int(length) if length and length.isdigit() else None
                self._write_meta(_validator(response), total)
            else:
                raise _status_error(status, self.shown)
            bar.start(total, self.offset)
            self._receive(response, bar, total)
            if total is not None and self.offset < total:
                raise _Retryable(f"the body ended early (have {self.offset} of {total} bytes)")

    def _receive(self, response: httpx.Response, bar: progress.Bar, total: int | None) -> None:
        """Append the body to the .part, hashing each chunk as it is written."""
        import httpx

        with _Sink(self.part, self.hasher) as sink:
            try:
                for chunk in response.iter_raw():
                    sink.put(chunk)
                    self.offset += len(chunk)
                    bar.advance(len(chunk))
            except httpx.TransportError as exc:
                # Bytes before the break are kept (and hashed): the next attempt resumes.
                reason = _describe(exc, self.options.timeout)
                raise _Retryable(f"{reason} (have {self.offset} of {total} bytes)") from None

    # -- the whole download ----------------------------------------------------------------

    def _retrying(self) -> tenacity.Retrying:
        import tenacity

        # Exponential backoff plus up to one first-wait of random jitter.
        backoff = tenacity.wait_exponential(
            multiplier=self.options.retry_wait, max=self.options.max_retry_wait
        ) + tenacity.wait_random(0, self.options.retry_wait)

        def wait(state: tenacity.RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            if isinstance(exc, _Retryable) and exc.retry_after is not None:
                return min(exc.retry_after, self.options.max_retry_after)
            return float(backoff(state))

        def before_sleep(state: tenacity.RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            self.log.warning(
                "download attempt failed, retrying",
                attempt=state.attempt_number,
                of=self.options.attempts,
                reason=getattr(exc, "reason", str(exc)),
                wait_s=round(state.upcoming_sleep, 2),
            )

        return tenacity.Retrying(
            stop=tenacity.stop_after_attempt(max(1, self.options.attempts)),
            wait=wait,
            retry=tenacity.retry_if_exception_type((_Retryable, _transport_errors())),
            before_sleep=before_sleep,
            reraise=True,
        )

    def run(self) -> Path:
        self.log.info("downloading")
        try:
            with self._client() as client, progress.bar(self.name, self.options.progress) as bar:
                self._retrying()(self._attempt, client, bar)
        except _Retryable as exc:
            raise self._gave_up(exc.reason) from None
        except _transport_errors() as exc:
            raise self._gave_up(_describe(exc, self.options.timeout)) from None
        got = Hash("sha256", self.hasher.digest())
        with contextlib.suppress(FileNotFoundError):
            self.meta_path.unlink()
        Pinned(self.expected, self.name).check(
            got, set_aside=lambda: self.cache.quarantine_file(self.part, got, self.name)
        )
        path = self.cache.store(self.part, got, self.name)
        self.log.info("downloaded", bytes=self.offset, sha256=got.sri)
        return path

    def _gave_up(self, reason: str) -> NetworkError:
        attempts = self.options.attempts
        tries = f"{attempts} attempts" if attempts > 1 else "1 attempt"
        return NetworkError(
            f"downloading {self.shown} failed after {tries}: {reason}",
            hint="Check the network and the server; the partial file is kept and the next "
            "run resumes it (--attempts and --timeout allow more patience).",
        )


class _Sink:
    """Writes and hashes received chunks on two more threads.

    ``write`` and ``sha256.update`` both release the GIL, so on a multi-core machine they run
    while httpx parses the next chunk: hashing costs (almost) no wall time. Each queue is
    bounded, so at most ``_QUEUE_CHUNKS`` reads per worker are held in memory. Leaving the
    block waits until every queued byte is written and hashed.
    """

    def __init__(self, path: Path, hasher: Any) -> None:
        self._path = path
        self._error: OSError | None = None
        self._workers = [_Worker(self._write), _Worker(hasher.update)]
        self._out: Any = None

    def _write(self, chunk: bytes) -> None:
        if self._error is None:
            try:
                self._out.write(chunk)
            except OSError as exc:
                self._error = exc

    def put(self, chunk: bytes) -> None:
        if self._error is not None:
            raise self._failure()
        for worker in self._workers:
            worker.queue.put(chunk)

    def _failure(self) -> OutputError:
        reason = self._error.strerror if self._error else "unknown error"
        return OutputError(
            f"cannot write the download to {str(self._path.parent)!r}: {reason}",
            hint="Free some space or set VGPUBUILD_CACHE to another folder.",
        )

    def __enter__(self) -> _Sink:
        self._out = open(self._path, "ab", buffering=0)
        for worker in self._workers:
            worker.start()
        return self

    def __exit__(self, *exc: object) -> None:
        for worker in self._workers:
            worker.finish()
        self._out.close()
        if self._error is not None:
            raise self._failure()


class _Worker(threading.Thread):
    """Calls ``work(chunk)`` for each queued chunk until ``finish``."""

    def __init__(self, work: Any) -> None:
        import queue

        super().__init__(name="vgpubuild-fetch", daemon=True)
        self.queue: queue.Queue[bytes | None] = queue.Queue(maxsize=_QUEUE_CHUNKS)
        self._work = work

    def run(self) -> None:
        work = self._work
        while (chunk := self.queue.get()) is not None:
            work(chunk)

    def finish(self) -> None:
        self.queue.put(None)
        self.join()


def _transport_errors() -> type[Exception]:
    import httpx

    return httpx.TransportError


def _describe(exc: BaseException, timeout: float) -> str:
    import httpx

    if isinstance(exc, httpx.TimeoutException):
        return f"the server did not answer within {timeout:g} s"
    if isinstance(exc, httpx.ConnectError):
        return "cannot connect to the server"
    if isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError):
        return "the connection broke during the transfer"
    return f"network error ({type(exc).__name__})"


def display_url(url: str) -> str:
    """The URL as errors, logs and manifests may show it: no userinfo, no query (tokens)."""
    url = strip_userinfo(url)[0]
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(query="", fragment="")) + (
        "?..." if parts.query else ""
    )


def _validator(response: httpx.Response) -> str | None:
    etag = response.headers.get("etag")
    if etag and not etag.startswith("W/"):
        return str(etag)
    modified = response.headers.get("last-modified")
    return str(modified) if modified else None


def _content_range_start(value: str | None) -> int | None:
    # "bytes 100-199/200"
    if not value or not value.startswith("bytes "):
        return None
    span = value[6:].split("/", 1)[0]
    first = span.split("-", 1)[0]
    return int(first) if first.isdigit() else None


def _content_range_total(value: str | None) -> int | None:
    if not value or "/" not in value:
        return None
    total = value.rsplit("/", 1)[1]
    return int(total) if total.isdigit() else None
