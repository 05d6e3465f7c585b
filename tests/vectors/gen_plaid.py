#!/usr/bin/env python3
"""Writes tests/vectors/plaid.json: Plaid webhooks as Plaid signs them (its docs' webhook
verification: an ES256 JWT in `Plaid-Verification`, `kid` in its header, claims `iat` and
`request_body_sha256`, the hex SHA-256 of the body), the answer of Plaid's
`/webhook_verification_key/get` for the key (a JWK, `expired_at` null), and what the gateway
must say of each request at `now_unix`. The key is generated here (Plaid's private keys are
Plaid's). Run from the repository root: python3 tests/vectors/gen_plaid.py
"""
import base64
import hashlib
import json
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

ROOT = Path(__file__).resolve().parents[2]
KEY = ec.generate_private_key(ec.SECP256R1())
OTHER = ec.generate_private_key(ec.SECP256R1())
KID = "bfbd5111-8e33-4643-8ced-b2e642a72f3c"
NOW = 1_800_000_000


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwk(key, kid, expired_at=None):
    pub = key.public_key().public_numbers()
    return {
        "alg": "ES256", "created_at": NOW - 86400, "crv": "P-256", "expired_at": expired_at,
        "kid": kid, "kty": "EC", "use": "sig",
        "x": b64u(pub.x.to_bytes(32, "big")), "y": b64u(pub.y.to_bytes(32, "big")),
    }


def token(body: str, iat=NOW - 10, kid=KID, key=KEY, alg="ES256", digest=None):
    header = {"alg": alg, "kid": kid, "typ": "JWT"}
    claims = {"iat": iat, "request_body_sha256": digest or hashlib.sha256(body.encode()).hexdigest()}
    signing_input = (
        b64u(json.dumps(header, separators=(",", ":")).encode())
        + "."
        + b64u(json.dumps(claims, separators=(",", ":")).encode())
    )
    der = key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
    r, s = decode_dss_signature(der)
    return signing_input + "." + b64u(r.to_bytes(32, "big") + s.to_bytes(32, "big"))


BODY = json.dumps(
    {
        "environment": "production",
        "error": None,
        "item_id": "wz666MBjYWTp2PDzzggYhM6oWWmBb",
        "new_transactions": 3,
        "webhook_code": "DEFAULT_UPDATE",
        "webhook_type": "TRANSACTIONS",
    },
    indent=2,
)
OTHER_BODY = BODY.replace('"new_transactions": 3', '"new_transactions": 300')

CASES = [
    ("genuine", "accept", BODY, token(BODY)),
    ("another_body", "refuse", OTHER_BODY, token(BODY)),
    ("iat_too_old", "refuse", BODY, token(BODY, iat=NOW - 600)),
    ("signed_by_another_key_under_the_kid", "refuse", BODY, token(BODY, key=OTHER)),
    ("a_kid_plaid_does_not_have", "refuse", BODY, token(BODY, kid="forged-kid")),
]

out = {
    "about": "Plaid webhooks signed as Plaid signs them, with a key generated here; the key "
    "API's answer for it; what the gateway must say of each request at now_unix.",
    "generator": "tests/vectors/gen_plaid.py",
    "key_answer": {"key": jwk(KEY, KID), "request_id": "Ax3f1D3qqRBhPzv"},
    "expired_key_answer": {"key": jwk(KEY, KID, expired_at=NOW - 60), "request_id": "Bk7"},
    "cases": [
        {
            "preset": "plaid",
            "source": "computed",
            "name": name,
            "expect": expect,
            "now_unix": NOW,
            "headers": {"plaid-verification": tok, "content-type": "application/json"},
            "body": body,
        }
        for name, expect, body, tok in CASES
    ],
}
(ROOT / "tests/vectors/plaid.json").write_text(json.dumps(out, indent=2) + "\n")
print(f"wrote {len(CASES)} cases")
