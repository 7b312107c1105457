"""Credentials for private download servers, from ``curlOptsList`` and ``~/.netrc``.

vgpu4nixos passes ``driverSource.curlOptsList`` straight to curl. vgpubuild understands the
part of it that matters for fetching a file (user and password, extra headers, netrc files,
a CA bundle, the explicit ``-k`` opt-out of TLS verification) and refuses anything else by
name, because silently dropping an option such as a proxy would fetch differently than the
user asked. Every secret is registered with :func:`vgpubuild.log.add_secret` the moment it
is parsed, so it is redacted from every log line and error message from then on.
"""

from __future__ import annotations

import base64
import netrc
import os
import shlex
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from vgpubuild import log
from vgpubuild.errors import ConfigError

# Options that change nothing for vgpubuild (it always follows redirects, fails on HTTP
# errors and is quiet unless asked), mapped to how many values they take.
_IGNORED = {
    "-L": 0,
    "--location": 0,
    "-f": 0,
    "--fail": 0,
    "-s": 0,
    "--silent": 0,
    "-S": 0,
    "--show-error": 0,
    "--compressed": 0,
    "-v": 0,
    "--verbose": 0,
    "--retry": 1,
    "--connect-timeout": 1,
    "--max-time": 1,
    "-m": 1,
}
_TAKES_VALUE = frozenset(
    {
        "-u",
        "--user",
        "-H",
        "--header",
        "--oauth2-bearer",
        "-b",
        "--cookie",
        "-A",
        "--user-agent",
        "-e",
        "--referer",
        "--netrc-file",
        "--cacert",
    }
)
_SUPPORTED = (
    "-u/--user, -H/--header, --oauth2-bearer, -b/--cookie, -A/--user-agent, -e/--referer, "
    "--netrc, --netrc-optional, --netrc-file, --cacert, -k/--insecure"
)

# Header names whose values are secrets even when short.
_SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})
# Other header values this long are treated as tokens; shorter ones would redact common words.
_MIN_SECRET_LEN = 6


@dataclass(frozen=True)
class Credentials:
    """What to send to the origin a URL names; nothing of it goes to any other host.

    ``headers`` are the user's extra request headers (``-H``); ``netrc_file`` is consulted
    per host (``--netrc``/``--netrc-file`` or ``~/.netrc``); ``cacert`` replaces the system
    CA bundle; ``insecure`` is the explicit ``-k`` opt-out of TLS verification.
    """

    user: str | None = None
    password: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    netrc_file: Path | None = None
    cacert: Path | None = None
    insecure: bool = False
    user_agent: str | None = None
    secrets: frozenset[str] = field(default=frozenset(), repr=False)

    def __repr__(self) -> str:  # never show values, even in a traceback
        return (
            f"Credentials(user={'set' if self.user else None}, headers={len(self.headers)}, "
            f"netrc_file={self.netrc_file}, cacert={self.cacert}, insecure={self.insecure})"
        )

    def origin_headers(self, host: str) -> dict[str, str]:
        """Headers for a request to the original origin (``host`` picks the netrc entry)."""
        out = dict(self.headers)
        if self.user is not None:
            out.setdefault("Authorization", basic_auth(self.user, self.password or ""))
        elif "Authorization" not in out and (entry := netrc_lookup(self.netrc_file, host)):
            out["Authorization"] = basic_auth(*entry)
        return out

    def other_host_headers(self, host: str) -> dict[str, str]:
        """Headers for a host a redirect led to: only that host's own netrc entry, if any."""
        entry = netrc_lookup(self.netrc_file, host)
        return {"Authorization": basic_auth(*entry)} if entry else {}


def basic_auth(user: str, password: str) -> str:
    """The ``Authorization: Basic`` value, registered as a secret."""
    value = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    log.add_secret(value.removeprefix("Basic "))
    return value


def default_netrc() -> Path | None:
    """``$NETRC`` or ``~/.netrc`` when it exists (curl's and Nix's convention)."""
    path = Path(os.environ.get("NETRC") or Path.home() / ".netrc")
    return path if path.is_file() else None


def netrc_lookup(path: Path | None, host: str) -> tuple[str, str] | None:
    """(login, password) for ``host`` from a netrc file, registering the password."""
    if path is None:
        return None
    try:
        parsed = netrc.netrc(os.fspath(path))
    except FileNotFoundError:
        raise ConfigError(
            f"netrc file {str(path)!r} does not exist", hint="Check the path."
        ) from None
    except (netrc.NetrcParseError, OSError) as exc:
        # The parser's message quotes file content: keep only the position.
        line = getattr(exc, "lineno", None)
        raise ConfigError(
            f"cannot read netrc file {str(path)!r}" + (f" (line {line})" if line else ""),
            hint="Fix the file's syntax: 'machine HOST login USER password PASS'.",
        ) from None
    entry = parsed.authenticators(host)
    if entry is None:
        return None
    login, _account, password = entry
    log.add_secret(password)
    return login, password


def _pairs(args: Sequence[str]) -> Iterator[tuple[str, str]]:
    """(option, value) pairs; the value is "" for flags. Values are never put in errors."""
    i = 0
    while i < len(args):
        opt = args[i]
        i += 1
        if not opt.startswith("-") or opt == "-":
            raise ConfigError(
                f"unexpected value at position {i} of the curl options",
                hint="Each value must follow its option, e.g. ['-u', 'user:pass'].",
            )
        if not opt.startswith("--") and len(opt) > 2 and opt[:2] in _TAKES_VALUE:
            yield opt[:2], opt[2:]  # curl's attached form: -uuser:pass, -HName:v
        elif opt in _TAKES_VALUE or _IGNORED.get(opt):
            if i >= len(args):
                raise ConfigError(
                    f"curl option {opt} needs a value", hint="Add it after the option."
                )
            yield opt, args[i]
            i += 1
        elif (bare := opt.split("=", 1)[0]) in _TAKES_VALUE:
            raise ConfigError(
                f"curl option {bare} takes its value as the next list item, not after '='"
            )
        else:
            yield bare, ""


def _credential_parts(header: str, value: str) -> list[str]:
    """The pieces of a header value that are secrets on their own, the whole value first.

    ``Authorization: Bearer T`` also yields ``T`` (a log may show the token alone), and a
    cookie list yields each cookie's value; the scheme word and cookie names are not secret.
    """
    parts = [value]
    if header in ("authorization", "proxy-authorization"):
        _scheme, _, credential = value.partition(" ")
        if credential.strip():
            parts.append(credential.strip())
    elif header == "cookie":
        for cookie in value.split(";"):
            _name, sep, cookie_value = cookie.partition("=")
            if sep and cookie_value.strip():
                parts.append(cookie_value.strip())
    return parts


def parse_curl_opts(opts: Sequence[str] | str, *, use_default_netrc: bool = True) -> Credentials:
    """Read the credential options of a curl argument list (or a ``curlOpts`` string).

    Unknown options are a :class:`ConfigError` naming the option, never its value.
    """
    args = shlex.split(opts) if isinstance(opts, str) else list(opts)
    user: str | None = None
    password: str | None = None
    headers: list[tuple[str, str]] = []
    netrc_file = default_netrc() if use_default_netrc else None
    cacert: Path | None = None
    insecure = False
    agent: str | None = None
    secrets: set[str] = set()

    def secret(value: str) -> str:
        log.add_secret(value)
        secrets.add(value)
        return value

    for opt, val in _pairs(args):
        if opt in ("-u", "--user"):
            user, sep, pw = val.partition(":")  # the user name is not a secret
            if sep:
                password = secret(pw)
        elif opt in ("-H", "--header"):
            name, sep, hval = val.partition(":")
            if not sep or not name.strip():
                raise ConfigError(
                    f"curl option {opt} needs 'Name: value'",
                    hint="Write it like -H 'X-Token: abc'.",
                )
            hval = hval.strip()
            # A header value is a credential unless it is short and harmless (Accept: */*).
            if name.strip().lower() in _SECRET_HEADERS or len(hval) >= _MIN_SECRET_LEN:
                for part in _credential_parts(name.strip().lower(), hval):
                    secret(part)
            headers.append((name.strip(), hval))
        elif opt == "--oauth2-bearer":
            headers.append(("Authorization", "Bearer " + secret(val)))
        elif opt in ("-b", "--cookie"):
            for part in _credential_parts("cookie", val):
                secret(part)
            headers.append(("Cookie", val))
        elif opt in ("-A", "--user-agent"):
            agent = val
        elif opt in ("-e", "--referer"):
            headers.append(("Referer", val))
        elif opt in ("--netrc", "-n", "--netrc-optional"):
            netrc_file = default_netrc()
        elif opt == "--netrc-file":
            netrc_file = Path(val)
        elif opt == "--cacert":
            cacert = Path(val)
            if not cacert.is_file():
                raise ConfigError(
                    f"CA bundle {str(cacert)!r} does not exist", hint="Check the path."
                )
        elif opt in ("-k", "--insecure"):
            insecure = True
        elif opt not in _IGNORED:
            raise ConfigError(
                f"curl option {opt} is not supported by vgpubuild",
                hint=f"Supported: {_SUPPORTED}; remove the option or fetch the file yourself "
                "and add it with 'vgpubuild add FILE'.",
            )
    return Credentials(
        user=user,
        password=password,
        headers=tuple(headers),
        netrc_file=netrc_file,
        cacert=cacert,
        insecure=insecure,
        user_agent=agent,
        secrets=frozenset(secrets),
    )
