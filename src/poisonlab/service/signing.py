"""Data signing: registered sources sign their contributions with Ed25519.

The signed message binds the exact image bytes to the label, so neither can be swapped after
signing. It is the UTF-8 encoding of three lines joined by ``\\n`` (no trailing newline)::

    poisonlab-contribution-v1
    <sha256 of the image file's bytes, 64 lowercase hex digits>
    <the label's class name, e.g. "bird" (an index sent as label is resolved to its name first)>

The signature travels base64-encoded (standard alphabet, padded) in the contribution's
``signature`` form field. Keys are PEM files: PKCS#8 private keys, SubjectPublicKeyInfo public keys
(what ``openssl genpkey -algorithm ed25519`` writes too).
Ed25519: Bernstein, Duif, Lange, Schwabe and Yang, "High-speed high-security signatures",
Journal of Cryptographic Engineering 2(2), 2012; RFC 8032.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

MESSAGE_PREFIX = "poisonlab-contribution-v1"


def signed_message(image_sha256: str, label_name: str) -> bytes:
    """The bytes a source signs for one contribution (see the module docstring)."""
    if len(image_sha256) != 64 or any(c not in "0123456789abcdef" for c in image_sha256):
        raise ValueError(f"image_sha256 must be 64 lowercase hex digits, got {image_sha256!r}")
    if "\n" in label_name or not label_name:
        raise ValueError(f"label name must be a non-empty single line, got {label_name!r}")
    return f"{MESSAGE_PREFIX}\n{image_sha256}\n{label_name}".encode()


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


def load_private_key(path: str | os.PathLike[str]) -> Ed25519PrivateKey:
    """Read an unencrypted PEM Ed25519 private key file."""
    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{path} is not an unencrypted PEM private key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path} must hold an Ed25519 private key, got {type(key).__name__}")
    return key


def public_key_fingerprint(key: Ed25519PublicKey) -> str:
    """sha256 hex of the raw 32-byte public key (shown to operators to compare keys)."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def sign_contribution(key: Ed25519PrivateKey, image: bytes, label_name: str) -> str:
    """Base64 signature of ``image`` with ``label_name`` (what a source's uploader sends)."""
    message = signed_message(hashlib.sha256(image).hexdigest(), label_name)
    return base64.b64encode(key.sign(message)).decode("ascii")


def decode_signature(text: str) -> bytes:
    """Base64 text -> 64 signature bytes; ValueError naming the problem otherwise."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("signature is not valid base64") from None
    if len(raw) != 64:
        raise ValueError(f"an Ed25519 signature has 64 bytes, this one has {len(raw)}")
    return raw


def verify_contribution(public_key_pem: str, signature: str, image_sha256: str, label_name: str) -> None:
    """Raise ValueError unless ``signature`` signs (image_sha256, label_name) under the key."""
    key = load_public_key(public_key_pem)
    raw = decode_signature(signature)
    try:
        key.verify(raw, signed_message(image_sha256, label_name))
    except InvalidSignature:
        raise ValueError("signature does not verify: wrong key, or the image or label differ") from None


def generate_keypair(out_dir: str | os.PathLike[str], name: str = "source") -> tuple[Path, Path]:
    """Write ``<name>.key`` (private, mode 0600) and ``<name>.pub`` (public) PEM files.

    Refuses to overwrite an existing private key.
    """
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
