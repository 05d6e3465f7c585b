#!/usr/bin/env python3
"""Queued delivery against sync forwarding, on one hookgate, 1 KiB signed bodies.

Built on bench/bench.py (same upstream, preset, secret, pinning and CPU accounting); the
load comes from `examples/loadgen` (a closed-loop client timing every request on the
monotonic clock), not wrk, whose latency figures for queued runs broke Little's law. Build
the binaries first:

    CARGO_BUILD_JOBS=1 cargo build --release --bin hookgate --example upstream --example loadgen
    python3 bench/queued.py [--duration 10] [--rounds 3] [--strace]

One hookgate (`workers: 1`, pinned to core 0 like bench.py's; loadgen and the upstream on core 1)
serves two routes to the same upstream with the `github` preset: `/sync` (`delivery: sync`)
and `/queued` (`delivery: queued`, default `queue:` settings). Each round starts a fresh
hookgate with a fresh queue store directory under target/ (a real disk, so fsync is real),
then runs loadgen (32 connections) against `/sync`, then against `/queued`, then
waits until every acknowledged event is delivered. Figures are medians over rounds.

Per round:
- sync: requests/s, p50/p99 latency (loadgen), hookgate CPU us per request (/proc, as bench.py).
- queued ingest: acknowledged events/s, p50/p99 ack latency, CPU us per event over the load
  window, and over the load window plus drain (the whole cost of an event, delivery included).
- the store, from /metrics over the load window: commits per acknowledged event (each commit is
  one WAL fsync with `synchronous=FULL`), store operations per commit (ingests, leases and
  settles are all batched together), mean commit time.
- delivery: delivered events/s while ingest runs, backlog (acknowledged minus delivered) when
  the load stops, then the time until delivered == acknowledged and the drain rate.
- where hookgate's CPU goes, by thread, user + system: with `workers: 1` the main thread
  (`hookgate`) runs requests, the admin listener and the delivery worker; `hookgate-queue-` is
  the store's writer thread (names are cut to 15 characters), `hookgate-qcheck` its
  checkpointer; `tokio-rt-worker` threads run the store's reads.
With `--strace`, one extra queued run under `strace -f -c -w -e trace=fsync,fdatasync` counts the
real fsyncs per event and their wall time (strace slows the gateway a lot: only its counts and
the time per call are meaningful).

Writes bench/results/queued.json and bench/results/queued.md and prints the table.
"""

import argparse
import http.client
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, BENCH_DIR)
import bench as b  # noqa: E402

# On the disk /work lives on, not tmpfs: the fsyncs must be real.
STORE_PARENT = os.path.join(b.ROOT, "target")
SYNC = {"name": "1KiB", "body": 1024, "conns": 32, "path": "/sync"}
QUEUED = dict(SYNC, path="/queued")
# The load: a closed-loop client timing each request on the monotonic clock. wrk's latency
# figures for queued runs broke Little's law against its own throughput (mean 9.9 ms at 9,700
# requests/s on 32 connections, where at most 3.3 ms is possible), so its tails were not
# believable there; loadgen checks that law before it prints.
LOADGEN = os.path.join(b.ROOT, "target", "release", "examples", "loadgen")
RATIO_TARGET = 0.7
ACK_P99_TARGET_US = 10_000

SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$")
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def get(port, path, body=None, headers=None):
    """One request on loopback (http.client: no proxy from the environment)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST" if body is not None else "GET", path, body=body, headers=headers or {})
        r = conn.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        conn.close()


def scrape(admin_port):
    """The admin listener's /metrics as {(name, ((label, value), ...)): value}."""
    status, _, text = get(admin_port, "/metrics")
    if status != 200:
        raise RuntimeError(f"/metrics answered {status}: {text[:200]!r}")
    out = {}
    for line in text.decode().splitlines():
        m = SAMPLE.match(line)
        if m and not line.startswith("#"):
            labels = tuple(sorted(LABEL.findall(m.group(2) or "")))
            out[(m.group(1), labels)] = float(m.group(3))
    return out


def metric(sample, name, **labels):
    return sample.get((name, tuple(sorted(labels.items()))), 0.0)


def counts(sample):
    """The figures of one scrape this benchmark follows."""
    return {
        "acked": metric(sample, "hookgate_requests_total", route="queued", outcome="queued"),
        "delivered": metric(sample, "hookgate_delivery_attempts_total", route="queued", outcome="delivered"),
        "retry": metric(sample, "hookgate_delivery_attempts_total", route="queued", outcome="retry"),
        "dead": metric(sample, "hookgate_delivery_attempts_total", route="queued", outcome="dead"),
        "commits": metric(sample, "hookgate_queue_commit_batch_size_count"),
        "ops": metric(sample, "hookgate_queue_commit_batch_size_sum"),
        "commit_s": metric(sample, "hookgate_queue_commit_duration_seconds_sum"),
        # Cumulative commit-time buckets: {upper bound in s: commits at most that long}.
        "commit_le": {float(dict(l)["le"]): v for (n, l), v in sample.items()
                      if n == "hookgate_queue_commit_duration_seconds_bucket"},
        "store_errors": sum(v for (n, _), v in sample.items() if n == "hookgate_queue_store_errors_total"),
        "outcomes": {f"{dict(l).get('route')}/{dict(l).get('outcome')}": v for (n, l), v in sample.items()
                     if n == "hookgate_requests_total" and v},
    }


def delta(after, before, key):
    return after[key] - before[key]


def per(a, b_):
    return None if a is None or not b_ else a / b_


def machine_facts(store_parent):
    fs = subprocess.run(["findmnt", "-n", "-o", "FSTYPE,SOURCE,OPTIONS", "-T", store_parent],
                        capture_output=True, text=True)
    fstype = fs.stdout.split() if fs.returncode == 0 else []
    if not fstype:
        st = subprocess.run(["stat", "-f", "-c", "%T", store_parent], capture_output=True, text=True)
        fstype = [st.stdout.strip() or "unknown"]
    with open("/proc/loadavg") as f:
        load = f.read().split()[:3]
    return {"nproc": os.cpu_count(), "kernel": platform.release(),
            "store_parent": store_parent, "store_fs": fstype[0],
            "store_device": fstype[1] if len(fstype) > 1 else None,
            "store_mount_options": fstype[2] if len(fstype) > 2 else None,
            "loadavg_at_start": " ".join(load)}


def thread_ticks(pid):
    """[utime, stime] of each thread of `pid`, summed by thread name (`comm`, 15 characters)."""
    out = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                head, rest = f.read().rsplit(")", 1)
            fields = rest.split()
            comm = head.split("(", 1)[1]
            u, st = out.setdefault(comm, [0, 0])
            out[comm] = [u + int(fields[11]), st + int(fields[12])]
        except (OSError, IndexError):
            pass
    return out


def thread_us_per_event(before, after, events):
    """CPU us per event of each thread name between two `thread_ticks` readings:
    {name: {"total": us, "sys": us}}."""
    if not events:
        return {}
    out = {}
    for name in sorted(set(before) | set(after)):
        u0, s0 = before.get(name, [0, 0])
        u1, s1 = after.get(name, [0, 0])
        scale = 1e6 / b.CLK_TCK / events
        out[name] = {"total": (u1 - u0 + s1 - s0) * scale, "sys": (s1 - s0) * scale}
    return out


def dir_bytes(path):
    total = 0
    for dirpath, _, files in os.walk(path):
        for name in files:
            try:
                total += os.stat(os.path.join(dirpath, name)).st_blocks * 512
            except OSError:
                pass
    return total


class QueuedBench(b.Bench):
    """bench.Bench's process handling, with one hookgate per round."""

    def __init__(self, args):
        self.args = args
        self.tmp = tempfile.mkdtemp(prefix="hookgate-queued-")
        self.procs = {}
        self.ports = {"upstream": b.free_port()}

    def start(self):
        with open(os.path.join(self.tmp, "secret"), "w") as f:
            f.write(b.SECRET)
        self.spawn("upstream", [b.UPSTREAM, f"127.0.0.1:{self.ports['upstream']}"], b.LOAD_CORE)
        b.wait_port(self.ports["upstream"])

    def start_hookgate(self, name):
        """A hookgate with both routes and a fresh queue store; returns the store directory."""
        store = tempfile.mkdtemp(prefix="queue-bench-", dir=STORE_PARENT)
        self.ports[name] = b.free_port()
        self.ports[name + "_admin"] = b.free_port()
        up = f"http://127.0.0.1:{self.ports['upstream']}"
        config = f"""
workers: 1
listeners:
  - addr: 127.0.0.1:{self.ports[name]}
admin:
  addr: 127.0.0.1:{self.ports[name + '_admin']}
queue_store:
  path: {store}
routes:
  - name: sync
    path: /sync
    upstream: {up}
    verify: {{ preset: github, secret_file: secret }}
    delivery: sync
  - name: queued
    path: /queued
    upstream: {up}
    verify: {{ preset: github, secret_file: secret }}
    delivery: queued
"""
        path = os.path.join(self.tmp, f"{name}.yaml")
        with open(path, "w") as f:
            f.write(config)
        self.spawn(name, [b.HOOKGATE, "run", "-c", path], self.args.hookgate_cores,
                   {"HOOKGATE_LOG": "warn"})
        try:
            b.wait_port(self.ports[name])
            b.wait_port(self.ports[name + "_admin"])
        except RuntimeError:
            raise RuntimeError(f"{name} did not start:\n{self.log_tail(name)}")
        return store

    def script(self, case):
        """The request loadgen sends: a body file of `case['body']` bytes and its headers."""
        body = os.urandom(case["body"] // 2).hex().encode()[: case["body"]]
        body_path = os.path.join(self.tmp, f"body-{case['name']}")
        with open(body_path, "wb") as f:
            f.write(body)
        return body_path, ["Content-Type: application/json",
                           f"X-Hub-Signature-256: {b.github_signature(body)}"]

    def run(self, name, case, script):
        """One closed-loop run of `examples/loadgen` (see LOADGEN) against `name`."""
        body_path, headers = script
        pids = b.proc_tree(self.procs[name].pid)
        before = b.cpu_ticks(pids)
        cmd = ["taskset", "-c", b.LOAD_CORE, LOADGEN, self.url(name, case),
               str(self.args.duration), str(case["conns"]), body_path, *headers]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=self.args.duration + 60)
        after = b.cpu_ticks(pids)
        if out.returncode != 0:
            raise RuntimeError(f"loadgen failed on {name}{case['path']}:\n{out.stdout}\n{out.stderr}")
        r = json.loads(out.stdout.strip().splitlines()[-1])
        if r["not_2xx"]:
            raise RuntimeError(f"{name}{case['path']}: {r['not_2xx']} answers were not 2xx: {r}")
        r["duration_us"] = r["seconds"] * 1e6
        r["cpu_us_per_req"] = (after - before) * 1e6 / b.CLK_TCK / r["requests"]
        return r

    def stop_one(self, name):
        p = self.procs.pop(name)
        p.terminate()
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()

    def url(self, target, case):
        return f"http://127.0.0.1:{self.ports[target]}{case['path']}"

    def log_tail(self, name, lines=40):
        path = os.path.join(self.tmp, f"{name}.log")
        try:
            with open(path, errors="replace") as f:
                tail = f.read().splitlines()[-lines:]
        except OSError:
            return f"(no log at {path})"
        return f"--- {path} (last {len(tail)} lines) ---\n" + "\n".join(tail)

    def admin(self, name):
        return self.ports[name + "_admin"]

    def check_answers(self, name, body):
        """One request to each route: the sync one relays the app, the queued one is stored."""
        headers = {"Content-Type": "application/json", "X-Hub-Signature-256": b.github_signature(body)}
        status, _, text = get(self.ports[name], "/sync", body, headers)
        if status != 200:
            raise RuntimeError(f"/sync answered {status} {text[:200]!r}\n{self.log_tail(name)}")
        status, h, text = get(self.ports[name], "/queued", body, headers)
        event_id = {k.lower(): v for k, v in h.items()}.get("hookgate-event-id")
        if status != 200 or not event_id:
            raise RuntimeError(f"/queued answered {status} {text[:200]!r}, Hookgate-Event-Id "
                               f"{event_id!r}\n{self.log_tail(name)}")
        self.wait_drained(name, timeout=10)

    def wait_drained(self, name, timeout):
        """Polls /metrics until delivered >= acknowledged; returns (seconds, last counts).

        Events stored for requests the client hung up on are delivered but not counted as
        acknowledged, so "drained" can come a few events early (`delivered_not_acknowledged`)."""
        start = time.monotonic()
        while True:
            c = counts(scrape(self.admin(name)))
            if c["delivered"] >= c["acked"]:
                return time.monotonic() - start, c
            if time.monotonic() - start > timeout:
                raise RuntimeError(
                    f"{name}: events not delivered after {timeout} s: acknowledged "
                    f"{c['acked']:.0f}, delivered {c['delivered']:.0f}, retry {c['retry']:.0f}, "
                    f"dead {c['dead']:.0f}, store errors {c['store_errors']:.0f}\n{self.log_tail(name)}")
            time.sleep(0.05)

    def queued_run(self, name, script):
        pid = self.procs[name].pid
        pids = b.proc_tree(pid)
        m0, cpu0, t0 = counts(scrape(self.admin(name))), b.cpu_ticks(pids), time.monotonic()
        th0 = thread_ticks(pid)
        perf = None
        if self.args.perf:
            graph = ["--call-graph", "dwarf,16384", "-F", "199"] if os.environ.get("PERF_CALLGRAPH") else ["-F", "999"]
            perf = subprocess.Popen(["perf", "record", *graph, "-p", str(pid), "-o",
                                     self.args.perf, "--", "sleep", str(self.args.duration)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        r = self.run(name, QUEUED, script)
        if perf:
            perf.wait()
        t1, cpu1, th1 = time.monotonic(), b.cpu_ticks(pids), thread_ticks(pid)
        m1 = counts(scrape(self.admin(name)))
        drain_s, m2 = self.wait_drained(name, self.args.drain_timeout)
        t2, cpu2, th2 = time.monotonic(), b.cpu_ticks(pids), thread_ticks(pid)
        # Requests whose client hung up before the answer (`client_closed`) may have been
        # stored all the same: delivered, though never acknowledged. Counted a second later.
        time.sleep(1)
        m3 = counts(scrape(self.admin(name)))
        acked = delta(m1, m0, "acked")
        commits = delta(m1, m0, "commits")
        backlog = m1["acked"] - m1["delivered"]
        tick_us = 1e6 / b.CLK_TCK
        r.update({
            "acked_events": acked,
            # Over loadgen's own window, as the sync rate is (t1 - t0 also holds its start
            # and exit).
            "acked_per_s": acked / r["seconds"],
            "load_window_s": t1 - t0,
            "cpu_us_per_event": per((cpu1 - cpu0) * tick_us, acked),
            "cpu_us_per_event_with_drain": per((cpu2 - cpu0) * tick_us, m2["acked"] - m0["acked"]),
            # Where the CPU goes (`workers: 1`): the main thread `hookgate` (requests, admin,
            # delivery worker), the store's writer `hookgate-queue-` and checkpointer
            # `hookgate-qcheck`, blocking-pool readers.
            "cpu_us_per_event_by_thread": thread_us_per_event(th0, th1, acked),
            "cpu_us_per_event_by_thread_with_drain": thread_us_per_event(th0, th2, m2["acked"] - m0["acked"]),
            "commits": commits,
            "commits_per_event": per(commits, acked),
            "ops_per_commit": per(delta(m1, m0, "ops"), commits),
            "ops_per_event": per(delta(m1, m0, "ops"), acked),
            "mean_commit_ms": per(delta(m1, m0, "commit_s") * 1e3, commits),
            # The tail of commit time (histogram buckets): what a slow commit costs every ack
            # waiting on it.
            "commits_over_10ms": commits - (m1["commit_le"].get(0.01, 0) - m0["commit_le"].get(0.01, 0)),
            "commits_over_100ms": commits - (m1["commit_le"].get(0.1, 0) - m0["commit_le"].get(0.1, 0)),
            "delivered_during_ingest": delta(m1, m0, "delivered"),
            "delivered_per_s_during_ingest": delta(m1, m0, "delivered") / (t1 - t0),
            "backlog_at_end": backlog,
            "drain_s": drain_s,
            "drain_per_s": per(backlog, drain_s) if backlog > 0 else None,
            "drain_commits": delta(m2, m1, "commits"),
            "delivered_not_acknowledged": m3["delivered"] - m3["acked"],
            "retry_attempts": delta(m2, m0, "retry"),
            "dead": delta(m2, m0, "dead"),
            "store_errors": delta(m2, m0, "store_errors"),
            "outcomes": m3["outcomes"],
        })
        return r

    def strace_run(self, script):
        """A queued run with strace attached: real fsync/fdatasync calls per event."""
        name = "hookgate-strace"
        store = self.start_hookgate(name)
        try:
            tracer = subprocess.Popen(
                ["strace", "-f", "-c", "-w", "-e", "trace=fsync,fdatasync", "-p", str(self.procs[name].pid)],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            time.sleep(1)  # attach to every thread before the load starts
            m0 = counts(scrape(self.admin(name)))
            r = self.run(name, QUEUED, script)
            m1 = counts(scrape(self.admin(name)))
            tracer.send_signal(signal.SIGINT)
            _, err = tracer.communicate(timeout=30)
            calls, usecs = {}, {}
            for line in err.splitlines():
                parts = line.split()
                if parts and parts[-1] in ("fsync", "fdatasync"):
                    # % time, seconds, usecs/call, calls, [errors,] syscall; -w: wall clock
                    calls[parts[-1]] = int(parts[3])
                    usecs[parts[-1]] = int(parts[2])
            acked = delta(m1, m0, "acked")
            commits = delta(m1, m0, "commits")
            self.wait_drained(name, self.args.drain_timeout)
            return {"acked_events": acked, "acked_per_s_under_strace": r["rps"], "syscalls": calls,
                    "wall_us_per_call": usecs,
                    "fsyncs_per_event": per(sum(calls.values()), acked), "commits": commits,
                    "commits_per_event": per(commits, acked),
                    "fsyncs_per_commit": per(sum(calls.values()), commits), "strace_output": err}
        finally:
            self.stop_one(name)
            shutil.rmtree(store, ignore_errors=True)


def median(values):
    return b.median(values)


def summarize(runs, keys):
    return {k: median([r.get(k) for r in runs]) for k in keys}


def summarize_threads(runs, key):
    names = sorted({n for r in runs for n in r[key]})
    return {n: {part: median([r[key].get(n, {}).get(part) for r in runs]) for part in ("total", "sys")}
            for n in names}


def threads_cell(by_thread):
    ordered = sorted(by_thread.items(), key=lambda x: -(x[1]["total"] or 0))
    return ", ".join(f"`{n}` {v['total']:.1f} (sys {v['sys']:.1f})" for n, v in ordered
                     if (v["total"] or 0) >= 0.05)


def fmt(v, digits=1):
    return b.fmt(v, digits)


def table(results):
    s, q = results["sync"], results["queued"]
    lat = lambda x: f"{x['p50_us']:,.0f} / {x['p99_us']:,.0f}"  # noqa: E731
    lines = [
        "| 1 KiB signed (`github`), 32 connections | sync forward | queued ingest |",
        "|---|---|---|",
        f"| requests/s (sync) / acknowledged events/s (queued) | {fmt(s['rps'], 0)} | {fmt(q['acked_per_s'], 0)} |",
        f"| p50 / p99 latency, us (queued: until the ack) | {lat(s)} | {lat(q)} |",
        f"| hookgate CPU us per request / event, during the load | {fmt(s['cpu_us_per_req'], 2)} | {fmt(q['cpu_us_per_event'], 2)} |",
        f"| hookgate CPU us per event, load + drain (delivery included) | - | {fmt(q['cpu_us_per_event_with_drain'], 2)} |",
        f"| CPU us per event by thread (of which system), during the load | - | {threads_cell(q['cpu_by_thread'])} |",
        f"| CPU us per event by thread (of which system), load + drain | - | {threads_cell(q['cpu_by_thread_with_drain'])} |",
        f"| store commits (WAL fsyncs) per acknowledged event | - | {fmt(q['commits_per_event'], 4)} |",
        f"| store operations per commit (ingest + lease + settle) | - | {fmt(q['ops_per_commit'], 1)} |",
        f"| store operations per event | - | {fmt(q['ops_per_event'], 2)} |",
        f"| mean commit time, ms | - | {fmt(q['mean_commit_ms'], 2)} |",
        f"| commits over 10 ms / over 100 ms, during the load | - | {fmt(q['commits_over_10ms'], 0)} / {fmt(q['commits_over_100ms'], 0)} |",
        f"| delivered events/s while ingest runs | - | {fmt(q['delivered_per_s_during_ingest'], 0)} |",
        f"| backlog when the load stops (acknowledged - delivered) | - | {fmt(q['backlog_at_end'], 0)} |",
        f"| drain after the load stops: seconds / events/s | - | {fmt(q['drain_s'], 2)} / {fmt(q['drain_per_s'], 0)} |",
    ]
    t = results["targets"]
    lines += [
        "",
        "| target | measured | met? |",
        "|---|---|---|",
        f"| queued ingest >= {RATIO_TARGET}x sync forward throughput | {fmt(t['ratio'], 2)}x "
        f"({fmt(q['acked_per_s'], 0)} vs {fmt(s['rps'], 0)}) | {t['ratio_met']} |",
        f"| ack p99 < {ACK_P99_TARGET_US / 1000:.0f} ms | {q['p99_us'] / 1000:.2f} ms | {t['ack_p99_met']} |",
    ]
    st = results.get("strace")
    if st:
        lines += ["", f"strace (separate run, slowed by tracing to {fmt(st['acked_per_s_under_strace'], 0)} "
                      f"events/s): {st['syscalls']} for {st['acked_events']:.0f} events: "
                      f"{fmt(st['fsyncs_per_event'], 4)} fsyncs per event, {fmt(st['fsyncs_per_commit'], 2)} "
                      f"per commit ({st['commits']:.0f} commits); wall time per call {st['wall_us_per_call']} us"]
    m = results["machine"]
    lines += ["", f"Machine: nproc {m['nproc']}, kernel {m['kernel']}, queue store on {m['store_fs']} "
                  f"({m['store_device']}, {m['store_mount_options']}) under {m['store_parent']}; "
                  f"load average at start {m['loadavg_at_start']}, at end {m['loadavg_at_end']}."]
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--duration", type=int, default=10, help="seconds per load run")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--drain-timeout", type=float, default=120.0,
                    help="seconds to wait for every acknowledged event to be delivered")
    ap.add_argument("--hookgate-cores", default=b.PROXY_CORE,
                    help=f"taskset list for hookgate (default {b.PROXY_CORE}, as bench.py)")
    ap.add_argument("--strace", action="store_true",
                    help="one extra queued run under strace counting fsync/fdatasync")
    ap.add_argument("--keep-stores", action="store_true", help="leave the queue store directories")
    ap.add_argument("--perf", default=None, metavar="FILE",
                    help="record a CPU profile of hookgate during the queued run (perf record -F 999; "
                         "with PERF_CALLGRAPH=1 in the environment, DWARF call graphs at 199 Hz)")
    ap.add_argument("--results", default=b.RESULTS,
                    help="where queued.json and queued.md go (default: bench/results)")
    args = ap.parse_args()
    for path in (b.HOOKGATE, b.UPSTREAM, LOADGEN):
        if not os.access(path, os.X_OK):
            sys.exit(f"{path} missing: CARGO_BUILD_JOBS=1 cargo build --release --bin hookgate "
                     "--example upstream --example loadgen")

    facts = machine_facts(STORE_PARENT)
    bench = QueuedBench(args)
    bench.start()
    sync_runs, queued_runs, strace = [], [], None
    try:
        script = bench.script(SYNC)
        with open(os.path.join(bench.tmp, f"body-{SYNC['name']}"), "rb") as f:
            body = f.read()
        for rnd in range(1, args.rounds + 1):
            name = f"hookgate-r{rnd}"
            store = bench.start_hookgate(name)
            try:
                bench.check_answers(name, body)
                s = bench.run(name, SYNC, script)
                sync_runs.append(s)
                print(f"round {rnd} sync:   {s['rps']:>9,.0f} req/s    p50 {s['p50_us']:>6} us "
                      f"p99 {s['p99_us']:>6} us cpu/req {fmt(s['cpu_us_per_req'], 2)} us", flush=True)
                q = bench.queued_run(name, script)
                q["store_bytes_after_drain"] = dir_bytes(store)
                queued_runs.append(q)
                print(f"round {rnd} queued: {q['acked_per_s']:>9,.0f} acked/s  p50 {q['p50_us']:>6} us "
                      f"p99 {q['p99_us']:>6} us cpu/event {fmt(q['cpu_us_per_event'], 2)} us "
                      f"({fmt(q['cpu_us_per_event_with_drain'], 2)} with drain), "
                      f"commits/event {fmt(q['commits_per_event'], 4)}, ops/commit "
                      f"{fmt(q['ops_per_commit'], 1)}, delivered {q['delivered_per_s_during_ingest']:,.0f}/s "
                      f"during, backlog {q['backlog_at_end']:,.0f}, drained in {q['drain_s']:.2f} s; "
                      f"outcomes {q['outcomes']}, delivered - acknowledged {q['delivered_not_acknowledged']:.0f}",
                      flush=True)
                for key in ("retry_attempts", "dead", "store_errors"):
                    if q[key]:
                        print(f"round {rnd}: WARNING {key} = {q[key]:.0f}\n{bench.log_tail(name)}", flush=True)
                # `client_closed` (a client hanging up before its answer) is not a gateway
                # failure.
                odd = {k: v for k, v in q["outcomes"].items()
                       if k.split("/")[1] not in ("forwarded", "queued", "client_closed")}
                if odd:
                    print(f"round {rnd}: WARNING request outcomes {odd}\n{bench.log_tail(name)}", flush=True)
            finally:
                bench.stop_one(name)
                if not args.keep_stores:
                    shutil.rmtree(store, ignore_errors=True)
        if args.strace:
            if shutil.which("strace") is None:
                print("strace missing: --strace skipped", flush=True)
            else:
                strace = bench.strace_run(script)
                print(f"strace: {strace['syscalls']} for {strace['acked_events']:.0f} events", flush=True)
    except Exception as e:
        print(f"FAILED: {e}", file=sys.stderr)
        print(f"logs and configs kept in {bench.tmp}", file=sys.stderr)
        raise
    finally:
        bench.stop()

    with open("/proc/loadavg") as f:
        facts["loadavg_at_end"] = " ".join(f.read().split()[:3])
    sync = summarize(sync_runs, ["rps", "p50_us", "p99_us", "cpu_us_per_req"])
    queued = summarize(queued_runs, [
        "rps", "acked_per_s", "p50_us", "p99_us", "cpu_us_per_event", "cpu_us_per_event_with_drain",
        "commits_per_event", "ops_per_commit", "ops_per_event", "mean_commit_ms",
        "commits_over_10ms", "commits_over_100ms",
        "delivered_per_s_during_ingest", "backlog_at_end", "drain_s", "drain_per_s",
        "store_bytes_after_drain"])
    queued["cpu_by_thread"] = summarize_threads(queued_runs, "cpu_us_per_event_by_thread")
    queued["cpu_by_thread_with_drain"] = summarize_threads(queued_runs, "cpu_us_per_event_by_thread_with_drain")
    ratio = b.ratio(queued["acked_per_s"], sync["rps"])
    results = {
        "machine": facts, "duration_s": args.duration, "rounds": args.rounds,
        "hookgate_cores": args.hookgate_cores, "load_core": b.LOAD_CORE,
        "sync": sync, "queued": queued,
        "targets": {"ratio": ratio, "ratio_target": RATIO_TARGET,
                    "ratio_met": "yes" if ratio is not None and ratio >= RATIO_TARGET else "no",
                    "ack_p99_us": queued["p99_us"], "ack_p99_target_us": ACK_P99_TARGET_US,
                    "ack_p99_met": "yes" if queued["p99_us"] < ACK_P99_TARGET_US else "no"},
        "runs": {"sync": sync_runs, "queued": queued_runs},
        "strace": strace,
    }
    text = table(results)
    os.makedirs(args.results, exist_ok=True)
    with open(os.path.join(args.results, "queued.json"), "w") as f:
        json.dump(results, f, indent=1)
    with open(os.path.join(args.results, "queued.md"), "w") as f:
        f.write(f"{args.rounds} rounds of {args.duration} s per run (sync then queued, each round on a "
                f"fresh hookgate and queue store); medians. hookgate on cores {args.hookgate_cores}; loadgen "
                f"and upstream on core {b.LOAD_CORE}. Reproduce: `python3 bench/queued.py "
                f"--duration {args.duration} --rounds {args.rounds}`.\n\n")
        f.write(text + "\n")
    print()
    print(text)


if __name__ == "__main__":
    sys.exit(main())
