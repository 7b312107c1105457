"""A real threaded HTTP/1.1 server on loopback with scripted faults, for download tests.

Each route serves one body (bytes, or a file sent with sendfile for big benchmarks) with an
ETag and Last-Modified, honours ``Range``/``If-Range``, and plays a script of actions, one
per request, before falling back to its default action::

    server.add("/f.zip", body, script=[drop(1000), status(500)])

Every request is recorded (headers, status, byte range actually sent) and every accepted
connection counted, so tests can assert what the client did on the wire.

``FaultServer(tls=make_tls(folder))`` serves HTTPS with a certificate for 127.0.0.1 signed
by a CA made on the spot (``cryptography``): clients must be given ``tls.ca`` to trust it.
"""

from __future__ import annotations

import email.utils
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

LAST_MODIFIED = "Mon, 01 Jul 2024 00:00:00 GMT"


@dataclass(frozen=True)
class Act:
    """One scripted answer: serve, status, busy_until, redirect, drop, ignore_range, short,
    slow, misrange."""

    kind: str
    code: int = 200
    headers: tuple[tuple[str, str], ...] = ()
    after: int = 0
    extra: int = 0
    delay: float = 0.0
    location: str = ""


def serve() -> Act:
    return Act("serve")


def status(code: int, **headers: str) -> Act:
    """Answer ``code`` with no body; header names use _ for - (``Retry_After="1"``)."""
    return Act(
        "status", code=code, headers=tuple((k.replace("_", "-"), v) for k, v in headers.items())
    )


def redirect(location: str, code: int = 302) -> Act:
    return Act("redirect", code=code, location=location)


def drop(after: int) -> Act:
    """Send headers for the whole (range of the) body, ``after`` bytes of it, then close."""
    return Act("drop", after=after)


def ignore_range() -> Act:
    """Answer 200 with the whole body even when a Range was asked for."""
    return Act("ignore_range")


def short(extra: int) -> Act:
    """Send a Content-Length ``extra`` bytes longer than the body that follows, then close."""
    return Act("short", extra=extra)


def slow(delay: float) -> Act:
    """Send the headers, wait ``delay`` seconds, then the body."""
    return Act("slow", delay=delay)


def busy_until(seconds: float) -> Act:
    """Answer 503 with ``Retry-After`` as an HTTP date ``seconds`` after the request."""
    return Act("busy_until", code=503, delay=seconds)


def misrange(start: int) -> Act:
    """Answer a Range request with 206 and the bytes from ``start``, whatever was asked."""
    return Act("misrange", after=start)


@dataclass
class Record:
    path: str
    headers: dict[str, str]
    status: int
    served: tuple[int, int] | None  # [start, end) of the body bytes actually sent
    client: str
    at: float  # time.monotonic() when the request arrived


@dataclass
class Route:
    body: bytes | None
    file: Path | None
    script: list[Act]
    default: Act
    etag: str

    @property
    def size(self) -> int:
        return len(self.body) if self.body is not None else os.path.getsize(self.file or "")


@dataclass
class _State:
    routes: dict[str, Route] = field(default_factory=dict)
    requests: list[Record] = field(default_factory=list)
    connections: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    active: int = 0
    """Requests being handled: a client can finish reading before the handler records."""
    idle: threading.Condition = field(default_factory=threading.Condition)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _record(self, status_code: int, served: tuple[int, int] | None) -> None:
        with self.server.state.lock:
            self.server.state.requests.append(
                Record(
                    self.path,
                    {k.lower(): v for k, v in self.headers.items()},
                    status_code,
                    served,
                    self.client_address[0],
                    self._arrived,
                )
            )

    def _empty(self, code: int, headers: tuple[tuple[str, str], ...] = ()) -> None:
        self.send_response(code)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", "0")
        self.end_headers()
        self._record(code, None)

    def do_GET(self) -> None:
        state = self.server.state
        with state.idle:
            state.active += 1
        try:
            self._handle_get()
        finally:
            with state.idle:
                state.active -= 1
                state.idle.notify_all()

    def _handle_get(self) -> None:
        self._arrived = time.monotonic()
        state = self.server.state
        with state.lock:
            route = state.routes.get(self.path)
            act = (route.script.pop(0) if route.script else route.default) if route else None
        if route is None or act is None:
            self._empty(404)
            return
        if self._answered_without_body(act):
            return
        size = route.size
        start, end = 0, size
        rng = self.headers.get("Range")
        honour = act.kind != "ignore_range" and self._if_range_matches(route)
        if rng and honour and rng.startswith("bytes="):
            first, _, last = rng[6:].partition("-")
            start = act.after if act.kind == "misrange" else int(first)
            end = int(last) + 1 if last else size
            if start >= size:
                self._empty(416, (("Content-Range", f"bytes */{size}"),))
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{size}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(end - start))
        self.send_header("ETag", route.etag)
        self.send_header("Last-Modified", LAST_MODIFIED)
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        self.wfile.flush()
        if act.kind == "slow":
            time.sleep(act.delay)
        stop = end
        if act.kind == "drop":
            stop = min(end, start + act.after)
        elif act.kind == "short":
            stop = max(start, end - act.extra)
        try:
            self._send_body(route, start, stop)
        except (BrokenPipeError, ConnectionResetError):
            self._record(206 if rng and honour else 200, (start, start))
            self.close_connection = True
            return
        self._record(206 if rng and honour else 200, (start, stop))
        if act.kind in ("drop", "short"):
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True

    def _answered_without_body(self, act: Act) -> bool:
        if act.kind == "status":
            self._empty(act.code, act.headers)
        elif act.kind == "busy_until":
            when = email.utils.formatdate(time.time() + act.delay, usegmt=True)
            self._empty(act.code, (("Retry-After", when),))
        elif act.kind == "redirect":
            self._empty(act.code, (("Location", act.location),))
        else:
            return False
        return True

    def _if_range_matches(self, route: Route) -> bool:
        """If-Range uses the strong comparison: a weak ETag never matches (RFC 9110 13.1.5)."""
        if_range = self.headers.get("If-Range")
        strong = if_range == route.etag and not route.etag.startswith("W/")
        return if_range is None or strong or if_range == LAST_MODIFIED

    def _send_body(self, route: Route, start: int, stop: int) -> None:
        if route.body is not None:
            view = memoryview(route.body)
            for pos in range(start, stop, 1 << 16):
                self.wfile.write(view[pos : min(stop, pos + (1 << 16))])
            self.wfile.flush()
            return
        assert route.file is not None
        with open(route.file, "rb") as f:
            self.connection.sendfile(f, start, stop - start)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: _State

    def finish_request(self, request: Any, client_address: Any) -> None:
        with self.state.lock:
            self.state.connections += 1
        super().finish_request(request, client_address)


@dataclass(frozen=True)
class Tls:
    """PEM files: the CA that signed the server's certificate, the certificate, its key."""

    ca: Path
    cert: Path
    key: Path


def make_tls(folder: Path, host: str = "127.0.0.1") -> Tls:
    """A fresh CA and a server certificate it signs for ``host`` (an IP address)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def pem(obj: Any) -> bytes:
        return bytes(obj.public_bytes(serialization.Encoding.PEM))

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("vgpubuild test CA"))
        .issuer_name(name("vgpubuild test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name(host))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(host))]), False
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .sign(ca_key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    tls = Tls(folder / "ca.pem", folder / "cert.pem", folder / "key.pem")
    tls.ca.write_bytes(pem(ca))
    tls.cert.write_bytes(pem(cert))
    tls.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return tls


class FaultServer:
    """Start with ``with FaultServer() as server:``; ``server.url("/x")`` is its address."""

    def __init__(self, host: str = "127.0.0.1", tls: Tls | None = None) -> None:
        self.host = host
        self.state = _State()
        self._httpd = _Server((host, 0), _Handler)
        self._httpd.state = self.state
        self.scheme = "https" if tls else "http"
        if tls is not None:
            import ssl

            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(tls.cert, tls.key)
            self._httpd.socket = context.wrap_socket(self._httpd.socket, server_side=True)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def __enter__(self) -> FaultServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def url(self, path: str) -> str:
        return f"{self.scheme}://{self.host}:{self.port}{path}"

    def add(
        self,
        path: str,
        body: bytes | None = None,
        *,
        file: Path | None = None,
        script: list[Act] | None = None,
        default: Act | None = None,
        etag: str | None = None,
    ) -> str:
        """Serve ``body`` (or ``file``) at ``path``; returns the full URL."""
        etag = etag or f'"{abs(hash((path, body, str(file)))):x}"'
        with self.state.lock:
            self.state.routes[path] = Route(
                body, file, list(script or []), default or serve(), etag
            )
        return self.url(path)

    @property
    def connections(self) -> int:
        return self.state.connections

    def requests(self, path: str | None = None) -> list[Record]:
        """Every finished request (waits briefly for handlers still recording)."""
        with self.state.idle:
            self.state.idle.wait_for(lambda: self.state.active == 0, timeout=5)
        with self.state.lock:
            return [r for r in self.state.requests if path is None or r.path == path]
