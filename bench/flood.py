#!/usr/bin/env python3
"""Unauthenticated body flood against a release hookgate with the default limits.

Each connection sends a request head with `Content-Length: 1048576` (the default
max_body_bytes) and 1 MiB - 1 bytes of body, then stalls before the last byte: the gateway
must hold every such body until body_read_timeout. Connections come from several loopback
source addresses (127.0.0.1 .. 127.0.0.N, `--sources`, 50 by default) so that
max_connections_per_ip and the per-client share do not hide the body budget; `--sources 1`
shows what one address can hold. Prints the gateway's RSS before, at the peak, and 7 s after the flood ends (the senders hang
up), and how the connections were answered. Usage:

    python3 bench/flood.py [--connections 200 400 1000] [--binary target/release/hookgate]
"""
import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

BODY = 1024 * 1024


def rss_kib(pid, field="VmRSS"):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


CONFIG = """listeners:
  - addr: 127.0.0.1:{port}
admin:
  addr: 127.0.0.1:{admin}
routes:
  - name: lahza
    path: /hooks/lahza
    upstream: http://127.0.0.1:9
    verify: {{ preset: lahza, secret: "${{LAHZA}}" }}
"""


async def flood_one(i, port, results, stalled, writers, sources):
    source = f"127.0.0.{1 + i % sources}"
    try:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, local_addr=(source, 0)
        )
    except OSError:
        results["connect error"] = results.get("connect error", 0) + 1
        return
    writers.append(writer)
    head = (
        "POST /hooks/lahza HTTP/1.1\r\nHost: a\r\nx-lahza-signature: "
        + "0" * 64
        + f"\r\nContent-Length: {BODY}\r\n\r\n"
    ).encode()
    try:
        writer.write(head)
        chunk = b"x" * 65536
        left = BODY - 1
        while left > 0:
            n = min(left, len(chunk))
            writer.write(chunk[:n])
            left -= n
            await writer.drain()
        stalled.append(1)
        line = await asyncio.wait_for(reader.readline(), timeout=60)
        status = line.decode(errors="replace").split(" ")[1] if line else "closed"
    except (ConnectionError, asyncio.TimeoutError, IndexError):
        status = "closed or reset"
    results[status] = results.get(status, 0) + 1
    writer.close()


async def run_flood(n, port, pid, sources=50):
    results, stalled, writers = {}, [], []
    tasks = [
        asyncio.create_task(flood_one(i, port, results, stalled, writers, sources))
        for i in range(n)
    ]
    # Peak: sample while the bodies are stalled (before body_read_timeout, 30 s).
    peak = 0
    deadline = time.time() + 20
    while time.time() < deadline:
        peak = max(peak, rss_kib(pid))
        if all(t.done() for t in tasks):
            break
        await asyncio.sleep(0.2)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    # The flood ends: every stalled sender hangs up.
    for w in writers:
        w.close()
    await asyncio.sleep(0.5)
    held = n - sum(results.values())
    if held:
        results["held to the end, unanswered"] = held
    return peak, results


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--connections", type=int, nargs="+", default=[200, 400, 1000])
    ap.add_argument("--binary", default="target/release/hookgate")
    ap.add_argument("--sources", type=int, default=50, help="loopback source addresses")
    args = ap.parse_args()
    out = []
    for n in args.connections:
        port, admin = free_port(), free_port()
        with tempfile.TemporaryDirectory() as d:
            cfg = os.path.join(d, "gateway.yaml")
            with open(cfg, "w") as f:
                f.write(CONFIG.format(port=port, admin=admin))
            env = dict(os.environ, LAHZA="flood-secret", HOOKGATE_LOG="error")
            gw = subprocess.Popen([args.binary, "run", "-c", cfg], env=env)
            try:
                for _ in range(100):
                    try:
                        socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                        break
                    except OSError:
                        time.sleep(0.05)
                before = rss_kib(gw.pid)
                peak, results = asyncio.run(run_flood(n, port, gw.pid, args.sources))
                # Memory is given back on the gateway's next 5 s check once the bodies are gone.
                time.sleep(7)
                after = rss_kib(gw.pid)
                hwm = rss_kib(gw.pid, "VmHWM")
            finally:
                gw.terminate()
                gw.wait()
        row = {
            "connections": n,
            "rss_before_kib": before,
            "rss_peak_kib": max(peak, hwm),
            "rss_after_kib": after,
            "answers": results,
        }
        print(json.dumps(row), flush=True)
        out.append(row)
    print("| connections x 1 MiB stalled | RSS before | peak RSS | RSS after | answers |")
    print("|---|---|---|---|---|")
    for r in out:
        answers = ", ".join(f"{k}: {v}" for k, v in sorted(r["answers"].items()))
        print(
            f"| {r['connections']} | {r['rss_before_kib'] / 1024:.1f} MiB | "
            f"{r['rss_peak_kib'] / 1024:.1f} MiB | {r['rss_after_kib'] / 1024:.1f} MiB | {answers} |"
        )


if __name__ == "__main__":
    sys.exit(main())
