"""Signing keys: RFC 8032's Ed25519 test vectors, keys and signatures Nix itself makes."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

import pytest
from conftest import require_tool

from vgpubuild.errors import InputError
from vgpubuild.log import redact
from vgpubuild.narinfo import PathInfo
from vgpubuild.nixhash import Hash
from vgpubuild.signing import PublicKey, SecretKey

ED25519_L = 2**252 + 27742317777372353535851937790883648493
"""The order of Ed25519's base point (RFC 8032 section 5.1)."""

# RFC 8032 section 7.1: (secret seed, public key, message, signature), all hex.
RFC8032_VECTORS = [
    pytest.param(
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        "",
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555f"
        "b8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
        id="test1-empty",
    ),
    pytest.param(
        "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        "72",
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da08"
        "5ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
        id="test2-one-byte",
    ),
    pytest.param(
        "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
        "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
        "af82",
        "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18"
        "ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
        id="test3-two-bytes",
    ),
    pytest.param(
        "833fe62409237b9d62ec77587520911e9a759cec1d19755b7da901b96dca3d42",
        "ec172b93ad5e563bf4932c70e1245034c35467ef2efd4d64ebf819683467e2bf",
        "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
        "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
        "dc2a4459e7369633a52b1bf277839a00201009a3efbf3ecb69bea2186c26b58909"
        "351fc9ac90b3ecfdfbc7c66431e0303dca179c138ac17ad9bef1177331a704",
        id="test-sha-abc",
    ),
]


def _key(seed: str, public: str, name: str = "rfc8032") -> SecretKey:
    """A secret key in Nix's file format (``NAME:base64(seed || public)``)."""
    raw = bytes.fromhex(seed) + bytes.fromhex(public)
    return SecretKey.parse(f"{name}:{base64.b64encode(raw).decode()}")


@pytest.mark.parametrize(("seed", "public", "message", "signature"), RFC8032_VECTORS)
def test_rfc8032_vectors(seed: str, public: str, message: str, signature: str) -> None:
    key = _key(seed, public)  # parsing checks that the seed derives this public key
    msg = bytes.fromhex(message)
    assert key.public.raw.hex() == public
    assert key.sign(msg).hex() == signature
    assert key.signature(msg) == "rfc8032:" + base64.b64encode(bytes.fromhex(signature)).decode()
    assert PublicKey("rfc8032", bytes.fromhex(public)).verify(msg, bytes.fromhex(signature))


@pytest.mark.parametrize(("seed", "public", "message", "signature"), RFC8032_VECTORS)
def test_verify_rejects_any_changed_byte(
    seed: str, public: str, message: str, signature: str
) -> None:
    pub = PublicKey("k", bytes.fromhex(public))
    msg, sig = bytes.fromhex(message), bytes.fromhex(signature)
    assert not pub.verify(msg + b"x", sig)
    for i in (0, 31, 32, 63):
        bad = bytearray(sig)
        bad[i] ^= 1
        assert not pub.verify(msg, bytes(bad))
    other = next(str(v.values[1]) for v in RFC8032_VECTORS if v.values[1] != public)
    assert not PublicKey("k", bytes.fromhex(other)).verify(msg, sig)
    assert not pub.verify(msg, sig[:63])


def test_verify_refuses_non_canonical_s() -> None:
    """S + L passes a naive check; RFC 8032 (and Nix's libsodium) refuse it."""
    key = _key(*(str(v) for v in RFC8032_VECTORS[1].values[:2]))
    sig = key.sign(b"m")
    s = int.from_bytes(sig[32:], "little") + ED25519_L
    malleated = sig[:32] + s.to_bytes(32, "little")
    assert key.public.verify(b"m", sig)
    assert not key.public.verify(b"m", malleated)


def test_sig_field_needs_the_key_name_and_valid_base64() -> None:
    seed, public = (str(v) for v in RFC8032_VECTORS[2].values[:2])
    key = _key(seed, public, name="cache-1")
    sig = key.signature(b"fp")
    assert key.public.verify_sig(b"fp", sig)
    assert not key.public.verify_sig(b"fp", "cache-2:" + sig.partition(":")[2])
    assert not key.public.verify_sig(b"fp", "cache-1:!!!")
    assert not key.public.verify_sig(b"other", sig)


def _nix_key(tmp_path: Path, name: str = "test-cache-1") -> tuple[Path, str]:
    nix_store = require_tool("nix-store")
    sec, pub = tmp_path / "sec.key", tmp_path / "pub.key"
    subprocess.run([nix_store, "--generate-binary-cache-key", name, str(sec), str(pub)], check=True)
    return sec, pub.read_text().strip()


def test_secret_key_from_nix_derives_nix_public_key(tmp_path: Path) -> None:
    sec, pub_text = _nix_key(tmp_path)
    key = SecretKey.load(sec)
    assert key.name == "test-cache-1"
    assert key.public.text == pub_text
    assert PublicKey.parse(pub_text) == key.public
    sig = key.signature(b"1;/nix/store/x;sha256:y;1;")
    assert sig.partition(":")[0] == "test-cache-1"
    assert PublicKey.parse(pub_text).verify_sig(b"1;/nix/store/x;sha256:y;1;", sig)


def test_secret_key_material_is_redacted_from_logs(tmp_path: Path) -> None:
    sec, _ = _nix_key(tmp_path, "redact-me")
    body = sec.read_text().strip().partition(":")[2]
    SecretKey.load(sec)
    assert redact(f"key={body}") == "key=***"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("no-colon-here", "not of the form NAME:BASE64"),
        (":" + base64.b64encode(bytes(64)).decode(), "not of the form NAME:BASE64"),
        ("k:!!!notbase64!!!", "invalid base64 part"),
        ("k:" + base64.b64encode(bytes(32)).decode(), "is a public key, not a secret key"),
        ("k:" + base64.b64encode(bytes(48)).decode(), "holds 48 bytes, not 64"),
        ("k:" + base64.b64encode(bytes(64)).decode(), "is corrupt"),
    ],
)
def test_bad_secret_keys_are_clear_input_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "sec.key"
    path.write_text(text)
    with pytest.raises(InputError, match=message):
        SecretKey.load(path)


def test_missing_key_file_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist") as info:
        SecretKey.load(tmp_path / "nope.key")
    assert "--generate-binary-cache-key" in str(info.value)


def test_nix_signs_a_path_with_the_same_bytes_and_we_verify_it(tmp_path: Path) -> None:
    """``nix store sign`` and vgpubuild sign a path's fingerprint identically (Ed25519 is
    deterministic), and the signature Nix wrote verifies with the key Nix wrote."""
    nix = require_tool("nix")
    nix_store = require_tool("nix-store")
    sec, pub_text = _nix_key(tmp_path, "fleet-1")
    store = str(tmp_path / "store")
    (tmp_path / "tree").mkdir()
    (tmp_path / "tree" / "f").write_text("signed by Nix\n")
    path = subprocess.run(
        [
            nix_store,
            "--store",
            store,
            "--add-fixed",
            "--recursive",
            "sha256",
            str(tmp_path / "tree"),
        ],
        capture_output=True,
        text=True, errors="backslashreplace",
        check=True,
    ).stdout.strip()
    subprocess.run(
        [nix, "store", "sign", "--store", store, "--key-file", str(sec), path], check=True
    )
    (info,) = json.loads(
        subprocess.run(
            [nix, "path-info", "--store", store, "--json", path],
            capture_output=True,
            text=True, errors="backslashreplace",
            check=True,
        ).stdout
    )
    nix_sigs = [s for s in info["signatures"] if s.startswith("fleet-1:")]
    assert len(nix_sigs) == 1, info
    fingerprint = PathInfo(
        path, Hash.parse(info["narHash"]), info["narSize"], (), info.get("ca")
    ).fingerprint()
    assert PublicKey.parse(pub_text).verify_sig(fingerprint, nix_sigs[0])
    assert SecretKey.load(sec).signature(fingerprint) == nix_sigs[0]
