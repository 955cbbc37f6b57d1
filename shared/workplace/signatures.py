"""Workplace's HMAC conventions: webhook signatures, appsecret_proof and signed_request."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from typing import Any


def verify_webhook(
    body: bytes, secret: str, sha256_header: str | None, sha1_header: str | None
) -> bool:
    """True when `X-Hub-Signature-256` (or, failing that, `X-Hub-Signature`) signs the raw body."""
    for header, algo, prefix in (
        (sha256_header, hashlib.sha256, "sha256="),
        (sha1_header, hashlib.sha1, "sha1="),
    ):
        if header:
            expected = prefix + hmac.new(secret.encode(), body, algo).hexdigest()
            return hmac.compare_digest(header.strip().lower().encode(), expected.encode())
    return False


def appsecret_params(token: str, secret: str, now: int) -> dict[str, str]:
    """`appsecret_proof` and `appsecret_time` for one Graph call made with an install token."""
    proof = hmac.new(secret.encode(), f"{token}|{now}".encode(), hashlib.sha256).hexdigest()
    return {"appsecret_proof": proof, "appsecret_time": str(now)}


class InvalidSignedRequest(ValueError):
    """A `signed_request` that is malformed or not signed with the app secret."""


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def parse_signed_request(signed_request: str, secret: str) -> dict[str, Any]:
    """The verified payload of an uninstall `signed_request` (workplace-api.md §5).

    The signature is HMAC-SHA256 over the encoded payload; Meta's apps compare it with the hex
    digest, Facebook's classic parser with the raw digest: both are accepted.
    """
    sig_b64, sep, payload_b64 = signed_request.strip().partition(".")
    if not sep or not sig_b64 or not payload_b64:
        raise InvalidSignedRequest("signed_request must be <signature>.<payload>")
    try:
        sig = _b64url_decode(sig_b64)
        payload_raw = _b64url_decode(payload_b64)
    except (ValueError, binascii.Error):
        raise InvalidSignedRequest("signed_request is not base64url") from None
    mac = hmac.new(secret.encode(), payload_b64.encode("ascii", "replace"), hashlib.sha256)
    hex_ok = hmac.compare_digest(sig, mac.hexdigest().encode())
    raw_ok = hmac.compare_digest(sig, mac.digest())
    if not (hex_ok or raw_ok):
        raise InvalidSignedRequest("signed_request is not signed with the app secret")
    try:
        payload = json.loads(payload_raw)
    except (ValueError, RecursionError):
        raise InvalidSignedRequest("signed_request payload is not JSON") from None
    if not isinstance(payload, dict):
        raise InvalidSignedRequest("signed_request payload is not a JSON object")
    algorithm = payload.get("algorithm")
    if algorithm is not None and str(algorithm).upper() != "HMAC-SHA256":
        raise InvalidSignedRequest(f"signed_request algorithm {algorithm!r} is not HMAC-SHA256")
    return payload
