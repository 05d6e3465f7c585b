#!/usr/bin/env python3
"""Writes the seed inputs of every fuzz target into fuzz/seeds/<target>/.

Sources: tests/vectors/*.json (signed requests per provider and seed sender), gateway.yaml,
the YAML in src/config/tests.rs and tests/e2e/*.rs, and the unit tests' paths, X-Forwarded-For
lists and timestamps. The input formats are described at the top of fuzz/src/targets.rs.

Usage (from the repository root):

    python3 fuzz/seed.py                       # writes fuzz/seeds/<target>/
    cargo +nightly fuzz cmin <target> fuzz/seeds/<target>   # (see fuzz/README.md)

Seeds are merged into the committed corpora with `-merge=1`, never copied over them, so the
script can be rerun at any time. Deterministic: file names are content hashes.
"""

import hashlib
import json
import re
import struct
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "fuzz" / "seeds"


def write(target, data):
    if isinstance(data, str):
        data = data.encode()
    d = OUT / target
    d.mkdir(parents=True, exist_ok=True)
    (d / hashlib.sha1(data).hexdigest()).write_bytes(data)


# --- Rust string literals, for the YAML in the tests -------------------------------------------

LIT = re.compile(r'r(#*)"(.*?)"\1|"((?:[^"\\]|\\.)*)"', re.S)


def unescape(s):
    s = re.sub(r"\\\n\s*", "", s)  # line continuation
    return (
        s.replace('\\"', '"').replace("\\n", "\n").replace("\\t", "\t").replace("\\\\", "\\")
    )


def literals(text):
    for m in LIT.finditer(text):
        raw = m.group(2) if m.group(2) is not None else unescape(m.group(3))
        yield m.start(), raw


def fill(fmt):
    """A format! string with its placeholders filled in plausibly."""
    fmt = fmt.replace("{{", "\x00").replace("}}", "\x01")
    fmt = re.sub(r"\{[^{}]*\}", "http://127.0.0.1:1", fmt)
    return fmt.replace("\x00", "{").replace("\x01", "}")


def with_routes(routes):
    text = "listeners:\n  - addr: 127.0.0.1:0\nroutes:\n"
    for r in routes:
        text += "  - " + r + "\n"
    return text


def one_route(fields):
    return with_routes(['{ name: r, path: /r, upstream: "http://127.0.0.1:3000", ' + fields + " }"])


def config_seeds():
    write("config", (ROOT / "gateway.yaml").read_text())
    sources = [ROOT / "src/config/tests.rs"] + sorted((ROOT / "tests/e2e").glob("*.rs"))
    for path in sources:
        text = path.read_text()
        for pos, lit in literals(text):
            before = text[max(0, pos - 40) : pos]
            is_format = re.search(r"format!\(\s*$", before) is not None
            value = fill(lit) if is_format else lit
            if "listeners:" in value:
                write("config", value)
            elif re.search(r"verified\(\s*(&format!\(\s*)?$", before):
                write("config", one_route("verify: { " + value + " }"))
            elif re.search(r"one_route\(\s*(&format!\(\s*)?$", before):
                write("config", one_route(value))
            elif "{ name:" in value and value.strip().startswith("{"):
                write("config", with_routes([value]))
    # One route per preset, as tests/e2e/providers.rs writes them.
    names = re.findall(r'^    "([a-z0-9-]+)",$', (ROOT / "src/scheme/presets.rs").read_text(), re.M)
    for preset in names:
        field = "public_key" if preset in ("discord", "standard-webhooks-ed25519", "sendgrid") else "secret"
        write(
            "config",
            f"listeners:\n  - addr: 127.0.0.1:0\nroutes:\n  - name: {preset}\n    path: /*\n"
            f"    upstream: http://127.0.0.1:1\n    public_url: https://hooks.example.com\n"
            f"    verify:\n      preset: {preset}\n      {field}: \"${{KEY}}\"\n",
        )


# --- verify --------------------------------------------------------------------------------

def variant_of(preset, url):
    host = urlsplit(url).netloc if url else ""
    if preset == "twilio" and host == "mycompany.com":
        return "twilio-mycompany"
    if preset == "square" and host == "webhook.site":
        return "square-webhook.site"
    return preset


ASYMMETRIC = ("discord", "standard-webhooks-ed25519", "sendgrid")


def request(mode, variant, now, path_and_query, headers, body):
    lines = [f"{mode} {variant}", str(now), path_and_query]
    lines += [f"{k}: {v}" for k, v in headers]
    data = ("\n".join(lines) + "\n\n").encode() + body
    if variant in ASYMMETRIC:
        # The target runs Ed25519 and ECDSA only for inputs whose length is a multiple of 8;
        # pad the first line (trailing spaces after the variant name are ignored).
        pad = -len(data) % 8
        data = f"{mode} {variant}{' ' * pad}".encode() + data[len(f"{mode} {variant}"):]
    return data


def verify_seeds():
    cases = []
    for c in json.loads((ROOT / "tests/vectors/providers.json").read_text())["cases"]:
        u = urlsplit(c["url"])
        pq = u.path + ("?" + u.query if u.query else "")
        headers = list(c["headers"].items())
        if c.get("content_type"):
            headers.append(("content-type", c["content_type"]))
        cases.append((variant_of(c["preset"], c["url"]), c["now_unix"], pq, headers, c["body"].encode(), c["name"]))
    for c in json.loads((ROOT / "tests/vectors/seed-senders.json").read_text())["cases"]:
        entry = (c["sender"], c["now_unix"], f"/webhooks/{c['sender']}", list(c["headers"].items()), c["body"].encode(), c["name"])
        cases.append(entry)
        if c["sender"] == "lomi":
            cases.append(("lomi-ts",) + entry[1:])
    firsts = {}
    for variant, now, pq, headers, body, name in cases:
        write("verify", request("r", variant, now, pq, headers, body))
        firsts.setdefault(variant, (now, pq, headers, body))
    acme_body = b'{"id":"evt_1","amount":100}'
    firsts["acme"] = (1763884800, "/webhooks/acme/x", [("x-acme-timestamp", "1763884790")], acme_body)
    for variant, (now, pq, headers, body) in sorted(firsts.items()):
        for mode in "cstk":
            write("verify", request(mode, variant, now, pq, headers, body))
        # Signed from scratch: no signature or timestamp headers of the vector's.
        write("verify", request("s", variant, now, pq, [], body))


# --- signature_header ----------------------------------------------------------------------

ALGS = ["hmac-sha256", "hmac-sha1", "hmac-sha512", "token", "ed25519", "ecdsa-p256-sha256"]
ENCS = 3
SHAPES = [("", "", "", ""), ("sha256=", "", "", ""), ("v0=", "", "", ""), ("", ",", "=", "v1"),
          ("", ";", "=", "h1"), ("", " ", ",", "v1a"), ("", ", ", ":", "sig")]


def signature_seeds():
    vector_values = set()
    for c in json.loads((ROOT / "tests/vectors/providers.json").read_text())["cases"]:
        for k, v in c["headers"].items():
            if "signature" in k.lower() or "hmac" in k.lower() or "token" in k.lower():
                vector_values.add(v)
    vector_values = sorted(vector_values)
    n = 0
    for a, _ in enumerate(ALGS):
        for e in range(ENCS):
            for s, (prefix, sep, assign, key) in enumerate(SHAPES):
                i = n
                n += 1
                sel = bytes([i])
                for ph in ("@HEX@", "@HEXU@", "@B64@"):
                    value = prefix + ph if not sep else key + assign + ph
                    write("signature_header", sel + value.encode())
                    write("signature_header", sel + (value + "\n" + value).encode())
                if sep:
                    other = "t" + assign + "1763884800"
                    write("signature_header", sel + (other + sep + key + assign + "@HEX@" + sep + key + assign + "00").encode())
                write("signature_header", sel)
                write("signature_header", sel + b" ")
    # Real header values, against every shape (byte chosen to spread them).
    for j, v in enumerate(vector_values):
        write("signature_header", bytes([j % n]) + v.encode())


# --- path_and_route ------------------------------------------------------------------------

def path_seeds():
    paths = set()
    for path in [ROOT / "src/routes.rs", ROOT / "tests/e2e/hostile.rs", ROOT / "tests/e2e/refusals.rs"]:
        if path.exists():
            for _, lit in literals(path.read_text()):
                if lit.startswith("/") and "\n" not in lit and len(lit) < 200:
                    paths.add(lit)
    for c in json.loads((ROOT / "tests/vectors/providers.json").read_text())["cases"]:
        u = urlsplit(c["url"])
        paths.add(u.path + ("?" + u.query if u.query else ""))
    paths |= {"/webhooks/lahza", "/webhooks/acme", "/webhooks/acme/", "/webhooks/acme/special",
              "/a/b", "/a/b/", "/a/c", "/", "/t/", "/t", "/x/y/z", "/x/y/z/w", "/%41b/q", "/Ab/q",
              "/m;x", "/caf%C3%A9", "/ünï/x", "/webhooks/acme/..;/x", "/webhooks/acme/%2e%2e/x",
              "/webhooks//acme", "/webhooks/acme/..%3b/x", "/a/%252e"}
    for i, p in enumerate(sorted(paths)):
        for m in (1, i % 8):
            write("path_and_route", bytes([m, i % 2]) + p.encode())


# --- client_ip -----------------------------------------------------------------------------

PEERS = ["10.0.0.5", "198.51.100.7", "::ffff:10.0.0.5", "fd00::1", "192.0.2.1", "2001:db8::1",
         "::ffff:198.51.100.7", "127.0.0.1", "::1"]


def peer_byte(peer):
    i = PEERS.index(peer)
    return 128 + (i - 128 % len(PEERS)) % len(PEERS)


def client_ip_seeds():
    # The table of src/client_ip.rs (trusted: 10.0.0.0/8, fd00::/8 = set 1).
    cases = [
        ("198.51.100.7", ["203.0.113.10"]), ("10.0.0.5", []), ("10.0.0.5", ["203.0.113.10"]),
        ("10.0.0.5", ["203.0.113.10, 198.51.100.7"]), ("10.0.0.5", ["198.51.100.7, 10.1.1.1"]),
        ("10.0.0.5", ["1.1.1.1", "198.51.100.7"]), ("10.0.0.5", ["[2001:db8::1]:443"]),
        ("fd00::1", ["192.0.2.1:8080"]), ("10.0.0.5", ["10.9.9.9, 10.1.1.1"]),
        ("10.0.0.5", ["not-an-ip"]), ("::ffff:10.0.0.5", ["203.0.113.10"]),
        ("10.0.0.5", ["::ffff:203.0.113.10, 10.0.0.1"]), ("10.0.0.5", ["unknown, 203.0.113.10"]),
        ("10.0.0.5", ["203.0.113.10,,10.0.0.1"]), ("10.0.0.5", [" 203.0.113.10 ,\t10.0.0.1"]),
        ("10.0.0.5", ["fe80::1%eth0"]), ("10.0.0.5", ["203.0.113.10:99999"]),
    ]
    for t in range(4):
        for peer, xff in cases:
            write("client_ip", bytes([peer_byte(peer), t]) + "\n".join(xff).encode())
    write("client_ip", bytes([0, 1, 10, 0, 0, 5]) + b"203.0.113.10")
    write("client_ip", bytes([64, 1]) + bytes([0xfd] + [0] * 14 + [1]) + b"2001:db8::5, fd00::2")


# --- timestamp -----------------------------------------------------------------------------

def timestamp_seeds():
    texts = {
        0: ["1763884800", "1763884740", "1763883960", "1763885760", "0", "yesterday", " 1763884800 ",
            "+1763884800", "-1", "1e9", "0x10", "01763884800", "999999999999999999", "1763884800.5", ""],
        1: ["1763884800000", "1763884740000", "1763884799999", "0", "1.7e12", "-1763884800000"],
        2: ["2025-11-23T08:00:00Z", "2025-11-23T07:59:30Z", "2025-11-23T07:59:30+00:00",
            "2025-11-23 07:59:30Z", "2025-11-23T07:59:30.123Z", "9999-12-31T23:59:59Z",
            "1970-01-01T00:00:00Z", "2025-02-30T00:00:00Z", "2025-11-23"],
    }
    for source in range(3):
        for unit in range(3):
            for window in range(2):
                case = source * 6 + unit * 2 + window
                for text in texts[unit]:
                    raw = text.encode()
                    if source == 1:
                        # The JSON value of the field: a number or a string.
                        raw = (text if text and text.lstrip("-").isdigit() else json.dumps(text)).encode()
                    write("timestamp", bytes([case, 0]) + struct.pack("<q", 0) + raw)
                # Signed at the vectors' clock, verified 30 s, 10 min later and 10 min earlier.
                for delta in (30_000, 600_000, -600_000):
                    write("timestamp", bytes([case, 1]) + struct.pack("<Q", 1763884800000) + struct.pack("<i", delta))


def main():
    config_seeds()
    verify_seeds()
    signature_seeds()
    path_seeds()
    client_ip_seeds()
    timestamp_seeds()
    for d in sorted(OUT.iterdir()):
        print(d.name, len(list(d.iterdir())))


if __name__ == "__main__":
    main()
