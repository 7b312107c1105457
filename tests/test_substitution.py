"""Build once, substitute everywhere: the fleet story with real Nix and two stores.

Store A (the machine's store) builds the builder-mode derivation of the demo release in
the sandbox; ``cache export`` writes its output into a signed, compressed binary cache.
Store B (a local store rooted in a temporary folder, as a second machine would have) then
``nix-build``s the same expression with ``--max-jobs 0`` (it may build nothing), the cache
as its only substituter and only the cache's public key trusted (``require-sigs``): it
gets the identical path by substitution. Every compression is checked, and for each a
tampered NAR, tampered narinfo fields, a bad or foreign signature and an unsigned cache
make B refuse. All settings are ``--option``s on B's calls, over the suite's own nix.conf.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import require_tool
from nixenv import Built, SandboxState, demo_derivation, nix_build

from vgpubuild.binarycache import NAR_SUFFIX, export
from vgpubuild.compression import Compression, compressor
from vgpubuild.demo import DemoInputs
from vgpubuild.nar import nar_hash
from vgpubuild.narinfo import NarInfo
from vgpubuild.nixhash import Hash
from vgpubuild.signing import SecretKey

COMPRESSIONS: list[Compression] = ["none", "xz", "zstd"]


def _gen_key(folder: Path, name: str) -> tuple[Path, str]:
    nix_store = require_tool("nix-store")
    folder.mkdir(parents=True, exist_ok=True)
    sec, pub = folder / f"{name}.sec", folder / f"{name}.pub"
    subprocess.run([nix_store, "--generate-binary-cache-key", name, str(sec), str(pub)], check=True)
    return sec, pub.read_text().strip()


class Fleet:
    """The expression, its output built on store A, and the key that signs the cache."""

    def __init__(self, expr: Path, out: str, keys: Path) -> None:
        self.expr = expr
        self.out = out
        self.sec, self.pub = _gen_key(keys, "fleet-cache-1")
        self.other_sec, _ = _gen_key(keys, "not-trusted-1")

    def substitute(self, cache: Path, store_b: Path) -> Built:
        """``nix-build`` the same expression on store B: substitution only, our key only."""
        return nix_build(
            self.expr,
            "--store", str(store_b),
            "--max-jobs", "0",
            "--option", "substituters", f"file://{cache}",
            "--option", "trusted-public-keys", self.pub,
            "--option", "require-sigs", "true",
        )  # fmt: skip


@pytest.fixture(scope="module")
def fleet(
    tmp_path_factory: pytest.TempPathFactory, demo: DemoInputs, nix_sandbox: SandboxState
) -> Fleet:
    work = tmp_path_factory.mktemp("fleet")
    expr = demo_derivation(work, demo, "vgpubuild-fleet-demo-driver")
    built = nix_build(expr)  # store A
    return Fleet(expr, built.out_path, work / "keys")


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory, fleet: Fleet) -> dict[Compression, Path]:
    """One signed cache per compression, exported from store A; tests tamper with copies."""
    caches: dict[Compression, Path] = {}
    for compression in COMPRESSIONS:
        cache = tmp_path_factory.mktemp(f"cache-{compression}")
        export(Path(fleet.out), cache, secret_key_file=fleet.sec, compression=compression)
        caches[compression] = cache
    return caches


def _valid(store: Path, path: str) -> bool:
    nix = require_tool("nix")
    proc = subprocess.run(
        [nix, "path-info", "--store", str(store), path], capture_output=True, check=False
    )
    return proc.returncode == 0


def _narinfo(cache: Path) -> Path:
    (narinfo,) = cache.glob("*.narinfo")
    return narinfo


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_store_b_gets_the_identical_path_by_substitution(
    tmp_path: Path, fleet: Fleet, pristine: dict[Compression, Path], compression: Compression
) -> None:
    cache = pristine[compression]
    info = NarInfo.parse(_narinfo(cache).read_text())
    assert info.compression == compression
    assert info.url.endswith(NAR_SUFFIX[compression])
    store_b = tmp_path / "b"
    built = fleet.substitute(cache, store_b)
    assert built.returncode == 0, built.stderr
    assert built.out_path == fleet.out
    assert "building '" not in built.stderr  # nothing was built on B
    assert _valid(store_b, fleet.out)
    nix = require_tool("nix")
    (path_info,) = json.loads(
        subprocess.run(
            [nix, "path-info", "--store", str(store_b), "--json", fleet.out],
            capture_output=True, text=True, errors="backslashreplace", check=True,
        ).stdout
    )  # fmt: skip
    assert path_info["narHash"] == nar_hash(fleet.out).sri
    assert path_info["signatures"] == list(info.sigs)
    assert nar_hash(store_b / fleet.out.lstrip("/")) == nar_hash(fleet.out)


# -- what B must refuse ----------------------------------------------------------------------


def _rewrite_nar(cache: Path, change: Callable[[bytes], bytes]) -> None:
    """Replace the NAR file's bytes, keeping its name: ``change`` gets the raw NAR."""
    info = NarInfo.parse(_narinfo(cache).read_text())
    nar_file = cache / info.url
    raw = _decompress(nar_file.read_bytes(), info.compression)
    nar_file.unlink()
    with open(nar_file, "wb") as out, compressor(out, info.compression) as packed:  # type: ignore[arg-type]
        packed.write(change(raw))


def _decompress(data: bytes, compression: str) -> bytes:
    if compression == "none":
        return data
    tool = {"xz": ["xz", "-dc"], "zstd": ["zstd", "-dc"]}[compression]
    require_tool(tool[0])
    return subprocess.run(tool, input=data, capture_output=True, check=True).stdout


def _nar_content_changed(cache: Path, fleet: Fleet) -> None:
    """A valid NAR with one byte of one file changed, recompressed: only NarHash catches it."""

    def change(raw: bytes) -> bytes:
        at = raw.index(b'"release"')
        assert b'"relea5e"' not in raw
        return raw[:at] + b'"relea5e"' + raw[at + 9 :]

    _rewrite_nar(cache, change)


def _nar_file_corrupted(cache: Path, fleet: Fleet) -> None:
    nar_file = cache / NarInfo.parse(_narinfo(cache).read_text()).url
    data = bytearray(nar_file.read_bytes())
    data[len(data) // 2] ^= 0xFF
    nar_file.write_bytes(bytes(data))


def _field(name: str, value: Callable[[str], str]) -> Callable[[Path, Fleet], None]:
    def tamper(cache: Path, fleet: Fleet) -> None:
        narinfo = _narinfo(cache)
        lines = narinfo.read_text().splitlines()
        (i,) = [
            n for n, line in enumerate(lines) if line.startswith(f"{name}: ") or line == f"{name}:"
        ]
        key, _, old = lines[i].partition(":")
        new = value(old.strip())
        assert new != old.strip()
        lines[i] = f"{key}: {new}"
        narinfo.write_text("\n".join(lines) + "\n")

    return tamper


def _other_nar_hash(old: str) -> str:
    return Hash("sha256", hashlib.sha256(b"something else").digest()).format("nix32", prefix=True)


def _flip_signature(old: str) -> str:
    name, _, body = old.partition(":")
    raw = bytearray(base64.b64decode(body))
    raw[10] ^= 1
    return f"{name}:{base64.b64encode(bytes(raw)).decode()}"


def _signed_by_untrusted_key(cache: Path, fleet: Fleet) -> None:
    """A valid signature, by a key B does not trust."""
    narinfo = _narinfo(cache)
    info = NarInfo.parse(narinfo.read_text())
    other = SecretKey.load(fleet.other_sec).signature(info.path.fingerprint())
    _field("Sig", lambda _: other)(cache, fleet)


def _unsigned(cache: Path, fleet: Fleet) -> None:
    narinfo = _narinfo(cache)
    lines = [line for line in narinfo.read_text().splitlines() if not line.startswith("Sig:")]
    narinfo.write_text("\n".join(lines) + "\n")


NOT_SIGNED = "is not signed by any of the keys in 'trusted-public-keys'"
TAMPERS: dict[str, tuple[Callable[[Path, Fleet], None], str]] = {
    # name: (what is done to the cache, what B says when it refuses)
    "nar-content": (_nar_content_changed, "hash mismatch importing path"),
    "nar-file-corrupted": (
        _nar_file_corrupted,
        "hash mismatch importing path|Failed to open archive .*(Corrupted input|checksum)",
    ),
    "narinfo-NarHash": (_field("NarHash", _other_nar_hash), NOT_SIGNED),
    "narinfo-NarSize": (_field("NarSize", lambda old: str(int(old) + 8)), NOT_SIGNED),
    "narinfo-References": (_field("References", lambda _: "0" * 32 + "-glibc-2.39"), NOT_SIGNED),
    "bad-signature": (_field("Sig", _flip_signature), NOT_SIGNED),
    "untrusted-signature": (_signed_by_untrusted_key, NOT_SIGNED),
    "unsigned": (_unsigned, NOT_SIGNED),
}


@pytest.mark.parametrize("tamper", list(TAMPERS))
@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_store_b_refuses_a_tampered_or_untrusted_cache(
    tmp_path: Path,
    fleet: Fleet,
    pristine: dict[Compression, Path],
    compression: Compression,
    tamper: str,
) -> None:
    cache = tmp_path / "cache"
    shutil.copytree(pristine[compression], cache)
    before = {p: p.read_bytes() for p in cache.rglob("*") if p.is_file()}
    change, refusal = TAMPERS[tamper]
    change(cache, fleet)
    assert {p: p.read_bytes() for p in cache.rglob("*") if p.is_file()} != before
    store_b = tmp_path / "b"
    built = fleet.substitute(cache, store_b)
    assert built.returncode != 0, built.stdout
    assert re.search(refusal, built.stderr), built.stderr
    assert not _valid(store_b, fleet.out)
