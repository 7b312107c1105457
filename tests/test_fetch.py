"""Downloads against a real HTTP server on loopback with injected faults (no mocked transport)."""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_cli, run_on_a_terminal
from httpserver import FaultServer, drop, ignore_range, redirect, short, slow, status

from vgpubuild.cache import Cache
from vgpubuild.credentials import parse_curl_opts
from vgpubuild.errors import HashMismatchError, NetworkError, OfflineError
from vgpubuild.fetch import FetchOptions, download
from vgpubuild.nixhash import Hash

BODY = os.urandom(1_000_003)
SHA = Hash("sha256", hashlib.sha256(BODY).digest())
FAST = FetchOptions(retry_wait=0.01, max_retry_wait=0.05, timeout=5.0, progress=False)


pytestmark = pytest.mark.usefixtures("no_user_netrc")




def cached_files(cache: Cache) -> list[Path]:
    return sorted(p for p in (cache.root / "sha256").rglob("*") if p.is_file())


def test_download_hashes_caches_and_then_needs_no_connection(
    server: FaultServer, cache: Cache
) -> None:
    url = server.add("/NVIDIA-test.run", BODY)
    path = download(url, SHA, cache, FAST)
    assert path.read_bytes() == BODY
    assert path.name == "NVIDIA-test.run"
    assert cached_files(cache) == [path]
    before = server.connections
    assert download(url, SHA, cache, FAST) == path
    assert server.connections == before


def test_dropped_connection_resumes_with_range_without_resending(
    server: FaultServer, cache: Cache
) -> None:
    url = server.add("/f.zip", BODY, script=[drop(300_000)])
    path = download(url, SHA, cache, FAST)
    assert path.read_bytes() == BODY
    first, second = server.requests("/f.zip")
    assert "range" not in first.headers
    assert second.headers["range"] == "bytes=300000-"
    assert second.headers["if-range"]  # the ETag from the first answer
    assert second.status == 206
    assert first.served == (0, 300_000)
    assert second.served == (300_000, len(BODY))  # no byte was sent twice


def test_partial_file_left_by_an_earlier_process_is_resumed(
    server: FaultServer, cache: Cache
) -> None:
    url = server.add("/f.zip", BODY, script=[drop(400_000), status(503)])
    with pytest.raises(NetworkError, match="2 attempts, the last 1 without progress"):
        download(url, SHA, cache, FetchOptions(attempts=1, retry_wait=0.01, progress=False))
    assert list(cache.partial.glob("*.part"))
    path = download(url, SHA, cache, FAST)  # a fresh transfer hashes the .part once
    assert path.read_bytes() == BODY
    served = [r.served for r in server.requests("/f.zip")]
    assert served == [(0, 400_000), None, (400_000, len(BODY))]
    assert not list(cache.partial.glob("*.part"))


def test_server_errors_500_500_then_200(server: FaultServer, cache: Cache) -> None:
    url = server.add("/f.zip", BODY, script=[status(500), status(500)])
    assert download(url, SHA, cache, FAST).read_bytes() == BODY
    assert [r.status for r in server.requests()] == [500, 500, 200]


def test_persistent_5xx_gives_up_after_the_attempts(server: FaultServer, cache: Cache) -> None:
    url = server.add("/f.zip", BODY, default=status(503))
    with pytest.raises(NetworkError, match="failed after 3 attempts: HTTP 503"):
        download(url, SHA, cache, FetchOptions(attempts=3, retry_wait=0.01, progress=False))
    assert len(server.requests()) == 3


def test_429_waits_for_retry_after(server: FaultServer, cache: Cache) -> None:
    url = server.add("/f.zip", BODY, script=[status(429, Retry_After="1")])
    download(url, SHA, cache, FAST)
    first, second = server.requests()
    assert first.status == 429 and second.status == 200
    gap = _request_times(server)
    assert gap >= 0.9  # honoured the server's 1 s, not the 0.01 s backoff


def _request_times(server: FaultServer) -> float:
    first, second = server.requests()[:2]
    return second.at - first.at


def test_retry_after_is_capped(server: FaultServer, cache: Cache) -> None:
    url = server.add("/f.zip", BODY, script=[status(429, Retry_After="3600")])
    options = FetchOptions(retry_wait=0.01, max_retry_after=0.2, progress=False)
    download(url, SHA, cache, options)
    assert _request_times(server) < 60  # not the hour the server asked for


def test_408_is_retried(server: FaultServer, cache: Cache) -> None:
    url = server.add("/f.zip", BODY, script=[status(408)])
    download(url, SHA, cache, FAST)
    assert [r.status for r in server.requests()] == [408, 200]


@pytest.mark.parametrize(
    ("code", "words"), [(404, "Check the URL"), (401, "credentials"), (403, "refused")]
)
def test_client_errors_fail_at_once(
    server: FaultServer, cache: Cache, code: int, words: str
) -> None:
    url = server.add("/f.zip", BODY, default=status(code))
    with pytest.raises(NetworkError) as info:
        download(url, SHA, cache, FAST)
    assert f"HTTP {code}" in str(info.value) and words in str(info.value)
    assert len(server.requests()) == 1


def test_server_ignoring_range_restarts_cleanly(server: FaultServer, cache: Cache) -> None:
    url = server.add("/f.zip", BODY, script=[drop(250_000), ignore_range()])
    path = download(url, SHA, cache, FAST)
    assert path.read_bytes() == BODY  # nothing from the first try was kept in front
    _, second = server.requests()
    assert second.headers["range"] == "bytes=250000-"
    assert second.status == 200 and second.served == (0, len(BODY))


def test_wrong_content_goes_to_quarantine(server: FaultServer, cache: Cache) -> None:
    wrong = b"not the driver" * 1000
    url = server.add("/NVIDIA-GRID.zip", wrong)
    with pytest.raises(HashMismatchError) as info:
        download(url, SHA, cache, FAST)
    got = Hash("sha256", hashlib.sha256(wrong).digest())
    message = str(info.value)
    assert f"specified: {SHA.sri}" in message
    assert f"got:       {got.sri}" in message
    assert cached_files(cache) == []
    quarantined = list(cache.quarantine.iterdir())
    assert [p.read_bytes() for p in quarantined] == [wrong]
    assert quarantined[0].name.endswith("NVIDIA-GRID.zip")
    assert not list(cache.partial.glob("*.part"))


def test_content_length_longer_than_body_resumes(server: FaultServer, cache: Cache) -> None:
    url = server.add("/f.zip", BODY, script=[short(1000)])
    assert download(url, SHA, cache, FAST).read_bytes() == BODY
    first, second = server.requests()
    assert first.served == (0, len(BODY) - 1000)
    assert second.headers["range"] == f"bytes={len(BODY) - 1000}-"
    assert second.served == (len(BODY) - 1000, len(BODY))


def test_content_length_always_longer_is_a_clear_error(server: FaultServer, cache: Cache) -> None:
    url = server.add("/f.zip", BODY, default=short(1000))
    with pytest.raises(NetworkError) as info:
        download(url, SHA, cache, FetchOptions(attempts=3, retry_wait=0.01, progress=False))
    assert f"of {len(BODY)} bytes" in str(info.value)
    assert len(server.requests()) == 1 + 3  # one with progress, then 3 without
    assert cached_files(cache) == []


def test_slow_server_times_out(server: FaultServer, cache: Cache) -> None:
    url = server.add("/f.zip", BODY, default=slow(3.0))
    options = FetchOptions(attempts=2, timeout=0.3, retry_wait=0.01, progress=False)
    with pytest.raises(NetworkError, match=r"did not answer within 0\.3 s"):
        download(url, SHA, cache, options)
    assert server.connections == 2


def test_connection_refused_is_a_network_error(cache: Cache) -> None:
    with FaultServer() as gone:
        url = gone.url("/f.zip")
    with pytest.raises(NetworkError, match="cannot connect"):
        download(url, SHA, cache, FetchOptions(attempts=2, retry_wait=0.01, progress=False))


SECRET_PASS = "s3cret-Pa55word"
SECRET_TOKEN = "tok-0123456789abcdef"


def test_redirect_to_another_host_drops_credentials(server: FaultServer, cache: Cache) -> None:
    with FaultServer("127.0.0.2") as other:
        target = other.add("/f.zip", BODY)
        url = server.add("/f.zip", default=redirect(target))
        creds = parse_curl_opts(
            ["-u", f"alice:{SECRET_PASS}", "-H", f"X-Api-Token: {SECRET_TOKEN}"],
            use_default_netrc=False,
        )
        options = FetchOptions(credentials=creds, progress=False)
        assert download(url, SHA, cache, options).read_bytes() == BODY
        (asked,) = server.requests()
        (followed,) = other.requests()
    basic = "Basic " + base64.b64encode(f"alice:{SECRET_PASS}".encode()).decode()
    assert asked.headers["authorization"] == basic
    assert asked.headers["x-api-token"] == SECRET_TOKEN
    assert "authorization" not in followed.headers
    assert "x-api-token" not in followed.headers
    assert not any(
        secret in value
        for value in followed.headers.values()
        for secret in (SECRET_PASS, SECRET_TOKEN, basic[6:])
    )


def test_redirect_on_the_same_host_keeps_credentials(server: FaultServer, cache: Cache) -> None:
    server.add("/real.zip", BODY)
    url = server.add("/f.zip", default=redirect("/real.zip"))
    creds = parse_curl_opts(["-H", f"X-Api-Token: {SECRET_TOKEN}"], use_default_netrc=False)
    download(url, SHA, cache, FetchOptions(credentials=creds, progress=False), name="f.zip")
    assert server.requests("/real.zip")[0].headers["x-api-token"] == SECRET_TOKEN


def test_url_userinfo_is_used_as_credentials_and_hidden(server: FaultServer, cache: Cache) -> None:
    url = server.add("/f.zip", default=status(404)).replace("http://", f"http://bob:{SECRET_PASS}@")
    with pytest.raises(NetworkError) as info:
        download(url, SHA, cache, FAST)
    assert SECRET_PASS not in str(info.value) and "bob" not in str(info.value)
    expected = "Basic " + base64.b64encode(f"bob:{SECRET_PASS}".encode()).decode()
    assert server.requests()[0].headers["authorization"] == expected


def test_file_url_and_plain_path_sources(tmp_path: Path, cache: Cache) -> None:
    src = tmp_path / "NVIDIA-local.run"
    src.write_bytes(BODY)
    by_path = download(str(src), SHA, cache, FAST)
    assert by_path.read_bytes() == BODY
    other = Cache(tmp_path / "cache2")
    by_url = download(src.as_uri(), SHA, other, FAST)
    assert by_url.read_bytes() == BODY and by_url.name == "NVIDIA-local.run"
    assert src.read_bytes() == BODY  # the source is never moved


def test_offline_never_connects(server: FaultServer, cache: Cache) -> None:
    url = server.add("/f.zip", BODY)
    with pytest.raises(OfflineError):
        download(url, SHA, cache, FetchOptions(offline=True, progress=False))
    assert server.connections == 0


# -- through the CLI, as separate processes ---------------------------------------------------


def _env(tmp_path: Path) -> dict[str, str]:
    return {"VGPUBUILD_CACHE": str(tmp_path / "cache"), "HOME": str(tmp_path / "home")}


def test_cli_offline_with_and_without_the_file_cached(server: FaultServer, tmp_path: Path) -> None:
    url = server.add("/f.zip", BODY)
    env = _env(tmp_path)
    missing = run_cli("prefetch", url, SHA.sri, "--offline", env=env)
    assert missing.exit_code == OfflineError.exit_code
    assert "--offline" in missing.stderr and "vgpubuild add" in missing.stderr
    assert server.connections == 0
    src = tmp_path / "f.zip"
    src.write_bytes(BODY)
    assert run_cli("add", "--no-nix-store", str(src), "--sha256", SHA.sri, env=env).exit_code == 0
    cached = run_cli("prefetch", url, SHA.sri, "--offline", env=env)
    assert cached.exit_code == 0, cached.stderr
    assert cached.stdout.splitlines()[0] == SHA.sri
    assert server.connections == 0


def test_cli_prefetch_prints_sri_and_path(server: FaultServer, tmp_path: Path) -> None:
    url = server.add("/NVIDIA-x.run", BODY)
    r = run_cli("prefetch", url, "--retry-wait", "0", env=_env(tmp_path))
    assert r.exit_code == 0, r.stderr
    assert r.stdout == SHA.sri + "\n"  # the hash alone, as nix-prefetch-url prints it
    r = run_cli("prefetch", url, "--print-path", env=_env(tmp_path))
    sri, path = r.stdout.splitlines()
    assert sri == SHA.sri
    assert Path(path).read_bytes() == BODY and Path(path).name == "NVIDIA-x.run"


def test_cli_hash_mismatch_exit_code_and_message(server: FaultServer, tmp_path: Path) -> None:
    url = server.add("/f.zip", b"wrong bytes")
    r = run_cli("prefetch", url, SHA.sri, env=_env(tmp_path))
    assert r.exit_code == HashMismatchError.exit_code
    assert f"  specified: {SHA.sri}" in r.stderr
    assert "  got:       sha256-" in r.stderr
    assert "Traceback" not in r.stderr


def test_two_processes_fetching_the_same_file_download_once(
    server: FaultServer, tmp_path: Path
) -> None:
    url = server.add("/f.zip", BODY, default=slow(1.0))
    env = {**os.environ, **_env(tmp_path)}
    cmd = [sys.executable, "-m", "vgpubuild", "prefetch", url, SHA.sri]
    procs = [
        subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert outs[0][0] == outs[1][0]  # same SRI and the same cached path
    assert len(server.requests("/f.zip")) == 1


@pytest.mark.parametrize("log_args", [(), ("--log-format", "json"), ("-v",)])
@pytest.mark.parametrize("case", ["ok", "401", "redirect", "mismatch", "netrc", "userinfo"])
def test_cli_never_prints_secrets(
    server: FaultServer, tmp_path: Path, case: str, log_args: tuple[str, ...]
) -> None:
    env = _env(tmp_path)
    home = tmp_path / "home"
    home.mkdir()
    creds = ["--curl-opts", f"-u alice:{SECRET_PASS} -H 'X-Api-Token: {SECRET_TOKEN}'"]
    body = BODY[:50_000]
    sha = Hash("sha256", hashlib.sha256(body).digest())
    with FaultServer("127.0.0.2") as other:
        if case == "ok":
            url = server.add("/f.zip", body, script=[drop(10_000), status(500)])
        elif case == "401":
            url = server.add("/f.zip", default=status(401))
        elif case == "redirect":
            url = server.add("/f.zip", default=redirect(other.add("/f.zip", body)))
        elif case == "mismatch":
            url = server.add("/f.zip", b"wrong")
        elif case == "userinfo":
            url = server.add("/f.zip", default=status(404))
            url = url.replace("http://", f"http://alice:{SECRET_PASS}@")
            creds = []
        else:
            url = server.add("/f.zip", body, script=[status(503)])
            (home / ".netrc").write_text(f"machine 127.0.0.1 login alice password {SECRET_PASS}\n")
            creds = []
        r = run_cli(*log_args, "prefetch", url, sha.sri, "--retry-wait", "0", *creds, env=env)
    printed = r.stdout_bytes + r.stderr.encode()
    assert r.stderr  # something was logged or reported
    basic = base64.b64encode(f"alice:{SECRET_PASS}".encode())
    for secret in (SECRET_PASS.encode(), SECRET_TOKEN.encode(), basic):
        assert secret not in printed, (case, log_args, r.stderr)
    if case in ("ok", "redirect", "netrc"):
        assert r.exit_code == 0, r.stderr
    sent = server.requests("/f.zip")[0].headers.get("authorization", "")
    assert sent == "Basic " + basic.decode()  # the secret was really in use


def _run_on_a_terminal(args: list[str], env: dict[str, str]) -> tuple[int, bytes]:
    return run_on_a_terminal(args, {**env, "COLUMNS": "100"})


@pytest.mark.parametrize("extra", [(), ("--json",)])
def test_progress_bar_only_on_a_terminal_and_never_with_json(
    server: FaultServer, tmp_path: Path, extra: tuple[str, ...]
) -> None:
    url = server.add("/f.zip", BODY, default=slow(0.5))
    code, tty = _run_on_a_terminal(["prefetch", url, *extra], _env(tmp_path))
    assert code == 0, tty
    has_bar = b"f.zip" in tty and b"MB" in tty  # rich's DownloadColumn
    assert has_bar == (not extra)
    piped = run_cli("prefetch", url, env=_env(tmp_path))  # stderr is a pipe here
    assert b"MB" not in piped.stderr.encode()
