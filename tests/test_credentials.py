"""curlOptsList and netrc parsing: what is understood, what is refused, what stays secret."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from vgpubuild import log
from vgpubuild.credentials import Credentials, parse_curl_opts
from vgpubuild.errors import ConfigError


@pytest.fixture(autouse=True)
def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("NETRC", raising=False)
    return home


def test_user_and_headers_in_every_spelling() -> None:
    creds = parse_curl_opts(
        ["-u", "admin:12345678", "--header", "X-Token: abcdefgh", "-HX-Other:v", "-L", "--fail"]
    )
    assert (creds.user, creds.password) == ("admin", "12345678")
    assert creds.headers == (("X-Token", "abcdefgh"), ("X-Other", "v"))
    assert parse_curl_opts(["-uadmin:pw"]).password == "pw"
    assert parse_curl_opts(["--user", "a:b"]).user == "a"
    expected = "Basic " + base64.b64encode(b"admin:12345678").decode()
    assert creds.origin_headers("h")["Authorization"] == expected


def test_curl_opts_string_form_is_split_like_a_shell() -> None:
    creds = parse_curl_opts("-u 'a b:c d' -H 'X-T: x y z'")
    assert (creds.user, creds.password) == ("a b", "c d")
    assert creds.headers == (("X-T", "x y z"),)


def test_tls_options(tmp_path: Path) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_text("")
    assert parse_curl_opts(["--cacert", str(bundle)]).cacert == bundle
    assert parse_curl_opts(["-k"]).insecure
    assert parse_curl_opts(["--insecure"]).insecure
    assert not parse_curl_opts([]).insecure  # verification stays on unless asked
    with pytest.raises(ConfigError, match="does not exist"):
        parse_curl_opts(["--cacert", str(tmp_path / "missing.pem")])


def test_netrc_default_and_explicit(_home: Path, tmp_path: Path) -> None:
    (_home / ".netrc").write_text("machine files.example login alice password pw-from-netrc\n")
    creds = parse_curl_opts([])
    auth = creds.origin_headers("files.example")["Authorization"]
    assert auth == "Basic " + base64.b64encode(b"alice:pw-from-netrc").decode()
    assert "Authorization" not in creds.origin_headers("other.example")
    other = tmp_path / "my-netrc"
    other.write_text("machine files.example login bob password other-pw\n")
    creds = parse_curl_opts(["--netrc-file", str(other)])
    assert creds.origin_headers("files.example")["Authorization"].endswith(
        base64.b64encode(b"bob:other-pw").decode()
    )
    # An explicit -u wins over netrc.
    creds = parse_curl_opts(["--netrc", "-u", "carol:x"])
    assert creds.origin_headers("files.example")["Authorization"].endswith(
        base64.b64encode(b"carol:x").decode()
    )


def test_redirect_target_gets_only_its_own_netrc_entry(_home: Path) -> None:
    (_home / ".netrc").write_text("machine cdn.example login c password cdn-pw\n")
    creds = parse_curl_opts(["-u", "a:b", "-H", "X-Token: abcdefgh"])
    assert creds.other_host_headers("evil.example") == {}
    assert set(creds.other_host_headers("cdn.example")) == {"Authorization"}


def test_secrets_are_registered_and_hidden() -> None:
    creds = parse_curl_opts(
        ["-u", "user:pass-word-1", "-H", "Authorization: Bearer tkn-9876", "-b", "sid=cookie-val"]
    )
    text = log.redact("pass-word-1 Bearer tkn-9876 sid=cookie-val")
    assert "pass-word-1" not in text and "tkn-9876" not in text and "cookie-val" not in text
    assert "pass-word-1" not in repr(creds) and "tkn" not in repr(creds)
    parse_curl_opts(["-H", "Accept: */*"])
    assert log.redact("*/*") == "*/*"


@pytest.mark.parametrize(
    ("opts", "words"),
    [
        (["--proxy", "http://user:pw-secret@proxy"], "--proxy is not supported"),
        (["--data=pw-secret"], "--data is not supported"),
        (["pw-secret"], "unexpected value at position 1"),
        (["-u"], "needs a value"),
        (["--user=a:pw-secret"], "next list item"),
        (["-H", "no-colon-pw-secret"], "Name: value"),
    ],
)
def test_refused_options_are_named_without_their_values(opts: list[str], words: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_curl_opts(opts)
    assert words in str(info.value)
    assert "pw-secret" not in str(info.value)


def test_broken_netrc_error_does_not_quote_the_file(_home: Path) -> None:
    (_home / ".netrc").write_text("machine h login u password pw-secret\npw-secret2 x\n")
    with pytest.raises(ConfigError) as info:
        parse_curl_opts([]).origin_headers("h")
    assert "cannot read netrc" in str(info.value) and "line 2" in str(info.value)
    assert "pw-secret" not in str(info.value)


def test_empty_credentials_send_nothing() -> None:
    assert Credentials().origin_headers("h") == {}
