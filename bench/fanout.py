#!/usr/bin/env python3
"""Fan-out: queued ingest with one destination and with three, beside the sync forward.

Built on bench/queued.py (same hookgate pinning, upstream, loadgen, 1 KiB bodies signed as
GitHub signs them, `workers: 1`, embedded store on the real disk). Build the binaries first:

    CARGO_BUILD_JOBS=1 cargo build --release --bin hookgate --example upstream --example loadgen
    python3 bench/fanout.py [--duration 10] [--rounds 3]

One hookgate serves three routes to the same fast upstream:
- `/sync`: `delivery: sync` (the reference, in the same round);
- `/one`: `delivery: queued` with one `upstream:` (one delivery per event);
- `/three`: `delivery: queued` with three `destinations:` (no filters: three deliveries per
  event, one stored request).

Per round (a fresh hookgate and store): loadgen (32 connections, closed loop) against /sync,
then /one, waiting until every event is delivered, then /three, waiting until every event is
delivered to all three destinations. For each queued route: acknowledged events/s and ack
latency while the load runs, hookgate CPU per event (load + drain: ingest and every delivery),
the store's bytes per event (`hookgate_queue_store_used_bytes` before and after, each event
kept: retention is 24 h), store operations per event, and the delivery rate per destination
during the drain. Figures are medians over rounds.

Writes bench/results/fanout.json and bench/results/fanout.md and prints the table.
"""

import argparse
import json
import os
import shutil
import sys
import time

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, BENCH_DIR)
import bench as b  # noqa: E402
import queued as q  # noqa: E402

SYNC = {"name": "1KiB", "body": 1024, "conns": 32, "path": "/sync"}
ONE = dict(SYNC, path="/one")
THREE = dict(SYNC, path="/three")
DESTINATIONS = ["a", "b", "c"]


class FanoutBench(q.QueuedBench):
    def start_hookgate(self, name):
        store = q.tempfile.mkdtemp(prefix="fanout-bench-", dir=q.STORE_PARENT)
        self.ports[name] = b.free_port()
        self.ports[name + "_admin"] = b.free_port()
        up = f"http://127.0.0.1:{self.ports['upstream']}"
        verify = "verify: { preset: github, secret_file: secret }"
        destinations = "".join(f"      - {{ name: {d}, upstream: \"{up}/{d}\" }}\n" for d in DESTINATIONS)
        config = f"""
workers: 1
listeners:
  - addr: 127.0.0.1:{self.ports[name]}
admin:
  addr: 127.0.0.1:{self.ports[name + '_admin']}
queue_store:
  path: {store}
routes:
  - {{ name: sync, path: /sync, upstream: "{up}", {verify} }}
  - {{ name: one, path: /one, upstream: "{up}", {verify}, delivery: queued }}
  - name: three
    path: /three
    {verify}
    delivery: queued
    destinations:
{destinations}"""
        path = os.path.join(self.tmp, f"{name}.yaml")
        with open(path, "w") as f:
            f.write(config)
        self.spawn(name, [b.HOOKGATE, "run", "-c", path], self.args.hookgate_cores,
                   {"HOOKGATE_LOG": "warn"})
        b.wait_port(self.ports[name])
        b.wait_port(self.ports[name + "_admin"])
        return store

    def figures(self, name, route):
        """What one scrape says of `route`: events acknowledged, deliveries made (by
        destination), store operations, the store's bytes."""
        s = q.scrape(self.admin(name))
        delivered = {}
        for (n, labels), v in s.items():
            d = dict(labels)
            if (n == "hookgate_delivery_attempts_total" and d.get("route") == route
                    and d.get("outcome") == "delivered"):
                delivered[d.get("destination", "")] = v
        return {
            "acked": q.metric(s, "hookgate_requests_total", route=route, outcome="queued"),
            "delivered": delivered,
            "ops": q.metric(s, "hookgate_queue_commit_batch_size_sum"),
            "used_bytes": q.metric(s, "hookgate_queue_store_used_bytes"),
        }

    def wait_all(self, name, route, per_event, timeout):
        """Until every acknowledged event is delivered to each of `per_event` destinations."""
        start = time.monotonic()
        while True:
            f = self.figures(name, route)
            if f["delivered"] and all(v >= f["acked"] for v in f["delivered"].values()) \
                    and len(f["delivered"]) == per_event:
                return time.monotonic() - start, f
            if time.monotonic() - start > timeout:
                raise RuntimeError(f"{route}: not delivered after {timeout} s: {f}\n{self.log_tail(name)}")
            time.sleep(0.05)

    def queued_case(self, name, case, route, per_event, script):
        pids = b.proc_tree(self.procs[name].pid)
        # The used-bytes gauge is read every second by the checkpointer.
        time.sleep(1.5)
        f0, cpu0 = self.figures(name, route), b.cpu_ticks(pids)
        r = self.run(name, case, script)
        f1 = self.figures(name, route)
        drain_s, f2 = self.wait_all(name, route, per_event, self.args.drain_timeout)
        cpu2 = b.cpu_ticks(pids)
        time.sleep(1.5)
        f3 = self.figures(name, route)
        acked = f1["acked"] - f0["acked"]
        all_acked = f2["acked"] - f0["acked"]
        backlog = {d: f1["acked"] - f1["delivered"].get(d, 0) for d in f2["delivered"]}
        r.update({
            "acked_per_s": acked / r["seconds"],
            "cpu_us_per_event_with_drain": q.per((cpu2 - cpu0) * 1e6 / b.CLK_TCK, all_acked),
            "store_bytes_per_event": q.per(f3["used_bytes"] - f0["used_bytes"], all_acked),
            "ops_per_event": q.per(f2["ops"] - f0["ops"], all_acked),
            "drain_s": drain_s,
            "drained_per_s_by_destination": {
                d: q.per(backlog[d], drain_s) for d in sorted(backlog)},
            "delivered_during_load_per_s": {
                d: (f1["delivered"].get(d, 0) - f0["delivered"].get(d, 0)) / r["seconds"]
                for d in sorted(f1["delivered"])},
        })
        return r

    def round(self, i, script):
        name = f"hookgate-{i}"
        store = self.start_hookgate(name)
        try:
            sync = self.run(name, SYNC, script)
            one = self.queued_case(name, ONE, "one", 1, script)
            three = self.queued_case(name, THREE, "three", len(DESTINATIONS), script)
            return {"sync": sync, "one": one, "three": three}
        finally:
            self.stop_one(name)
            shutil.rmtree(store, ignore_errors=True)


def med(runs, case, key):
    return b.median([r[case].get(key) for r in runs])


def table(runs):
    f = q.fmt
    s_rps = med(runs, "sync", "rps")
    lines = [
        "| 1 KiB signed (`github`), 32 connections | sync forward | queued, 1 destination | queued, 3 destinations |",
        "|---|---|---|---|",
    ]
    one, three = (lambda k: med(runs, "one", k)), (lambda k: med(runs, "three", k))
    lines += [
        f"| requests/s (sync) / acknowledged events/s | {f(s_rps, 0)} | {f(one('acked_per_s'), 0)} | {f(three('acked_per_s'), 0)} |",
        f"| vs the sync forward in the same round | 1x | {f(one('acked_per_s') / s_rps, 2)}x | {f(three('acked_per_s') / s_rps, 2)}x |",
        f"| ack p50 / p99, us | {f(med(runs, 'sync', 'p50_us'), 0)} / {f(med(runs, 'sync', 'p99_us'), 0)} | "
        f"{f(one('p50_us'), 0)} / {f(one('p99_us'), 0)} | {f(three('p50_us'), 0)} / {f(three('p99_us'), 0)} |",
        f"| store bytes per event (one request, a row per delivery) | - | {f(one('store_bytes_per_event'), 0)} | {f(three('store_bytes_per_event'), 0)} |",
        f"| store operations per event | - | {f(one('ops_per_event'), 2)} | {f(three('ops_per_event'), 2)} |",
        f"| hookgate CPU us per event, ingest and every delivery | - | {f(one('cpu_us_per_event_with_drain'), 1)} | {f(three('cpu_us_per_event_with_drain'), 1)} |",
    ]
    for case in ("one", "three"):
        rates = runs[len(runs) // 2][case]["drained_per_s_by_destination"]
        cell = ", ".join(f"`{d or '-'}` {f(v, 0)}" for d, v in rates.items() if v)
        lines.append(f"| drain, deliveries/s by destination ({case}; middle round) | - | "
                     + (f"{cell} | - |" if case == "one" else f"- | {cell} |"))
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--duration", type=int, default=10)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--drain-timeout", type=float, default=300)
    p.add_argument("--hookgate-cores", default=b.PROXY_CORE)
    args = p.parse_args()
    args.perf = None
    bench = FanoutBench(args)
    try:
        bench.start()
        script = bench.script(SYNC)
        runs = [bench.round(i, script) for i in range(args.rounds)]
    finally:
        bench.stop()
    out = {"machine": q.machine_facts(q.STORE_PARENT), "rounds": runs}
    results = os.path.join(BENCH_DIR, "results")
    with open(os.path.join(results, "fanout.json"), "w") as f:
        json.dump(out, f, indent=2)
    text = ("# Fan-out: queued ingest with one and with three destinations\n\n"
            "`python3 bench/fanout.py`, median of "
            f"{args.rounds} rounds of {args.duration} s; hookgate on one core, `workers: 1`.\n\n"
            + table(runs) + "\n")
    with open(os.path.join(results, "fanout.md"), "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
