"""Compact JWS signing (ES256 and RS256) for provider and VAPID tokens, with ``cryptography``.

Guarantees: only the claims the caller passes are signed (no payload data ever goes into a
token); private keys are loaded from PEM and never logged or serialised back out.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature


def b64url(data: bytes) -> str:
    """Base64url without padding (RFC 7515 section 2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Inverse of :func:`b64url`; accepts padded or unpadded input."""
    raw = text.strip().encode("ascii")
    return base64.urlsafe_b64decode(raw + b"=" * (-len(raw) % 4))


def _segment(obj: Mapping[str, object]) -> str:
    return b64url(json.dumps(obj, separators=(",", ":"), sort_keys=True).encode())


def sign_es256(
    key: ec.EllipticCurvePrivateKey,
    claims: Mapping[str, object],
    headers: Mapping[str, str] | None = None,
) -> str:
    """An ES256 JWT: the signature is the raw 64-byte r||s (RFC 7518 section 3.4), not DER."""
    if not isinstance(key.curve, ec.SECP256R1):
        raise ValueError("ES256 needs a P-256 key")
    header = {"alg": "ES256", "typ": "JWT", **(headers or {})}
    signing_input = f"{_segment(header)}.{_segment(claims)}"
    der = key.sign(signing_input.encode("ascii"), ec.ECDSA(hashes.SHA256()))
    r, s = decode_dss_signature(der)
    return f"{signing_input}.{b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def sign_rs256(
    key: rsa.RSAPrivateKey,
    claims: Mapping[str, object],
    headers: Mapping[str, str] | None = None,
) -> str:
    """An RS256 JWT (RSASSA-PKCS1-v1_5 with SHA-256)."""
    header = {"alg": "RS256", "typ": "JWT", **(headers or {})}
    signing_input = f"{_segment(header)}.{_segment(claims)}"
    signature = key.sign(signing_input.encode("ascii"), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{b64url(signature)}"


def load_ec_private_key(pem: bytes) -> ec.EllipticCurvePrivateKey:
    """A P-256 private key from PEM (PKCS#8, as in an APNs ``.p8`` file, or SEC1)."""
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError("expected a P-256 (prime256v1) private key")
    return key


def load_rsa_private_key(pem: bytes) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("expected an RSA private key")
    return key


def read_ec_private_key(path: Path) -> ec.EllipticCurvePrivateKey:
    return load_ec_private_key(path.read_bytes())
