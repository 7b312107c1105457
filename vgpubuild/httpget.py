"""HTTP plumbing for downloads: the client, redirects, what the server's answers mean, retries.

This is the only module that opens network connections. Redirects are followed here, not
by httpx, so that credentials (``-u``, every ``-H`` header, netrc entries for the first
host) are only ever sent to the origin the user named. Retries use tenacity: exponential
backoff with jitter on connection errors, timeouts, 5xx, 408 and 429 (honouring
``Retry-After``, capped); other 4xx, and a TLS certificate that does not verify, fail at
once. The attempt budget counts attempts without progress (:class:`RetryBudget`).
"""

from __future__ import annotations

import email.utils
import os
import random
import socket
import ssl
import time
from collections.abc import Callable, Iterator, Mapping

import httpx
import tenacity

from vgpubuild import __version__
from vgpubuild.credentials import Credentials
from vgpubuild.errors import NetworkError
from vgpubuild.log import Logger
from vgpubuild.readahead import ChunkReader

MAX_REDIRECTS = 10
RETRY_STATUSES = frozenset({408, 429})
"""Client-side statuses worth another attempt (besides every 5xx)."""

TransportError = httpx.TransportError


def make_client(creds: Credentials, *, timeout: float, insecure: bool) -> httpx.Client:
    """An httpx client that follows no redirect itself and verifies TLS unless told not to."""
    verify: ssl.SSLContext | bool = True
    if insecure or creds.insecure:
        verify = False
    elif creds.cacert is not None:
        verify = ssl.create_default_context(cafile=os.fspath(creds.cacert))
    agent = creds.user_agent or f"vgpubuild/{__version__}"
    return httpx.Client(
        timeout=httpx.Timeout(timeout),
        verify=verify,
        follow_redirects=False,
        headers={"User-Agent": agent, "Accept-Encoding": "identity"},
    )


def open_following(
    client: httpx.Client,
    url: str,
    headers: Mapping[str, str],
    creds: Credentials,
    shown: str,
    log: Logger,
) -> httpx.Response:
    """Send a streaming GET, following redirects; credentials stay with the first origin."""
    target = httpx.URL(url)
    origin = _origin(target)
    for _ in range(MAX_REDIRECTS + 1):
        if _origin(target) == origin:
            auth = creds.origin_headers(target.host)
        else:
            auth = creds.other_host_headers(target.host)
        request = client.build_request("GET", target, headers={**headers, **auth})
        response = client.send(request, stream=True)
        location = response.headers.get("location")
        if not (response.is_redirect and location):
            return response
        response.close()
        target = target.join(location).copy_with(username=None, password=None)
        if target.scheme not in ("http", "https"):
            raise NetworkError(f"{shown} redirected to a non-HTTP URL")
        log.debug("redirect", to_host=target.host)
    raise NetworkError(f"{shown} redirected more than {MAX_REDIRECTS} times")


class Retryable(Exception):
    """A failure worth another attempt; ``retry_after`` comes from the server."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


def retry_after(value: str | None) -> float | None:
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


def status_error(status: int, shown: str) -> NetworkError:
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


class RetryBudget:
    """How many attempts in a row may fail without progress, and how long to wait after each.

    A link that breaks every few hundred kB still delivers the file: an attempt that got
    more bytes than any before it resets both the count and the backoff, so only attempts
    that brought nothing new use up the budget. ``held`` says how many bytes are held now.
    """

    def __init__(self, attempts: int, held: Callable[[], int]) -> None:
        self.attempts = max(1, attempts)
        self.stalled = 0
        """Failed attempts in a row that brought no new bytes."""
        self.tries = 0
        self._held = held
        self._best = held()

    def failed(self) -> None:
        """Count a failed attempt, and whether it made progress."""
        self.tries += 1
        now = self._held()
        if now > self._best:
            self._best, self.stalled = now, 0
        else:
            self.stalled += 1

    def exhausted(self) -> bool:
        return self.stalled >= self.attempts


def retrying(
    budget: RetryBudget,
    first_wait: float,
    max_wait: float,
    max_retry_after: float,
    log: Logger,
) -> tenacity.Retrying:
    """Retry until ``budget`` is spent: exponential backoff plus jitter, or the server's wait.

    The backoff doubles with each attempt in a row without progress and starts again at
    ``first_wait`` after one that made some.
    """

    def after(_state: tenacity.RetryCallState) -> None:
        budget.failed()

    def wait(state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, Retryable) and exc.retry_after is not None:
            return min(float(exc.retry_after), max_retry_after)
        backoff = min(max_wait, first_wait * 2.0 ** max(0, budget.stalled - 1))
        return backoff + random.uniform(0, first_wait)

    def before_sleep(state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        log.warning(
            "download attempt failed, retrying",
            attempt=state.attempt_number,
            without_progress=f"{budget.stalled} of {budget.attempts}",
            reason=getattr(exc, "reason", str(exc)),
            wait_s=round(state.upcoming_sleep, 2),
        )

    return tenacity.Retrying(
        stop=lambda _state: budget.exhausted(),
        wait=wait,
        retry=tenacity.retry_if_exception_type((Retryable, TransportError)),
        after=after,
        before_sleep=before_sleep,
        reraise=True,
    )


def certificate_error(exc: BaseException, shown: str) -> NetworkError | None:
    """The error for a TLS certificate that did not verify, or None for other failures.

    Retrying cannot fix a certificate, and "cannot connect" would send the user looking
    at the network; this names the cause and the two ways forward.
    """
    cause: BaseException | None = exc
    while cause is not None and not isinstance(cause, ssl.SSLCertVerificationError):
        cause = cause.__cause__ or cause.__context__
    if cause is None:
        return None
    reason = cause.verify_message or "certificate verify failed"
    return NetworkError(
        f"the TLS certificate of {shown} could not be verified ({reason})",
        hint="If the server uses its own CA, give it with curlOptsList ['--cacert', FILE] "
        "(--curl-opts '--cacert FILE'); -k/--insecure turns the check off.",
    )


def describe(exc: BaseException, timeout: float) -> str:
    """A transport failure in words (which error class httpx raised means little to users)."""
    if isinstance(exc, httpx.TimeoutException):
        return f"the server did not answer within {timeout:g} s"
    if isinstance(exc, httpx.ConnectError):
        return "cannot connect to the server"
    if isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError):
        return "the connection broke during the transfer"
    return f"network error ({type(exc).__name__})"


def validator(response: httpx.Response) -> str | None:
    """What ``If-Range`` may send back: a strong ETag, else Last-Modified."""
    etag = response.headers.get("etag")
    if etag and not etag.startswith("W/"):
        return str(etag)
    modified = response.headers.get("last-modified")
    return str(modified) if modified else None


def content_range_start(value: str | None) -> int | None:
    # "bytes 100-199/200"
    if not value or not value.startswith("bytes "):
        return None
    span = value[6:].split("/", 1)[0]
    first = span.split("-", 1)[0]
    return int(first) if first.isdigit() else None


def content_range_total(value: str | None) -> int | None:
    if not value or "/" not in value:
        return None
    total = value.rsplit("/", 1)[1]
    return int(total) if total.isdigit() else None


def body_reader(response: httpx.Response, timeout: float) -> Callable[[memoryview], int]:
    """``readinto`` for the raw body of a streaming response.

    httpx reads a body 64 KiB at a time through httpcore and h11, copying each piece three
    times: at loopback or LAN speed that costs more CPU than hashing it. A plain body of
    known length is read like curl reads it: what h11 already holds comes first (the first
    piece httpx yields holds all of it), then the rest straight from the connection's
    socket into the caller's buffers. Anything else (chunked, a TLS tunnel inside TLS)
    goes through httpx. Errors are httpx's, as if httpx had read.
    """
    pieces = response.iter_raw()
    length = response.headers.get("content-length", "")
    sock = _own_socket(response)
    chunked = "chunked" in response.headers.get("transfer-encoding", "").lower()
    if sock is None or chunked or not length.isdigit():
        return ChunkReader(pieces).readinto
    first = next(pieces, b"")
    return _SocketBody(sock, int(length) - len(first), first, timeout, pieces).readinto


def _own_socket(response: httpx.Response) -> socket.socket | None:
    """The socket that carries this response's bytes, if reading it gives them in clear:
    plain TCP, or TLS done by that socket (not TLS tunnelled inside another TLS)."""
    stream = response.extensions.get("network_stream")
    if stream is None:
        return None
    sock = stream.get_extra_info("socket")
    if not isinstance(sock, socket.socket):
        return None
    tls = stream.get_extra_info("ssl_object")
    if tls is None and not isinstance(sock, ssl.SSLSocket):
        return sock
    if isinstance(sock, ssl.SSLSocket) and not isinstance(tls, ssl.SSLObject):
        return sock
    return None


class _SocketBody:
    """The rest of a body of known length, read from its socket (see :func:`body_reader`)."""

    def __init__(
        self,
        sock: socket.socket,
        remaining: int,
        first: bytes,
        timeout: float,
        pieces: Iterator[bytes],
    ) -> None:
        self._pieces = pieces  # httpx's iteration, kept open: closing it closes the socket
        self._sock = sock
        self._remaining = remaining
        self._first = memoryview(first)
        self._timeout = timeout

    def readinto(self, view: memoryview) -> int:
        if self._first:
            n = min(len(view), len(self._first))
            view[:n] = self._first[:n]
            self._first = self._first[n:]
            return n
        if self._remaining <= 0:
            return 0
        self._sock.settimeout(self._timeout)
        try:
            n = self._sock.recv_into(view, min(len(view), self._remaining))
        except TimeoutError:
            raise httpx.ReadTimeout("the read timed out") from None
        except OSError as exc:
            raise httpx.ReadError(str(exc)) from None
        self._remaining -= n
        return n
