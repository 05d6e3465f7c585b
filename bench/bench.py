#!/usr/bin/env python3
"""Side-by-side benchmark: direct to the upstream, through hookgate, through nginx.

Run by bench/run.sh (which installs wrk and nginx and builds the binaries). Everything listens
on 127.0.0.1 ports picked here. The proxy under test is pinned to core 0; wrk (one thread) and
the upstream share core 1. Rounds are interleaved (direct, hookgate, nginx for each case, the
whole set repeated), and each figure is the median over rounds.

Per run: requests/s and p50/p99 latency from wrk, and the proxy's CPU time per request from
/proc/PID/stat (utime + stime of every process of the proxy, before and after the run).

Writes bench/results/latest.json and bench/results/latest.md and prints the table.
"""

import argparse
import hashlib
import hmac
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# HOOKGATE_BIN runs another build (e.g. the previous commit) through the same script.
HOOKGATE = os.environ.get("HOOKGATE_BIN") or os.path.join(ROOT, "target", "release", "hookgate")
UPSTREAM = os.path.join(ROOT, "target", "release", "examples", "upstream")
RESULTS = os.path.join(ROOT, "bench", "results")
CLK_TCK = os.sysconf("SC_CLK_TCK")
SECRET = "bench-secret-not-for-production"
PROXY_CORE = "0"
LOAD_CORE = "1"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=20.0):
    end = time.time() + timeout
    while time.time() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {port}")


def proc_tree(pid):
    """pid and all its descendants."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                children.setdefault(int(fields[1]), []).append(int(entry))
            except OSError:
                pass
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def cpu_ticks(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except OSError:
            pass
    return total


def rss_kib(pids, field="VmRSS"):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith(field + ":"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


LUA = r"""
local f = io.open("{body}", "rb")
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
{headers}
done = function(summary, latency, requests)
  io.write(string.format(
    "RESULT {{\"requests\": %d, \"duration_us\": %d, \"p50_us\": %d, \"p99_us\": %d, " ..
    "\"status_errors\": %d, \"connect_errors\": %d, \"read_errors\": %d, \"timeouts\": %d}}\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    summary.errors.status, summary.errors.connect, summary.errors.read, summary.errors.timeout))
end
"""


def github_signature(body):
    return "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()


class Bench:
    def __init__(self, args):
        self.args = args
        self.tmp = tempfile.mkdtemp(prefix="hookgate-bench-")
        self.procs = {}
        self.ports = {name: free_port() for name in
                      ["upstream", "hookgate", "hookgate_tls", "admin", "nginx", "nginx_tls",
                       "per_core", "per_core_admin", "shared", "shared_admin",
                       "hookgate_logs", "hookgate_logs_tls", "admin_logs", "nginx_logs",
                       "nginx_logs_tls"]}

    # ------------------------------------------------------------------ setup
    def start(self):
        self.make_cert()
        self.spawn("upstream", [UPSTREAM, f"127.0.0.1:{self.ports['upstream']}"], LOAD_CORE)
        wait_port(self.ports["upstream"])
        self.start_hookgate()
        self.start_nginx()

    def spawn(self, name, cmd, core, env=None, env_replace=None):
        full_env = dict(env_replace if env_replace is not None else os.environ)
        full_env.update(env or {})
        log = open(os.path.join(self.tmp, f"{name}.log"), "w")
        self.procs[name] = subprocess.Popen(
            ["taskset", "-c", core] + cmd, stdout=log, stderr=log, env=full_env)

    def make_cert(self):
        self.cert = os.path.join(self.tmp, "cert.pem")
        self.key = os.path.join(self.tmp, "key.pem")
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-days", "2", "-subj", "/CN=localhost", "-keyout", self.key, "-out", self.cert],
            check=True, capture_output=True)

    def start_hookgate(self):
        with open(os.path.join(self.tmp, "secret"), "w") as f:
            f.write(SECRET)
        up = f"http://127.0.0.1:{self.ports['upstream']}"
        # Runtime shape: two workers on both cores, per-core runtimes against tokio's shared
        # multi-thread runtime (the `runtime-*` case).
        for shape in ["per_core", "shared"]:
            config = f"""
workers: 2
runtime: {shape}
listeners:
  - addr: 127.0.0.1:{self.ports[shape]}
admin:
  addr: 127.0.0.1:{self.ports[shape + '_admin']}
routes:
  - name: hook
    path: /hook
    upstream: {up}
    verify: {{ preset: github, secret_file: secret }}
"""
            path = os.path.join(self.tmp, f"gateway-{shape}.yaml")
            with open(path, "w") as f:
                f.write(config)
            self.spawn(shape, [HOOKGATE, "run", "-c", path], "0,1", {"HOOKGATE_LOG": "warn"})
            wait_port(self.ports[shape])
        config = f"""
workers: 1
listeners:
  - addr: 127.0.0.1:{self.ports['hookgate']}
  - addr: 127.0.0.1:{self.ports['hookgate_tls']}
    tls: {{ cert: {self.cert}, key: {self.key} }}
admin:
  addr: 127.0.0.1:{self.ports['admin']}
limits:
  max_body_bytes: 1048576
  header_read_timeout: 120s
  max_connections: 20000
routes:
  - name: hook
    path: /hook
    upstream: {up}
    verify: {{ preset: github, secret_file: secret }}
  - name: denied
    path: /denied
    upstream: {up}
    allow_ips: [203.0.113.0/24]
    verify: {{ preset: github, secret_file: secret }}
"""
        path = os.path.join(self.tmp, "gateway.yaml")
        with open(path, "w") as f:
            f.write(config)
        # Per-request info lines off, as nginx runs with access_log off; refusals still log.
        self.spawn("hookgate", [HOOKGATE, "run", "-c", path], PROXY_CORE, {"HOOKGATE_LOG": "warn"})
        wait_port(self.ports["hookgate"])
        # The same with one JSON access-log line per request (the `1KiB-logs` case), written
        # to a file as nginx's access log is.
        logs = (config.replace(str(self.ports["hookgate"]), str(self.ports["hookgate_logs"]))
                .replace(str(self.ports["hookgate_tls"]), str(self.ports["hookgate_logs_tls"]))
                .replace(str(self.ports["admin"]), str(self.ports["admin_logs"])))
        logs = "log: { format: json, level: info }\n" + logs
        path = os.path.join(self.tmp, "gateway-logs.yaml")
        with open(path, "w") as f:
            f.write(logs)
        env = dict(os.environ)
        env.pop("HOOKGATE_LOG", None)
        self.spawn("hookgate_logs", [HOOKGATE, "run", "-c", path], PROXY_CORE, {}, env_replace=env)
        wait_port(self.ports["hookgate_logs"])

    def start_nginx(self):
        self.start_one_nginx("nginx", "off", "nginx", "nginx_tls")
        # With an access log in JSON, to a file (the `1KiB-logs` case).
        access = f"{self.tmp}/nginx-access.log json"
        self.start_one_nginx("nginx_logs", access, "nginx_logs", "nginx_logs_tls")

    def start_one_nginx(self, name, access_log, port, tls_port):
        t = os.path.join(self.tmp, name)
        os.makedirs(t, exist_ok=True)
        conf = f"""
worker_processes 1;
daemon off;
pid {t}/nginx.pid;
error_log {t}/nginx-error.log warn;
worker_rlimit_nofile 65536;
events {{ worker_connections 20000; }}
http {{
  log_format json escape=json '{{"time":"$time_iso8601","remote":"$remote_addr","method":"$request_method",'
    '"uri":"$uri","status":$status,"bytes_in":$request_length,"bytes_out":$bytes_sent,'
    '"upstream":"$upstream_addr","upstream_ms":"$upstream_response_time","request_time":$request_time}}';
  access_log {access_log};
  client_body_temp_path {t}/cbt;
  proxy_temp_path {t}/pt;
  fastcgi_temp_path {t}/ft;
  uwsgi_temp_path {t}/ut;
  scgi_temp_path {t}/st;
  client_max_body_size 1m;
  client_body_buffer_size 1m;
  keepalive_requests 1000000;
  keepalive_timeout 120s;
  upstream app {{
    server 127.0.0.1:{self.ports['upstream']};
    keepalive 64;
  }}
  server {{
    listen 127.0.0.1:{self.ports[port]};
    listen 127.0.0.1:{self.ports[tls_port]} ssl;
    ssl_certificate {self.cert};
    ssl_certificate_key {self.key};
    location / {{
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }}
  }}
}}
"""
        path = os.path.join(t, "nginx.conf")
        with open(path, "w") as f:
            f.write(conf)
        self.spawn(name, ["nginx", "-c", path], PROXY_CORE)
        wait_port(self.ports[port])

    def stop(self):
        for p in self.procs.values():
            p.terminate()
        for p in self.procs.values():
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()

    # ------------------------------------------------------------------ runs
    def url(self, target, case):
        path = "/denied" if case.get("denied") else "/hook"
        if target == "direct":
            return f"http://127.0.0.1:{self.ports['upstream']}{path}"
        if case.get("tls"):
            return f"https://127.0.0.1:{self.ports[target + '_tls']}{path}"
        return f"http://127.0.0.1:{self.ports[target]}{path}"

    def script(self, case):
        body = os.urandom(case["body"] // 2).hex().encode()[: case["body"]]
        body_path = os.path.join(self.tmp, f"body-{case['name']}")
        with open(body_path, "wb") as f:
            f.write(body)
        sig = github_signature(body)
        if case.get("bad_signature"):
            sig = github_signature(body + b"x")
        headers = f'wrk.headers["X-Hub-Signature-256"] = "{sig}"'
        path = os.path.join(self.tmp, f"wrk-{case['name']}.lua")
        with open(path, "w") as f:
            f.write(LUA.format(body=body_path, headers=headers))
        return path

    def run(self, label, case, script):
        # A case may run other processes under the usual column names (`1KiB-logs`).
        target = case.get("processes", {}).get(label, label)
        pids = [] if target == "direct" else proc_tree(self.procs[target].pid)
        before = cpu_ticks(pids)
        cmd = ["taskset", "-c", case.get("load_cores", LOAD_CORE), "wrk",
               f"-t{case.get('wrk_threads', 1)}", f"-c{case['conns']}",
               f"-d{self.args.duration}s", "--latency", "-s", script, self.url(target, case)]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=self.args.duration + 60)
        after = cpu_ticks(pids)
        line = next((l for l in out.stdout.splitlines() if l.startswith("RESULT ")), None)
        if line is None:
            raise RuntimeError(f"wrk gave no result for {target}/{case['name']}:\n{out.stdout}\n{out.stderr}")
        r = json.loads(line[len("RESULT "):])
        r["rps"] = r["requests"] / (r["duration_us"] / 1e6)
        r["cpu_us_per_req"] = ((after - before) * 1e6 / CLK_TCK / r["requests"]) if pids else None
        errors = r["connect_errors"] + r["read_errors"] + r["timeouts"]
        expected_status_errors = case.get("bad_signature") or case.get("denied")
        if errors or (r["status_errors"] and not expected_status_errors):
            raise RuntimeError(f"{target}/{case['name']}: unexpected errors {r}")
        if expected_status_errors and r["status_errors"] != r["requests"]:
            raise RuntimeError(f"{target}/{case['name']}: expected every request refused: {r}")
        return r

    # ------------------------------------------------------------------ memory
    def idle_connections(self, target, n):
        """RSS growth of `target` per idle keep-alive connection (one request served on each)."""
        pids = proc_tree(self.procs[target].pid)
        port = self.ports[target]
        before = rss_kib(pids)
        socks = []
        body = b"{}"
        req = (f"POST /hook HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
               f"X-Hub-Signature-256: {github_signature(body)}\r\nContent-Length: {len(body)}\r\n\r\n"
               ).encode() + body
        for _ in range(n):
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(req)
            socks.append(s)
        for s in socks:
            s.settimeout(10)
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = s.recv(4096)
                if not chunk:
                    raise RuntimeError(f"{target} closed an idle connection early")
                data += chunk
            if not data.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(f"{target}: {data[:100]!r}")
        time.sleep(1)
        during = rss_kib(pids)
        for s in socks:
            s.close()
        return {"connections": n, "rss_before_kib": before, "rss_with_connections_kib": during,
                "per_connection_bytes": (during - before) * 1024 / n}


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


CASES = [
    {"name": "64B", "body": 64, "conns": 32},
    {"name": "1KiB", "body": 1024, "conns": 32},
    {"name": "16KiB", "body": 16384, "conns": 32},
    {"name": "256KiB", "body": 262144, "conns": 32},
    {"name": "1KiB-1conn", "body": 1024, "conns": 1},
    {"name": "1KiB-https", "body": 1024, "conns": 32, "tls": True},
    # Access logs on: hookgate one JSON line per request, nginx its access_log in JSON, both
    # to a file.
    {"name": "1KiB-logs", "body": 1024, "conns": 32, "only": ["hookgate", "nginx"],
     "processes": {"hookgate": "hookgate_logs", "nginx": "nginx_logs"}},
    {"name": "refused-bad-signature", "body": 1024, "conns": 32, "bad_signature": True, "only": ["hookgate"]},
    {"name": "refused-denied-ip", "body": 1024, "conns": 32, "denied": True, "only": ["hookgate"]},
    # Runtime shape with 2 workers: nothing pinned, wrk with 2 threads and 64 connections.
    {"name": "runtime-2-workers", "body": 1024, "conns": 64, "load_cores": "0,1", "wrk_threads": 2,
     "only": ["per_core", "shared"]},
]


def targets_for(case):
    if "only" in case:
        return case["only"]
    if case.get("tls"):
        return ["hookgate", "nginx"]
    return ["direct", "hookgate", "nginx"]


def fmt(v, digits=1):
    return "-" if v is None else f"{v:,.{digits}f}"


def ratio(a, b):
    return None if a is None or b in (None, 0) else a / b


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=5, help="seconds per run")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--idle-connections", type=int, default=10000)
    ap.add_argument("--cases", default="", help="comma-separated case names (default: all)")
    ap.add_argument("--results", default=RESULTS,
                    help="where latest.md and latest.json go (default: bench/results)")
    args = ap.parse_args()
    cases = [c for c in CASES if not args.cases or c["name"] in args.cases.split(",")]

    bench = Bench(args)
    bench.start()
    try:
        scripts = {c["name"]: bench.script(c) for c in cases}
        runs = {}
        for rnd in range(args.rounds):
            for case in cases:
                for target in targets_for(case):
                    r = bench.run(target, case, scripts[case["name"]])
                    runs.setdefault((case["name"], target), []).append(r)
                    print(f"round {rnd + 1} {case['name']:>22} {target:>8}: {r['rps']:>9,.0f} req/s "
                          f"p50 {r['p50_us']:>6} us p99 {r['p99_us']:>6} us cpu/req "
                          f"{fmt(r['cpu_us_per_req'], 2)} us", flush=True)
        # Peak RSS under load (the 256 KiB case: 32 bodies in flight), before the idle test.
        load_hwm = rss_kib(proc_tree(bench.procs["hookgate"].pid), "VmHWM")
        memory = {}
        if args.idle_connections:
            for target in ["hookgate", "nginx"]:
                memory[target] = bench.idle_connections(target, args.idle_connections)
        hwm = rss_kib(proc_tree(bench.procs["hookgate"].pid), "VmHWM")
    finally:
        bench.stop()

    results = {"machine": {"cores": os.cpu_count(), "sha_ni": "sha_ni" in open("/proc/cpuinfo").read()},
               "duration_s": args.duration, "rounds": args.rounds, "cases": {}, "memory": memory,
               "hookgate_peak_rss_under_load_kib": load_hwm, "hookgate_peak_rss_kib": hwm}
    for case in cases:
        row = {}
        for target in targets_for(case):
            rs = runs[(case["name"], target)]
            row[target] = {
                "rps": median([r["rps"] for r in rs]),
                "p50_us": median([r["p50_us"] for r in rs]),
                "p99_us": median([r["p99_us"] for r in rs]),
                "cpu_us_per_req": median([r["cpu_us_per_req"] for r in rs]),
                "runs": rs,
            }
        results["cases"][case["name"]] = row

    lines = ["| case | direct req/s | hookgate req/s | nginx req/s | hookgate/direct req/s | "
             "hookgate p50 / p99 us | nginx p50 / p99 us | direct p50 / p99 us | "
             "hookgate CPU us/req | nginx CPU us/req | CPU hookgate/nginx |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for case in cases:
        if case["name"].startswith("runtime-"):
            continue
        row = results["cases"][case["name"]]
        d, h, n = row.get("direct", {}), row.get("hookgate", {}), row.get("nginx", {})
        lat = lambda x: "-" if not x else f"{x['p50_us']:.0f} / {x['p99_us']:.0f}"
        lines.append(
            f"| {case['name']} | {fmt(d.get('rps'), 0)} | {fmt(h.get('rps'), 0)} | {fmt(n.get('rps'), 0)} | "
            f"{fmt(ratio(h.get('rps'), d.get('rps')), 2)} | {lat(h)} | {lat(n)} | {lat(d)} | "
            f"{fmt(h.get('cpu_us_per_req'), 2)} | {fmt(n.get('cpu_us_per_req'), 2)} | "
            f"{fmt(ratio(h.get('cpu_us_per_req'), n.get('cpu_us_per_req')), 2)} |")
    shapes = results["cases"].get("runtime-2-workers")
    if shapes:
        lines.append("")
        lines.append("| runtime shape, `workers: 2`, 1 KiB, 64 connections, nothing pinned | req/s | "
                     "p50 / p99 us | CPU us/req |")
        lines.append("|---|---|---|---|")
        for shape in ["per_core", "shared"]:
            x = shapes[shape]
            lines.append(f"| `runtime: {shape}` | {fmt(x['rps'], 0)} | {x['p50_us']:.0f} / {x['p99_us']:.0f} | "
                         f"{fmt(x['cpu_us_per_req'], 2)} |")
    if memory:
        lines.append("")
        lines.append("| idle keep-alive connections | RSS before | RSS with connections | per connection |")
        lines.append("|---|---|---|---|")
        for target, m in memory.items():
            lines.append(f"| {target}: {m['connections']:,} | {m['rss_before_kib']:,} KiB | "
                         f"{m['rss_with_connections_kib']:,} KiB | {m['per_connection_bytes'] / 1024:.1f} KiB |")
    lines.append("")
    lines.append(f"hookgate peak RSS (VmHWM) after the load cases, before the idle test: {load_hwm:,} KiB; "
                 f"after the idle test: {hwm:,} KiB")
    table = "\n".join(lines)
    os.makedirs(args.results, exist_ok=True)
    with open(os.path.join(args.results, "latest.json"), "w") as f:
        json.dump(results, f, indent=1)
    with open(os.path.join(args.results, "latest.md"), "w") as f:
        f.write(f"{args.rounds} interleaved rounds of {args.duration} s per run; medians. "
                f"Proxy pinned to core {PROXY_CORE}; wrk (1 thread) and upstream on core {LOAD_CORE} "
                f"(except the runtime-shape case, where nothing is pinned).\n\n")
        f.write(table + "\n")
    print()
    print(table)


if __name__ == "__main__":
    sys.exit(main())
