"""Unit tests for agent.banlist.signature (minisign format, no external binary)."""

from __future__ import annotations

import base64
import hashlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.banlist.signature import (
    PublicKey,
    SecretKey,
    SignatureError,
    Verified,
    generate_keypair,
    parse_public_key,
    parse_secret_key,
    sign,
    verify,
)

DATA = b'{"version": 7, "banned": ["evil.exe", "worse.app"]}\n'


@pytest.fixture(scope="module")
def keypair() -> tuple[SecretKey, PublicKey]:
    return generate_keypair()


def _lines(sig: str) -> list[str]:
    return sig.split("\n")


def _legacy_sign(data: bytes, sk: SecretKey, trusted_comment: str) -> str:
    """Build a legacy ``Ed`` (non-prehashed) signature by hand, per the spec."""
    priv = sk._ed25519()
    signature = priv.sign(data)
    global_sig = priv.sign(signature + trusted_comment.encode())
    return (
        "untrusted comment: legacy\n"
        + base64.b64encode(b"Ed" + sk.key_id + signature).decode()
        + "\n"
        + f"trusted comment: {trusted_comment}\n"
        + base64.b64encode(global_sig).decode()
        + "\n"
    )


# --- keys ----------------------------------------------------------------------


def test_key_id_hex_is_little_endian_uppercase() -> None:
    # Value taken from a real `minisign -G` run: the pub file comment said
    # "minisign public key D4F68BF30878E1E0" for key id bytes e0e17808f38bf6d4.
    pk = parse_public_key("RWTg4XgI84v21JKh8ri48oqvejAjQat5I8nMxRfr9D8yjv3bmxZI0NUx")
    assert pk.key_id == bytes.fromhex("e0e17808f38bf6d4")
    assert pk.key_id_hex == "D4F68BF30878E1E0"


def test_key_id_hex_is_zero_padded() -> None:
    pk = PublicKey(key_id=bytes([1]) + bytes(7), raw=bytes(32))
    assert pk.key_id_hex == "0000000000000001"


def test_public_key_file_round_trip(keypair: tuple[SecretKey, PublicKey]) -> None:
    sk, pk = keypair
    text = pk.to_minisign_file()
    assert text.startswith(f"untrusted comment: minisign public key {pk.key_id_hex}\n")
    assert parse_public_key(text) == pk
    assert parse_public_key(pk.to_base64()) == pk
    assert parse_public_key(f"  {pk.to_base64()}  \n") == pk
    assert parse_public_key(text.replace("\n", "\r\n")) == pk
    assert parse_public_key(text.encode()) == pk
    assert sk.public_key == pk


def test_secret_key_file_round_trip(keypair: tuple[SecretKey, PublicKey]) -> None:
    sk, _ = keypair
    text = sk.to_minisign_file("my key")
    assert text.startswith("untrusted comment: my key\n")
    assert parse_secret_key(text) == sk
    assert sk.seed.hex() not in repr(sk)


def test_secret_key_layout(keypair: tuple[SecretKey, PublicKey]) -> None:
    sk, pk = keypair
    raw = base64.b64decode(sk.to_minisign_file().split("\n")[1])
    assert len(raw) == 158
    assert raw[0:2] == b"Ed"
    assert raw[2:4] == b"\x00\x00"
    assert raw[4:6] == b"B2"
    assert raw[6:54] == bytes(48)  # salt, opslimit, memlimit
    assert raw[54:62] == sk.key_id
    assert raw[62:94] == sk.seed
    assert raw[94:126] == pk.raw
    assert raw[126:158] == hashlib.blake2b(b"Ed" + raw[54:126], digest_size=32).digest()


def test_secret_key_with_zero_checksum_accepted(keypair: tuple[SecretKey, PublicKey]) -> None:
    # minisign 0.11 `-G -W` leaves the checksum zeroed.
    sk, _ = keypair
    raw = bytearray(base64.b64decode(sk.to_minisign_file().split("\n")[1]))
    raw[126:158] = bytes(32)
    assert parse_secret_key("untrusted comment: x\n" + base64.b64encode(raw).decode()) == sk


def test_secret_key_bad_checksum_rejected(keypair: tuple[SecretKey, PublicKey]) -> None:
    sk, _ = keypair
    raw = bytearray(base64.b64decode(sk.to_minisign_file().split("\n")[1]))
    raw[157] ^= 1
    with pytest.raises(SignatureError, match="checksum"):
        parse_secret_key("untrusted comment: x\n" + base64.b64encode(raw).decode())


def test_secret_key_mismatched_public_half_rejected(
    keypair: tuple[SecretKey, PublicKey],
) -> None:
    sk, _ = keypair
    raw = bytearray(base64.b64decode(sk.to_minisign_file().split("\n")[1]))
    raw[94:126] = generate_keypair()[1].raw
    raw[126:158] = bytes(32)
    with pytest.raises(SignatureError, match="public half"):
        parse_secret_key("untrusted comment: x\n" + base64.b64encode(raw).decode())


def test_encrypted_secret_key_rejected_with_hint(keypair: tuple[SecretKey, PublicKey]) -> None:
    sk, _ = keypair
    raw = bytearray(base64.b64decode(sk.to_minisign_file().split("\n")[1]))
    raw[2:4] = b"Sc"
    with pytest.raises(SignatureError) as exc_info:
        parse_secret_key("untrusted comment: x\n" + base64.b64encode(raw).decode())
    assert str(exc_info.value) == (
        "encrypted minisign secret keys are not supported; "
        "create one with `minisign -G -W` or `appban policy keygen`"
    )


@pytest.mark.parametrize(
    "text",
    [
        "",
        "\n\n",
        "untrusted comment: only a comment\n",
        "not base64 !!!",
        base64.b64encode(b"Ed" + bytes(39)).decode(),  # too short
        base64.b64encode(b"Xx" + bytes(40)).decode(),  # wrong algorithm
        "line one\nline two\n",
        "untrusted comment: x\nRWQ=\nextra\n",
    ],
)
def test_malformed_public_keys(text: str) -> None:
    with pytest.raises(SignatureError):
        parse_public_key(text)


# --- sign / verify -------------------------------------------------------------


def test_round_trip(keypair: tuple[SecretKey, PublicKey]) -> None:
    sk, pk = keypair
    sig = sign(DATA, sk, "timestamp:1700000000\tfile:banlist.json")
    lines = _lines(sig)
    assert len(lines) == 5 and lines[4] == ""
    assert lines[0].startswith("untrusted comment: ")
    assert base64.b64decode(lines[1])[:2] == b"ED"
    assert lines[2] == "trusted comment: timestamp:1700000000\tfile:banlist.json"
    result = verify(DATA, sig, [pk])
    assert result == Verified(
        key_id_hex=pk.key_id_hex,
        trusted_comment="timestamp:1700000000\tfile:banlist.json",
        prehashed=True,
    )
    # bytes input and CRLF line endings are accepted too
    assert verify(DATA, sig.encode(), [pk]) == result
    assert verify(DATA, sig.replace("\n", "\r\n"), [pk]) == result


def test_round_trip_unicode_comment_and_empty_data(keypair: tuple[SecretKey, PublicKey]) -> None:
    sk, pk = keypair
    sig = sign(b"", sk, "liste gesperrt — ünïcödé")
    assert verify(b"", sig, [pk]).trusted_comment == "liste gesperrt — ünïcödé"


def test_tampered_data_rejected(keypair: tuple[SecretKey, PublicKey]) -> None:
    sk, pk = keypair
    sig = sign(DATA, sk, "v7")
    with pytest.raises(SignatureError, match="signature verification failed"):
        verify(DATA + b" ", sig, [pk])


def test_tampered_trusted_comment_rejected(keypair: tuple[SecretKey, PublicKey]) -> None:
    sk, pk = keypair
    sig = sign(DATA, sk, "version:7")
    tampered = sig.replace("trusted comment: version:7", "trusted comment: version:8")
    assert tampered != sig
    with pytest.raises(SignatureError, match="trusted comment signature verification failed"):
        verify(DATA, tampered, [pk])


def test_untrusted_comment_is_not_authenticated(keypair: tuple[SecretKey, PublicKey]) -> None:
    sk, pk = keypair
    sig = sign(DATA, sk, "v7", untrusted_comment="original")
    changed = sig.replace("untrusted comment: original", "untrusted comment: whatever")
    assert verify(DATA, changed, [pk]).trusted_comment == "v7"


def test_untrusted_key_rejected(keypair: tuple[SecretKey, PublicKey]) -> None:
    sk, _ = keypair
    _, other_pk = generate_keypair()
    sig = sign(DATA, sk, "v7")
    with pytest.raises(SignatureError) as exc_info:
        verify(DATA, sig, [other_pk])
    assert str(exc_info.value) == f"signed by untrusted key id {sk.key_id_hex}"


def test_no_trusted_keys_rejected(keypair: tuple[SecretKey, PublicKey]) -> None:
    sk, _ = keypair
    with pytest.raises(SignatureError):
        verify(DATA, sign(DATA, sk, "v7"), [])


def test_same_key_id_different_key_rejected(keypair: tuple[SecretKey, PublicKey]) -> None:
    # An attacker can copy a trusted key id; the signature must still fail.
    sk, pk = keypair
    attacker_sk, _ = generate_keypair()
    forged_sk = SecretKey(key_id=pk.key_id, seed=attacker_sk.seed)
    sig = sign(DATA, forged_sk, "v7")
    with pytest.raises(SignatureError, match="signature verification failed"):
        verify(DATA, sig, [pk])


def test_rotation_two_trusted_keys(keypair: tuple[SecretKey, PublicKey]) -> None:
    old_sk, old_pk = keypair
    new_sk, new_pk = generate_keypair()
    trusted = [old_pk, new_pk]
    assert verify(DATA, sign(DATA, old_sk, "old"), trusted).key_id_hex == old_pk.key_id_hex
    assert verify(DATA, sign(DATA, new_sk, "new"), trusted).key_id_hex == new_pk.key_id_hex
    assert verify(DATA, sign(DATA, new_sk, "new"), trusted[::-1]).trusted_comment == "new"
    # after the old key is dropped, its signatures stop verifying
    with pytest.raises(SignatureError, match="untrusted key id"):
        verify(DATA, sign(DATA, old_sk, "old"), [new_pk])


def test_legacy_non_prehashed_signature_verifies(keypair: tuple[SecretKey, PublicKey]) -> None:
    sk, pk = keypair
    sig = _legacy_sign(DATA, sk, "legacy comment")
    result = verify(DATA, sig, [pk])
    assert result.prehashed is False
    assert result.trusted_comment == "legacy comment"
    with pytest.raises(SignatureError, match="signature verification failed"):
        verify(DATA + b"x", sig, [pk])
    with pytest.raises(SignatureError, match="legacy"):
        verify(DATA, sig, [pk], allow_legacy=False)


def test_unknown_algorithm_rejected(keypair: tuple[SecretKey, PublicKey]) -> None:
    sk, pk = keypair
    lines = _lines(sign(DATA, sk, "v7"))
    raw = bytearray(base64.b64decode(lines[1]))
    raw[0:2] = b"XX"
    lines[1] = base64.b64encode(raw).decode()
    with pytest.raises(SignatureError, match="unsupported signature algorithm"):
        verify(DATA, "\n".join(lines), [pk])


@pytest.mark.parametrize(
    "mutate",
    [
        lambda ls: ls[:2],  # missing lines
        lambda ls: ls[:3],
        lambda ls: ["comment without prefix"] + ls[1:],
        lambda ls: ls[:2] + ["no trusted prefix"] + ls[3:],
        lambda ls: [ls[0], ls[1][:-4]] + ls[2:],  # truncated base64
        lambda ls: [ls[0], "!!!!" + ls[1][4:]] + ls[2:],  # bad base64 chars
        lambda ls: [ls[0], base64.b64encode(b"ED" + bytes(10)).decode()] + ls[2:],
        lambda ls: ls[:3] + [base64.b64encode(bytes(63)).decode()],  # short global sig
        lambda ls: ls[:3] + ["***"],
        lambda ls: ls[:4] + ["extra garbage line"],
        lambda ls: ls[:2] + ["trusted comment: a\rb"] + ls[3:],
        lambda ls: ls[:2] + ["trusted comment: " + "x" * 9000] + ls[3:],
    ],
)
def test_malformed_signature_files(keypair: tuple[SecretKey, PublicKey], mutate) -> None:
    sk, pk = keypair
    lines = _lines(sign(DATA, sk, "v7"))[:4]
    with pytest.raises(SignatureError) as exc_info:
        verify(DATA, "\n".join(mutate(lines)) + "\n", [pk])
    assert "\n" not in str(exc_info.value)


def test_sign_rejects_multiline_comments(keypair: tuple[SecretKey, PublicKey]) -> None:
    sk, _ = keypair
    with pytest.raises(ValueError):
        sign(DATA, sk, "line\nbreak")
    with pytest.raises(ValueError):
        sign(DATA, sk, "ok", untrusted_comment="a\rb")
    with pytest.raises(ValueError):
        sign(DATA, sk, "\x1b[31mred")


# --- property tests: garbage in, only SignatureError out ------------------------

_KEYPAIR = generate_keypair()
_VALID_SIG = sign(DATA, _KEYPAIR[0], "v7")
_b64_alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="


def _check_only_signature_error(signature: str | bytes) -> None:
    """Garbage must raise SignatureError (one line). A success is a failure of the test, except
    where the generator reassembled the real signature's authenticated lines: only those verify."""
    try:
        result = verify(DATA, signature, [_KEYPAIR[1]])
    except SignatureError as exc:
        assert "\n" not in str(exc)
        return
    text = signature.decode("utf-8", "replace") if isinstance(signature, bytes) else signature
    authenticated = _lines(_VALID_SIG)[1:4]
    assert all(line in text for line in authenticated), f"garbage verified: {signature!r}"
    assert result.trusted_comment == "v7"


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.text())
def test_arbitrary_text_only_raises_signature_error(text: str) -> None:
    _check_only_signature_error(text)


@settings(max_examples=300)
@given(st.binary())
def test_arbitrary_bytes_only_raises_signature_error(blob: bytes) -> None:
    _check_only_signature_error(blob)


@settings(max_examples=300)
@given(
    st.lists(
        st.one_of(
            st.text(max_size=120),
            st.text(alphabet=_b64_alphabet, max_size=120),
            st.binary(max_size=100).map(lambda b: base64.b64encode(b).decode()),
            st.sampled_from(_lines(_VALID_SIG)),
            st.text(max_size=40).map(lambda t: "untrusted comment: " + t),
            st.text(max_size=40).map(lambda t: "trusted comment: " + t),
        ),
        max_size=6,
    ),
    st.sampled_from(["\n", "\r\n", "\r"]),
)
def test_structured_garbage_only_raises_signature_error(lines: list[str], sep: str) -> None:
    _check_only_signature_error(sep.join(lines))


@settings(max_examples=200)
@given(st.data())
def test_single_byte_corruption_never_verifies(data: st.DataObject) -> None:
    blob = bytearray(_VALID_SIG.encode())
    index = data.draw(st.integers(min_value=0, max_value=len(blob) - 1))
    value = data.draw(st.integers(min_value=0, max_value=255))
    original = blob[index]
    blob[index] = value
    try:
        result = verify(DATA, bytes(blob), [_KEYPAIR[1]])
    except SignatureError:
        return
    # Only changes that cannot alter meaning may still verify: the untrusted
    # comment on line 1 (not authenticated) or an identical byte.
    first_newline = _VALID_SIG.index("\n")
    # The final newline may also become a carriage return (stripped like CRLF).
    assert value == original or index < first_newline or index == len(blob) - 1
    assert result.trusted_comment == "v7"


@settings(max_examples=200)
@given(st.one_of(st.text(), st.binary()))
def test_key_parsers_only_raise_signature_error(text: str | bytes) -> None:
    for parser in (parse_public_key, parse_secret_key):
        try:
            parser(text)
        except SignatureError as exc:
            assert "\n" not in str(exc)


# --- mutants the suite once let through (issue 11, "test strength") ---------------------------


def _last_char_bits_changed(line: str) -> str:
    """Return a base64 line whose last data character differs only in bits the decoder ignores
    (the line encodes a length that is not a multiple of 3, so such bits exist)."""
    body = line.rstrip("=")
    padding = line[len(body):]
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    unused = {1: 2, 2: 4}[len(padding)]  # "=": 2 bits unused, "==": 4 bits
    index = alphabet.index(body[-1])
    changed = alphabet[index ^ ((1 << unused) - 1)]
    return body[:-1] + changed + padding


def test_non_canonical_base64_is_refused(keypair: tuple[SecretKey, PublicKey]) -> None:
    sk, pk = keypair
    lines = _lines(sign(DATA, sk, "v7"))
    for number in (1, 3):  # the signature line (74 bytes) and the global signature (64 bytes)
        mutated = list(lines)
        mutated[number] = _last_char_bits_changed(lines[number])
        assert base64.b64decode(mutated[number]) == base64.b64decode(lines[number])  # same bytes
        with pytest.raises(SignatureError, match="non-canonical base64"):
            verify(DATA, "\n".join(mutated), [pk])


def test_a_validly_signed_trusted_comment_with_control_characters_is_refused(
    keypair: tuple[SecretKey, PublicKey],
) -> None:
    """sign() refuses such comments, so the file is made by hand as another tool could: the
    global signature covers the comment, so only the control-character check can refuse it."""
    sk, pk = keypair
    lines = _lines(sign(DATA, sk, "v7"))
    signature = base64.b64decode(lines[1])[10:]  # after "ED" and the key id
    for comment in ("v7\x1b[2J", "v7\x00", "v7\x7f"):
        global_signature = sk._ed25519().sign(signature + comment.encode())
        forged = [lines[0], lines[1], "trusted comment: " + comment, base64.b64encode(global_signature).decode(), ""]
        with pytest.raises(SignatureError, match="trusted comment contains control characters"):
            verify(DATA, "\n".join(forged), [pk])
    tabbed = "v7\tserial 7"  # a tab is allowed, as in minisign
    global_signature = sk._ed25519().sign(signature + tabbed.encode())
    ok = [lines[0], lines[1], "trusted comment: " + tabbed, base64.b64encode(global_signature).decode(), ""]
    assert verify(DATA, "\n".join(ok), [pk]).trusted_comment == tabbed


def test_comments_exactly_at_minisigns_limits_are_accepted_one_byte_more_is_not(
    keypair: tuple[SecretKey, PublicKey],
) -> None:
    from agent.banlist.signature import MAX_TRUSTED_COMMENT_BYTES, MAX_UNTRUSTED_COMMENT_BYTES

    sk, pk = keypair
    longest = "t" * MAX_TRUSTED_COMMENT_BYTES
    assert verify(DATA, sign(DATA, sk, longest), [pk]).trusted_comment == longest
    sign(DATA, sk, "v7", untrusted_comment="u" * MAX_UNTRUSTED_COMMENT_BYTES)
    with pytest.raises(ValueError, match="trusted comment"):
        sign(DATA, sk, longest + "t")
    with pytest.raises(ValueError, match="untrusted comment"):
        sign(DATA, sk, "v7", untrusted_comment="u" * (MAX_UNTRUSTED_COMMENT_BYTES + 1))


@pytest.mark.parametrize(("text", "message"), [
    ("", "malformed public key: empty"),
    ("untrusted comment: only a comment\n", "malformed public key: missing key line"),
    ("untrusted comment: x\nRWQ=\nextra\n", "malformed public key: unexpected extra lines"),
    ("not base64 !!!", "malformed public key: invalid base64"),
    (base64.b64encode(b"Ed" + bytes(39)).decode(), "malformed public key: expected 42 bytes, got 41"),
    (base64.b64encode(b"Xx" + bytes(40)).decode(), "unsupported public key algorithm"),
])
def test_public_key_errors_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(SignatureError) as caught:
        parse_public_key(text)
    assert str(caught.value) == message
