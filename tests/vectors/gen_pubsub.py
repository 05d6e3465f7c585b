#!/usr/bin/env python3
"""Writes tests/vectors/pubsub.json: Google Cloud Pub/Sub push requests with OIDC tokens as
Google makes them (RS256, `kid` in the header; iss, aud, email, email_verified, iat, exp), a
JWKS holding the key, and what the gateway must say of each. Google's own tokens are signed
with Google's keys, which no test can hold, so the key here is the test RSA key
(tests/fixtures/test-rsa-signing-key.pem) and the JWKS is served by the tests' key host.

Written from Google's documentation of push authentication
(https://cloud.google.com/pubsub/docs/authenticate-push-subscriptions) and RFC 7515/7517/7519,
with the `cryptography` package only. Run from the repository root:
python3 tests/vectors/gen_pubsub.py
"""
import base64
import hashlib
import hmac
import json
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

ROOT = Path(__file__).resolve().parents[2]
KEY = serialization.load_pem_private_key(
    (ROOT / "tests/fixtures/test-rsa-signing-key.pem").read_bytes(), password=None
)
OTHER = rsa.generate_private_key(public_exponent=65537, key_size=2048)
NOW = 1_800_000_000
AUD = "https://hooks.example.com/webhooks/pubsub"
EMAIL = "push-sa@example-project.iam.gserviceaccount.com"
KID = "test-kid-1"


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def uint(n: int) -> str:
    return b64u(n.to_bytes((n.bit_length() + 7) // 8, "big"))


def jwk(key, kid):
    pub = key.public_key().public_numbers()
    return {"kty": "RSA", "alg": "RS256", "use": "sig", "kid": kid, "n": uint(pub.n), "e": uint(pub.e)}


def token(claims, header=None, key=KEY, alg="RS256"):
    header = {"alg": alg, "kid": KID, "typ": "JWT", **(header or {})}
    signing_input = b64u(json.dumps(header, separators=(",", ":")).encode()) + "." + b64u(
        json.dumps(claims, separators=(",", ":")).encode()
    )
    if alg == "RS256":
        sig = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    elif alg == "HS256":
        # Signed with the RSA public key's PEM as an HMAC secret: the classic confusion.
        pem = KEY.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        sig = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
    else:
        sig = b""
    return signing_input + "." + b64u(sig)


def claims(**over):
    c = {
        "iss": "https://accounts.google.com",
        "aud": AUD,
        "azp": "1234567890",
        "email": EMAIL,
        "email_verified": True,
        "iat": NOW - 60,
        "exp": NOW + 3540,
        "sub": "1234567890",
    }
    c.update(over)
    return {k: v for k, v in c.items() if v is not None}


BODY = json.dumps(
    {
        "message": {
            "attributes": {"kind": "order"},
            "data": base64.b64encode(b'{"order":42}').decode(),
            "messageId": "2070443601311540",
            "publishTime": "2027-01-15T08:00:00.000Z",
        },
        "subscription": "projects/example-project/subscriptions/orders-push",
    },
    separators=(",", ":"),
)

CASES = [
    ("genuine", "accept", token(claims())),
    ("jku_and_x5u_are_never_followed", "accept",
     token(claims(), {"jku": "https://keys.internal.example/evil.json", "x5u": "https://keys.internal.example/x"})),
    ("another_audience", "refuse", token(claims(aud="https://other.example.com/push"))),
    ("another_service_account", "refuse", token(claims(email="attacker@evil-project.iam.gserviceaccount.com"))),
    ("email_not_verified", "refuse", token(claims(email_verified=False))),
    ("another_issuer", "refuse", token(claims(iss="https://evil.example.com"))),
    ("expired", "refuse", token(claims(iat=NOW - 7200, exp=NOW - 3600))),
    ("no_expiry", "refuse", token(claims(exp=None))),
    ("signed_by_another_key_under_the_kid", "refuse", token(claims(), key=OTHER)),
    ("hs256_with_the_public_key_as_secret", "refuse", token(claims(), alg="HS256")),
    ("alg_none", "refuse", token(claims(), alg="none")),
    ("a_kid_the_issuer_does_not_have", "refuse", token(claims(), {"kid": "forged-kid"})),
]

out = {
    "about": "Google Cloud Pub/Sub push requests with OIDC tokens as Google makes them, signed "
    "with the test RSA key instead of Google's; the JWKS the tests' key host serves for "
    "www.googleapis.com; what the gateway must say of each request at now_unix.",
    "generator": "tests/vectors/gen_pubsub.py",
    "jwks": {"keys": [jwk(OTHER, "unrelated-kid"), jwk(KEY, KID)]},
    "audience": AUD,
    "email": EMAIL,
    "cases": [
        {
            "preset": "google-pubsub",
            "source": "computed",
            "name": name,
            "expect": expect,
            "now_unix": NOW,
            "headers": {"authorization": f"Bearer {tok}", "content-type": "application/json"},
            "body": BODY,
        }
        for name, expect, tok in CASES
    ],
}
(ROOT / "tests/vectors/pubsub.json").write_text(json.dumps(out, indent=2) + "\n")
print(f"wrote {len(CASES)} cases")
