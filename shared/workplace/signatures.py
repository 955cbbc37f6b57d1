"""Workplace's HMAC conventions: webhook signatures and appsecret_proof."""

from __future__ import annotations

import hashlib
import hmac


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
