"""Minisign-compatible signing and verification of ban lists.

Why minisign: administrators already know the tool, the format is tiny and
well specified, and the real ``minisign`` binary can sign or check a ban list
without any appban code, so a compromised or buggy agent is not the only
thing able to vouch for a list.  This module implements just enough of the
format (https://jedisct1.github.io/minisign/) with the ``cryptography``
package's Ed25519:

Public key (``minisign.pub``)::

    untrusted comment: minisign public key <KEYID>
    base64( "Ed" || key_id[8] || public_key[32] )

Signature (``<file>.minisig``)::

    untrusted comment: <anything, NOT authenticated>
    base64( "ED" || key_id[8] || ed25519(BLAKE2b-512(data)) )   # "Ed": ed25519(data)
    trusted comment: <text, authenticated by the global signature>
    base64( ed25519(signature[64] || trusted_comment_bytes) )

Secret key, unencrypted only (what ``minisign -G -W`` writes)::

    untrusted comment: <anything>
    base64( "Ed" || kdf_alg "\\0\\0" || "B2" || kdf_salt[32] || opslimit[8]
            || memlimit[8] || key_id[8] || seed[32] || public_key[32]
            || checksum[32] )

where checksum = BLAKE2b-256("Ed" || key_id || seed || public_key).  With the
"no KDF" algorithm minisign skips the scrypt XOR step (and, since 0.11, writes
an all-zero checksum and never checks it); we write the real checksum so that
stricter implementations accept our files too, and accept either when reading.

Every parsing or verification problem surfaces as :class:`SignatureError`
(a ``ValueError``) with a one-line message: a ban list comes from the network,
so a malformed file must be an ordinary, reportable failure and never an
unexpected exception type that escapes the agent's error handling.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

__all__ = [
    "PublicKey",
    "SecretKey",
    "SignatureError",
    "Verified",
    "generate_keypair",
    "parse_public_key",
    "parse_secret_key",
    "sign",
    "verify",
]

# --- format constants (names follow minisign's src/minisign.h) -------------

SIGALG = b"Ed"  # signature over the raw message (legacy), also the key algorithm
SIGALG_HASHED = b"ED"  # signature over BLAKE2b-512(message), minisign >= 0.8 default
KDFALG_SCRYPT = b"Sc"  # password-encrypted secret key
KDFALG_NONE = b"\x00\x00"  # unencrypted secret key (minisign -W)
CHKALG = b"B2"  # BLAKE2b checksum of the secret key

UNTRUSTED_PREFIX = "untrusted comment: "
TRUSTED_PREFIX = "trusted comment: "

KEY_ID_LEN = 8
PUBLIC_KEY_LEN = 32
SEED_LEN = 32
SIG_LEN = 64
SALT_LEN = 32
CHECKSUM_LEN = 32

_PUBKEY_STRUCT_LEN = 2 + KEY_ID_LEN + PUBLIC_KEY_LEN  # 42
_SIG_STRUCT_LEN = 2 + KEY_ID_LEN + SIG_LEN  # 74
_SECKEY_STRUCT_LEN = (
    2 + 2 + 2 + SALT_LEN + 8 + 8 + KEY_ID_LEN + SEED_LEN + PUBLIC_KEY_LEN + CHECKSUM_LEN
)  # 158

# minisign reads lines with fixed fgets() buffers; staying inside them keeps
# every file we write readable by the real binary (and bounds what we accept).
_COMMENTMAXBYTES = 1024
_TRUSTEDCOMMENTMAXBYTES = 8192
MAX_UNTRUSTED_COMMENT_BYTES = _COMMENTMAXBYTES - len(UNTRUSTED_PREFIX) - 2  # 1003
MAX_TRUSTED_COMMENT_BYTES = _TRUSTEDCOMMENTMAXBYTES - len(TRUSTED_PREFIX) - 2  # 8173

DEFAULT_SIGNATURE_COMMENT = "signature from appban minisign secret key"
DEFAULT_SECRET_KEY_COMMENT = "appban minisign secret key (unencrypted)"

_ENCRYPTED_KEY_MESSAGE = (
    "encrypted minisign secret keys are not supported; "
    "create one with `minisign -G -W` or `appban policy keygen`"
)


class SignatureError(ValueError):
    """A key or signature file is malformed, or a signature does not verify.

    Subclassing ``ValueError`` lets generic config/input validation code
    catch it; the message is always a single line so it can go straight into
    logs and status reports.
    """


# --- small helpers ----------------------------------------------------------


def _b64decode(text: str | bytes, expected_len: int, what: str) -> bytes:
    """Strictly decode standard base64 and check the decoded length.

    Strict (``validate=True``) because minisign's own decoder rejects stray
    characters; accepting more than minisign would let two tools disagree on
    what a file means.
    """
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise SignatureError(f"malformed {what}: invalid base64") from None
    if len(raw) != expected_len:
        raise SignatureError(
            f"malformed {what}: expected {expected_len} bytes, got {len(raw)}"
        )
    # Python (like minisign) ignores the unused low bits of the last base64
    # character; insisting on the canonical encoding gives every file a single
    # spelling, so a modified signature line can never still verify.
    if base64.b64encode(raw) != (text.encode("ascii") if isinstance(text, str) else text):
        raise SignatureError(f"malformed {what}: non-canonical base64")
    return raw


def _b64encode(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _key_id_hex(key_id: bytes) -> str:
    """Format a key id the way minisign prints it.

    minisign loads the 8 id bytes as a little-endian uint64 and prints it with
    ``%016" PRIX64``, so the hex string is the byte-reversed, upper-case form.
    Using the same spelling lets an admin match our log lines with
    ``minisign.pub``'s comment line.
    """
    return f"{int.from_bytes(key_id, 'little'):016X}"


def _to_bytes(text: str | bytes, what: str) -> bytes:
    """Normalise file content to UTF-8 bytes (signatures cover bytes, not str)."""
    if isinstance(text, bytes | bytearray | memoryview):
        return bytes(text)
    if not isinstance(text, str):
        raise SignatureError(f"malformed {what}: expected str or bytes")
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        raise SignatureError(f"malformed {what}: not valid UTF-8 text") from None


def _lines(content: bytes) -> list[bytes]:
    r"""Split like minisign's fgets()+trim(): on ``\n``, dropping one ``\r``.

    ``str.splitlines`` is deliberately avoided: it also splits on form feeds,
    U+2028 and friends, which minisign treats as ordinary characters.
    """
    lines = content.split(b"\n")
    return [line[:-1] if line.endswith(b"\r") else line for line in lines]


def _check_printable(comment: str, what: str) -> None:
    """Reject control characters (tab excepted), as minisign 0.12 does.

    Besides matching minisign, this keeps a signed comment from smuggling
    line breaks or terminal escape sequences into logs and consoles.
    """
    for ch in comment:
        if ch != "\t" and (ord(ch) < 0x20 or ord(ch) == 0x7F):
            raise SignatureError(f"{what} contains control characters")


def _check_comment_arg(comment: str, what: str, max_bytes: int) -> bytes:
    """Validate a comment we are about to write; a bad one is a caller bug."""
    if not isinstance(comment, str):
        raise TypeError(f"{what} must be str")
    if "\n" in comment or "\r" in comment:
        raise ValueError(f"{what} must be a single line")
    try:
        _check_printable(comment, what)
    except SignatureError as exc:
        raise ValueError(str(exc)) from None
    encoded = comment.encode("utf-8")
    if len(encoded) > max_bytes:
        raise ValueError(f"{what} is too long ({len(encoded)} > {max_bytes} bytes)")
    return encoded


def _blake2b_512(data: bytes) -> bytes:
    """The prehash used by ``ED`` signatures (libsodium generichash, 64 bytes)."""
    return hashlib.blake2b(data, digest_size=64).digest()


def _seckey_checksum(key_id: bytes, seed: bytes, public: bytes) -> bytes:
    """minisign's ``seckey_compute_chk``: BLAKE2b-256(sig_alg || key_id || sk64)."""
    return hashlib.blake2b(
        SIGALG + key_id + seed + public, digest_size=CHECKSUM_LEN
    ).digest()


# --- keys ----------------------------------------------------------------------


@dataclass(frozen=True)
class PublicKey:
    """A minisign Ed25519 public key.

    The key id is carried alongside the key because minisign signatures name
    the signing key by id; that is what lets :func:`verify` pick the right key
    when several are trusted during a key rotation.
    """

    key_id: bytes
    raw: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.key_id, bytes) or len(self.key_id) != KEY_ID_LEN:
            raise SignatureError(f"public key id must be {KEY_ID_LEN} bytes")
        if not isinstance(self.raw, bytes) or len(self.raw) != PUBLIC_KEY_LEN:
            raise SignatureError(f"public key must be {PUBLIC_KEY_LEN} bytes")

    @property
    def key_id_hex(self) -> str:
        """Key id as minisign prints it (e.g. ``D4F68BF30878E1E0``)."""
        return _key_id_hex(self.key_id)

    def to_base64(self) -> str:
        """The one-line form (``minisign -P``, config ``trusted_keys``)."""
        return _b64encode(SIGALG + self.key_id + self.raw)

    def to_minisign_file(self, comment: str | None = None) -> str:
        """Render a ``minisign.pub`` file; the default comment matches minisign's."""
        if comment is None:
            comment = f"minisign public key {self.key_id_hex}"
        _check_comment_arg(comment, "untrusted comment", MAX_UNTRUSTED_COMMENT_BYTES)
        return f"{UNTRUSTED_PREFIX}{comment}\n{self.to_base64()}\n"

    def _ed25519(self) -> Ed25519PublicKey:
        try:
            return Ed25519PublicKey.from_public_bytes(self.raw)
        except ValueError:
            raise SignatureError(f"invalid Ed25519 public key {self.key_id_hex}") from None


@dataclass(frozen=True)
class SecretKey:
    """An unencrypted minisign Ed25519 secret key.

    Only the 32-byte seed is stored (the public half is derived), so an
    inconsistent seed/public pair cannot exist in memory.  ``repr`` hides the
    seed so the key never ends up in a log or a traceback by accident.
    """

    key_id: bytes
    seed: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.key_id, bytes) or len(self.key_id) != KEY_ID_LEN:
            raise SignatureError(f"secret key id must be {KEY_ID_LEN} bytes")
        if not isinstance(self.seed, bytes) or len(self.seed) != SEED_LEN:
            raise SignatureError(f"secret key seed must be {SEED_LEN} bytes")

    @property
    def key_id_hex(self) -> str:
        """Key id as minisign prints it."""
        return _key_id_hex(self.key_id)

    def _ed25519(self) -> Ed25519PrivateKey:
        return Ed25519PrivateKey.from_private_bytes(self.seed)

    @property
    def public_key(self) -> PublicKey:
        """The matching public key (same key id)."""
        raw = self._ed25519().public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return PublicKey(key_id=self.key_id, raw=raw)

    def to_minisign_file(self, comment: str = DEFAULT_SECRET_KEY_COMMENT) -> str:
        """Render an unencrypted minisign secret key file.

        The layout is byte-for-byte what ``minisign -G -W`` produces (except
        that we fill in the checksum), so ``minisign -S -s <file>`` signs with
        it without asking for a password.  The file is a secret: the caller
        must write it with restrictive permissions.
        """
        _check_comment_arg(comment, "untrusted comment", MAX_UNTRUSTED_COMMENT_BYTES)
        public = self.public_key.raw
        blob = (
            SIGALG
            + KDFALG_NONE
            + CHKALG
            + bytes(SALT_LEN)  # kdf salt, unused without a KDF
            + bytes(8)  # kdf opslimit (little-endian), unused
            + bytes(8)  # kdf memlimit (little-endian), unused
            + self.key_id
            + self.seed
            + public
            + _seckey_checksum(self.key_id, self.seed, public)
        )
        assert len(blob) == _SECKEY_STRUCT_LEN
        return f"{UNTRUSTED_PREFIX}{comment}\n{_b64encode(blob)}\n"


def generate_keypair() -> tuple[SecretKey, PublicKey]:
    """Create a fresh key pair with a random 8-byte key id, like ``minisign -G``."""
    seed = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.Raw,
        serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )
    sk = SecretKey(key_id=os.urandom(KEY_ID_LEN), seed=seed)
    return sk, sk.public_key


def _key_payload(text: str | bytes, what: str) -> bytes:
    """Return the base64 line of a key file, or of a bare pasted base64 string.

    Surrounding whitespace and blank lines are tolerated because keys are
    routinely pasted into config files and terminals.
    """
    content = _to_bytes(text, what)
    lines = [line.strip() for line in _lines(content)]
    lines = [line for line in lines if line]
    if not lines:
        raise SignatureError(f"malformed {what}: empty")
    if lines[0].startswith(b"untrusted comment:"):
        lines = lines[1:]
        if not lines:
            raise SignatureError(f"malformed {what}: missing key line")
    if len(lines) != 1:
        raise SignatureError(f"malformed {what}: unexpected extra lines")
    return lines[0]


def parse_public_key(text: str | bytes) -> PublicKey:
    """Parse a ``minisign.pub`` file or the bare base64 key line.

    Raises :class:`SignatureError` on anything else, including a key with an
    algorithm other than ``Ed``.
    """
    raw = _b64decode(_key_payload(text, "public key"), _PUBKEY_STRUCT_LEN, "public key")
    if raw[:2] != SIGALG:
        raise SignatureError("unsupported public key algorithm")
    key = PublicKey(key_id=raw[2 : 2 + KEY_ID_LEN], raw=raw[2 + KEY_ID_LEN :])
    key._ed25519()  # fail now, at config load, rather than at first verify
    return key


def parse_secret_key(text: str | bytes) -> SecretKey:
    """Parse an unencrypted minisign secret key file.

    Password-encrypted (scrypt) keys are rejected with a hint instead of
    being decrypted: the agent-side tooling signs non-interactively, and
    supporting scrypt would mean handling passwords in this process.  The
    embedded public half and (when present) the checksum are checked so a
    corrupted file fails here rather than producing unverifiable signatures.
    """
    raw = _b64decode(_key_payload(text, "secret key"), _SECKEY_STRUCT_LEN, "secret key")
    sig_alg, kdf_alg, chk_alg = raw[0:2], raw[2:4], raw[4:6]
    if sig_alg != SIGALG:
        raise SignatureError("unsupported secret key algorithm")
    if kdf_alg == KDFALG_SCRYPT:
        raise SignatureError(_ENCRYPTED_KEY_MESSAGE)
    if kdf_alg != KDFALG_NONE:
        raise SignatureError("unsupported secret key derivation function")
    if chk_alg != CHKALG:
        raise SignatureError("unsupported secret key checksum function")
    off = 6 + SALT_LEN + 8 + 8
    key_id = raw[off : off + KEY_ID_LEN]
    off += KEY_ID_LEN
    seed = raw[off : off + SEED_LEN]
    off += SEED_LEN
    public = raw[off : off + PUBLIC_KEY_LEN]
    off += PUBLIC_KEY_LEN
    checksum = raw[off : off + CHECKSUM_LEN]
    # minisign >= 0.11 leaves the checksum zeroed for unencrypted keys.
    if checksum != bytes(CHECKSUM_LEN) and not hmac.compare_digest(
        checksum, _seckey_checksum(key_id, seed, public)
    ):
        raise SignatureError("malformed secret key: checksum mismatch")
    sk = SecretKey(key_id=key_id, seed=seed)
    if not hmac.compare_digest(sk.public_key.raw, public):
        raise SignatureError("malformed secret key: public half does not match seed")
    return sk


# --- signatures ------------------------------------------------------------------


@dataclass(frozen=True)
class Verified:
    """Result of a successful :func:`verify`.

    ``trusted_comment`` is the only part of the signature file (besides the
    data) that is authenticated, so it is where signers put metadata such as
    a timestamp or list version.
    """

    key_id_hex: str
    trusted_comment: str
    prehashed: bool


@dataclass(frozen=True)
class _ParsedSignature:
    algorithm: bytes
    key_id: bytes
    signature: bytes
    trusted_comment: bytes
    global_signature: bytes


def _parse_signature(signature_text: str | bytes) -> _ParsedSignature:
    content = _to_bytes(signature_text, "signature file")
    lines = _lines(content)
    # One trailing newline is normal; tolerate trailing blank lines too, but
    # nothing else after the four lines, so the file has a single meaning.
    while lines and not lines[-1].strip():
        lines.pop()
    if len(lines) < 4:
        raise SignatureError(f"malformed signature file: expected 4 lines, got {len(lines)}")
    if len(lines) > 4:
        raise SignatureError("malformed signature file: unexpected extra lines")
    untrusted, sig_line, trusted_line, global_line = lines
    if not untrusted.startswith(UNTRUSTED_PREFIX.encode()):
        raise SignatureError(
            f"malformed signature file: line 1 must start with {UNTRUSTED_PREFIX.strip()!r}"
        )
    if not trusted_line.startswith(TRUSTED_PREFIX.encode()):
        raise SignatureError(
            f"malformed signature file: line 3 must start with {TRUSTED_PREFIX.strip()!r}"
        )
    trusted = trusted_line[len(TRUSTED_PREFIX) :]
    if b"\r" in trusted:
        raise SignatureError("malformed signature file: stray carriage return in trusted comment")
    if len(trusted) > MAX_TRUSTED_COMMENT_BYTES:
        raise SignatureError("malformed signature file: trusted comment too long")
    sig_struct = _b64decode(sig_line, _SIG_STRUCT_LEN, "signature file (line 2)")
    global_sig = _b64decode(global_line, SIG_LEN, "signature file (line 4)")
    return _ParsedSignature(
        algorithm=sig_struct[:2],
        key_id=sig_struct[2 : 2 + KEY_ID_LEN],
        signature=sig_struct[2 + KEY_ID_LEN :],
        trusted_comment=trusted,
        global_signature=global_sig,
    )


def sign(
    data: bytes,
    sk: SecretKey,
    trusted_comment: str,
    untrusted_comment: str = DEFAULT_SIGNATURE_COMMENT,
) -> str:
    """Sign ``data`` and return the ``.minisig`` file text (prehashed ``ED``).

    Prehashed is minisign's default since 0.11 and the only form accepted by
    ``minisign -V -H``, so that is all we produce.  Comments must be single,
    printable lines that fit minisign's buffers; violating that is a
    programming error and raises ``ValueError``.
    """
    trusted = _check_comment_arg(trusted_comment, "trusted comment", MAX_TRUSTED_COMMENT_BYTES)
    _check_comment_arg(untrusted_comment, "untrusted comment", MAX_UNTRUSTED_COMMENT_BYTES)
    private = sk._ed25519()
    signature = private.sign(_blake2b_512(bytes(data)))
    global_signature = private.sign(signature + trusted)
    return (
        f"{UNTRUSTED_PREFIX}{untrusted_comment}\n"
        f"{_b64encode(SIGALG_HASHED + sk.key_id + signature)}\n"
        f"{TRUSTED_PREFIX}{trusted_comment}\n"
        f"{_b64encode(global_signature)}\n"
    )


def verify(
    data: bytes,
    signature_text: str | bytes,
    trusted_keys: Sequence[PublicKey],
    *,
    allow_legacy: bool = True,
) -> Verified:
    """Check a minisign signature over ``data`` against the trusted keys.

    The key is chosen by the key id in the signature, so during a rotation
    both the old and new keys can be trusted at once.  Both the data
    signature and the global signature (which authenticates the trusted
    comment) must verify.  Legacy ``Ed`` (non-prehashed) signatures are
    accepted unless ``allow_legacy`` is false (the equivalent of
    ``minisign -V -H``).

    Raises :class:`SignatureError` -- and nothing else -- on any failure.
    """
    parsed = _parse_signature(signature_text)
    if parsed.algorithm == SIGALG_HASHED:
        prehashed = True
    elif parsed.algorithm == SIGALG:
        prehashed = False
        if not allow_legacy:
            raise SignatureError("legacy (non-prehashed) signature not allowed")
    else:
        raise SignatureError(
            f"unsupported signature algorithm {parsed.algorithm.hex().upper()} (hex)"
        )
    key_id_hex = _key_id_hex(parsed.key_id)
    if not trusted_keys:
        raise SignatureError(f"signed by key id {key_id_hex}, but no keys are trusted")
    candidates = [k for k in trusted_keys if k.key_id == parsed.key_id]
    if not candidates:
        raise SignatureError(f"signed by untrusted key id {key_id_hex}")

    message = _blake2b_512(bytes(data)) if prehashed else bytes(data)
    for key in candidates:
        public = key._ed25519()
        try:
            public.verify(parsed.signature, message)
        except InvalidSignature:
            continue  # another trusted key may share this (random) id
        try:
            public.verify(parsed.global_signature, parsed.signature + parsed.trusted_comment)
        except InvalidSignature:
            raise SignatureError(
                f"trusted comment signature verification failed (key id {key_id_hex})"
            ) from None
        try:
            comment = parsed.trusted_comment.decode("utf-8")
        except UnicodeDecodeError:
            raise SignatureError("trusted comment is not valid UTF-8") from None
        _check_printable(comment, "trusted comment")
        return Verified(key_id_hex=key_id_hex, trusted_comment=comment, prehashed=prehashed)
    raise SignatureError(f"signature verification failed (key id {key_id_hex})")
