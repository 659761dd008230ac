"""Data signing: registered sources sign their contributions with Ed25519, each signature good once.

The signed message binds the exact image bytes to the label, so neither can be swapped after
signing, and to a timestamp and a random nonce, so that a captured upload cannot be replayed: the
service refuses a timestamp more than its skew window (``signature_max_skew_s``, 300 s by default)
away from its clock, and a nonce the same source already used within that window (it remembers
nonces in its database until their timestamp leaves the window, so a restart forgets none). The
message is the UTF-8 encoding of five lines joined by ``\\n`` (no trailing newline)::

    poisonlab-contribution-v2
    <sha256 of the image file's bytes, 64 lowercase hex digits>
    <the label's class name, e.g. "bird" (an index sent as label is resolved to its name first)>
    <the signing time: whole seconds since 1970-01-01 UTC, decimal>
    <the nonce: 16-64 characters of A-Z a-z 0-9 _ -, fresh for every upload>

The contribution's ``signature`` form field carries ``<timestamp>.<nonce>.<signature>``, the
signature base64-encoded (standard alphabet, padded); :func:`sign_contribution` writes it. Keys are
PEM files: PKCS#8 private keys, SubjectPublicKeyInfo public keys (what ``openssl genpkey
-algorithm ed25519`` writes too).
Ed25519: Bernstein, Duif, Lange, Schwabe and Yang, "High-speed high-security signatures",
Journal of Cryptographic Engineering 2(2), 2012; RFC 8032.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from poisonlab.service.db import SignatureNonce

MESSAGE_PREFIX = "poisonlab-contribution-v2"
DEFAULT_MAX_SKEW = 300
_NONCE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
_TIMESTAMP = re.compile(r"^[0-9]{1,12}$")


class StaleSignature(ValueError):
    """The signature's timestamp is outside the service's skew window (signed too long ago)."""


@dataclass(frozen=True)
class SignedToken:
    """The parts of a ``signature`` field: signing time, nonce and the 64 signature bytes."""

    timestamp: int
    nonce: str
    signature: bytes


def signed_message(image_sha256: str, label_name: str, timestamp: int, nonce: str) -> bytes:
    """The bytes a source signs for one contribution (see the module docstring)."""
    if len(image_sha256) != 64 or any(c not in "0123456789abcdef" for c in image_sha256):
        raise ValueError(f"image_sha256 must be 64 lowercase hex digits, got {image_sha256!r}")
    if "\n" in label_name or not label_name:
        raise ValueError(f"label name must be a non-empty single line, got {label_name!r}")
    if isinstance(timestamp, bool) or not isinstance(timestamp, int) or not 0 <= timestamp < 10**12:
        raise ValueError(f"timestamp must be whole seconds since 1970 (0 <= t < 10**12), got {timestamp!r}")
    if not isinstance(nonce, str) or not _NONCE.match(nonce):
        raise ValueError(f"nonce must be 16-64 characters of A-Z a-z 0-9 _ -, got {nonce!r:.80}")
    return f"{MESSAGE_PREFIX}\n{image_sha256}\n{label_name}\n{timestamp}\n{nonce}".encode()


def load_public_key(pem: str | bytes) -> Ed25519PublicKey:
    """Parse a PEM public key; ValueError unless it is an Ed25519 key."""
    data = pem.encode() if isinstance(pem, str) else pem
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"not a PEM public key: {exc}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"the public key must be Ed25519, got {type(key).__name__}")
    return key


#: largest key file read (an Ed25519 PEM key is ~120 bytes): a device (/dev/zero) or a large file
#: given by mistake is refused after this many bytes, not read until memory runs out
MAX_KEY_BYTES = 64 * 1024


def load_private_key(path: str | os.PathLike[str]) -> Ed25519PrivateKey:
    """Read an unencrypted PEM Ed25519 private key file (at most :data:`MAX_KEY_BYTES`)."""
    with open(path, "rb") as handle:
        data = handle.read(MAX_KEY_BYTES + 1)
    if len(data) > MAX_KEY_BYTES:
        raise ValueError(f"{path} is over {MAX_KEY_BYTES:,} bytes; expected a small file (a PEM private key)")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{path} is not an unencrypted PEM private key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path} must hold an Ed25519 private key, got {type(key).__name__}")
    return key


def public_key_fingerprint(key: Ed25519PublicKey) -> str:
    """sha256 hex of the raw 32-byte public key (shown to operators to compare keys)."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def sign_contribution(
    key: Ed25519PrivateKey,
    image: bytes,
    label_name: str,
    *,
    timestamp: int | None = None,
    nonce: str | None = None,
) -> str:
    """The ``signature`` field for one upload of ``image`` with ``label_name``.

    Parameters
    ----------
    key : Ed25519PrivateKey
        The source's private key.
    image : bytes
        The image file's bytes, exactly as they will be uploaded.
    label_name : str
        The class name the contribution will carry.
    timestamp : int, optional
        Signing time in seconds since 1970 (now by default; tests pass another).
    nonce : str, optional
        A fresh random nonce by default (128 bits, hex); never reuse one.

    Returns
    -------
    str
        ``<timestamp>.<nonce>.<base64 signature>``, good for one upload within the service's
        skew window.
    """
    timestamp = int(time.time()) if timestamp is None else timestamp
    nonce = secrets.token_hex(16) if nonce is None else nonce
    message = signed_message(hashlib.sha256(image).hexdigest(), label_name, timestamp, nonce)
    return f"{timestamp}.{nonce}.{base64.b64encode(key.sign(message)).decode('ascii')}"


def decode_signature(text: str) -> bytes:
    """Base64 text -> 64 signature bytes; ValueError naming the problem otherwise."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("signature is not valid base64") from None
    if len(raw) != 64:
        raise ValueError(f"an Ed25519 signature has 64 bytes, this one has {len(raw)}")
    return raw


def parse_signature(text: str) -> SignedToken:
    """Split a ``signature`` field into its parts; ValueError naming the problem otherwise."""
    parts = text.strip().split(".")
    if len(parts) != 3:
        raise ValueError(
            "signature must be <timestamp>.<nonce>.<base64 signature> (signatures without a timestamp "
            "and nonce are no longer accepted: sign each upload with `poisonlab sources sign`)"
        )
    stamp, nonce, encoded = parts
    if not _TIMESTAMP.match(stamp):
        raise ValueError(f"signature timestamp must be whole seconds since 1970, got {stamp!r:.40}")
    if not _NONCE.match(nonce):
        raise ValueError(f"signature nonce must be 16-64 characters of A-Z a-z 0-9 _ -, got {nonce!r:.80}")
    return SignedToken(int(stamp), nonce, decode_signature(encoded))


def verify_contribution(
    public_key_pem: str,
    signature: str,
    image_sha256: str,
    label_name: str,
    *,
    now: float | None = None,
    max_skew: float = DEFAULT_MAX_SKEW,
) -> SignedToken:
    """Check a ``signature`` field for (image_sha256, label_name) under the source's key.

    Returns the parsed token (its nonce is for :func:`claim_nonce`). Raises
    :class:`StaleSignature` when the timestamp is more than ``max_skew`` seconds away from
    ``now`` (``time.time()`` by default), ValueError for any other problem.
    """
    key = load_public_key(public_key_pem)
    token = parse_signature(signature)
    now = time.time() if now is None else now
    if abs(now - token.timestamp) > max_skew:
        raise StaleSignature(
            f"signature timestamp {token.timestamp} is {now - token.timestamp:+.0f} s from the service's "
            f"clock; signatures are good for {max_skew:g} s (sign the upload again)"
        )
    try:
        key.verify(token.signature, signed_message(image_sha256, label_name, token.timestamp, token.nonce))
    except InvalidSignature:
        raise ValueError("signature does not verify: wrong key, or the image or label differ") from None
    return token


def claim_nonce(session: Session, source: str, token: SignedToken, *, max_skew: float, now: float) -> bool:
    """Record ``token``'s nonce for ``source``; False when it was used already (a replay).

    Runs in the caller's transaction, so the nonce is spent exactly when the contribution it signs
    commits. It is kept until its timestamp leaves the skew window (after that the timestamp alone
    refuses a replay); expired nonces are deleted here, which keeps the table small.
    """
    prune_nonces(session, now=now)
    seen = select(SignatureNonce.nonce).where(
        SignatureNonce.source == source, SignatureNonce.nonce == token.nonce
    )
    if session.scalar(seen) is not None:
        return False
    try:  # a concurrent upload of the same nonce (another process) loses on the primary key
        with session.begin_nested():
            session.add(
                SignatureNonce(
                    source=source, nonce=token.nonce, expires_at=int(token.timestamp + max_skew) + 1
                )
            )
    except IntegrityError:
        return False
    return True


def prune_nonces(session: Session, *, now: float | None = None) -> int:
    """Delete the nonces whose timestamps left the skew window; returns how many."""
    now = time.time() if now is None else now
    result = session.execute(delete(SignatureNonce).where(SignatureNonce.expires_at < int(now)))
    return int(result.rowcount or 0)


def generate_keypair(out_dir: str | os.PathLike[str], name: str = "source") -> tuple[Path, Path]:
    """Write ``<name>.key`` (private, mode 0600) and ``<name>.pub`` (public) PEM files.

    Refuses to overwrite an existing private key, and a ``name`` that is not a plain file stem
    (a separator or ``..`` would write the private key outside ``out_dir``).
    """
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}", name) or ".." in name:
        raise ValueError(
            f"key name must be a file stem of letters, digits, '_', '-' and '.' (no '..', at most 100), "
            f"got {name!r}"
        )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    private_path, public_path = out / f"{name}.key", out / f"{name}.pub"
    if private_path.exists():
        raise FileExistsError(f"{private_path} exists; refusing to overwrite a private key")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    public_path.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private_path, public_path
