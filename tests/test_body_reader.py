"""How a download's body is read: straight from the socket (plain TCP and TLS) when its
length is known, through httpx otherwise (chunked); the bytes are the same either way."""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import os
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from vgpubuild import httpget
from vgpubuild.cache import Cache
from vgpubuild.credentials import Credentials
from vgpubuild.fetch import FetchOptions, download
from vgpubuild.nixhash import Hash

BODY = os.urandom(3 * (1 << 20) + 7)  # several read-ahead buffers and a ragged end
SHA = Hash("sha256", hashlib.sha256(BODY).digest())

pytestmark = pytest.mark.usefixtures("no_user_netrc")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        self.send_response(200)
        if self.path.startswith("/chunked"):
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for start in range(0, len(BODY), 100_000):
                piece = BODY[start : start + 100_000]
                self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.send_header("Content-Length", str(len(BODY)))
            self.end_headers()
            self.wfile.write(BODY)


def _certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (the CA the client is told to trust)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


@pytest.fixture(params=["http", "https"])
def origin(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Credentials]]:
    """A server on loopback, plain or TLS; yields its base URL and the credentials to use."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    creds = Credentials()
    if request.param == "https":
        cert_file, key_file = _certificate(tmp_path)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_file, key_file)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        creds = Credentials(cacert=cert_file)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"{request.param}://127.0.0.1:{server.server_address[1]}", creds
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def socket_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Sizes of the reads made straight from a socket."""
    sizes: list[int] = []
    real = httpget._SocketBody.readinto

    def counting(self: httpget._SocketBody, view: memoryview) -> int:
        n = real(self, view)
        sizes.append(n)
        return n

    monkeypatch.setattr(httpget._SocketBody, "readinto", counting)
    return sizes


def _options(creds: Credentials) -> FetchOptions:
    return FetchOptions(credentials=creds, timeout=10.0, attempts=1, progress=False)


def test_a_body_of_known_length_comes_straight_from_the_socket(
    origin: tuple[str, Credentials], tmp_path: Path, socket_reads: list[int]
) -> None:
    base, creds = origin
    path = download(f"{base}/file.bin", SHA, Cache(tmp_path / "cache"), _options(creds))
    assert path.read_bytes() == BODY
    assert sum(socket_reads) == len(BODY)  # everything, with what h11 had read first


def test_a_chunked_body_goes_through_httpx(
    origin: tuple[str, Credentials], tmp_path: Path, socket_reads: list[int]
) -> None:
    base, creds = origin
    path = download(f"{base}/chunked.bin", SHA, Cache(tmp_path / "cache"), _options(creds))
    assert path.read_bytes() == BODY
    assert socket_reads == []
