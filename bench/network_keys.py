#!/usr/bin/env python3
"""Whole-gateway load on routes whose keys are fetched (issue 23), beside an HMAC route and
the upstream direct, in one run.

Run by `bash bench/run.sh --network-keys` (which installs wrk and builds the binaries), or
directly once they are built. A key host on loopback (Python's HTTPS server, a CA made here)
serves, under the senders' own names (`key_fetch.connect_to`):
  - an SNS signing certificate (`sns.eu-west-1.amazonaws.com`, issued to sns.amazonaws.com);
  - eBay's token endpoint and its public key API (`api.ebay.com`).
hookgate (one worker, pinned to core 0) runs four routes: `hook` (GitHub, HMAC-SHA256: the
reference), `sns` (aws-sns, RSA-2048 SHA-256, signature version 2), `ebay` (ECDSA P-256 SHA-1
over the compact body) and `sns-v1` is not run (SHA-1 costs the same RSA verify). wrk (one
thread) and the upstream share core 1. Each case sends one ~1 KiB message signed as the
sender signs it, over 32 keep-alive connections; rounds are interleaved and each figure is a
median. After the runs, hookgate's own counters say how many fetches the load caused.

Writes bench/results/network-keys.json and .md and prints the table.
"""

import argparse
import base64
import datetime
import http.server
import json
import os
import ssl
import subprocess
import sys
import tempfile
import threading
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench as b  # noqa: E402  (the side-by-side benchmark's helpers)

from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402

SNS_HOST = "sns.eu-west-1.amazonaws.com"
SNS_CERT_PATH = "/SimpleNotificationService-bench.pem"
TOPIC = "arn:aws:sns:eu-west-1:123456789012:bench"
EBAY_HOST = "api.ebay.com"
EBAY_KID = "bench-0000-0000-0000-000000000001"


def name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def issue(subject_key, subject, issuer_key, issuer, sans=None, ca=False):
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder()
               .subject_name(name(subject)).issuer_name(name(issuer))
               .public_key(subject_key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(days=1))
               .not_valid_after(now + datetime.timedelta(days=2))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if sans:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(s) for s in sans]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def pem(cert):
    return cert.public_bytes(serialization.Encoding.PEM)


class KeyHost:
    """An HTTPS key host on loopback: a CA, its certificate for the senders' names, and a
    document per path. Counts requests."""

    def __init__(self, tmp):
        ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        ca = issue(ca_key, "hookgate bench CA", ca_key, "hookgate bench CA", ca=True)
        host_key = ec.generate_private_key(ec.SECP256R1())
        host = issue(host_key, SNS_HOST, ca_key, "hookgate bench CA", sans=[SNS_HOST, EBAY_HOST])
        self.ca_file = os.path.join(tmp, "ca.pem")
        open(self.ca_file, "wb").write(pem(ca))
        cert_file, key_file = os.path.join(tmp, "host.pem"), os.path.join(tmp, "host.key")
        open(cert_file, "wb").write(pem(host))
        open(key_file, "wb").write(host_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
        # SNS's signing key and certificate, issued to the name SNS's certificates carry.
        self.sns_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        sns_cert = issue(self.sns_key, "sns.amazonaws.com", ca_key, "hookgate bench CA",
                         sans=["sns.amazonaws.com"])
        # eBay's ECDSA key, as its key API answers it (PEM on one line).
        self.ebay_key = ec.generate_private_key(ec.SECP256R1())
        spki = self.ebay_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        one_line = ("-----BEGIN PUBLIC KEY-----" + base64.b64encode(spki).decode()
                    + "-----END PUBLIC KEY-----")
        self.docs = {
            SNS_CERT_PATH: pem(sns_cert),
            "/identity/v1/oauth2/token": json.dumps(
                {"access_token": "bench-token", "expires_in": 7200}).encode(),
            f"/commerce/notification/v1/public_key/{EBAY_KID}": json.dumps(
                {"key": one_line, "algorithm": "ECDSA", "digest": "SHA1"}).encode(),
        }
        self.requests = 0
        host = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def answer(self):
                host.requests += 1
                length = int(self.headers.get("content-length") or 0)
                if length:
                    self.rfile.read(length)
                doc = host.docs.get(self.path)
                if doc is None:
                    self.send_response(404)
                    self.send_header("content-length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("cache-control", "max-age=3600")
                self.send_header("content-length", str(len(doc)))
                self.end_headers()
                self.wfile.write(doc)

            do_GET = answer
            do_POST = answer

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_file, key_file)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def sns_message(self, size):
        now = datetime.datetime.now(datetime.timezone.utc)
        m = {
            "Type": "Notification",
            "MessageId": "7d8ce0a6-0e5a-5c3e-9f5e-bench0000001",
            "TopicArn": TOPIC,
            "Subject": "bench",
            "Message": "x" * size,
            "Timestamp": now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z",
            "SignatureVersion": "2",
            "SigningCertURL": f"https://{SNS_HOST}{SNS_CERT_PATH}",
        }
        signed = "".join(f"{k}\n{m[k]}\n" for k in
                         ["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"])
        sig = self.sns_key.sign(signed.encode(), padding.PKCS1v15(), hashes.SHA256())
        m["Signature"] = base64.b64encode(sig).decode()
        return json.dumps(m).encode(), {}

    def ebay_message(self, size):
        body = json.dumps({
            "metadata": {"topic": "MARKETPLACE_ACCOUNT_DELETION", "schemaVersion": "1.0",
                         "deprecated": False},
            "notification": {"notificationId": "bench-1", "eventDate": "2026-12-06T10:00:00.000Z",
                             "publishDate": "2026-12-06T10:00:00.100Z", "publishAttemptCount": 1,
                             "data": {"username": "u" * size, "userId": "bench"}},
        }, separators=(",", ":")).encode()
        sig = self.ebay_key.sign(body, ec.ECDSA(hashes.SHA1()))
        envelope = {"alg": "ecdsa", "kid": EBAY_KID,
                    "signature": base64.b64encode(sig).decode(), "digest": "SHA1"}
        return body, {"X-EBAY-SIGNATURE": base64.b64encode(json.dumps(envelope).encode()).decode()}


def hmac_message(size):
    body = os.urandom(size // 2).hex().encode()[:size]
    return body, {"X-Hub-Signature-256": b.github_signature(body)}


CASES = [
    # (name, route, ~body bytes)
    ("hmac-1KiB", "hook", 1024),
    ("sns-1KiB", "sns", 1024 - 330),
    ("ebay-1KiB", "ebay", 1024 - 250),
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=5, help="seconds per run")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--conns", type=int, default=32)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="hookgate-keys-bench-")
    keys = KeyHost(tmp)
    ports = {n: b.free_port() for n in ["upstream", "hookgate", "admin"]}
    secret = os.path.join(tmp, "secret")
    open(secret, "w").write(b.SECRET)
    up = f"http://127.0.0.1:{ports['upstream']}"
    config = f"""
workers: 1
listeners:
  - addr: 127.0.0.1:{ports['hookgate']}
admin:
  addr: 127.0.0.1:{ports['admin']}
key_fetch:
  ca_file: {keys.ca_file}
  allow_private_addresses: true
  connect_to:
    {SNS_HOST}: 127.0.0.1:{keys.port}
    {EBAY_HOST}: 127.0.0.1:{keys.port}
routes:
  - name: hook
    path: /hook
    upstream: {up}
    verify: {{ preset: github, secret_file: {secret} }}
  - name: sns
    path: /sns
    upstream: {up}
    verify:
      preset: aws-sns
      json_allowed: {{ /TopicArn: ["{TOPIC}"] }}
  - name: ebay
    path: /ebay
    upstream: {up}
    verify:
      preset: ebay
      key_url: {{ token: {{ client_id: bench-id, client_secret: bench-secret }} }}
    handshake: off
"""
    path = os.path.join(tmp, "gateway.yaml")
    open(path, "w").write(config)
    procs = {}

    def spawn(name, cmd, core, env=None):
        log = open(os.path.join(tmp, f"{name}.log"), "w")
        full = dict(os.environ)
        full.update(env or {})
        procs[name] = subprocess.Popen(["taskset", "-c", core] + cmd, stdout=log, stderr=log, env=full)

    spawn("upstream", [b.UPSTREAM, f"127.0.0.1:{ports['upstream']}"], b.LOAD_CORE)
    b.wait_port(ports["upstream"])
    spawn("hookgate", [b.HOOKGATE, "run", "-c", path], b.PROXY_CORE, {"HOOKGATE_LOG": "warn"})
    b.wait_port(ports["hookgate"])
    scripts = {}
    for case, route, size in CASES:
        body, headers = {"hook": lambda: hmac_message(size), "sns": lambda: keys.sns_message(size),
                         "ebay": lambda: keys.ebay_message(size)}[route]()
        body_path = os.path.join(tmp, f"body-{case}")
        open(body_path, "wb").write(body)
        lines = "\n".join(f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items())
        script = os.path.join(tmp, f"wrk-{case}.lua")
        open(script, "w").write(b.LUA.format(body=body_path, headers=lines))
        scripts[case] = (script, len(body))
    runs = {}
    try:
        for rnd in range(args.rounds):
            for case, route, _ in CASES:
                for target in ["direct", "hookgate"]:
                    port = ports["upstream"] if target == "direct" else ports["hookgate"]
                    pids = [] if target == "direct" else b.proc_tree(procs["hookgate"].pid)
                    before = b.cpu_ticks(pids)
                    cmd = ["taskset", "-c", b.LOAD_CORE, "wrk", "-t1", f"-c{args.conns}",
                           f"-d{args.duration}s", "--latency", "-s", scripts[case][0],
                           f"http://127.0.0.1:{port}/{route}"]
                    out = subprocess.run(cmd, capture_output=True, text=True,
                                         timeout=args.duration + 60)
                    after = b.cpu_ticks(pids)
                    line = next(l for l in out.stdout.splitlines() if l.startswith("RESULT "))
                    r = json.loads(line[len("RESULT "):])
                    if r["status_errors"] or r["connect_errors"] or r["read_errors"] or r["timeouts"]:
                        raise RuntimeError(f"{target}/{case}: errors {r}\n{open(os.path.join(tmp, 'hookgate.log')).read()[-2000:]}")
                    r["rps"] = r["requests"] / (r["duration_us"] / 1e6)
                    r["cpu_us_per_req"] = ((after - before) * 1e6 / b.CLK_TCK / r["requests"]) if pids else None
                    runs.setdefault((case, target), []).append(r)
                    print(f"round {rnd + 1} {case:>10} {target:>8}: {r['rps']:>9,.0f} req/s "
                          f"p50 {r['p50_us']:>6} us p99 {r['p99_us']:>6} us cpu/req "
                          f"{b.fmt(r['cpu_us_per_req'], 2)} us", flush=True)
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{ports['admin']}/metrics").read().decode()
    finally:
        for p in procs.values():
            p.terminate()
        for p in procs.values():
            p.wait(timeout=10)
    fetches = {line.split("{")[1].split("}")[0]: float(line.rsplit(" ", 1)[1])
               for line in metrics.splitlines() if line.startswith("hookgate_key_fetches_total{")}
    results = {"duration_s": args.duration, "rounds": args.rounds, "conns": args.conns,
               "key_host_requests": keys.requests, "key_fetches": fetches, "cases": {}}
    for case, _, _ in CASES:
        results["cases"][case] = {t: {
            "rps": b.median([r["rps"] for r in runs[(case, t)]]),
            "p50_us": b.median([r["p50_us"] for r in runs[(case, t)]]),
            "p99_us": b.median([r["p99_us"] for r in runs[(case, t)]]),
            "cpu_us_per_req": b.median([r["cpu_us_per_req"] for r in runs[(case, t)]]),
            "runs": runs[(case, t)]} for t in ["direct", "hookgate"]}
        results["cases"][case]["body_bytes"] = scripts[case][1]
    ref = results["cases"]["hmac-1KiB"]["hookgate"]
    lines = ["| case | body | direct req/s | hookgate req/s | hookgate/direct | hookgate/HMAC route | "
             "hookgate p50 / p99 us | hookgate CPU us/req | CPU vs HMAC route |",
             "|---|---|---|---|---|---|---|---|---|"]
    for case, _, _ in CASES:
        row = results["cases"][case]
        d, h = row["direct"], row["hookgate"]
        lines.append(
            f"| {case} | {row['body_bytes']} B | {b.fmt(d['rps'], 0)} | {b.fmt(h['rps'], 0)} | "
            f"{b.fmt(b.ratio(h['rps'], d['rps']), 2)} | {b.fmt(b.ratio(h['rps'], ref['rps']), 2)} | "
            f"{h['p50_us']:.0f} / {h['p99_us']:.0f} | {b.fmt(h['cpu_us_per_req'], 2)} | "
            f"{b.fmt(b.ratio(h['cpu_us_per_req'], ref['cpu_us_per_req']), 2)} |")
    lines.append("")
    lines.append(f"Requests to the key host during the whole run: {keys.requests} "
                 f"(hookgate_key_fetches_total: {json.dumps(fetches)}).")
    table = "\n".join(lines)
    os.makedirs(b.RESULTS, exist_ok=True)
    with open(os.path.join(b.RESULTS, "network-keys.json"), "w") as f:
        json.dump(results, f, indent=1)
    with open(os.path.join(b.RESULTS, "network-keys.md"), "w") as f:
        f.write(f"{args.rounds} interleaved rounds of {args.duration} s per run, {args.conns} "
                f"connections; medians. hookgate (1 worker) pinned to core {b.PROXY_CORE}; wrk "
                f"(1 thread) and the upstream on core {b.LOAD_CORE}.\n\n")
        f.write(table + "\n")
    print()
    print(table)


if __name__ == "__main__":
    sys.exit(main())
