#!/usr/bin/env python3
"""Interop suite: hookgate's presets against the providers' own webhook SDKs.

Run through tests/interop/run.sh (which installs the pinned SDKs first), from the repo root:

    bash tests/interop/run.sh

For each preset whose provider publishes an SDK (or the spec's reference library) that signs
or verifies webhooks, it checks, against a real `hookgate run` and a recording upstream:

  sdk-signs       the SDK (or, where the SDK only verifies, its own HMAC helper, the reference
                  library the provider follows, or Node's crypto or Python's hmac as the
                  provider documents it, which the SDK's verifier must accept first) signs a
                  body; the request, sent as the provider sends it, goes through the gateway:
                  2xx, and the upstream received exactly that body;
  sdk-verifies    where the SDK only verifies: the request signed as the provider documents it
                  (with the suite's own crypto, not the SDK); the SDK's verifier accepts it, and
                  the gateway delivers it: 2xx, and the upstream received exactly that body;
  hookgate-signs  `hookgate sign` signs a body for the route; the SDK's verifier accepts it;
  tampered        one byte of a validly signed body changed: 401 from the gateway, and the
                  upstream received nothing (where no sdk-signs check delivered that request
                  first, the untampered copy is sent first and must be delivered);
  retry           the provider's retry of a delivered event (same event id, signed anew where
                  the scheme has a timestamp): every route has `replay: {}`, so it must be
                  answered 200 `x-hookgate-duplicate: true` and not forwarded (and every
                  delivery above shows the provider's request carries the preset's replay key);
  keygen          `hookgate keygen --preset P`: its PEM private key signs (Node's crypto, as a
                  test sender would) and the SDK verifies with the public key it printed;
  handshake       a sender's endpoint check (eBay's GET ?challenge_code=): the gateway answers
                  it, forwards nothing, and its answer is the one the SDK computes.

Senders whose keys live on the network (aws-sns, google-pubsub, ebay) publish them on an HTTPS
key host the suite runs on loopback, with a certificate from a test CA it makes for the run;
the gateway reaches it under the senders' own host names (`key_fetch: connect_to`), google-auth
the same way (google_auth_request), sns-validator at a localhost URL (case_aws_sns); eBay's
SDK is handed the key API's answer for the kid (case_ebay). `hookgate sign` cannot play these
senders: it holds no key of theirs.

Python SDKs run in-process; npm SDKs through tests/interop/sdk.mjs (JSON on stdin/stdout).
Prints `ok|FAIL  provider  direction  detail` per check and `N of M checks agree`; exits 1 on
any FAIL. A failing check is a finding about hookgate or the suite: none is worked around.
"""

import argparse
import base64
import hashlib
import hmac
import http.client
import http.server
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
from datetime import datetime, timedelta, timezone

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HERE = os.path.dirname(os.path.abspath(__file__))
PUBLIC_URL = "https://hooks.example.com"

# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------

RESULTS = []


def report(ok, provider, direction, detail):
    RESULTS.append((ok, provider, direction, detail))
    line = f"{'ok  ' if ok else 'FAIL'}  {provider:<22} {direction:<15} {detail}"
    print(line, flush=True)


def run_check(provider, direction, fn):
    """Runs fn() -> (ok, detail); an exception is a FAIL with its message."""
    try:
        ok, detail = fn()
    except Exception as e:  # noqa: BLE001 - any error is the check's failure
        ok, detail = False, f"error: {type(e).__name__}: {e}"
    report(ok, provider, direction, detail)
    return ok


def short(text, n=160):
    text = text.replace("\n", "\\n")
    return text if len(text) <= n else text[: n - 3] + "..."


# --------------------------------------------------------------------------------------------
# The recording upstream (the "app" behind the gateway)
# --------------------------------------------------------------------------------------------


class Recorder:
    def __init__(self):
        self.lock = threading.Lock()
        self.requests = []

    def take(self):
        with self.lock:
            got, self.requests = self.requests, []
            return got


def start_upstream(recorder):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_any(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            with recorder.lock:
                recorder.requests.append(
                    {"method": self.command, "path": self.path, "headers": dict(self.headers.items()), "body": body}
                )
            answer = b"ok\n"
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        do_POST = do_GET = do_PUT = do_any

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


# --------------------------------------------------------------------------------------------
# The gateway
# --------------------------------------------------------------------------------------------


class Gateway:
    def __init__(self, binary, config, env, log_path):
        self.binary, self.config, self.env = binary, config, env
        self.log_path = log_path
        self.addr = None
        self.proc = None

    def start(self, timeout=20):
        env = dict(self.env, HOOKGATE_LOG="info")
        self.proc = subprocess.Popen(
            [self.binary, "run", "-c", self.config],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        ready = threading.Event()
        log = open(self.log_path, "wb")

        def pump():
            for raw in self.proc.stderr:
                log.write(raw)
                log.flush()
                line = raw.decode("utf-8", "replace")
                m = re.search(r"\blistening addr=(\S+)", line)
                if m and "admin listening" not in line and self.addr is None:
                    self.addr = m.group(1)
                if "hookgate ready" in line:
                    ready.set()
            log.close()
            ready.set()

        threading.Thread(target=pump, daemon=True).start()
        if not ready.wait(timeout) or self.addr is None:
            self.stop()
            raise RuntimeError(f"hookgate did not start; see {self.log_path}")
        host, port = self.addr.rsplit(":", 1)
        self.host, self.port = host, int(port)

    def stop(self):
        # By PID: the process this driver started, nothing else.
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def send(self, path, body, headers, method="POST"):
        conn = http.client.HTTPConnection(self.host, self.port, timeout=15)
        try:
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            return resp.status, resp.read().decode("utf-8", "replace"), dict(resp.getheaders())
        finally:
            conn.close()


# --------------------------------------------------------------------------------------------
# Helpers: hookgate sign, node, delivery checks
# --------------------------------------------------------------------------------------------


class Ctx:
    pass


def hookgate_sign(ctx, route, body, headers=(), path=None, private_key=None, out_body=None):
    """`hookgate sign`: returns {lower-case name: value} of the header lines it prints (and,
    with `out_body`, writes the body to send there: a signature that goes in the body)."""
    body_file = os.path.join(ctx.work, f"body-{route}-{uuid.uuid4().hex[:8]}")
    with open(body_file, "wb") as f:
        f.write(body)
    cmd = [ctx.hookgate, "sign", "-c", ctx.config, "--route", route, "--body", body_file]
    for h in headers:
        cmd += ["--header", h]
    if path:
        cmd += ["--path", path]
    if private_key:
        cmd += ["--private-key", private_key]
    if out_body:
        cmd += ["--out-body", out_body]
    out = subprocess.run(cmd, env=ctx.env, capture_output=True, timeout=30)
    if out.returncode != 0:
        raise RuntimeError(f"hookgate sign exited {out.returncode}: {out.stderr.decode().strip()}")
    printed = {}
    for line in out.stdout.decode().splitlines():
        if line.strip():
            name, _, value = line.partition(": ")
            printed[name.strip().lower()] = value
    return printed


def node(ctx, request, env=None):
    """sdk.mjs on `request` (or a list of them); `env` adds to the environment Node runs in."""
    out = subprocess.run(
        ["node", ctx.sdk_mjs],
        input=json.dumps(request).encode(),
        capture_output=True,
        timeout=60,
        cwd=ctx.node_dir,
        env=dict(os.environ, **env) if env else None,
    )
    if out.returncode != 0:
        raise RuntimeError(f"node sdk.mjs exited {out.returncode}: {out.stderr.decode()[-800:]}")
    answer = json.loads(out.stdout)
    for a in answer if isinstance(answer, list) else [answer]:
        if "error" in a:
            raise RuntimeError(f"sdk.mjs: {a['error']}")  # (a['stack'] has the trace)
    return answer


def delivered(ctx, path, body, headers, method="POST", want_headers=None):
    """Sends a signed request; ok when the gateway answered 2xx and the upstream got `body`
    (and, if given, each of `want_headers` as it was sent)."""
    ctx.recorder.take()
    status, text, _ = ctx.gw.send(path, body, headers, method)
    got = ctx.recorder.take()
    if not 200 <= status < 300:
        return False, f"gateway answered {status} {short(text.strip())!r}"
    if len(got) != 1:
        return False, f"gateway answered {status} but the upstream received {len(got)} requests"
    if got[0]["body"] != body:
        return False, f"upstream body differs: {short(repr(got[0]['body']))}"
    if got[0]["path"] != path:
        return False, f"upstream path {got[0]['path']!r} != {path!r}"
    up = CaseInsensitive(got[0]["headers"])
    for name, value in (want_headers or {}).items():
        if up.get(name) != value:
            return False, f"upstream header {name}: {up.get(name)!r} != {value!r}"
    also = f" and the {len(want_headers)} headers sent" if want_headers else ""
    return True, f"{status}, upstream received the exact {len(body)}-byte body{also}"


def refused(ctx, path, body, headers, method="POST", control=None):
    """Sends a tampered request; ok when the gateway answered 401 and forwarded nothing.

    With `control` (the untampered body), that is sent first and must be delivered, so the 401
    is the tampering's doing (for presets whose SDK only verifies: no sdk-signs check did it).
    """
    prefix = ""
    if control is not None:
        ok, detail = delivered(ctx, path, control, headers, method)
        if not ok:
            return False, f"the untampered copy was not delivered: {detail}"
        prefix = "untampered 2xx; tampered: "
    ctx.recorder.take()
    status, text, _ = ctx.gw.send(path, body, headers, method)
    got = ctx.recorder.take()
    if got:
        return False, f"gateway answered {status} and FORWARDED the tampered body"
    if status != 401:
        return False, f"gateway answered {status} {short(text.strip())!r} (expected 401)"
    return True, f"{prefix}401 {text.strip()!r}, nothing forwarded"


def duplicate(ctx, path, body, headers, method="POST"):
    """Sends a retry of a delivered event; ok when the gateway answered it as a duplicate (200,
    x-hookgate-duplicate: true) and forwarded nothing: the preset's replay key is where the
    provider puts its event id."""
    ctx.recorder.take()
    status, text, answer_headers = ctx.gw.send(path, body, headers, method)
    got = ctx.recorder.take()
    dup = {k.lower(): v for k, v in answer_headers.items()}.get("x-hookgate-duplicate")
    if got:
        return False, f"gateway answered {status} and forwarded the retry again"
    if status != 200 or dup != "true":
        return False, f"gateway answered {status} {short(text.strip())!r}, x-hookgate-duplicate={dup}"
    return True, "200 x-hookgate-duplicate: true, not forwarded again"


def tamper(body):
    """Changes one byte of the body: the first 'e' inside the text becomes 'E'."""
    i = body.index(b"e", len(body) // 3)
    return body[:i] + b"E" + body[i + 1 :]


def hmac_hex(key, body):
    """Hex HMAC-SHA256 of the body under a text key (as a provider's docs say to compute it)."""
    return hmac.new(key.encode(), body, hashlib.sha256).hexdigest()


def hmac_b64(key, body):
    """Base64 HMAC-SHA256 of the body under a text key."""
    return base64.b64encode(hmac.new(key.encode(), body, hashlib.sha256).digest()).decode()


def now_s():
    return int(time.time())


def pretty(obj):
    # As Stripe and others send it: indented, with UTF-8 left unescaped.
    return json.dumps(obj, indent=2, ensure_ascii=False).encode() + b"\n"


def compact(obj):
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


class CaseInsensitive(dict):
    """Header lookup the way web frameworks offer it (Flask/Django/Starlette)."""

    def __init__(self, items):
        super().__init__((k.lower(), v) for k, v in dict(items).items())

    def get(self, key, default=None):
        return super().get(key.lower(), default)

    def __getitem__(self, key):
        return super().__getitem__(key.lower())

    def __contains__(self, key):
        return super().__contains__(key.lower())


# --------------------------------------------------------------------------------------------
# The key host: senders whose keys live on the network (docs/network-keys.md)
# --------------------------------------------------------------------------------------------

# The senders' key hosts, served by one HTTPS server on loopback: the gateway reaches it under
# these names through `key_fetch.connect_to` and checks its TLS certificate for them against
# the suite's test CA (`key_fetch.ca_file`), as it checks the real hosts against the system's
# roots. `localhost` is for the SDKs that take a key URL as given (sns-validator).
SNS_HOST = "sns.eu-west-1.amazonaws.com"
GOOGLE_HOST = "www.googleapis.com"
EBAY_HOST = "api.ebay.com"
KEY_HOST_NAMES = (SNS_HOST, GOOGLE_HOST, EBAY_HOST, "localhost")
# eBay's OAuth token endpoint and public key API, both on EBAY_HOST.
EBAY_TOKEN_PATH = "/identity/v1/oauth2/token"
EBAY_KEY_PATH = "/commerce/notification/v1/public_key/"
# The test RSA key the test CA's signing certificates are issued for (test-only).
SIGNING_KEY_FILE = os.path.join(ROOT, "tests/fixtures/test-rsa-signing-key.pem")


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class KeyHostPki:
    """A test CA (made for this run), the key host's TLS certificate from it, and what the key
    host publishes for the test RSA key: SNS's signing certificate (issued to
    sns.amazonaws.com), and Google's key set in both of its forms (the JWKS at
    /oauth2/v3/certs, which the gateway reads, and the `{kid: PEM certificate}` map at
    /oauth2/v1/certs, which google-auth's verify_oauth2_token reads), beside a second key of
    another kid, as Google publishes two or three at a time. And an eBay P-256 key of its
    own (eBay signs with ECDSA), with what eBay's public key API answers for its kid."""

    def __init__(self, work):
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec, rsa
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        now = datetime.now(timezone.utc)

        def name(cn):
            return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

        def pem(obj):
            if isinstance(obj, x509.Certificate):
                return obj.public_bytes(serialization.Encoding.PEM)
            return obj.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())

        def write(file, data):
            path = os.path.join(work, file)
            with open(path, "wb") as f:
                f.write(data)
            return path

        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca = (
            x509.CertificateBuilder()
            .subject_name(name("hookgate interop test CA"))
            .issuer_name(name("hookgate interop test CA"))
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256())
        )

        def issue(public_key, names, server):
            b = (
                x509.CertificateBuilder()
                .subject_name(name(names[0]))
                .issuer_name(ca.subject)
                .public_key(public_key)
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - timedelta(days=1))
                .not_valid_after(now + timedelta(days=30))
                .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            )
            if server:
                b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            return b.sign(ca_key, hashes.SHA256())

        self.ca_file = write("keyhost-ca.pem", pem(ca))
        host_key = ec.generate_private_key(ec.SECP256R1())
        self.host_cert_file = write("keyhost.pem", pem(issue(host_key.public_key(), list(KEY_HOST_NAMES), server=True)))
        self.host_key_file = write("keyhost.key", pem(host_key))

        with open(SIGNING_KEY_FILE, "rb") as f:
            self.signing_key_pem = f.read()
        self.signing_key = serialization.load_pem_private_key(self.signing_key_pem, None)
        # SNS: the certificate at SigningCertURL, issued to sns.amazonaws.com.
        self.sns_cert_path = f"/SimpleNotificationService-{secrets.token_hex(16)}.pem"
        self.sns_cert = pem(issue(self.signing_key.public_key(), ["sns.amazonaws.com"], server=False))

        # Google: the test key and another, each under a kid (40 hex digits, as Google's are).
        other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwks, v1 = [], {}
        for key in (self.signing_key, other):
            der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
            kid = hashlib.sha1(der).hexdigest()
            numbers = key.public_key().public_numbers()
            jwks.append(
                {
                    "kty": "RSA",
                    "alg": "RS256",
                    "use": "sig",
                    "kid": kid,
                    "n": b64url(numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")),
                    "e": b64url(numbers.e.to_bytes((numbers.e.bit_length() + 7) // 8, "big")),
                }
            )
            v1[kid] = pem(issue(key.public_key(), ["interop-" + kid[:8] + ".googleusercontent.com"], server=False)).decode()
        self.kid = jwks[0]["kid"]
        self.other_kid = jwks[1]["kid"]
        self.jwks = compact({"keys": jwks[::-1]})  # the test key second: its kid picks it
        self.v1_certs = json.dumps(v1, indent=2).encode()

        # eBay: the key under a kid (a UUID, as eBay's are), and its public key API's answer
        # for that kid, the PEM on one line as eBay writes it.
        self.ebay_key = ec.generate_private_key(ec.SECP256R1())
        self.ebay_kid = str(uuid.uuid4())
        spki = self.ebay_key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        one_line = f"-----BEGIN PUBLIC KEY-----{base64.b64encode(spki).decode()}-----END PUBLIC KEY-----"
        self.ebay_key_answer = {"key": one_line, "algorithm": "ECDSA", "digest": "SHA1"}

    def rsa_sign(self, message, sha1=False):
        """RSA PKCS#1 v1.5 with the test key: SHA-256 (SHA-1 for SNS's version 1)."""
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        return self.signing_key.sign(message, padding.PKCS1v15(), hashes.SHA1() if sha1 else hashes.SHA256())

    def ebay_sign(self, message):
        """ECDSA P-256 with SHA-1 with the eBay key, DER, base64 (as X-EBAY-SIGNATURE carries it)."""
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec

        return base64.b64encode(self.ebay_key.sign(message, ec.ECDSA(hashes.SHA1()))).decode()


class KeyHost:
    """The HTTPS key host on 127.0.0.1: a document per path (whatever host name was asked
    for), and a count of the gateway's requests for each path (its `User-Agent: hookgate`).
    eBay's paths answer only as eBay's do: its token endpoint gives an application token for
    one keyset (`ebay_keyset`: client id and secret, HTTP Basic, the client credentials grant
    with eBay's scope), and its key API the key only to a request bearing that token."""

    def __init__(self, pki, ebay_keyset):
        import ssl

        json_type = "application/json; charset=UTF-8"
        self.docs = {
            pki.sns_cert_path: ("application/x-x509-ca-cert", "max-age=600", pki.sns_cert),
            "/oauth2/v3/certs": (json_type, "public, max-age=3600", pki.jwks),
            "/oauth2/v1/certs": (json_type, "public, max-age=3600", pki.v1_certs),
            EBAY_KEY_PATH + pki.ebay_kid: ("application/json", "max-age=3600", compact(pki.ebay_key_answer)),
        }
        # eBay's application tokens are long opaque strings starting with v^1.1#; 2 hours.
        self.ebay_token = "v^1.1#i^1#p^1#r^0#I^3#f^0#t^" + secrets.token_urlsafe(48)
        # Paths answered only with `Authorization: Bearer <token>` (any case, as eBay's SDK
        # sends `bearer `), else eBay's 401.
        self.bearer = {EBAY_KEY_PATH + pki.ebay_kid: self.ebay_token}
        client_id, client_secret = ebay_keyset
        self.token_grants = {
            EBAY_TOKEN_PATH: (
                "Basic " + base64.b64encode(f"{client_id}:{client_secret}".encode()).decode(),
                {"grant_type": ["client_credentials"], "scope": ["https://api.ebay.com/oauth/api_scope"]},
                compact({"access_token": self.ebay_token, "expires_in": 7200, "token_type": "Application Access Token"}),
            )
        }
        self.fetches = {}
        self.lock = threading.Lock()
        server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server_tls.load_cert_chain(pki.host_cert_file, pki.host_key_file)
        # How the suite's own clients reach it (google-auth's transport below).
        self.client_tls = ssl.create_default_context(cafile=pki.ca_file)
        host = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self):
                self.request.do_handshake()  # in this handler's thread, not the accept loop
                super().setup()

            def count(self):
                if self.headers.get("User-Agent") == "hookgate":
                    with host.lock:
                        host.fetches[self.path] = host.fetches.get(self.path, 0) + 1

            def answer(self, status, ctype, cache, body):
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Cache-Control", cache)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                self.count()
                doc = host.docs.get(self.path)
                token = host.bearer.get(self.path)
                scheme, _, given = (self.headers.get("Authorization") or "").partition(" ")
                if token and (scheme.lower() != "bearer" or given != token):
                    # eBay's answer to a missing or wrong application token.
                    error = {"errorId": 1001, "domain": "OAuth", "category": "REQUEST", "message": "Invalid access token"}
                    self.answer(401, "application/json", "no-store", compact({"errors": [error]}))
                    return
                if doc:
                    self.answer(200, *doc)
                else:
                    self.answer(404, "text/plain", "no-store", b"not found\n")

            def do_POST(self):
                self.count()
                length = int(self.headers.get("Content-Length") or 0)
                form = urllib.parse.parse_qs(self.rfile.read(length).decode("utf-8", "replace")) if length else {}
                grant = host.token_grants.get(self.path)
                if not grant:
                    self.answer(404, "text/plain", "no-store", b"not found\n")
                elif self.headers.get("Authorization") != grant[0]:
                    self.answer(401, "application/json", "no-store", b'{"error":"invalid_client","error_description":"client authentication failed"}')
                elif form != grant[1]:
                    self.answer(400, "application/json", "no-store", compact({"error": "invalid_request", "error_description": f"form {form}"}))
                else:
                    self.answer(200, "application/json", "no-store", grant[2])

            def log_message(self, *args):
                pass

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def get_request(self):
                sock, addr = self.socket.accept()
                return server_tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr

            def handle_error(self, request, client_address):
                pass  # a client that gave up (the gateway's or Node's own TLS errors say why)

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def gateway_fetched(self, path, what):
        """How often the gateway has fetched `path` (`what` it is), said for a check's detail."""
        with self.lock:
            n = self.fetches.get(path, 0)
        return f"the gateway has fetched {what} {n} time{'s' if n != 1 else ''}"

    def connect_to(self):
        """`key_fetch.connect_to` for the gateway: every sender host name to this server."""
        return {h: f"127.0.0.1:{self.port}" for h in KEY_HOST_NAMES if h != "localhost"}


def google_auth_request(keyhost):
    """A google.auth.transport.Request that fetches a key URL as the gateway does with
    `key_fetch.connect_to`: by its own URL and host name (TLS checked for that name against
    the test CA), connected to the loopback key host. So google-auth's verifiers run as Google
    documents them, on Google's own certificate URLs (https://www.googleapis.com/oauth2/...)."""
    import socket

    import google.auth.exceptions
    import google.auth.transport

    class Connection(http.client.HTTPSConnection):
        def connect(self):
            sock = socket.create_connection(("127.0.0.1", keyhost.port), self.timeout)
            self.sock = self._context.wrap_socket(sock, server_hostname=self.host)

    class Response(google.auth.transport.Response):
        def __init__(self, status, headers, data):
            self._status, self._headers, self._data = status, headers, data

        @property
        def status(self):
            return self._status

        @property
        def headers(self):
            return self._headers

        @property
        def data(self):
            return self._data

    class Request(google.auth.transport.Request):
        def __call__(self, url, method="GET", body=None, headers=None, timeout=None, **kwargs):
            u = urllib.parse.urlsplit(url)
            if u.scheme != "https" or u.hostname not in KEY_HOST_NAMES or u.port not in (None, 443):
                raise google.auth.exceptions.TransportError(f"the suite's key host does not serve {url}")
            conn = Connection(u.hostname, 443, timeout=timeout or 10, context=keyhost.client_tls)
            try:
                conn.request(method, u.path + (f"?{u.query}" if u.query else ""), body=body, headers=headers or {})
                resp = conn.getresponse()
                return Response(resp.status, dict(resp.getheaders()), resp.read())
            except OSError as e:
                raise google.auth.exceptions.TransportError(e) from e
            finally:
                conn.close()

    return Request()


# --------------------------------------------------------------------------------------------
# Cases, one function per provider
# --------------------------------------------------------------------------------------------


def case_stripe(ctx):
    import stripe

    secret = ctx.secrets["stripe"]
    path = "/webhooks/stripe"

    def event():
        return pretty(
            {
                "id": "evt_" + secrets.token_hex(12),
                "object": "event",
                "api_version": "2024-06-20",
                "created": now_s(),
                "data": {
                    "object": {
                        "id": "pi_3MtwBwLkdIwHu7ix28a3tqPa",
                        "object": "payment_intent",
                        "amount": 2000,
                        "currency": "eur",
                        "description": "Café au lait ☕ for Zoë",
                    }
                },
                "livemode": False,
                "pending_webhooks": 1,
                "type": "payment_intent.succeeded",
            }
        )

    body = event()
    header = stripe.WebhookSignature.generate_signature_header(body.decode(), secret)
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
        "Stripe-Signature": header,
    }
    run_check("stripe", "sdk-signs", lambda: delivered(ctx, path, body, headers))
    run_check("stripe", "tampered", lambda: refused(ctx, path, tamper(body), headers))
    # Stripe's retry: the same event (same `id`), signed anew with a later timestamp.
    resigned = dict(headers, **{"Stripe-Signature": stripe.WebhookSignature.generate_signature_header(body.decode(), secret, now_s() + 1)})
    run_check("stripe", "retry", lambda: duplicate(ctx, path, body, resigned))
    # As Stripe sends it while a secret is being rolled (a second v1 under the old secret)
    # and in test mode (a v0 entry): the SDK's header for another event, with those entries.
    body2 = event()
    header2 = stripe.WebhookSignature.generate_signature_header(body2.decode(), secret)
    t = header2.split(",")[0][2:]
    old_secret_sig = stripe.WebhookSignature._compute_signature(f"{t}.{body2.decode()}", "whsec_" + secrets.token_hex(16))
    rolled = dict(headers, **{"Stripe-Signature": f"t={t},v1={old_secret_sig},{header2.split(',')[1]},v0={secrets.token_hex(32)}"})
    run_check("stripe(v1,v1,v0)", "sdk-signs", lambda: delivered(ctx, path, body2, rolled))

    def b():
        printed = hookgate_sign(ctx, "stripe", body)
        event = stripe.Webhook.construct_event(body, printed["stripe-signature"], secret)
        return True, f"stripe.Webhook.construct_event() accepted {printed['stripe-signature'][:24]}... ({event['type']})"

    run_check("stripe", "hookgate-signs", b)


def case_slack(ctx):
    from slack_sdk.signature import SignatureVerifier

    secret = ctx.secrets["slack"]
    verifier = SignatureVerifier(secret)
    path = "/webhooks/slack"
    events_body = compact(
        {
            "token": "XXYYZZ",
            "team_id": "T123ABC456",
            "api_app_id": "A123ABC456",
            "event": {"type": "message", "channel": "C123ABC456", "user": "U123ABC456", "text": "héllo wörld 👋", "ts": "1355517523.000005"},
            "type": "event_callback",
            "event_id": "Ev123ABC456",
            "event_time": now_s(),
        }
    )
    form_body = urllib.parse.urlencode(
        {
            "token": "gIkuvaNzQIHg97ATvDxqgjtO",
            "team_id": "T0001",
            "team_domain": "example",
            "channel_id": "C2147483705",
            "user_id": "U2147483697",
            "command": "/weather",
            "text": "94070 & more é",
            "response_url": "https://hooks.slack.com/commands/1234/5678",
            "trigger_id": "13345224609.738474920.8088930838d88f008e0",
        }
    ).encode()
    for variant, body, ctype in (
        ("slack(events)", events_body, "application/json"),
        ("slack(command)", form_body, "application/x-www-form-urlencoded"),
    ):
        ts = str(now_s())
        headers = {
            "Content-Type": ctype,
            "User-Agent": "Slackbot 1.0 (+https://api.slack.com/robots)",
            "X-Slack-Request-Timestamp": ts,
            "X-Slack-Signature": verifier.generate_signature(timestamp=ts, body=body),
        }
        run_check(variant, "sdk-signs", lambda: delivered(ctx, path, body, headers))
        run_check(variant, "tampered", lambda: refused(ctx, path, tamper(body), headers))

        def b(body=body):
            printed = hookgate_sign(ctx, "slack", body)
            ok = verifier.is_valid_request(body, printed)
            return ok, f"SignatureVerifier.is_valid_request() -> {ok}"

        run_check(variant, "hookgate-signs", b)


def case_standard_webhooks(ctx, provider, module_name):
    import importlib

    Webhook = importlib.import_module(module_name).Webhook
    secret = ctx.secrets[provider]
    wh = Webhook(secret)
    prefix = "svix" if provider == "svix" else "webhook"
    path = f"/webhooks/{provider}"
    body = compact(
        {"type": "invoice.paid", "timestamp": datetime.now(timezone.utc).isoformat(), "data": {"id": "in_1", "customer": "Jürgen Ø", "amount": 4200}}
    )
    msg_id = "msg_" + secrets.token_hex(10)
    ts = datetime.fromtimestamp(now_s(), tz=timezone.utc)
    headers = {
        "Content-Type": "application/json",
        f"{prefix}-id": msg_id,
        f"{prefix}-timestamp": str(int(ts.timestamp())),
        f"{prefix}-signature": wh.sign(msg_id, ts, body.decode()),
    }
    run_check(provider, "sdk-signs", lambda: delivered(ctx, path, body, headers))
    run_check(provider, "tampered", lambda: refused(ctx, path, tamper(body), headers))
    # A retry: the same message id, signed anew with a later timestamp.
    ts2 = datetime.fromtimestamp(int(ts.timestamp()) + 1, tz=timezone.utc)
    resigned = dict(headers, **{f"{prefix}-timestamp": str(int(ts2.timestamp())), f"{prefix}-signature": wh.sign(msg_id, ts2, body.decode())})
    run_check(provider, "retry", lambda: duplicate(ctx, path, body, resigned))

    def b():
        printed = hookgate_sign(ctx, provider, body, headers=[f"{prefix}-id: {msg_id}"])
        wh.verify(body, printed)  # raises WebhookVerificationError unless it verifies
        return True, f"{module_name}.Webhook.verify() accepted {printed[prefix + '-signature'][:20]}..."

    run_check(provider, "hookgate-signs", b)


def case_twilio(ctx):
    from twilio.request_validator import RequestValidator

    token = ctx.secrets["twilio"]
    validator = RequestValidator(token)
    params = {
        "ToCountry": "US",
        "SmsMessageSid": "SM" + secrets.token_hex(16),
        "NumMedia": "0",
        "ToCity": "SAN FRANCISCO",
        "FromZip": "94105",
        "SmsSid": "SM" + secrets.token_hex(16),
        "FromState": "CA",
        "SmsStatus": "received",
        "Body": "Hello from interop: café & crème, 100% ünïcode +1",
        "FromCountry": "US",
        "To": "+15557654321",
        "MessageSid": "SM" + secrets.token_hex(16),
        "AccountSid": "AC" + secrets.token_hex(16),
        "From": "+15551234567",
        "ApiVersion": "2010-04-01",
    }
    form_body = urllib.parse.urlencode(params).encode()
    form_path = "/webhooks/twilio?src=interop"
    json_body = compact({"AccountSid": params["AccountSid"], "Status": "delivered", "Note": "JSON ✓"})

    def json_path(route):
        return f"/webhooks/{route}?bodySHA256={hashlib.sha256(json_body).hexdigest()}"

    base_headers = {"User-Agent": "TwilioProxy/1.1", "I-Twilio-Idempotency-Token": str(uuid.uuid4())}
    sha256_settings = "key=webhooks_sharedkey_" + secrets.token_hex(8) + ",algorithm=HMAC_SHA256"

    # (a) the SDK signs: the legacy auth-token HMAC-SHA1 on the `twilio` route, form and JSON,
    # and the SharedKey HMAC-SHA256 mode on a `twilio` route overridden to hmac-sha256.
    for provider, route, algorithm in (
        ("twilio", "twilio", None),
        ("twilio-sha256", "twilio-sha256", "HMAC_SHA256"),
    ):
        extra = {"X-Twilio-Webhooks-Signature-Settings": sha256_settings} if algorithm else {}
        fpath = form_path.replace("/twilio?", f"/{route}?")
        sig = validator.compute_signature(PUBLIC_URL + fpath, params, algorithm)
        headers = dict(base_headers, **extra, **{"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": sig})
        run_check(f"{provider}(form)", "sdk-signs", lambda: delivered(ctx, fpath, form_body, headers))
        tampered_form = form_body.replace(b"received", b"rEceived")
        run_check(f"{provider}(form)", "tampered", lambda: refused(ctx, fpath, tampered_form, headers))

        jpath = json_path(route)
        sig = validator.compute_signature(PUBLIC_URL + jpath, {}, algorithm)
        headers = dict(base_headers, **extra, **{"Content-Type": "application/json", "X-Twilio-Signature": sig})
        run_check(f"{provider}(json)", "sdk-signs", lambda: delivered(ctx, jpath, json_body, headers))
        run_check(f"{provider}(json)", "tampered", lambda: refused(ctx, jpath, tamper(json_body), headers))

    # (b) hookgate signs, the SDK validates.
    for provider, route, algorithm in (("twilio(form)", "twilio", None), ("twilio-sha256(form)", "twilio-sha256", "HMAC_SHA256")):

        def b_form(route=route, algorithm=algorithm):
            fpath = form_path.replace("/twilio?", f"/{route}?")
            printed = hookgate_sign(ctx, route, form_body, path=fpath)
            sig = printed["x-twilio-signature"]
            ok = validator.validate(PUBLIC_URL + fpath, params, sig, algorithm)
            url_only = validator.compute_signature(PUBLIC_URL + fpath, {}, algorithm) == sig
            return ok, f"RequestValidator.validate(url, form params, algorithm={algorithm or 'HMAC_SHA1'}) -> {ok}" + (
                "; hookgate signed the URL alone, without the form parameters" if url_only else ""
            )

        run_check(provider, "hookgate-signs", b_form)

    for provider, route, algorithm in (("twilio(json)", "twilio", None), ("twilio-sha256(json)", "twilio-sha256", "HMAC_SHA256")):

        def b_json(route=route, algorithm=algorithm):
            printed = hookgate_sign(ctx, route, json_body, path=json_path(route))
            ok = validator.validate(PUBLIC_URL + json_path(route), json_body.decode(), printed["x-twilio-signature"], algorithm)
            return ok, f"RequestValidator.validate(url?bodySHA256=.., body, algorithm={algorithm or 'HMAC_SHA1'}) -> {ok}"

        run_check(provider, "hookgate-signs", b_json)


def case_square(ctx):
    from square.utils.webhooks_helper import verify_signature

    key = ctx.secrets["square"]
    path = "/webhooks/square"
    body = compact(
        {
            "merchant_id": "6SSW7HV8K2ST5",
            "type": "payment.updated",
            "event_id": str(uuid.uuid4()),
            "created_at": datetime.now(timezone.utc).isoformat(),
            "data": {"type": "payment", "id": "KkAkhdMs", "object": {"payment": {"note": "Crème brûlée"}}},
        }
    )
    holder = {}

    def b():
        printed = hookgate_sign(ctx, "square", body)
        holder["headers"] = {"Content-Type": "application/json", "User-Agent": "Square Connect v2", **printed}
        ok = verify_signature(
            request_body=body.decode(),
            signature_header=printed["x-square-hmacsha256-signature"],
            signature_key=key,
            notification_url=PUBLIC_URL + path,
        )
        return ok, f"square.utils.webhooks_helper.verify_signature() -> {ok}"

    run_check("square", "hookgate-signs", b)
    run_check("square", "tampered", lambda: refused(ctx, path, tamper(body), holder["headers"], control=body))


def case_paddle(ctx):
    from paddle_billing.Notifications import Secret, Verifier

    secret = ctx.secrets["paddle"]
    path = "/webhooks/paddle"
    body = compact(
        {
            "event_id": "evt_" + secrets.token_hex(13),
            "event_type": "transaction.completed",
            "occurred_at": datetime.now(timezone.utc).isoformat(),
            "notification_id": "ntf_" + secrets.token_hex(13),
            "data": {"id": "txn_01", "customer": {"name": "Renée Ñúñez"}},
        }
    )
    holder = {}

    class PaddleRequest:
        def __init__(self, body, headers):
            self.body = body
            self.headers = CaseInsensitive(headers)

    def b():
        printed = hookgate_sign(ctx, "paddle", body)
        holder["headers"] = {"Content-Type": "application/json", **printed}
        ok = Verifier().verify(PaddleRequest(body, printed), Secret(secret))
        return ok is True, f"paddle_billing Verifier().verify() -> {ok} ({printed['paddle-signature'][:22]}...)"

    run_check("paddle", "hookgate-signs", b)

    def a():
        # The SDK has no signer, but its verifier's own HMAC helper is public: sign with it, and
        # write the header as Paddle documents it (`ts=<seconds>;h1=<hex>`).
        from paddle_billing.Notifications.PaddleSignature import PaddleSignature

        ts = now_s()
        event = body.replace(b'"evt_', b'"evt_2')  # another event: the route deduplicates
        h1 = PaddleSignature.calculate_hmac(secret, f"{ts}:".encode() + event).hexdigest()
        headers = {"Content-Type": "application/json", "User-Agent": "Paddle", "Paddle-Signature": f"ts={ts};h1={h1}"}
        if Verifier().verify(PaddleRequest(event, headers), Secret(secret)) is not True:
            return False, "suite error: the SDK refuses the header built with its own HMAC helper"
        return delivered(ctx, path, event, headers)

    run_check("paddle", "sdk-signs", a)
    run_check("paddle", "tampered", lambda: refused(ctx, path, tamper(body), holder["headers"], control=body))


def case_github(ctx):
    secret = ctx.secrets["github"]
    path = "/webhooks/github"
    body = pretty(
        {
            "ref": "refs/heads/main",
            "before": "0" * 40,
            "after": secrets.token_hex(20),
            "repository": {"id": 1296269, "full_name": "octocat/Hello-World", "description": "Ünïcode repö"},
            "pusher": {"name": "octocat", "email": "octocat@github.com"},
            "sender": {"login": "octocat", "id": 1},
        }
    )
    signed = node(ctx, {"action": "sign", "provider": "github", "secret": secret, "body": body.decode()})
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "GitHub-Hookshot/044aadd",
        "X-GitHub-Event": "push",
        "X-GitHub-Delivery": str(uuid.uuid4()),
        "X-GitHub-Hook-ID": "292430182",
        **signed["headers"],
    }
    run_check("github", "sdk-signs", lambda: delivered(ctx, path, body, headers))
    run_check("github", "tampered", lambda: refused(ctx, path, tamper(body), headers))
    run_check("github", "retry", lambda: duplicate(ctx, path, body, headers))

    def b():
        printed = hookgate_sign(ctx, "github", body)
        v = node(ctx, {"action": "verify", "provider": "github", "secret": secret, "body": body.decode(), "headers": printed})
        return v["ok"], f"{v['detail']} -> {v['ok']}"

    run_check("github", "hookgate-signs", b)


def case_shopify(ctx):
    secret = ctx.secrets["shopify"]
    path = "/webhooks/shopify"
    body = pretty({"id": 820982911946154508, "email": "jon@example.com", "note": "Ça va? 🛍", "total_price": "403.00"})
    hmac = node(ctx, {"action": "sign", "provider": "shopify", "secret": secret, "body": body.decode()})["hmac"]
    webhook_id = str(uuid.uuid4())
    classic = {
        "Content-Type": "application/json",
        "X-Shopify-Topic": "orders/create",
        "X-Shopify-Hmac-Sha256": hmac,
        "X-Shopify-Shop-Domain": "interop.myshopify.com",
        "X-Shopify-API-Version": "2024-10",
        "X-Shopify-Webhook-Id": webhook_id,
        "X-Shopify-Triggered-At": datetime.now(timezone.utc).isoformat(),
    }
    # Shopify's newer Events deliveries: the same HMAC, in headers without the `X-` prefix
    # (@shopify/shopify-api's ShopifyEventsHeader: `shopify-hmac-sha256`, ...).
    events = {
        "Content-Type": "application/json",
        "Shopify-Topic": "orders/create",
        "Shopify-Hmac-Sha256": hmac,
        "Shopify-Shop-Domain": "interop.myshopify.com",
        "Shopify-API-Version": "2025-10",
        "Shopify-Webhook-Id": str(uuid.uuid4()),
        "Shopify-Event-Id": str(uuid.uuid4()),
        "Shopify-Triggered-At": datetime.now(timezone.utc).isoformat(),
    }
    run_check("shopify", "sdk-signs", lambda: delivered(ctx, path, body, classic))
    run_check("shopify", "tampered", lambda: refused(ctx, path, tamper(body), classic))
    run_check("shopify", "retry", lambda: duplicate(ctx, path, body, classic))

    def events_check():
        # First: the SDK itself accepts this Events delivery (so the request is right) ...
        v = node(ctx, {"action": "verify", "provider": "shopify", "secret": secret, "body": body.decode(), "headers": events})
        if not v["ok"]:
            return False, f"suite error: the SDK refuses its own Events delivery: {v['detail']}"
        # ... then the gateway.
        return delivered(ctx, path, body, events)

    run_check("shopify(events)", "sdk-signs", events_check)

    def b():
        printed = hookgate_sign(ctx, "shopify", body)
        headers = {k: v for k, v in classic.items() if k != "X-Shopify-Hmac-Sha256"}
        headers.update(printed)
        v = node(ctx, {"action": "verify", "provider": "shopify", "secret": secret, "body": body.decode(), "headers": headers})
        return v["ok"], short(v["detail"], 200)

    run_check("shopify", "hookgate-signs", b)


def case_discord(ctx):
    keys = ctx.keys["ed25519"]
    path = "/webhooks/discord"
    # An APPLICATION_COMMAND (type 2) goes to the app; a PING (type 1) the gateway answers.
    body = compact(
        {"app_permissions": "442368", "application_id": "1234", "id": str(secrets.randbits(60)), "type": 2, "version": 1, "user": {"global_name": "Zoë"}}
    )
    ts = str(now_s())
    signed = node(ctx, {"action": "sign", "provider": "discord", "private_hex": keys["private_hex"], "body": body.decode(), "timestamp": ts})
    headers = {"Content-Type": "application/json", "User-Agent": "Discord-Interactions/1.0 (+https://discord.com)", **signed["headers"]}

    def ping():
        ping_body = compact({"application_id": "1234", "id": str(secrets.randbits(60)), "type": 1, "version": 1})
        ping_signed = node(ctx, {"action": "sign", "provider": "discord", "private_hex": keys["private_hex"], "body": ping_body.decode(), "timestamp": str(now_s())})
        ctx.recorder.take()
        status, text, _ = ctx.gw.send(path, ping_body, {"Content-Type": "application/json", **ping_signed["headers"]}, "POST")
        got = ctx.recorder.take()
        if got:
            return False, f"the PING was forwarded ({status})"
        ok = status == 200 and json.loads(text) == {"type": 1}
        return ok, f"{status} {text.strip()!r}, answered by the gateway"

    run_check("discord", "sdk-signed-ping", ping)

    def a():
        # The SDK's verifier agrees with the signer first, so a refusal is hookgate's.
        v = node(ctx, {"action": "verify", "provider": "discord", "public_key": keys["public_hex"], "body": body.decode(), "headers": headers})
        if not v["ok"]:
            return False, "suite error: discord-interactions refuses the node-crypto signature"
        return delivered(ctx, path, body, headers)

    run_check("discord", "sdk-signs", a)
    run_check("discord", "tampered", lambda: refused(ctx, path, tamper(body), headers))

    def b():
        printed = hookgate_sign(ctx, "discord", body, private_key=ctx.key_files["ed25519"])
        v = node(ctx, {"action": "verify", "provider": "discord", "public_key": keys["public_hex"], "body": body.decode(), "headers": printed})
        return v["ok"], f"{v['detail']} -> {v['ok']}"

    run_check("discord", "hookgate-signs", b)
    run_check("discord", "keygen", lambda: keygen_check(ctx, "discord"))


def case_sendgrid(ctx):
    keys = ctx.keys["p256"]
    path = "/webhooks/sendgrid"
    body = (
        json.dumps(
            [
                {"email": "zoë@example.com", "timestamp": now_s(), "event": "processed", "sg_event_id": secrets.token_hex(11), "sg_message_id": "14c5d75ce93.dfd.64b469"},
                {"email": "example@test.com", "timestamp": now_s(), "event": "delivered", "response": "250 OK"},
            ],
            ensure_ascii=False,
        ).encode()
        + b"\r\n"
    )
    ts = str(now_s())
    # ECDSA signatures come with s in the low or the high half of the group order (both valid;
    # SendGrid's signer does not normalize): sign until there is one of each, and send both.
    request = {"action": "sign", "provider": "sendgrid", "private_hex": keys["private_hex"], "public_key": keys["public_b64der"], "body": body.decode(), "timestamp": ts}
    by_half = {}
    for signed in node(ctx, [request] * 16):
        sig = signed["headers"]["X-Twilio-Email-Event-Webhook-Signature"]
        by_half.setdefault("high-s" if ecdsa_high_s(sig) else "low-s", signed["headers"])
    for half in ("low-s", "high-s"):
        if half not in by_half:
            report(False, f"sendgrid({half})", "sdk-signs", "suite error: 16 signatures, none with " + half)
            continue
        headers = {"Content-Type": "application/json", "User-Agent": "SendGrid Event API", **by_half[half]}

        def a(headers=headers):
            v = node(ctx, {"action": "verify", "provider": "sendgrid", "public_key": keys["public_b64der"], "body": body.decode(), "headers": headers})
            if not v["ok"]:
                return False, "suite error: @sendgrid/eventwebhook refuses the node-crypto signature"
            return delivered(ctx, path, body, headers)

        run_check(f"sendgrid({half})", "sdk-signs", a)
    run_check("sendgrid", "tampered", lambda: refused(ctx, path, tamper(body), headers))

    def b():
        printed = hookgate_sign(ctx, "sendgrid", body, private_key=ctx.key_files["p256"])
        v = node(ctx, {"action": "verify", "provider": "sendgrid", "public_key": keys["public_b64der"], "body": body.decode(), "headers": printed})
        return v["ok"], f"{v['detail']} -> {v['ok']}"

    run_check("sendgrid", "hookgate-signs", b)
    run_check("sendgrid", "keygen", lambda: keygen_check(ctx, "sendgrid"))


P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def ecdsa_high_s(b64_der):
    """Whether a base64 DER ECDSA signature (SEQUENCE { INTEGER r, INTEGER s }) has s > n/2."""
    der = base64.b64decode(b64_der)
    r_len = der[3]
    s = int.from_bytes(der[4 + r_len + 2 :], "big")
    return s > P256_ORDER // 2


def keygen_check(ctx, preset):
    """`hookgate keygen --preset P`: the PEM private key it writes signs (Node's crypto, as the
    provider would) and the SDK verifies with the public key it prints, as given to the route."""
    pem = os.path.join(ctx.work, f"keygen-{preset}.pem")
    out = subprocess.run([ctx.hookgate, "keygen", "--preset", preset, "--out", pem], env=ctx.env, capture_output=True, text=True, timeout=30)
    if out.returncode != 0:
        return False, f"hookgate keygen exited {out.returncode}: {out.stderr.strip()}"
    m = re.search(r'public_key:\s*"([^"]+)"', out.stdout)
    if not m:
        return False, f"no public_key line in {out.stdout!r}"
    public = m.group(1)
    body = compact({"type": 1, "note": "keygen ✓"})
    with open(pem) as f:
        private_pem = f.read()
    signed = node(ctx, {"action": "sign", "provider": preset, "private_pem": private_pem, "body": body.decode(), "timestamp": str(now_s())})
    v = node(ctx, {"action": "verify", "provider": preset, "public_key": public, "body": body.decode(), "headers": signed["headers"]})
    return v["ok"], f"signed with its PEM, {v['detail']} with its printed public_key -> {v['ok']}"


def case_verify_only_node(ctx, provider, body, extra_headers):
    """Providers whose SDK only verifies: hookgate signs, the SDK verifies; then a tampered copy."""
    path = f"/webhooks/{provider}"
    holder = {}

    def b():
        printed = hookgate_sign(ctx, provider, body)
        holder["headers"] = {**extra_headers, **printed}
        v = node(ctx, {"action": "verify", "provider": provider, "secret": ctx.secrets[provider], "body": body.decode(), "headers": holder["headers"]})
        return v["ok"], f"{short(v['detail'], 140)} -> {v['ok']}"

    run_check(provider, "hookgate-signs", b)
    run_check(provider, "tampered", lambda: refused(ctx, path, tamper(body), holder["headers"], control=body))


def case_linear(ctx):
    body = compact(
        {
            "action": "create",
            "type": "Issue",
            "data": {"id": str(uuid.uuid4()), "title": "Fix the café bug", "priority": 2},
            "url": "https://linear.app/interop/issue/INT-1",
            "createdAt": datetime.now(timezone.utc).isoformat(),
            "organizationId": str(uuid.uuid4()),
            "webhookTimestamp": int(time.time() * 1000),
            "webhookId": str(uuid.uuid4()),
        }
    )
    extra = {"Content-Type": "application/json; charset=utf-8", "Linear-Delivery": str(uuid.uuid4()), "Linear-Event": "Issue", "User-Agent": "Linear-Webhook"}
    case_verify_only_node(ctx, "linear", body, extra)


def case_webflow(ctx):
    body = compact(
        {"triggerType": "form_submission", "payload": {"name": "Contact", "siteId": "65427cf400e02b306eaa049c", "data": {"message": "Hé, ça marche"}, "id": secrets.token_hex(12)}}
    )
    case_verify_only_node(ctx, "webflow", body, {"Content-Type": "application/json"})


def case_zoom(ctx):
    # Rivet verifies JSON.stringify(JSON.parse(body)), not the raw bytes: the body is written
    # compactly, as JSON.stringify would, so that its re-serialization is the same bytes.
    body = compact(
        {"event": "meeting.started", "event_ts": int(time.time() * 1000), "payload": {"account_id": "AAAAAABBBB", "object": {"id": "1234567890", "topic": "Réunion"}}}
    )
    case_verify_only_node(ctx, "zoom", body, {"Content-Type": "application/json; charset=utf-8", "User-Agent": "Zoom Marketplace/1.0a"})


def case_razorpay(ctx):
    import razorpay

    secret = ctx.secrets["razorpay"]
    # The webhook's own secret is passed to the verifier; the client's API key pair is another.
    client = razorpay.Client(auth=("rzp_test_interop", "api-key-secret-not-the-webhook-secret"))
    path = "/webhooks/razorpay"
    body = compact(
        {
            "entity": "event",
            "account_id": "acc_BFQ7uQEaa7j2z7",
            "event": "payment.captured",
            "contains": ["payment"],
            "payload": {"payment": {"entity": {"id": "pay_" + secrets.token_hex(7), "amount": 50000, "currency": "INR", "status": "captured", "description": "Chai ☕ for Zoë"}}},
            "created_at": now_s(),
        }
    )
    # The SDK only verifies: signed as Razorpay documents it, hex HMAC-SHA256 of the raw body.
    sig = hmac_hex(secret, body)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "Razorpay-Webhook/v1",
        "X-Razorpay-Event-Id": "evt_" + secrets.token_hex(7),
        "X-Razorpay-Signature": sig,
    }

    def a():
        # The SDK accepts the request first (it raises SignatureVerificationError otherwise) ...
        client.utility.verify_webhook_signature(body.decode(), sig, secret)
        # ... so a refusal is the gateway's.
        ok, detail = delivered(ctx, path, body, headers)
        return ok, "signed per Razorpay's docs (the SDK verifies only; it accepts it); " + detail

    run_check("razorpay", "sdk-signs", a)
    run_check("razorpay", "tampered", lambda: refused(ctx, path, tamper(body), headers))
    # Razorpay's retry: the same event, X-Razorpay-Event-Id and signature.
    run_check("razorpay", "retry", lambda: duplicate(ctx, path, body, headers))

    def b():
        printed = hookgate_sign(ctx, "razorpay", body)
        ok = client.utility.verify_webhook_signature(body.decode(), printed["x-razorpay-signature"], secret)
        return ok is True, f"client.utility.verify_webhook_signature() -> {ok}"

    run_check("razorpay", "hookgate-signs", b)


def case_castle(ctx):
    from castle.configuration import Configuration
    from castle.webhooks.verify import WebhooksVerify

    config = Configuration()
    config.api_secret = ctx.secrets["castle"]
    path = "/webhooks/castle"

    class CastleWebhook:
        """What WebhooksVerify.call reads: the raw body as `data`, and `headers` (a Flask request)."""

        def __init__(self, body, headers):
            self.data = body
            self.headers = CaseInsensitive(headers)

    body = compact(
        {
            "api_version": "v1",
            "app_id": "492418418238122",
            "type": "$incident.confirmed",
            "created_at": datetime.now(timezone.utc).isoformat(),
            "data": {"id": "test", "device_token": secrets.token_urlsafe(16), "user_id": "zoë@example.com", "trigger": "$login.succeeded"},
        }
    )
    # The SDK has no signer, but its verifier's own HMAC helper computes the header's value.
    sig = WebhooksVerify._compute_signature(CastleWebhook(body, {}), config.api_secret)
    headers = {"Content-Type": "application/json", "User-Agent": "Castle/1.0", "X-Castle-Signature": sig}

    def a():
        WebhooksVerify.call(CastleWebhook(body, headers), config=config)  # raises unless it verifies
        ok, detail = delivered(ctx, path, body, headers)
        return ok, "signed with WebhooksVerify._compute_signature (the SDK's verifier accepts it); " + detail

    run_check("castle", "sdk-signs", a)
    run_check("castle", "tampered", lambda: refused(ctx, path, tamper(body), headers))

    def b():
        printed = hookgate_sign(ctx, "castle", body)
        result = WebhooksVerify.call(CastleWebhook(body, printed), config=config)  # raises WebhookVerificationError
        return result is None, f"castle WebhooksVerify.call() accepted {printed['x-castle-signature'][:16]}..."

    run_check("castle", "hookgate-signs", b)


def case_box(ctx):
    from box_sdk_gen.internal.utils import compute_webhook_signature
    from box_sdk_gen.managers.webhooks import WebhooksManager

    primary, secondary = ctx.secrets["box-primary"], ctx.secrets["box-secondary"]
    unknown = secrets.token_urlsafe(24)  # a key the app does not hold (one Box has rotated to)
    path = "/webhooks/box"
    body = compact(
        {
            "type": "webhook_event",
            "id": str(uuid.uuid4()),
            "created_at": datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
            "trigger": "FILE.UPLOADED",
            "webhook": {"id": "1234567890", "type": "webhook"},
            "created_by": {"type": "user", "id": "2", "name": "Zoë Ångström", "login": "zoe@example.com"},
            "source": {"id": "123", "type": "file", "name": "Café menu.pdf"},
        }
    )
    # As Box sends it: RFC 3339 with the account's UTC offset, whole seconds.
    stamp = datetime.now(timezone(timedelta(hours=-7))).replace(microsecond=0).isoformat()

    def request(primary_key, secondary_key):
        headers = {
            "Content-Type": "application/json; charset=UTF-8",
            "User-Agent": "Box-WH-Client/0.1",
            "box-delivery-id": str(uuid.uuid4()),
            "box-delivery-timestamp": stamp,
            "box-signature-algorithm": "HmacSHA256",
            "box-signature-version": "1",
        }
        lower = {k.lower(): v for k, v in headers.items()}
        # The SDK's own signing helper (its verifier's): base64 HMAC-SHA256 of body + timestamp.
        headers["box-signature-primary"] = compute_webhook_signature(body.decode(), lower, primary_key)
        headers["box-signature-secondary"] = compute_webhook_signature(body.decode(), lower, secondary_key)
        return headers

    def validate(headers, primary_key, secondary_key=None):
        lower = {k.lower(): v for k, v in headers.items()}
        return WebhooksManager.validate_message(body.decode(), lower, primary_key, secondary_key=secondary_key, max_age=600)

    both = request(primary, secondary)
    # While Box rotates keys: one header is signed with a key the app does not have yet (or any
    # more); the other still matches. The SDK, given only that one key, shows which one it is.
    variants = (
        ("box(both keys)", both, lambda h: validate(h, primary, secondary)),
        ("box(primary only)", request(primary, unknown), lambda h: validate(h, primary) and not validate(h, unknown, secondary_key=secondary)),
        ("box(secondary only)", request(unknown, secondary), lambda h: validate(h, unknown, secondary_key=secondary) and not validate(h, primary)),
    )
    for variant, headers, sdk_agrees in variants:

        def a(headers=headers, sdk_agrees=sdk_agrees):
            if not sdk_agrees(headers):
                return False, "suite error: WebhooksManager.validate_message() does not accept this request as meant"
            ok, detail = delivered(ctx, path, body, headers)
            return ok, "WebhooksManager.validate_message() accepts it; " + detail

        run_check(variant, "sdk-signs", a)
    run_check("box", "tampered", lambda: refused(ctx, path, tamper(body), both))

    def b():
        # `hookgate sign` prints BOX-DELIVERY-TIMESTAMP and BOX-SIGNATURE-PRIMARY (the route's
        # first secret) only. The SDK computes nothing without the two constant headers Box
        # sends with every delivery (version 1, HmacSHA256): they are given as --header, which
        # `hookgate sign` prints back, as a sender testing with curl would.
        constant = ["box-signature-version: 1", "box-signature-algorithm: HmacSHA256", f"box-delivery-id: {uuid.uuid4()}"]
        printed = hookgate_sign(ctx, "box", body, headers=constant)
        ok = WebhooksManager.validate_message(body.decode(), printed, primary, max_age=600)
        return ok, f"WebhooksManager.validate_message(primary key) -> {ok} (timestamp {printed['box-delivery-timestamp']}; printed: {', '.join(sorted(printed))})"

    run_check("box", "hookgate-signs", b)


def case_hubspot(ctx):
    from hubspot.utils.signature import Signature

    secret = ctx.secrets["hubspot"]
    path = "/webhooks/hubspot?portalId=62515"
    url = PUBLIC_URL + path
    ms = int(time.time() * 1000)
    body = compact(
        [
            {
                "eventId": secrets.randbits(31),
                "subscriptionId": 4241,
                "portalId": 62515,
                "appId": 1160452,
                "occurredAt": ms,
                "subscriptionType": "contact.propertyChange",
                "attemptNumber": 0,
                "objectId": 123,
                "propertyName": "firstname",
                "propertyValue": "Zoë",
                "changeSource": "CRM",
            }
        ]
    )
    ts = str(ms)  # 13 digits: HubSpot's X-HubSpot-Request-Timestamp is in milliseconds
    sig = Signature.get_signature(secret, body.decode(), "v3", url, "POST", ts)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "HubSpot Connect 2.0 (http://dev.hubspot.com/) - WebhooksExecutorDaemon-executor",
        # HubSpot sends the v1 signature too; the preset reads v3 only.
        "X-HubSpot-Signature": Signature.get_signature(secret, body.decode(), "v1"),
        "X-HubSpot-Signature-Version": "v1",
        "X-HubSpot-Signature-v3": sig,
        "X-HubSpot-Request-Timestamp": ts,
    }

    def a():
        if not Signature.is_valid(signature=sig, client_secret=secret, request_body=body.decode(), http_uri=url, http_method="POST", signature_version="v3", timestamp=ts):
            return False, "suite error: Signature.is_valid() refuses Signature.get_signature()'s v3"
        ok, detail = delivered(ctx, path, body, headers)
        return ok, "signed with Signature.get_signature(v3) (is_valid accepts it); " + detail

    run_check("hubspot", "sdk-signs", a)
    run_check("hubspot", "tampered", lambda: refused(ctx, path, tamper(body), headers))

    def b():
        printed = hookgate_sign(ctx, "hubspot", body, path=path)
        stamp = printed["x-hubspot-request-timestamp"]
        ok = Signature.is_valid(
            signature=printed["x-hubspot-signature-v3"],
            client_secret=secret,
            request_body=body.decode(),
            http_uri=url,
            http_method="POST",
            signature_version="v3",
            timestamp=stamp,
        )
        return ok and len(stamp) == 13, f"Signature.is_valid(v3, timestamp={stamp}) -> {ok}"

    run_check("hubspot", "hookgate-signs", b)


def case_openai(ctx):
    import openai
    from standardwebhooks import Webhook

    secret = ctx.secrets["openai"]
    client = openai.OpenAI(api_key="sk-interop-unused", webhook_secret=secret)
    path = "/webhooks/openai"
    body = compact(
        {
            "object": "event",
            "id": "evt_" + secrets.token_hex(16),
            "type": "response.completed",
            "created_at": now_s(),
            "data": {"id": "resp_" + secrets.token_hex(16)},
        }
    )
    msg_id = "wh_" + secrets.token_hex(16)
    ts = datetime.fromtimestamp(now_s(), tz=timezone.utc)
    # The openai SDK only verifies: signed with the Standard Webhooks reference library, which
    # OpenAI's deliveries follow (webhook-id / webhook-timestamp / webhook-signature).
    wh = Webhook(secret)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "OpenAI/1.0 (+https://platform.openai.com/docs/webhooks)",
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(ts.timestamp())),
        "webhook-signature": wh.sign(msg_id, ts, body.decode()),
    }

    def a():
        client.webhooks.verify_signature(body, headers)  # raises InvalidWebhookSignatureError
        ok, detail = delivered(ctx, path, body, headers)
        return ok, "signed with standardwebhooks (the openai SDK verifies only; it accepts it); " + detail

    run_check("openai", "sdk-signs", a)
    run_check("openai", "tampered", lambda: refused(ctx, path, tamper(body), headers))
    # A retry: the same webhook-id, signed anew with a later timestamp.
    ts2 = datetime.fromtimestamp(int(ts.timestamp()) + 1, tz=timezone.utc)
    resigned = dict(headers, **{"webhook-timestamp": str(int(ts2.timestamp())), "webhook-signature": wh.sign(msg_id, ts2, body.decode())})
    run_check("openai", "retry", lambda: duplicate(ctx, path, body, resigned))

    def b():
        printed = hookgate_sign(ctx, "openai", body, headers=[f"webhook-id: {msg_id}"])
        event = client.webhooks.unwrap(body, printed)  # raises unless it verifies
        return event.type == "response.completed", f"OpenAI().webhooks.unwrap() accepted {printed['webhook-signature'][:20]}... ({event.type})"

    run_check("openai", "hookgate-signs", b)


def case_worldline(ctx):
    from onlinepayments.sdk.communication.request_header import RequestHeader
    from onlinepayments.sdk.json.default_marshaller import DefaultMarshaller
    from onlinepayments.sdk.webhooks.in_memory_secret_key_store import InMemorySecretKeyStore
    from onlinepayments.sdk.webhooks.webhooks_helper import WebhooksHelper

    # Two webhook keys, as while rotating: the route holds both (`secrets:`), the app's key store
    # knows each by the X-GCS-KeyId Worldline sends with it.
    keys = {"interop-key-2": ctx.secrets["worldline"], "interop-key-1": ctx.secrets["worldline-old"]}
    labels = {"interop-key-2": "worldline(new key)", "interop-key-1": "worldline(old key)"}
    store = InMemorySecretKeyStore.instance()
    for key_id, key in keys.items():
        store.store_secret_key(key_id, key)
    helper = WebhooksHelper(DefaultMarshaller.instance(), store)
    path = "/webhooks/worldline"

    def event():
        return compact(
            {
                "apiVersion": "v1",
                "created": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
                "id": str(uuid.uuid4()),
                "merchantId": "interop",
                "type": "payment.captured",
                "payment": {
                    "id": "3000012345_0",
                    "status": "CAPTURED",
                    "paymentOutput": {"amountOfMoney": {"amount": 1000, "currencyCode": "EUR"}, "references": {"merchantReference": "Crème brûlée"}},
                    "statusOutput": {"isCancellable": False, "statusCategory": "COMPLETED", "statusCode": 9},
                },
            }
        )

    def unmarshal(body, headers):
        return helper.unmarshal(body, [RequestHeader(k, v) for k, v in headers.items()])  # raises

    bodies = {}
    for key_id in keys:
        body = bodies[key_id] = event()
        # The SDK only verifies: signed as Worldline documents it, base64 HMAC-SHA256 of the body.
        headers = {"Content-Type": "application/json", "X-GCS-Signature": hmac_b64(keys[key_id], body), "X-GCS-KeyId": key_id}

        def a(body=body, headers=headers):
            e = unmarshal(body, headers)
            ok, detail = delivered(ctx, path, body, headers)
            return ok, f"signed per Worldline's docs (the SDK verifies only; WebhooksHelper.unmarshal() accepts it: {e.type}); " + detail

        run_check(labels[key_id], "sdk-signs", a)
    run_check("worldline", "tampered", lambda: refused(ctx, path, tamper(body), headers))
    # A retry: the same event (same `id`), same signature.
    run_check("worldline", "retry", lambda: duplicate(ctx, path, body, headers))

    def b():
        body = event()
        printed = hookgate_sign(ctx, "worldline", body)
        # `hookgate sign` signs with the route's first secret, the current key.
        e = unmarshal(body, dict(printed, **{"X-GCS-KeyId": "interop-key-2"}))
        return e.id == json.loads(body)["id"], f"WebhooksHelper.unmarshal() accepted {printed['x-gcs-signature'][:16]}... ({e.type})"

    run_check("worldline", "hookgate-signs", b)


def case_adyen(ctx):
    import Adyen.util

    key = ctx.secrets["adyen"]
    path = "/webhooks/adyen"
    headers = {"Content-Type": "application/json", "User-Agent": "Adyen HttpClient 1.0"}

    def psp():
        return str(secrets.randbelow(9 * 10**15) + 10**15)  # 16 digits, as Adyen's

    def authorisation():
        return {
            "additionalData": {"authCode": "033899", "cardSummary": "1111", "expiryDate": "03/2030"},
            "amount": {"currency": "EUR", "value": 1130},
            "eventCode": "AUTHORISATION",
            "eventDate": datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
            "merchantAccountCode": "InteropECOM",
            "merchantReference": 'Crème brûlée "42" ☕',
            "operations": ["CANCEL", "CAPTURE", "REFUND"],
            "paymentMethod": "visa",
            "pspReference": psp(),
            "reason": "033899:1111:03/2030",
            "success": "true",
        }

    def refund(original):
        # A modification: it names the payment it refunds (originalReference); this one has no
        # merchantReference, which the signed string then holds as empty.
        return {
            "additionalData": {},
            "amount": {"currency": "EUR", "value": 500},
            "eventCode": "REFUND",
            "eventDate": datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
            "merchantAccountCode": "InteropECOM",
            "originalReference": original,
            "paymentMethod": "visa",
            "pspReference": psp(),
            "reason": "",
            "success": "true",
        }

    def notification(items, layout=compact):
        return layout({"live": "false", "notificationItems": [{"NotificationRequestItem": item} for item in items]})

    def items_of(body):
        return [i["NotificationRequestItem"] for i in json.loads(body)["notificationItems"]]

    def py_each(body, key=key):
        # Adyen.util.is_valid_hmac_notification() on each item (given the whole notification,
        # it checks notificationItems[0] only).
        return [Adyen.util.is_valid_hmac_notification(item, key) for item in items_of(body)]

    def node_each(body):
        return node(ctx, {"action": "verify", "provider": "adyen", "secret": key, "body": body.decode()})["each"]

    def sdks_agree(body, want):
        py, js = py_each(body), node_each(body)
        if py != want or js != want:
            raise RuntimeError(f"suite error: the SDKs do not see {want}: is_valid_hmac_notification {py}, validateHMAC {js}")
        return f"is_valid_hmac_notification and hmacValidator.validateHMAC per item: {want}"

    # (a) One item, signed with the Python library's generate_notification_sig.
    one = authorisation()
    one["additionalData"]["hmacSignature"] = Adyen.util.generate_notification_sig(one, key).decode()
    body1 = notification([one])

    def a1():
        agreed = sdks_agree(body1, [True])
        ok, detail = delivered(ctx, path, body1, headers)
        return ok, f"signed with Adyen.util.generate_notification_sig; {agreed}; {detail}"

    run_check("adyen(1 item)", "sdk-signs", a1)

    # Two items (a payment and a refund of it), signed with the Node library's calculateHmac.
    first = authorisation()
    second = refund(first["pspReference"])
    sigs = node(ctx, {"action": "sign", "provider": "adyen", "secret": key, "items": [first, second]})["signatures"]
    for item, sig in zip((first, second), sigs):
        item["additionalData"]["hmacSignature"] = sig
    body2 = notification([first, second], layout=pretty)

    def a2():
        agreed = sdks_agree(body2, [True, True])
        ok, detail = delivered(ctx, path, body2, headers)
        return ok, f"signed with hmacValidator.calculateHmac; {agreed}; {detail}"

    run_check("adyen(2 items)", "sdk-signs", a2)

    # (c) One forged item refuses the whole notification: the first item is signed with the
    # key, the second with another one. (A verifier that reads item 0 only would pass it.)
    other = secrets.token_hex(32).upper()
    good, forged = authorisation(), refund("")
    good["additionalData"]["hmacSignature"] = Adyen.util.generate_notification_sig(good, key).decode()
    forged["additionalData"]["hmacSignature"] = Adyen.util.generate_notification_sig(forged, other).decode()
    body_forged = notification([good, forged])

    def forged_check():
        agreed = sdks_agree(body_forged, [True, False])
        whole = Adyen.util.is_valid_hmac_notification(json.loads(body_forged), key)
        ok, detail = refused(ctx, path, body_forged, headers)
        return ok, f"{agreed} (on the whole notification: {whole}); {detail}"

    run_check("adyen(forged item)", "tampered", forged_check)

    # The amount of the delivered one-item notification changed (signed: value and currency).
    changed = body1.replace(b'"value":1130', b'"value":11300')

    def amount_check():
        if changed == body1:
            raise RuntimeError("suite error: the amount is not in the body as written")
        agreed = sdks_agree(changed, [False])
        ok, detail = refused(ctx, path, changed, headers)
        return ok, f"amount 1130 -> 11300: {agreed}; {detail}"

    run_check("adyen(amount)", "tampered", amount_check)

    # Adyen's retry (it resends until it reads `[accepted]`): the same notification, the same
    # signatures. The preset names no replay key: the route's `replay: {}` keys on the signature.
    run_check("adyen", "retry", lambda: duplicate(ctx, path, body1, headers))

    # (b) `hookgate sign` signs each item of notificationItems (`each:`) over that item's own
    # fields and writes the body with every hmacSignature set (--out-body); both libraries
    # must accept every item, and the gateway deliver it.
    def b():
        payment = authorisation()
        unsigned = notification([payment, refund(payment["pspReference"])], layout=pretty)
        out = os.path.join(ctx.work, f"adyen-signed-{uuid.uuid4().hex[:8]}.json")
        hookgate_sign(ctx, "adyen", unsigned, out_body=out)
        with open(out, "rb") as f:
            signed = f.read()
        agreed = sdks_agree(signed, [True, True])
        ok, detail = delivered(ctx, path, signed, headers)
        return ok, f"hookgate sign --out-body, 2 items; {agreed}; {detail}"

    run_check("adyen", "hookgate-signs", b)


def case_braintree(ctx):
    import braintree
    from braintree.exceptions import InvalidSignatureError
    from braintree.util.crypto import Crypto

    public_key, private_key = ctx.key_ids["braintree"], ctx.secrets["braintree"]
    # No network: sample_notification and parse only sign and check with the configured keys.
    gateway = braintree.BraintreeGateway(
        braintree.Configuration(environment=braintree.Environment.Sandbox, merchant_id=ctx.braintree_merchant, public_key=public_key, private_key=private_key)
    )
    Kind = braintree.WebhookNotification.Kind
    path = "/webhooks/braintree"
    headers = {"Content-Type": "application/x-www-form-urlencoded"}

    def form(fields):
        # As Braintree posts it: application/x-www-form-urlencoded, every reserved byte
        # percent-encoded: the payload's line breaks (%0A), '+' (%2B, not a space), '/' and '='.
        return urllib.parse.urlencode(fields).encode()

    def sample(kind, prefix):
        # sample_notification's payload is base64 (encodebytes: a line break every 76
        # characters and at the end) and has '+' (from each '>' that ends a 3-byte group of
        # its XML), which a form must carry as %2B, not as a space. (Its ASCII XML has no '?',
        # the only source of a '/'.)
        id_ = prefix + secrets.token_hex(6)
        signed = gateway.webhook_testing.sample_notification(kind, id_)
        payload = signed["bt_payload"]
        if b"+" not in payload or payload.count(b"\n") < 2 or not payload.endswith(b"\n"):
            raise RuntimeError(f"suite error: the sample payload lacks a '+' or line breaks: {short(repr(payload))}")
        return id_, signed

    def parse(signature, payload):
        """The SDK's verifier: the notification, or the InvalidSignatureError's message."""
        try:
            return gateway.webhook_notification.parse(signature, payload)
        except InvalidSignatureError as e:
            return f"InvalidSignatureError({e})"

    def accepted(signature, payload, kind, id_):
        n = parse(signature, payload)
        if isinstance(n, str):
            raise RuntimeError(f"suite error: webhook_notification.parse refuses it: {n}")
        got = n.subscription.id if kind == Kind.SubscriptionChargedSuccessfully else n.dispute.id
        if n.kind != kind or got != id_:
            raise RuntimeError(f"suite error: parse() read kind {n.kind!r}, id {got!r}")
        return f"webhook_notification.parse -> {n.kind} {got}"

    def refused_by_sdk(signature, payload):
        n = parse(signature, payload)
        if not isinstance(n, str):
            raise RuntimeError(f"suite error: webhook_notification.parse accepts it ({n.kind})")
        return f"parse -> {n}"

    def encoded(body):
        return ", ".join(f"{n}x {c}" for c in ("%0A", "%2B", "%2F", "%3D") if (n := body.count(c.encode())))

    # (a) The SDK signs (one `public_key|hexsig` pair), posted as Braintree posts it.
    id_a, signed = sample(Kind.SubscriptionChargedSuccessfully, "sub_")
    sig_a, payload_a = signed["bt_signature"], signed["bt_payload"]
    body_a = form({"bt_signature": sig_a, "bt_payload": payload_a})

    def a():
        sdk = accepted(sig_a, payload_a, Kind.SubscriptionChargedSuccessfully, id_a)
        ok, detail = delivered(ctx, path, body_a, headers)
        return ok, f"WebhookTestingGateway.sample_notification; {sdk}; form with {encoded(body_a)}; {detail}"

    run_check("braintree", "sdk-signs", a)

    # A merchant with several API keys gets one pair per key: the pair of another key first,
    # made with the SDK's own Crypto.sha1_hmac_hash under that key's private key.
    other_public = "".join(secrets.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(16))
    other_private = secrets.token_hex(16)
    id_k, signed_k = sample(Kind.SubscriptionChargedSuccessfully, "sub_")
    sig_k = f"{other_public}|{Crypto.sha1_hmac_hash(other_private, signed_k['bt_payload'])}&{signed_k['bt_signature']}"
    body_k = form({"bt_signature": sig_k, "bt_payload": signed_k["bt_payload"]})

    def a2():
        sdk = accepted(sig_k, signed_k["bt_payload"], Kind.SubscriptionChargedSuccessfully, id_k)
        ok, detail = delivered(ctx, path, body_k, headers)
        return ok, f"another key's pair, then the route's; {sdk}; {detail}"

    run_check("braintree(2 keys)", "sdk-signs", a2)

    # (c) The delivered notification with its payload changed, still valid base64: the
    # amount in the XML, re-encoded as the SDK encodes it, under the original signature.
    xml = base64.decodebytes(payload_a)
    changed_payload = base64.encodebytes(xml.replace(b"<amount>49.99</amount>", b"<amount>4999.00</amount>", 1))
    body_changed = form({"bt_signature": sig_a, "bt_payload": changed_payload})

    def c1():
        if changed_payload == payload_a:
            raise RuntimeError("suite error: the amount is not in the sample XML as written")
        sdk = refused_by_sdk(sig_a, changed_payload)
        ok, detail = refused(ctx, path, body_changed, headers)
        return ok, f"amount 49.99 -> 4999.00 in bt_payload; {sdk}; {detail}"

    run_check("braintree(payload)", "tampered", c1)

    # The right signature, tagged with another public key only.
    sig_other = other_public + "|" + sig_a.split("|", 1)[1]
    body_other = form({"bt_signature": sig_other, "bt_payload": payload_a})

    def c2():
        sdk = refused_by_sdk(sig_other, payload_a)
        ok, detail = refused(ctx, path, body_other, headers)
        return ok, f"the pair tagged {other_public} only; {sdk}; {detail}"

    run_check("braintree(other key)", "tampered", c2)

    # Braintree's retry of the delivered notification: the same form, byte for byte.
    run_check("braintree", "retry", lambda: duplicate(ctx, path, body_a, headers))

    # (b) `hookgate sign` adds bt_signature to a form that has only bt_payload (--out-body).
    def b():
        id_b, unsigned = sample(Kind.DisputeOpened, "dp_")
        payload_b = unsigned["bt_payload"]
        body_b = form({"bt_payload": payload_b})
        out = os.path.join(ctx.work, f"braintree-signed-{uuid.uuid4().hex[:8]}.form")
        printed = hookgate_sign(ctx, "braintree", body_b, headers=[f"{k}: {v}" for k, v in headers.items()], out_body=out)
        with open(out, "rb") as f:
            signed_b = f.read()
        fields = urllib.parse.parse_qs(signed_b.decode("ascii"), keep_blank_values=True, strict_parsing=True)
        if fields.get("bt_payload") != [payload_b.decode("ascii")]:
            return False, f"the written form's bt_payload differs from the one given: {short(repr(fields.get('bt_payload')))}"
        if len(fields.get("bt_signature", [])) != 1:
            return False, f"the written form has {len(fields.get('bt_signature', []))} bt_signature fields: {short(signed_b.decode())}"
        sig_b = fields["bt_signature"][0]
        n = parse(sig_b, fields["bt_payload"][0])
        if isinstance(n, str):
            return False, f"hookgate sign wrote bt_signature={sig_b!r}: the SDK refuses it: {n}"
        if n.kind != Kind.DisputeOpened or n.dispute.id != id_b:
            return False, f"parse() read kind {n.kind!r}, id {n.dispute.id!r}"
        send_headers = {"Content-Type": printed.get("content-type", "")}
        if send_headers["Content-Type"] != headers["Content-Type"]:
            return False, f"hookgate sign printed Content-Type {send_headers['Content-Type']!r}"
        ok, detail = delivered(ctx, path, signed_b, send_headers)
        return ok, f"hookgate sign --out-body: bt_signature={sig_b.split('|')[0]}|...; webhook_notification.parse -> {n.kind} {id_b}; {detail}"

    run_check("braintree", "hookgate-signs", b)


def case_contentful(ctx):
    # @contentful/node-apps-toolkit (npm) signs and verifies: signRequest / verifyRequest
    # through sdk.mjs. Its secrets are 64 characters (it refuses others).
    secret = ctx.secrets["contentful"]
    path = "/webhooks/contentful"  # the route's exact path, no query string (the preset refuses one)
    default_list = "x-contentful-signed-headers,x-contentful-timestamp"  # Contentful's default signed headers
    base = {
        "Content-Type": "application/vnd.contentful.management.v1+json",
        "X-Contentful-Topic": "ContentManagement.Entry.publish",
        "X-Contentful-Webhook-Name": "interop",
        "User-Agent": "Contentful-Webhooks/1.0",
    }

    def event():
        space = "".join(secrets.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(12))
        stamp = datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        return compact(
            {
                "metadata": {"tags": []},
                "sys": {
                    "type": "Entry",
                    "id": secrets.token_urlsafe(16),
                    "space": {"sys": {"type": "Link", "linkType": "Space", "id": space}},
                    "environment": {"sys": {"id": "master", "type": "Link", "linkType": "Environment"}},
                    "contentType": {"sys": {"type": "Link", "linkType": "ContentType", "id": "recipe"}},
                    "revision": 1,
                    "createdAt": stamp,
                    "updatedAt": stamp,
                },
                "fields": {"title": {"en-US": "Crème brûlée ☕"}, "serves": {"en-US": 4}},
            }
        )

    def sdk_sign(body, sign_headers=None):
        req = {"action": "sign", "provider": "contentful", "secret": secret, "body": body.decode(), "path": path}
        if sign_headers:
            req["sign_headers"] = sign_headers
        return node(ctx, req)["headers"]

    def sdk_verify(body, headers):
        return node(ctx, {"action": "verify", "provider": "contentful", "secret": secret, "body": body.decode(), "headers": headers, "path": path})

    def forwarded(body, headers, want_headers):
        """delivered(), and the upstream also got the x-contentful-* headers as sent."""
        return delivered(ctx, path, body, headers, want_headers=want_headers)

    # (a) signRequest signs the request; the app's verifyRequest accepts it; the gateway delivers it.
    body = event()
    signed = sdk_sign(body)
    headers = dict(base, **signed)

    def a():
        names = sorted(signed)
        if names != ["x-contentful-signature", "x-contentful-signed-headers", "x-contentful-timestamp"]:
            return False, f"suite error: signRequest answered headers {names}"
        if signed["x-contentful-signed-headers"] != default_list:
            return False, f"suite error: signRequest signed {signed['x-contentful-signed-headers']!r}, not the default list"
        v = sdk_verify(body, headers)
        if not v["ok"]:
            return False, f"suite error: verifyRequest refuses signRequest's headers: {v['detail']}"
        ok, detail = forwarded(body, headers, signed)
        return ok, f"signRequest (lower-case x-contentful-* headers, signed-headers {default_list}; verifyRequest accepts them); {detail}"

    run_check("contentful", "sdk-signs", a)
    run_check("contentful", "tampered", lambda: refused(ctx, path, tamper(body), headers))

    # (b) `hookgate sign` for the route; verifyRequest accepts what it printed; the gateway delivers.
    # `hookgate sign` fills x-contentful-timestamp but not the signed-headers list (without it:
    # "missing header x-contentful-signed-headers (part of the signed message)"): given here.
    SIGN_HEADERS_GIVEN = [f"x-contentful-signed-headers: {default_list}"]

    def b():
        body_b = event()
        printed = hookgate_sign(ctx, "contentful", body_b, headers=SIGN_HEADERS_GIVEN)
        want = {"x-contentful-signature", "x-contentful-signed-headers", "x-contentful-timestamp"}
        if not want <= set(printed):
            return False, f"hookgate sign printed {sorted(printed)}, not {sorted(want)}"
        stamp = printed["x-contentful-timestamp"]
        if not (stamp.isdigit() and len(stamp) == 13):
            return False, f"hookgate sign printed x-contentful-timestamp {stamp!r} (not milliseconds)"
        v = sdk_verify(body_b, dict(base, **printed))
        if not v["ok"]:
            return False, f"{v['detail']} for hookgate sign's {printed}"
        sent = {k: printed[k] for k in sorted(want)}
        ok, detail = forwarded(body_b, dict(base, **sent), sent)
        return ok, f"hookgate sign (timestamp {stamp} filled; signed-headers given with --header); {v['detail']}; {detail}"

    run_check("contentful", "hookgate-signs", b)

    # (c) A webhook configured to sign one more header: signRequest signs it (verifyRequest
    # accepts it: the app would), the gateway refuses it, as the preset says.
    def c():
        body_c = event()
        extra = {"x-interop-tenant": "kitchen-42"}
        signed_c = sdk_sign(body_c, extra)
        listed = signed_c["x-contentful-signed-headers"]
        if "x-interop-tenant" not in listed.split(","):
            return False, f"suite error: signRequest signed {listed!r}"
        v = sdk_verify(body_c, dict(base, **signed_c))
        if not v["ok"]:
            return False, f"suite error: verifyRequest refuses it: {v['detail']}"
        ok, detail = refused(ctx, path, body_c, dict(base, **signed_c))
        return ok, (
            f"signed headers {listed} (verifyRequest accepts them): the preset supports Contentful's "
            f"default signed headers only (docs/presets.md), such a webhook needs its scheme written out; {detail}"
        )

    run_check("contentful(extra hdr)", "tampered", c)


# Google Pub/Sub push: the route's audience and push service account.
PUBSUB_PATH = "/webhooks/google-pubsub"
PUBSUB_AUDIENCE = PUBLIC_URL + PUBSUB_PATH
PUBSUB_EMAIL = "interop-push@interop-project.iam.gserviceaccount.com"


def case_google_pubsub(ctx):
    # google-auth (PyPI) signs ID tokens (google.auth.jwt.encode) and verifies them
    # (google.oauth2.id_token), fetching Google's keys through google_auth_request(): the
    # key host under www.googleapis.com, which the gateway reaches the same way.
    import google.auth.crypt
    import google.auth.jwt
    from google.oauth2 import id_token

    pki = ctx.pki
    path = PUBSUB_PATH
    request = google_auth_request(ctx.keyhost)
    jwks_url = f"https://{GOOGLE_HOST}/oauth2/v3/certs"  # the preset's key URL
    signer = google.auth.crypt.RSASigner.from_string(pki.signing_key_pem)

    def push():
        """A push delivery's body as Pub/Sub sends it (each field under both its spellings)."""
        message_id = str(secrets.randbits(52))
        published = datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        data = base64.b64encode(compact({"order": 1042, "note": "Crème brûlée ☕ for Zoë"})).decode()
        return compact(
            {
                "message": {
                    "attributes": {"origin": "interop"},
                    "data": data,
                    "messageId": message_id,
                    "message_id": message_id,
                    "publishTime": published,
                    "publish_time": published,
                },
                "subscription": "projects/interop-project/subscriptions/orders-push",
            }
        )

    def claims(audience):
        # What Google puts in a push token (its docs' example, with this route's values).
        now = now_s()
        sub = "113774264463038321964"
        return {
            "aud": audience,
            "azp": sub,
            "email": PUBSUB_EMAIL,
            "email_verified": True,
            "exp": now + 3600,
            "iat": now,
            "iss": "https://accounts.google.com",
            "sub": sub,
        }

    def sdk_token(audience=PUBSUB_AUDIENCE):
        return google.auth.jwt.encode(signer, claims(audience), key_id=pki.kid).decode()

    def documented_token(audience=PUBSUB_AUDIENCE):
        # A JWT as Google documents one (and RFC 7515): base64url(header) "." base64url(claims),
        # signed with RSA SHA-256 (PKCS#1 v1.5); with `cryptography`, not google-auth.
        header = b64url(compact({"alg": "RS256", "kid": pki.kid, "typ": "JWT"}))
        payload = b64url(compact(claims(audience)))
        return f"{header}.{payload}.{b64url(pki.rsa_sign(f'{header}.{payload}'.encode()))}"

    def headers(token):
        return {
            "Content-Type": "application/json",
            "User-Agent": "APIs-Google; (+https://developers.google.com/webmasters/APIs-Google.html)",
            "Authorization": f"Bearer {token}",
        }

    def google_auth_accepts(token):
        """google-auth's verifiers, as Google's Pub/Sub docs have an app call them:
        verify_oauth2_token (Google's v1 certificates; it also checks `iss`), and verify_token
        on the JWKS the gateway reads (google-auth hands a JWKS to PyJWT); then the app's own
        check of the service account. Raises unless all accept."""
        by_v1 = id_token.verify_oauth2_token(token, request, audience=PUBSUB_AUDIENCE)
        by_jwks = id_token.verify_token(token, request, audience=PUBSUB_AUDIENCE, certs_url=jwks_url)
        for seen in (by_v1, by_jwks):
            if seen.get("email") != PUBSUB_EMAIL or seen.get("email_verified") is not True:
                raise ValueError(f"google-auth read email {seen.get('email')!r}, email_verified {seen.get('email_verified')!r}")
        return "verify_oauth2_token (v1 certs) and verify_token (v3 JWKS) accept it"

    # (a) google-auth signs; google-auth accepts it first (so the token is right), then the gateway.
    body = push()
    sent = headers(sdk_token())

    def a():
        saw = google_auth_accepts(sent["Authorization"][len("Bearer ") :])
        ok, detail = delivered(ctx, path, body, sent)
        fetched = ctx.keyhost.gateway_fetched("/oauth2/v3/certs", "the JWKS")
        return ok, f"google.auth.jwt.encode(RSASigner, kid) RS256; {saw}; {detail}; {fetched}"

    run_check("google-pubsub", "sdk-signs", a)
    # Pub/Sub's redelivery: the same message (same messageId), under a token of its own.
    run_check("google-pubsub", "retry", lambda: duplicate(ctx, path, body, headers(sdk_token())))

    # (b) a token signed without google-auth: google-auth's verifiers accept it, and so does the gateway.
    def b():
        token = documented_token()
        saw = google_auth_accepts(token)
        ok, detail = delivered(ctx, path, push(), headers(token))
        fetched = ctx.keyhost.gateway_fetched("/oauth2/v3/certs", "the JWKS")
        return ok, f"signed as documented (RS256 with `cryptography`); google-auth: {saw}; {detail}; {fetched}"

    run_check("google-pubsub", "sdk-verifies", b)

    # (c) a token for another audience (another project's push subscription to this URL):
    # refused by google-auth and by the gateway, and nothing forwarded.
    def c():
        token = sdk_token("https://other.example.com/push")
        said = []
        for verify in (
            lambda: id_token.verify_oauth2_token(token, request, audience=PUBSUB_AUDIENCE),
            lambda: id_token.verify_token(token, request, audience=PUBSUB_AUDIENCE, certs_url=jwks_url),
        ):
            try:
                verify()
            except Exception as e:  # noqa: BLE001 - the refusal must be the audience's
                if "audience" not in str(e).lower():
                    return False, f"google-auth refused it for another reason: {type(e).__name__}: {e}"
                said.append(f"{type(e).__name__}: {short(str(e), 40)}")
                continue
            return False, "google-auth accepted a token for another audience"
        ok, detail = refused(ctx, path, push(), headers(token))
        if ok and "aud" not in detail:
            return False, f"gateway {detail}: refused, but not for its audience"
        return ok, f"a token for another audience: google-auth refuses it ({'; '.join(said)}); gateway {detail}"

    run_check("google-pubsub", "tampered", c)


SNS_TOPIC = "arn:aws:sns:eu-west-1:123456789012:interop-orders"
# The fields SNS signs, per message type (AWS's "Verifying the signatures of Amazon SNS messages").
SNS_SIGNED = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
}


def case_aws_sns(ctx):
    # sns-validator (npm, AWS's own) only verifies: messages are signed here as SNS signs them,
    # with the test key whose certificate the key host serves. SigningCertURL is not signed, so
    # the copy the validator gets names the key host as https://localhost:<port>/... (which it
    # fetches itself, trusting the test CA through NODE_EXTRA_CA_CERTS), while the gateway's
    # names SNS's own host, https://sns.eu-west-1.amazonaws.com/... (key_fetch.connect_to).
    pki = ctx.pki
    path = "/webhooks/aws-sns"
    gateway_url = f"https://{SNS_HOST}{pki.sns_cert_path}"
    validator_url = f"https://localhost:{ctx.keyhost.port}{pki.sns_cert_path}"
    host_pattern = f"^localhost:{ctx.keyhost.port}$"  # MessageValidator tests the URL's host:port

    def message(kind="Notification", version="2", subject=True):
        """A message as SNS writes it (its fields in SNS's order), signed: `Key\\nvalue\\n` for
        each signed field present, RSA with SHA-256 (SignatureVersion 2) or SHA-1 (1)."""
        m = {"Type": kind, "MessageId": str(uuid.uuid4())}
        if kind == "SubscriptionConfirmation":
            m["Token"] = secrets.token_hex(64)
        m["TopicArn"] = SNS_TOPIC
        if kind == "Notification":
            if subject:
                m["Subject"] = "order placed"
            # A JSON document as text, with a line break: both are signed as they are.
            m["Message"] = json.dumps({"order": 1042, "note": "Café ☕ for Zoë"}, ensure_ascii=False) + "\nsecond line"
        else:
            m["Message"] = f"You have chosen to subscribe to the topic {SNS_TOPIC}.\nTo confirm the subscription, visit the SubscribeURL included in this message."
            m["SubscribeURL"] = f"https://{SNS_HOST}/?Action=ConfirmSubscription&TopicArn={SNS_TOPIC}&Token={m['Token']}"
        m["Timestamp"] = datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        m["SignatureVersion"] = version
        m["Signature"] = sns_signature(m)
        m["SigningCertURL"] = gateway_url
        if kind == "Notification":
            m["UnsubscribeURL"] = f"https://{SNS_HOST}/?Action=Unsubscribe&SubscriptionArn={SNS_TOPIC}:{uuid.uuid4()}"
        return m

    def sns_signature(m):
        text = "".join(f"{k}\n{m[k]}\n" for k in SNS_SIGNED[m["Type"]] if k in m)
        return base64.b64encode(pki.rsa_sign(text.encode(), sha1=m["SignatureVersion"] == "1")).decode()

    def body(m, cert_url=gateway_url):
        # As SNS posts it: indented, `"Key" : value`, UTF-8 as it is.
        return json.dumps(dict(m, SigningCertURL=cert_url), indent=2, separators=(",", " : "), ensure_ascii=False).encode()

    def headers(m):
        h = {
            "Content-Type": "text/plain; charset=UTF-8",
            "User-Agent": "Amazon Simple Notification Service Agent",
            "x-amz-sns-message-type": m["Type"],
            "x-amz-sns-message-id": m["MessageId"],
            "x-amz-sns-topic-arn": m["TopicArn"],
        }
        if m["Type"] == "Notification":
            h["x-amz-sns-subscription-arn"] = m["UnsubscribeURL"].rsplit("=", 1)[1]
        return h

    cases = {
        "aws-sns": message(),
        "aws-sns(v1)": message(version="1", subject=False),
        "aws-sns(subscribe)": message("SubscriptionConfirmation"),
    }
    changed = dict(cases["aws-sns"], Message=cases["aws-sns"]["Message"].replace("1042", "9042"))
    answers = {}

    def validate():
        """sns-validator on every message above and the changed one: one Node process."""
        if not answers:
            names = list(cases) + ["changed"]
            messages = list(cases.values()) + [changed]
            requests = [{"action": "verify", "provider": "aws-sns", "host_pattern": host_pattern, "body": body(m, validator_url).decode()} for m in messages]
            answers.update(zip(names, node(ctx, requests, env={"NODE_EXTRA_CA_CERTS": pki.ca_file})))
        return answers

    for label, m in cases.items():

        def check(label=label, m=m):
            v = validate()[label]
            if not v["ok"]:
                return False, f"suite error: sns-validator refuses the message signed as SNS signs: {v['detail']}"
            ok, detail = delivered(ctx, path, body(m), headers(m))
            fetched = ctx.keyhost.gateway_fetched(pki.sns_cert_path, "the certificate")
            return ok, f"{m['Type']} v{m['SignatureVersion']} signed as SNS signs; sns-validator accepts it; {detail}; {fetched}"

        run_check(label, "sdk-verifies", check)

    def tampered():
        v = validate()["changed"]
        if v["ok"]:
            return False, "sns-validator accepted a changed Message"
        ok, detail = refused(ctx, path, body(changed), headers(changed))
        if ok and "signature does not match" not in detail:
            return False, f"gateway {detail}: refused, but not for its signature"
        return ok, f"Message changed: sns-validator refuses it ({v['detail']}); gateway {detail}"

    run_check("aws-sns", "tampered", tampered)
    # SNS's retry: the same message, MessageId and signature.
    m = cases["aws-sns"]
    run_check("aws-sns", "retry", lambda: duplicate(ctx, path, body(m), headers(m)))


# eBay's Notification API: the route, and the endpoint registered with eBay for it.
EBAY_PATH = "/webhooks/ebay"
EBAY_ENDPOINT = PUBLIC_URL + EBAY_PATH


def case_ebay(ctx):
    # event-notification-nodejs-sdk (npm, eBay's own) only verifies: notifications are signed
    # here as eBay documents it (X-EBAY-SIGNATURE, base64 of {"alg":"ecdsa","kid",
    # "signature","digest":"SHA1"}; the signature base64 DER ECDSA P-256 with SHA-1 over the
    # body, which eBay sends compact), with the eBay key whose PEM the key host serves under
    # api.ebay.com, to the gateway only with the application token it gives for the route's
    # keyset. The SDK would fetch that key itself (axios, with an OAuth token from eBay);
    # sdk.mjs gives it the key API's answer for the kid instead, so it verifies offline.
    pki = ctx.pki
    path = EBAY_PATH
    key_path = EBAY_KEY_PATH + pki.ebay_kid

    def notification():
        """A Marketplace Account Deletion notification as eBay writes it (the fields of its
        SDK's example), with non-ASCII text in the username."""
        now = datetime.now(timezone.utc)
        return {
            "metadata": {"topic": "MARKETPLACE_ACCOUNT_DELETION", "schemaVersion": "1.0", "deprecated": False},
            "notification": {
                "notificationId": f"{uuid.uuid4()}_{uuid.uuid4()}",
                "eventDate": (now - timedelta(seconds=1)).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                "publishDate": now.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                "publishAttemptCount": 1,
                "data": {
                    "username": "zoë_crème-brûlée☕",
                    "userId": secrets.token_urlsafe(8),
                    "eiasToken": base64.b64encode(secrets.token_bytes(40)).decode(),
                },
            },
        }

    def envelope(signature):
        return base64.b64encode(compact({"alg": "ecdsa", "kid": pki.ebay_kid, "signature": signature, "digest": "SHA1"})).decode()

    def headers(signature):
        return {"Content-Type": "application/json", "X-EBAY-SIGNATURE": envelope(signature)}

    # eBay's signatures come with s in either half of the group order (the one in its SDK's
    # tests is high-s): sign until there is one of each, each for a notification of its own.
    sent = {}
    for _ in range(64):
        n = notification()
        sig = pki.ebay_sign(compact(n))
        sent.setdefault("high-s" if ecdsa_high_s(sig) else "low-s", (n, headers(sig)))
        if len(sent) == 2:
            break
    # A third, signed over its compact form as eBay signs, sent indented (as the notification in
    # the SDK's own tests is): the SDK verifies what JSON.stringify writes of its parse.
    indented = notification()
    sent["indented"] = (indented, headers(pki.ebay_sign(compact(indented))))
    first, first_headers = sent.get("low-s") or sent["indented"]
    changed = json.loads(json.dumps(first))
    changed["notification"]["data"]["username"] += "x"
    bodies = {
        "low-s": compact(sent["low-s"][0]) if "low-s" in sent else None,
        "high-s": compact(sent["high-s"][0]) if "high-s" in sent else None,
        "indented": pretty(indented),
        "changed": compact(changed),
    }
    sent_headers = {label: h for label, (_, h) in sent.items()}
    sent_headers["changed"] = first_headers
    code = str(uuid.uuid4())
    answers = {}

    def sdk():
        """The SDK on every body above and on the endpoint check: one Node process."""
        if not answers:
            labels = [label for label, body in bodies.items() if body is not None]
            requests = [
                {
                    "action": "verify",
                    "provider": "ebay",
                    "body": bodies[label].decode(),
                    "headers": sent_headers[label],
                    "keys": {pki.ebay_kid: pki.ebay_key_answer},
                }
                for label in labels
            ]
            requests.append(
                {"action": "challenge", "provider": "ebay", "challenge_code": code, "verification_token": ctx.secrets["ebay-verify-token"], "endpoint": EBAY_ENDPOINT}
            )
            got = node(ctx, requests)
            answers.update(zip(labels + ["challenge"], got))
        return answers

    def fetched():
        return f"{ctx.keyhost.gateway_fetched(EBAY_TOKEN_PATH, 'a token')}; {ctx.keyhost.gateway_fetched(key_path, 'the key')}"

    for label in ("low-s", "high-s", "indented"):

        def check(label=label):
            if bodies[label] is None:
                return False, f"suite error: 64 signatures, none with {label}"
            v = sdk()[label]
            if not v["ok"] or v["status"] != 204:
                return False, f"suite error: the SDK refuses the notification signed as eBay signs: {v['detail']}"
            ok, detail = delivered(ctx, path, bodies[label], sent_headers[label])
            how = "signed over its compact form, sent indented" if label == "indented" else "signed as eBay signs, sent compact"
            return ok, f"{how}; {v['detail']}; {detail}; {fetched()}"

        run_check(f"ebay({label})", "sdk-verifies", check)

    def tampered():
        v = sdk()["changed"]
        if v["ok"] or v["status"] != 412:
            return False, f"the SDK did not refuse a changed username: {v['detail']}"
        ok, detail = refused(ctx, path, bodies["changed"], first_headers)
        if ok and "signature does not match" not in detail:
            return False, f"gateway {detail}: refused, but not for its signature"
        return ok, f"username changed: the SDK refuses it ({v['detail']}); gateway {detail}"

    run_check("ebay", "tampered", tampered)
    # eBay's retry: the same notification (same notificationId), as it was sent; and the same
    # notification re-indented under its header, which verifies by its compact form (the
    # gateway verifies before it deduplicates) and is a duplicate all the same: the route
    # deduplicates by notificationId, not by the bytes.
    run_check("ebay", "retry", lambda: duplicate(ctx, path, compact(first), first_headers))
    run_check("ebay(re-indented)", "retry", lambda: duplicate(ctx, path, pretty(first), first_headers))

    # eBay's endpoint check: GET ?challenge_code=..., answered by the gateway (nothing
    # forwarded), with what the SDK's validateEndpoint computes for the same token and endpoint.
    def handshake():
        want = sdk()["challenge"].get("challengeResponse")
        if not isinstance(want, str) or not re.fullmatch(r"[0-9a-f]{64}", want):
            return False, f"suite error: validateEndpoint() answered {want!r}"
        ctx.recorder.take()
        status, text, answer_headers = ctx.gw.send(f"{path}?challenge_code={urllib.parse.quote(code)}", b"", {}, "GET")
        got = ctx.recorder.take()
        if got:
            return False, f"gateway answered {status} and forwarded the challenge"
        if status != 200:
            return False, f"gateway answered {status} {short(text.strip())!r}"
        ctype = CaseInsensitive(answer_headers).get("Content-Type")
        answer = json.loads(text)
        if answer != {"challengeResponse": want}:
            return False, f"gateway answered {short(text.strip())!r}; validateEndpoint() computes {want}"
        return True, f"validateEndpoint() computes {want[:16]}...; the gateway answered the same ({ctype}), nothing forwarded"

    run_check("ebay", "handshake", handshake)


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------

HMAC_ROUTES = [
    "github",
    "stripe",
    "slack",
    "shopify",
    "standard-webhooks",
    "svix",
    "paddle",
    "zoom",
    "linear",
    "webflow",
    "twilio",
    "square",
    "razorpay",
    "castle",
    "hubspot",
    "openai",
    "adyen",
    "contentful",
]
# Routes with two secrets, either of which may have signed (`secrets:`): the first is current.
TWO_KEY_ROUTES = {"box": ["box-primary", "box-secondary"], "worldline": ["worldline", "worldline-old"]}
# Routes whose preset signs the URL the sender called.
PUBLIC_URL_ROUTES = ("twilio", "square", "hubspot")


def make_secrets():
    s = {name: secrets.token_hex(16) for name in HMAC_ROUTES + [k for keys in TWO_KEY_ROUTES.values() for k in keys]}
    s["stripe"] = "whsec_" + secrets.token_hex(16)  # Stripe: the whole whsec_ string is the key
    s["standard-webhooks"] = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    s["svix"] = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    s["paddle"] = "pdl_ntfset_" + secrets.token_hex(13) + "_" + secrets.token_urlsafe(24)
    s["square"] = secrets.token_urlsafe(16)
    s["openai"] = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    s["box-primary"] = secrets.token_urlsafe(24)  # Box's keys: 32 letters and digits
    s["box-secondary"] = secrets.token_urlsafe(24)
    s["adyen"] = secrets.token_hex(32).upper()  # Adyen's HMAC keys: 64 hex digits, as shown in its Customer Area
    s["braintree"] = secrets.token_hex(16)  # Braintree's private keys: 32 hex digits
    # Contentful's request-verification secrets: 64 characters (its toolkit refuses any other length)
    s["contentful"] = "".join(secrets.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789") for _ in range(64))
    # eBay: the application keyset the gateway gets its tokens with (App ID, Cert ID, as eBay's
    # developer portal shows them), and the endpoint's verification token (32 to 80 of
    # [A-Za-z0-9_-], as eBay requires).
    s["ebay-client-id"] = f"hookgate-interop-PRD-{secrets.token_hex(5)[:9]}-{secrets.token_hex(4)}"
    s["ebay"] = f"PRD-{secrets.token_hex(6)}-{secrets.token_hex(2)}-{secrets.token_hex(2)}-{secrets.token_hex(2)}-{secrets.token_hex(2)}"
    s["ebay-verify-token"] = secrets.token_urlsafe(36)
    return s


def env_name(route):
    return "INTEROP_" + route.upper().replace("-", "_") + "_SECRET"


def write_config(ctx, upstream_port):
    upstream = f"http://127.0.0.1:{upstream_port}"
    routes = []
    for name in HMAC_ROUTES:
        route = {"name": name, "path": f"/webhooks/{name}", "upstream": upstream, "verify": {"preset": name, "secret": "${%s}" % env_name(name)}}
        if name in PUBLIC_URL_ROUTES:
            route["public_url"] = PUBLIC_URL
        routes.append(route)
    for name, keys in TWO_KEY_ROUTES.items():
        routes.append(
            {"name": name, "path": f"/webhooks/{name}", "upstream": upstream, "verify": {"preset": name, "secrets": ["${%s}" % env_name(k) for k in keys]}}
        )
    # Twilio's signing keys (X-Twilio-Webhooks-Signature-Settings: ...,algorithm=HMAC_SHA256).
    routes.append(
        {
            "name": "twilio-sha256",
            "path": "/webhooks/twilio-sha256",
            "upstream": upstream,
            "public_url": PUBLIC_URL,
            "verify": {"preset": "twilio-sha256", "secret": "${%s}" % env_name("twilio")},
        }
    )
    routes.append(
        {"name": "discord", "path": "/webhooks/discord", "upstream": upstream, "verify": {"preset": "discord", "public_key": ctx.keys["ed25519"]["public_hex"]}}
    )
    routes.append(
        {"name": "sendgrid", "path": "/webhooks/sendgrid", "upstream": upstream, "verify": {"preset": "sendgrid", "public_key": ctx.keys["p256"]["public_b64der"]}}
    )
    # Braintree: the route names its public key (key_id), the id its signatures are tagged with.
    routes.append(
        {
            "name": "braintree",
            "path": "/webhooks/braintree",
            "upstream": upstream,
            "verify": {"preset": "braintree", "key_id": ctx.key_ids["braintree"], "secret": "${%s}" % env_name("braintree")},
        }
    )
    # Senders whose keys live on the network: the gateway fetches them from the key host.
    routes.append(
        {
            "name": "google-pubsub",
            "path": PUBSUB_PATH,
            "upstream": upstream,
            "verify": {"preset": "google-pubsub", "jwt": {"audience": PUBSUB_AUDIENCE, "claims": {"email": PUBSUB_EMAIL}}},
        }
    )
    routes.append(
        {"name": "aws-sns", "path": "/webhooks/aws-sns", "upstream": upstream, "verify": {"preset": "aws-sns", "json_allowed": {"/TopicArn": [SNS_TOPIC]}}}
    )
    # eBay: keys from its key API, asked with a token for the route's keyset; the endpoint
    # check answered with the verification token and the endpoint as registered with eBay.
    routes.append(
        {
            "name": "ebay",
            "path": EBAY_PATH,
            "upstream": upstream,
            "verify": {
                "preset": "ebay",
                "key_url": {"token": {"client_id": "${%s}" % env_name("ebay-client-id"), "client_secret": "${%s}" % env_name("ebay")}},
            },
            "handshake": {"verify_token": "${%s}" % env_name("ebay-verify-token"), "endpoint": EBAY_ENDPOINT},
        }
    )
    # Every route deduplicates by its preset's default key (docs/configuration.md: "Default key by preset"),
    # so each delivery also shows that the provider's request carries the id the preset reads
    # (else: 400 replay_key_missing).
    for route in routes:
        route["replay"] = {}
    config = {
        "workers": 1,
        "log": {"format": "text", "level": "info"},
        "listeners": [{"addr": "127.0.0.1:0"}],
        "admin": {"addr": "127.0.0.1:0"},
        "limits": {"drain_delay": "0s", "shutdown_grace": "2s"},
        # The senders' key hosts are the suite's loopback key host, under their own names, with
        # a certificate from the suite's test CA (docs/network-keys.md: "Trying it on one machine").
        "key_fetch": {"ca_file": ctx.pki.ca_file, "allow_private_addresses": True, "connect_to": ctx.keyhost.connect_to()},
        "routes": routes,
    }
    with open(ctx.config, "w") as f:
        f.write("# Written by tests/interop/interop.py for one run (JSON is YAML).\n")
        json.dump(config, f, indent=2)
        f.write("\n")


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------


# The checks a full run makes (117 when last counted): a run with fewer skipped something.
MIN_CHECKS = 117


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hookgate", default=os.path.join(ROOT, "target/debug/hookgate"))
    ap.add_argument("--node-dir", default=os.path.join(ROOT, "target/interop/node"), help="where `npm ci` installed package.json")
    ap.add_argument("--work", default=os.path.join(ROOT, "target/interop/run"), help="scratch directory (config, bodies, keys, log)")
    args = ap.parse_args()

    started = time.monotonic()
    ctx = Ctx()
    ctx.hookgate = os.path.abspath(args.hookgate)
    ctx.node_dir = os.path.abspath(args.node_dir)
    ctx.work = os.path.abspath(args.work)
    shutil.rmtree(ctx.work, ignore_errors=True)
    os.makedirs(ctx.work, mode=0o700)
    ctx.config = os.path.join(ctx.work, "gateway.yaml")
    # sdk.mjs resolves its imports from its own directory: run a copy beside node_modules.
    ctx.sdk_mjs = os.path.join(ctx.node_dir, "sdk.mjs")
    shutil.copyfile(os.path.join(HERE, "sdk.mjs"), ctx.sdk_mjs)

    ctx.secrets = make_secrets()
    # Braintree's public key (16 letters and digits, as its Control Panel shows them) and merchant id.
    alnum = "abcdefghijklmnopqrstuvwxyz0123456789"
    ctx.key_ids = {"braintree": "".join(secrets.choice(alnum) for _ in range(16))}
    ctx.braintree_merchant = "".join(secrets.choice(alnum) for _ in range(16))
    ctx.env = dict(os.environ, **{env_name(n): v for n, v in ctx.secrets.items()})
    ctx.env.pop("HOOKGATE_LOG", None)
    ed, p256 = node(ctx, [{"action": "keygen", "kind": "ed25519"}, {"action": "keygen", "kind": "p256"}])
    ctx.keys = {"ed25519": ed, "p256": p256}
    ctx.key_files = {}
    for kind, k in ctx.keys.items():
        ctx.key_files[kind] = os.path.join(ctx.work, f"{kind}.key")
        with open(ctx.key_files[kind], "w") as f:
            f.write(k["private_hex"] + "\n")

    ctx.pki = KeyHostPki(ctx.work)
    ctx.keyhost = KeyHost(ctx.pki, (ctx.secrets["ebay-client-id"], ctx.secrets["ebay"]))
    ctx.recorder = Recorder()
    upstream = start_upstream(ctx.recorder)
    write_config(ctx, upstream.server_address[1])
    ctx.gw = Gateway(ctx.hookgate, ctx.config, ctx.env, os.path.join(ctx.work, "hookgate.log"))
    ctx.gw.start()
    version = subprocess.run([ctx.hookgate, "--version"], capture_output=True, text=True).stdout.strip()
    print(f"{version} ({ctx.hookgate}) on {ctx.gw.addr} (pid {ctx.gw.proc.pid}), upstream 127.0.0.1:{upstream.server_address[1]}, config {ctx.config}", flush=True)
    try:
        case_stripe(ctx)
        case_slack(ctx)
        case_standard_webhooks(ctx, "standard-webhooks", "standardwebhooks")
        case_standard_webhooks(ctx, "svix", "svix.webhooks")
        case_twilio(ctx)
        case_square(ctx)
        case_paddle(ctx)
        case_github(ctx)
        case_shopify(ctx)
        case_discord(ctx)
        case_sendgrid(ctx)
        case_linear(ctx)
        case_webflow(ctx)
        case_zoom(ctx)
        case_razorpay(ctx)
        case_castle(ctx)
        case_box(ctx)
        case_hubspot(ctx)
        case_openai(ctx)
        case_worldline(ctx)
        case_adyen(ctx)
        case_braintree(ctx)
        case_contentful(ctx)
        case_google_pubsub(ctx)
        case_aws_sns(ctx)
        case_ebay(ctx)
    finally:
        ctx.gw.stop()
        upstream.shutdown()
        ctx.keyhost.server.shutdown()

    agree = sum(1 for r in RESULTS if r[0])
    print(f"{agree} of {len(RESULTS)} checks agree ({time.monotonic() - started:.1f} s; gateway log: {ctx.gw.log_path})")
    # Every provider above adds its checks; a run with fewer proves less than it claims.
    if len(RESULTS) < MIN_CHECKS:
        print(f"FAIL  only {len(RESULTS)} checks ran, fewer than the {MIN_CHECKS} this suite has")
        return 1
    return 0 if agree == len(RESULTS) else 1


if __name__ == "__main__":
    sys.exit(main())
