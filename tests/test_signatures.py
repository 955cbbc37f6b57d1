import hashlib
import hmac

from shared.workplace.signatures import appsecret_params, verify_webhook

SECRET = "s3cret"
BODY = b'{"object":"workplace_security","entry":[]}'


def sig(algo: str) -> str:
    digest = hmac.new(SECRET.encode(), BODY, getattr(hashlib, algo)).hexdigest()
    return f"{algo}={digest}"


def test_sha256_signature_verifies_and_sha1_is_the_fallback() -> None:
    assert verify_webhook(BODY, SECRET, sig("sha256"), None)
    assert verify_webhook(BODY, SECRET, None, sig("sha1"))


def test_wrong_missing_or_tampered_signatures_fail() -> None:
    assert not verify_webhook(BODY, SECRET, None, None)
    assert not verify_webhook(BODY, "other", sig("sha256"), None)
    assert not verify_webhook(BODY + b" ", SECRET, sig("sha256"), sig("sha1"))
    # A wrong sha256 is not rescued by a correct sha1.
    assert not verify_webhook(BODY, SECRET, "sha256=00", sig("sha1"))


def test_appsecret_proof_is_hmac_of_token_and_time() -> None:
    params = appsecret_params("tok", SECRET, 1700000000)
    expected = hmac.new(SECRET.encode(), b"tok|1700000000", hashlib.sha256).hexdigest()
    assert params == {"appsecret_proof": expected, "appsecret_time": "1700000000"}
