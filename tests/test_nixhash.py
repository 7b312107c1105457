"""Hash forms: every spelling round-trips, bad spellings are refused, and `hash convert`
prints what Nix's own converters print."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from conftest import run_cli
from hypothesis import given
from hypothesis import strategies as st
from treegen import nix

from vgpubuild.errors import InvalidHashError
from vgpubuild.nixhash import (
    DIGEST_SIZES,
    HASH_FORMS,
    NIX32_ALPHABET,
    Hash,
    hash_file,
    nix32_decode,
    nix32_encode,
    nix32_length,
)
from vgpubuild.readahead import BUFFER_SIZE

ALGOS = tuple(DIGEST_SIZES)


@st.composite
def hashes(draw: st.DrawFn) -> Hash:
    algo = draw(st.sampled_from(ALGOS))
    return Hash(algo, draw(st.binary(min_size=DIGEST_SIZES[algo], max_size=DIGEST_SIZES[algo])))


@given(hashes(), st.sampled_from(HASH_FORMS), st.sampled_from(HASH_FORMS))
def test_every_form_round_trips_through_every_other(h: Hash, first: str, second: str) -> None:
    via_first = Hash.parse(h.format(first), h.algo)  # type: ignore[arg-type]
    assert via_first == h
    assert Hash.parse(via_first.format(second), h.algo) == h  # type: ignore[arg-type]


@given(hashes(), st.sampled_from(HASH_FORMS))
def test_parse_with_and_without_algo_prefix(h: Hash, form: str) -> None:
    prefixed = h.format(form, prefix=True)  # type: ignore[arg-type]
    assert Hash.parse(prefixed) == h  # the prefix alone names the algorithm
    assert Hash.parse(prefixed, h.algo) == h
    if form != "sri":
        assert prefixed == f"{h.algo}:{h.format(form)}"  # type: ignore[arg-type]
        assert Hash.parse(h.format(form), h.algo) == h  # type: ignore[arg-type]


@given(st.binary(min_size=32, max_size=32))
def test_unprefixed_hash_defaults_to_sha256(digest: bytes) -> None:
    for form in HASH_FORMS:
        assert Hash.parse(Hash("sha256", digest).format(form)).algo == "sha256"


@given(hashes(), st.data())
def test_nix32_rejects_characters_outside_its_alphabet(h: Hash, data: st.DataObject) -> None:
    text = nix32_encode(h.digest)
    index = data.draw(st.integers(0, len(text) - 1))
    bad = data.draw(st.sampled_from("eoutEOUTA+/=_- .!é"))
    broken = text[:index] + bad + text[index + 1 :]
    with pytest.raises(ValueError, match="invalid character"):
        nix32_decode(broken, len(h.digest))
    with pytest.raises(InvalidHashError):
        Hash.parse(broken, h.algo)


@given(hashes(), st.data())
def test_nix32_rejects_values_that_overflow_the_digest(h: Hash, data: st.DataObject) -> None:
    size = len(h.digest)
    spare_bits = nix32_length(size) * 5 - size * 8  # unused high bits of the first character
    if spare_bits == 0:  # sha1: 32 characters hold exactly 160 bits, nothing can overflow
        return
    first = data.draw(st.integers(1 << (5 - spare_bits), 31))
    text = NIX32_ALPHABET[first] + nix32_encode(h.digest)[1:]
    with pytest.raises(ValueError, match="does not fit"):
        nix32_decode(text, size)
    with pytest.raises(InvalidHashError, match="not a valid"):
        Hash.parse(text, h.algo)


def test_nix32_known_vector() -> None:
    """sha256("hi\\n"), as printed by `nix-hash --flat --type sha256 --base32`."""
    digest = hashlib.sha256(b"hi\n").digest()
    assert nix32_encode(digest) == "1r3v22qkypccqifzbww5lrn6hf1chi23m6zzkyvb8bvg457nxslq"
    assert Hash.parse("sha256-mOpuTyFvL7S2n/+bOkSELDhobKaF8/VdxIxdP7EQe+Q=").digest == digest


GOOD = Hash("sha256", hashlib.sha256(b"hi\n").digest())


@pytest.mark.parametrize(
    ("text", "algo", "match"),
    [
        ("", None, "length 0 fits no encoding"),
        (GOOD.hex[:-1], None, "fits no encoding"),  # one hex digit short
        (GOOD.hex + "0", None, "fits no encoding"),
        (GOOD.hex[:-1] + "g", None, "invalid hex digit"),
        (GOOD.hex[:30] + "  " + GOOD.hex[32:], None, "invalid hex digit"),
        (GOOD.format("nix32")[:-1] + "e", None, "invalid character"),
        ("z" * 52, None, "does not fit"),  # nix32 overflow
        (GOOD.format("base64")[:-2] + "!=", None, "invalid base64"),
        ("sha256-" + GOOD.format("base64")[:-1], None, "SRI base64 part must be 44"),
        ("sha256-" + GOOD.hex, None, "SRI base64 part"),
        ("sha512:" + GOOD.hex, None, "fits no encoding"),  # a sha256 value with sha512 prefix
        ("sha1-" + GOOD.format("base64"), None, "SRI base64 part must be 28"),
        ("blake3:" + GOOD.hex, None, "unknown hash algorithm 'blake3'"),
        ("md4-" + GOOD.format("base64"), None, "unknown hash algorithm 'md4'"),
        ("sha1:" + "0" * 40, "sha256", "is sha1, but a sha256 hash is expected"),
        (GOOD.hex, "sha3", "unknown hash algorithm 'sha3'"),
    ],
)
def test_invalid_hash_strings_are_refused(text: str, algo: str | None, match: str) -> None:
    with pytest.raises(InvalidHashError, match=match):
        Hash.parse(text, algo)


def test_uppercase_hex_and_surrounding_space_are_accepted() -> None:
    assert Hash.parse(GOOD.hex.upper()) == GOOD  # as Nix accepts
    assert Hash.parse(f"  sha256:{GOOD.hex}\n") == GOOD


def test_a_digest_of_the_wrong_size_is_refused() -> None:
    with pytest.raises(InvalidHashError, match="cannot be 31 bytes"):
        Hash("sha256", bytes(31))


@pytest.mark.parametrize(
    "size", [0, 1, BUFFER_SIZE // 2, BUFFER_SIZE - 1, BUFFER_SIZE, BUFFER_SIZE + 1, 5 * BUFFER_SIZE + 7]
)
def test_hash_file_matches_hashlib_around_buffer_edges(size: int, tmp_path: Path) -> None:
    """Small files are hashed without a thread, larger ones through the ring (which has
    fewer buffers than the largest file needs)."""
    data = bytes(range(256)) * (size // 256 + 1)
    path = tmp_path / "f"
    path.write_bytes(data[:size])
    for algo in ALGOS:
        assert hash_file(path, algo).hex == hashlib.new(algo, data[:size]).hexdigest()


def test_hash_is_immutable_comparable_and_picklable() -> None:
    import pickle

    h = Hash("sha256", bytes(32))
    with pytest.raises(AttributeError):
        h.algo = "md5"
    assert h == Hash("sha256", bytes(32)) != Hash("sha256", bytes(31) + b"\1")
    assert len({h, Hash("sha256", bytes(32))}) == 1
    assert pickle.loads(pickle.dumps(h)) == h


# Parity of `hash convert` with Nix's converters, for every algorithm -------------------

SAMPLES = {algo: Hash(algo, hashlib.new(algo, algo.encode()).digest()) for algo in ALGOS}


@pytest.mark.parametrize("algo", ALGOS)
def test_hash_convert_matches_nix(algo: str) -> None:
    h = SAMPLES[algo]
    base16 = h.hex
    expected = {
        "nix32": nix("nix-hash", "--type", algo, "--to-base32", base16),
        "base16": nix("nix-hash", "--type", algo, "--to-base16", h.format("nix32")),
        "sri": nix("nix", "hash", "to-sri", "--type", algo, base16),
        "base64": nix("nix", "hash", "to-base64", "--type", algo, base16),
    }
    assert nix("nix", "hash", "to-base16", expected["sri"]) == base16
    for source in (expected["nix32"], expected["base64"]):  # base16 is the JSON case below
        for form, want in expected.items():
            r = run_cli("hash", "convert", source, "--type", algo, "--to", form)
            assert (r.exit_code, r.stdout, r.stderr) == (0, want + "\n", "")
    r = run_cli("hash", "convert", f"{algo}:{base16}", "--json")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout) == {"algo": algo, **expected}
