#!/usr/bin/env bash
# Validates the Docker Compose try-out and the Grafana dashboard offline (no Docker daemon, no
# image registry):
#
#   1. deploy/grafana/hookgate.json: valid JSON; the ${DS_PROMETHEUS} datasource and `route`
#      variables; every panel with a gridPos, a unique id, the datasource and targets with an
#      expr; the rows; panels that do not overlap; every metric name one hookgate defines
#      (src/metrics.rs; tests/e2e checks them against a running gateway); every expression
#      parses as PromQL (`promtool check rules` on a rule file made of them);
#   2. deploy/compose.yaml against the Compose Specification JSON schema (the copy vendored in
#      the pinned PyPI package check-jsonschema: compose-spec/compose-spec's
#      schema/compose-spec.json, Apache-2.0), then what the README promises of it: no
#      `version:`, the hardened hookgate service, its health check, the admin port unpublished,
#      pinned images, ports on loopback only;
#   3. every file compose.yaml refers to exists (build contexts, the Dockerfile and its stages,
#      bind mounts), and the Grafana and Prometheus files mounted fit together (provisioned
#      datasource and dashboard path, scrape target, rule file; `promtool check config`);
#   4. deploy/compose/gateway.yaml: mirrors the committed gateway.yaml's routes, and
#      `hookgate check` accepts it with each container path mapped back to the file compose
#      mounts there (a path that no mount provides is a failure).
#
# Run from anywhere: bash tests/deploy/compose.sh. One line per check; exit 1 on any failure.
#
# Environment:
#   HOOKGATE_BIN  the hookgate binary (default target/debug/hookgate; built with cargo when
#                 missing)
#   PROMTOOL      promtool to use (default: promtool on PATH, else Debian's prometheus package
#                 unpacked under target/deploy-tools)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
root=$PWD

failures=0
ok() { printf 'ok   %s\n' "$*"; }
fail() { printf 'FAIL %s\n' "$*"; failures=$((failures + 1)); }
skip() { printf 'skip %s\n' "$*"; }
indent() { sed 's/^/     /'; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/hookgate-compose.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# --- tools -------------------------------------------------------------------------------------

# The pinned tools (tests/deploy/requirements.txt), in the venv all deploy checks share.
. tests/lib.sh
venv_bin=$(deploy_venv)
py=$venv_bin/python

promtool=${PROMTOOL:-}
if [[ -z $promtool ]]; then
  if command -v promtool >/dev/null 2>&1; then
    promtool=$(command -v promtool)
  elif declare -F debian_tool >/dev/null; then
    promtool=$(debian_tool prometheus promtool)
  fi
fi

bin=$(hookgate_bin)

# --- 1-4: the structural checks, in Python (PyYAML from the venv) --------------------------------
# Besides its ok/FAIL lines, it writes into $tmp: dashboard-rules.yaml (every dashboard
# expression as a recording rule, for promtool), prometheus.yml and gateway.yaml (the compose
# files with container paths mapped to the repository's files), state/ (the queue volume).

set +e
"$py" - "$root" "$tmp" <<'PY'
import json, os, re, sys
import yaml

root, tmp = sys.argv[1], sys.argv[2]
deploy = os.path.join(root, "deploy")
failures = 0

def ok(msg):
    print(f"ok   {msg}")

def fail(msg):
    global failures
    failures += 1
    print(f"FAIL {msg}")

def check(cond, good, bad):
    (ok if cond else fail)(good if cond else bad)
    return cond

def rel(p):
    return os.path.relpath(p, root)

# ------------------------------------------------------------------ 1. the dashboard
dash_path = os.path.join(deploy, "grafana", "hookgate.json")
DS_UID = "${DS_PROMETHEUS}"
exprs = []
try:
    with open(dash_path) as f:
        dash = json.load(f)
    ok(f"dashboard: {rel(dash_path)} is valid JSON")
except (OSError, ValueError) as e:
    dash = None
    fail(f"dashboard: {rel(dash_path)}: {e}")

def ds_ok(ds):
    return isinstance(ds, dict) and ds.get("uid") == DS_UID and ds.get("type") == "prometheus"

if dash is not None:
    problems = []
    for key in ("uid", "title", "schemaVersion", "panels", "templating"):
        if key not in dash:
            problems.append(f"no top-level {key}")
    if not isinstance(dash.get("schemaVersion"), int) or dash.get("schemaVersion", 0) < 36:
        problems.append(f"schemaVersion {dash.get('schemaVersion')!r} (Grafana 9+ expects 36 or more)")
    if dash.get("id") is not None:
        problems.append("id must be null (an importable dashboard has none)")
    check(not problems, "dashboard: uid, title, schemaVersion present; id null",
          "dashboard: " + "; ".join(problems))

    variables = {v.get("name"): v for v in dash.get("templating", {}).get("list", [])}
    v = variables.get("DS_PROMETHEUS")
    check(v is not None and v.get("type") == "datasource" and v.get("query") == "prometheus",
          "dashboard: variable DS_PROMETHEUS is a prometheus datasource variable",
          "dashboard: no DS_PROMETHEUS variable of type datasource (query prometheus)")
    v = variables.get("route")
    query = (v or {}).get("query")
    query = query.get("query") if isinstance(query, dict) else query
    check(v is not None and v.get("type") == "query"
          and re.sub(r"\s", "", query or "") == "label_values(hookgate_requests_total,route)"
          and v.get("multi") is True and v.get("includeAll") is True and ds_ok(v.get("datasource")),
          "dashboard: variable route = label_values(hookgate_requests_total, route), multi, all",
          "dashboard: the route variable must be a multi/all query of label_values(hookgate_requests_total, route) on ${DS_PROMETHEUS}")

    panels = list(dash.get("panels", []))
    for p in list(panels):  # panels inside collapsed rows count too
        panels.extend(p.get("panels", []) if p.get("type") == "row" else [])
    ids, bad, boxes = {}, [], []
    for p in panels:
        name = f"panel {p.get('id')!r} ({p.get('title', '?')})"
        if p.get("id") in ids:
            bad.append(f"{name}: id also used by {ids[p.get('id')]}")
        ids.setdefault(p.get("id"), p.get("title"))
        g = p.get("gridPos")
        if not (isinstance(g, dict) and all(isinstance(g.get(k), int) for k in ("h", "w", "x", "y"))):
            bad.append(f"{name}: no gridPos with integer h, w, x, y")
        elif g["x"] < 0 or g["w"] < 1 or g["x"] + g["w"] > 24 or g["h"] < 1:
            bad.append(f"{name}: gridPos {g} outside the 24-column grid")
        else:
            boxes.append((name, g))
        if p.get("type") == "row":
            continue
        if not ds_ok(p.get("datasource")):
            bad.append(f"{name}: datasource is not {{type: prometheus, uid: {DS_UID}}}")
        targets = p.get("targets") or []
        if not targets:
            bad.append(f"{name}: no targets")
        refs = [t.get("refId") for t in targets]
        if len(set(refs)) != len(refs):
            bad.append(f"{name}: duplicate refId")
        for t in targets:
            if not (isinstance(t.get("expr"), str) and t["expr"].strip()):
                bad.append(f"{name}: target {t.get('refId')} has no expr")
            elif not ds_ok(t.get("datasource")):
                bad.append(f"{name}: target {t.get('refId')} datasource is not {DS_UID}")
            else:
                exprs.append((p.get("title", "?"), t["expr"]))
    for i, (n1, a) in enumerate(boxes):
        for n2, b in boxes[i + 1:]:
            if a["x"] < b["x"] + b["w"] and b["x"] < a["x"] + a["w"] and a["y"] < b["y"] + b["h"] and b["y"] < a["y"] + a["h"]:
                bad.append(f"{n1} overlaps {n2}")
    data_panels = [p for p in panels if p.get("type") != "row"]
    check(not bad, f"dashboard: {len(data_panels)} panels, ids unique, gridPos in the grid, no overlaps, "
                   f"each with the datasource and targets with an expr",
          "dashboard: " + "; ".join(bad))

    rows = [p.get("title") for p in panels if p.get("type") == "row"]
    want = ["Traffic", "Verification", "Upstream", "Replay", "Queue", "Connections", "Config & TLS"]
    check(rows == want, f"dashboard: rows {', '.join(rows)}",
          f"dashboard: rows are {rows}, expected {want}")
    types = {p.get("type") for p in data_panels}
    check(types <= {"timeseries", "stat"}, "dashboard: panel types timeseries and stat",
          f"dashboard: unexpected panel types {sorted(types - {'timeseries', 'stat'})}")

    for a in dash.get("annotations", {}).get("list", []):
        if "expr" in a:
            exprs.append((f"annotation {a.get('name')}", a["expr"]))
            if not ds_ok(a.get("datasource")):
                fail(f"dashboard: annotation {a.get('name')}: datasource is not {DS_UID}")

    # Metric names: each one hookgate defines (src/metrics.rs; histograms as _bucket/_sum/_count).
    with open(os.path.join(root, "src", "metrics.rs")) as f:
        src = f.read()
    defined = set(re.findall(r'"((?:hookgate|process)_[a-z0-9_]+)"', src))
    used = set()
    for _, e in exprs:
        used.update(re.findall(r"\b((?:hookgate|process)_[a-z0-9_]+)", e))
    unknown = sorted(m for m in used
                     if m not in defined and re.sub(r"_(bucket|sum|count)$", "", m) not in defined)
    check(used and not unknown,
          f"dashboard: its {len(used)} metric names are all defined in src/metrics.rs",
          f"dashboard: metrics not defined by hookgate: {', '.join(unknown) or '(none used)'}")
    other = sorted({m for _, e in exprs for m in re.findall(r"\b([a-z_:][a-z0-9_:]*)\s*(?:\{|\[)", e)}
                   - used - {"by", "without", "on", "ignoring", "group_left", "group_right"})
    check(not other, "dashboard: no metric from outside hookgate",
          f"dashboard: expressions select other metrics: {', '.join(other)}")

    # Every expression as a recording rule, for `promtool check rules` (Grafana's variables
    # replaced by what they expand to).
    def concrete(e):
        return (e.replace("$__rate_interval", "1m").replace("${__rate_interval}", "1m")
                 .replace("$__interval", "1m").replace('"$route"', '".*"').replace("$route", ".*"))
    left = [t for t, e in exprs if "$" in concrete(e)]
    check(not left, "dashboard: expressions use only $route and $__rate_interval",
          f"dashboard: unknown variables in: {', '.join(left)}")
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:expr_{i}", "expr": concrete(e)} for i, (_, e) in enumerate(exprs)]}]}
    with open(os.path.join(tmp, "dashboard-rules.yaml"), "w") as f:
        yaml.safe_dump(rules, f, sort_keys=False)

# ------------------------------------------------------------------ 2. compose.yaml
compose_path = os.path.join(deploy, "compose.yaml")
with open(compose_path) as f:
    compose = yaml.safe_load(f)
services = compose.get("services", {})
check("version" not in compose, "compose: no obsolete `version:` key",
      "compose: remove the `version:` key (the Compose Specification ignores it)")
want = {"hookgate", "echo", "redis", "prometheus", "grafana"}
check(want <= set(services), f"compose: services {', '.join(sorted(services))}",
      f"compose: missing services {sorted(want - set(services))}")

def ports_of(svc):
    out = []
    for p in svc.get("ports", []):
        if isinstance(p, dict):
            out.append((str(p.get("host_ip", "")), str(p.get("published", "")), str(p.get("target"))))
        else:
            parts = str(p).split(":")
            if len(parts) == 3:
                out.append((parts[0], parts[1], parts[2]))
            elif len(parts) == 2:
                out.append(("", parts[0], parts[1]))
            else:
                out.append(("", "", parts[0]))
    return out

published = [(n, hip, pub, tgt) for n, s in services.items() for hip, pub, tgt in ports_of(s)]
open_ports = [f"{n} {pub}:{tgt}" for n, hip, pub, tgt in published if hip != "127.0.0.1"]
check(not open_ports, "compose: every published port is bound to 127.0.0.1",
      f"compose: published on every interface: {', '.join(open_ports)}")
want_ports = {("hookgate", "8080", "8080"), ("grafana", "3001", "3000"), ("prometheus", "9090", "9090")}
have_ports = {(n, pub, tgt.split("/")[0]) for n, _, pub, tgt in published}
check(want_ports <= have_ports, "compose: hookgate on 127.0.0.1:8080, Prometheus on :9090, Grafana on :3001",
      f"compose: expected published ports {sorted(want_ports - have_ports)}")

hg = services.get("hookgate", {})
hg_ports = [tgt.split("/")[0] for _, tgt in [(None, t) for _, _, t in ports_of(hg)]]
check("9090" not in hg_ports, "compose: hookgate's admin port 9090 is not published",
      "compose: hookgate's admin port 9090 must not be published (Prometheus scrapes it in-network)")
hardening = []
if hg.get("read_only") is not True:
    hardening.append("read_only: true")
if str(hg.get("user")) != "65532:65532":
    hardening.append('user: "65532:65532"')
if [c.upper() for c in hg.get("cap_drop", [])] != ["ALL"]:
    hardening.append("cap_drop: [ALL]")
if not any(re.fullmatch(r"no-new-privileges(:true)?", s) for s in hg.get("security_opt", [])):
    hardening.append("security_opt: [no-new-privileges:true]")
check(not hardening, "compose: hookgate read-only, uid 65532, no capabilities, no-new-privileges",
      "compose: hookgate needs " + ", ".join(hardening))
hc = hg.get("healthcheck", {}).get("test")
check(hc == ["CMD", "/usr/local/bin/hookgate", "healthcheck", "-c", "/etc/hookgate/gateway.yaml"],
      "compose: hookgate's healthcheck is `hookgate healthcheck -c /etc/hookgate/gateway.yaml`",
      f"compose: hookgate's healthcheck test is {hc!r}")

unpinned = []
for n, s in services.items():
    img = s.get("image")
    if "build" in s:
        continue
    tag = img.rsplit(":", 1)[1] if img and ":" in img.rsplit("/", 1)[-1] else ""
    if not img or "@sha256:" not in img and (not re.search(r"\d", tag) or tag == "latest"):
        unpinned.append(f"{n} ({img})")
check(not unpinned, "compose: third-party images pinned to versions",
      f"compose: images without a version tag: {', '.join(unpinned)}")

# Builds: the context, the Dockerfile, and the stage each service asks for.
build_bad = []
for n, s in services.items():
    b = s.get("build")
    if b is None:
        continue
    b = {"context": b} if isinstance(b, str) else b
    ctx = os.path.normpath(os.path.join(deploy, b.get("context", ".")))
    dockerfile = os.path.join(ctx, b.get("dockerfile", "Dockerfile"))
    if not os.path.isdir(ctx):
        build_bad.append(f"{n}: context {rel(ctx)} missing")
    elif not os.path.isfile(dockerfile):
        build_bad.append(f"{n}: {rel(dockerfile)} missing")
    elif b.get("target"):
        with open(dockerfile) as f:
            stages = re.findall(r"(?im)^FROM\s+\S+\s+AS\s+(\S+)\s*$", f.read())
        if b["target"] not in stages:
            build_bad.append(f"{n}: target {b['target']} is not a stage of {rel(dockerfile)} ({', '.join(stages)})")
builds = {n: (s["build"] if isinstance(s["build"], dict) else {}) for n, s in services.items() if "build" in s}
want_builds = {"hookgate": "runtime", "echo": "echo"}
for n, t in want_builds.items():
    b = builds.get(n, {})
    if (b.get("context"), b.get("dockerfile"), b.get("target")) != ("..", "deploy/Dockerfile", t):
        build_bad.append(f"{n}: expected build {{context: .., dockerfile: deploy/Dockerfile, target: {t}}}")
check(not build_bad, "compose: hookgate and echo build from deploy/Dockerfile (stages runtime, echo), context the repository",
      "compose: " + "; ".join(build_bad))

# ------------------------------------------------------------------ 3. files compose refers to
def mounts(svc):
    """(kind, source, target, read_only) for each entry of a service's volumes."""
    out = []
    for v in svc.get("volumes", []):
        if isinstance(v, dict):
            out.append((v.get("type", "volume"), v.get("source"), v.get("target"), bool(v.get("read_only"))))
            continue
        parts = v.split(":")
        src, tgt = (parts[0], parts[1]) if len(parts) >= 2 else (None, parts[0])
        mode = parts[2] if len(parts) >= 3 else ""
        kind = "bind" if src and (src.startswith((".", "/", "~"))) else "volume"
        out.append((kind, src, tgt, "ro" in mode.split(",")))
    return out

missing, writable = [], []
named = set((compose.get("volumes") or {}).keys())
undeclared = []
for n, s in services.items():
    for kind, src, tgt, ro in mounts(s):
        if kind == "bind":
            p = os.path.normpath(os.path.join(deploy, src))
            if not os.path.exists(p):
                missing.append(f"{n}: {src} ({rel(p)})")
            if not ro:
                writable.append(f"{n}: {src}")
        elif src and src not in named:
            undeclared.append(f"{n}: {src}")
check(not missing, "compose: every bind-mounted file and directory exists",
      f"compose: bind mounts of missing paths: {', '.join(missing)}")
check(not writable, "compose: every bind mount is read-only",
      f"compose: writable bind mounts: {', '.join(writable)}")
check(not undeclared, f"compose: named volumes declared ({', '.join(sorted(named))})",
      f"compose: named volumes not declared under volumes: {', '.join(undeclared)}")

def container_to_host(svc, path):
    """The repository file that a service's bind mounts put at a container path, or None."""
    best = None
    for kind, src, tgt, _ in mounts(svc):
        if kind != "bind" or not tgt:
            continue
        if path == tgt or path.startswith(tgt.rstrip("/") + "/"):
            if best is None or len(tgt) > len(best[1]):
                best = (src, tgt)
    if best is None:
        return None
    return os.path.normpath(os.path.join(deploy, best[0]) + path[len(best[1]):])

# Grafana: the provisioned datasource and dashboard provider, and the dashboard they load.
gf = services.get("grafana", {})
prov_dir = container_to_host(gf, "/etc/grafana/provisioning/datasources")
dash_prov_dir = container_to_host(gf, "/etc/grafana/provisioning/dashboards")
gf_bad = []
ds_uids = set()
if not prov_dir or not os.path.isdir(prov_dir):
    gf_bad.append("nothing mounted at /etc/grafana/provisioning/datasources")
else:
    for fn in sorted(os.listdir(prov_dir)):
        with open(os.path.join(prov_dir, fn)) as f:
            d = yaml.safe_load(f) or {}
        for ds in d.get("datasources", []):
            if ds.get("type") == "prometheus":
                ds_uids.add(ds.get("uid"))
                if ds.get("url") != "http://prometheus:9090":
                    gf_bad.append(f"{fn}: datasource url {ds.get('url')}, expected http://prometheus:9090")
                if not ds.get("isDefault"):
                    gf_bad.append(f"{fn}: the Prometheus datasource should be the default (the dashboard's variable picks it)")
    if not ds_uids:
        gf_bad.append("no Prometheus datasource provisioned")
dash_paths = []
if not dash_prov_dir or not os.path.isdir(dash_prov_dir):
    gf_bad.append("nothing mounted at /etc/grafana/provisioning/dashboards")
else:
    for fn in sorted(os.listdir(dash_prov_dir)):
        with open(os.path.join(dash_prov_dir, fn)) as f:
            d = yaml.safe_load(f) or {}
        for prov in d.get("providers", []):
            dash_paths.append(prov.get("options", {}).get("path"))
for p in dash_paths:
    host = container_to_host(gf, p) if p else None
    if not host or not os.path.isfile(os.path.join(host, "hookgate.json")):
        gf_bad.append(f"dashboard provider path {p} does not hold hookgate.json (mount deploy/grafana there)")
if not dash_paths:
    gf_bad.append("no dashboard provider")
home = (gf.get("environment") or {}).get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH") if isinstance(gf.get("environment"), dict) else None
if home and not (container_to_host(gf, home) and os.path.isfile(container_to_host(gf, home))):
    gf_bad.append(f"GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH {home} is not a mounted file")
check(not gf_bad, "grafana: Prometheus datasource at http://prometheus:9090, provider loads deploy/grafana/hookgate.json",
      "grafana: " + "; ".join(gf_bad))

# Prometheus: scrapes hookgate:9090, loads the mounted alert rules. The copy written for
# `promtool check config` has the rule files' container paths mapped to the repository.
pm = services.get("prometheus", {})
cmd = pm.get("command") or []
cfg_in = next((c.split("=", 1)[1] for c in cmd if isinstance(c, str) and c.startswith("--config.file=")),
              "/etc/prometheus/prometheus.yml")
prom_host = container_to_host(pm, cfg_in)
pm_bad = []
if not prom_host or not os.path.isfile(prom_host):
    pm_bad.append(f"nothing mounted at {cfg_in}")
else:
    with open(prom_host) as f:
        prom = yaml.safe_load(f)
    hookgate_jobs = [j for j in prom.get("scrape_configs", [])
                     if any("hookgate:9090" in sc.get("targets", []) for sc in j.get("static_configs", []))]
    if not hookgate_jobs:
        pm_bad.append("no scrape job for hookgate:9090")
    elif hookgate_jobs[0].get("scrape_interval", prom.get("global", {}).get("scrape_interval")) != "5s":
        pm_bad.append("hookgate is not scraped every 5s")
    rule_files = prom.get("rule_files", [])
    mapped = []
    for r in rule_files:
        c = r if r.startswith("/") else os.path.join(os.path.dirname(cfg_in), r)
        h = container_to_host(pm, c)
        if not h or not os.path.isfile(h):
            pm_bad.append(f"rule file {r} is not a mounted file")
        else:
            mapped.append(h)
    alerts = os.path.join(deploy, "prometheus", "alerts.yaml")
    if os.path.normpath(alerts) not in mapped:
        pm_bad.append("deploy/prometheus/alerts.yaml is not among the rule files")
    prom["rule_files"] = mapped
    with open(os.path.join(tmp, "prometheus.yml"), "w") as f:
        yaml.safe_dump(prom, f, sort_keys=False)
check(not pm_bad, f"prometheus: scrapes hookgate:9090 every 5s, loads deploy/prometheus/alerts.yaml",
      "prometheus: " + "; ".join(pm_bad))

# ------------------------------------------------------------------ 4. the gateway's configuration
cfg_c = "/etc/hookgate/gateway.yaml"
gw_host = container_to_host(hg, cfg_c)
if not gw_host or not os.path.isfile(gw_host):
    fail(f"gateway: nothing mounted at {cfg_c}")
else:
    with open(gw_host) as f:
        text = f.read()
    gw = yaml.safe_load(text)
    committed = yaml.safe_load(open(os.path.join(root, "gateway.yaml")))
    bad = []
    if [l.get("addr") for l in gw.get("listeners", [])] != ["0.0.0.0:8080"]:
        bad.append("one listener on 0.0.0.0:8080")
    if gw.get("admin", {}).get("addr") != "0.0.0.0:9090" or not gw.get("admin", {}).get("token_file"):
        bad.append("admin on 0.0.0.0:9090 with a token_file")
    rs = gw.get("replay_store", {})
    if rs.get("type") != "redis" or rs.get("url") != "redis://redis:6379":
        bad.append("replay_store redis at redis://redis:6379")
    qs = gw.get("queue_store", {})
    if qs.get("type", "embedded") != "embedded" or not str(qs.get("path", "")).startswith("/var/lib/hookgate/"):
        bad.append("an embedded queue_store under /var/lib/hookgate")
    routes = {r["name"]: r for r in gw.get("routes", [])}
    if not any(r.get("delivery") == "queued" for r in routes.values()):
        bad.append("a queued route")
    for r in committed.get("routes", []):
        mine = routes.get(r["name"])
        if mine is None:
            bad.append(f"route {r['name']} (as in gateway.yaml)")
        elif (mine.get("verify") or {}).get("preset") != (r.get("verify") or {}).get("preset") or mine.get("path") != r.get("path"):
            bad.append(f"route {r['name']} with gateway.yaml's path and preset")
    ups = sorted({r.get("upstream") for r in routes.values()} - {"http://echo:3000"})
    if ups:
        bad.append(f"upstream http://echo:3000 everywhere (not {', '.join(ups)})")
    check(not bad, f"gateway: {rel(gw_host)} mirrors gateway.yaml's {len(committed.get('routes', []))} routes "
                   f"(+ a queued one), upstream echo:3000, Redis, admin with a token",
          f"gateway: {rel(gw_host)} should have " + "; ".join(bad))

    # Container paths -> the repository's files (through hookgate's bind mounts) or a temp dir
    # (its named volumes). A path no mount provides stays as it is and is reported.
    state = os.path.join(tmp, "state")
    os.makedirs(state)
    volumes_at = [tgt for kind, _, tgt, _ in mounts(hg) if kind == "volume"]
    unmapped = []
    def repl(m):
        p = m.group(0)
        for v in volumes_at:
            if p == v or p.startswith(v.rstrip("/") + "/"):
                return state + p[len(v):]
        h = container_to_host(hg, p)
        if h is None:
            unmapped.append(p)
            return p
        return h
    mapped_text = re.sub(r"/(?:etc|var|run|srv|opt|data)/[A-Za-z0-9_.\-/]*", repl, text)
    with open(os.path.join(tmp, "gateway.yaml"), "w") as f:
        f.write(mapped_text)
    check(not unmapped, "gateway: every path in it is provided by a compose mount",
          f"gateway: no compose mount provides {', '.join(sorted(set(unmapped)))}")

with open(os.path.join(tmp, "failures"), "w") as f:
    f.write(str(failures))
sys.exit(1 if failures else 0)
PY
rc=$?
set -e
if [[ -s $tmp/failures ]]; then
  failures=$((failures + $(cat "$tmp/failures")))
elif [[ $rc -ne 0 ]]; then
  fail "the structural checks stopped early (exit status $rc)"
fi

# --- the checks that need the tools --------------------------------------------------------------

if out=$("$venv_bin/check-jsonschema" --builtin-schema vendor.compose-spec deploy/compose.yaml 2>&1); then
  ok "compose: deploy/compose.yaml is valid against the Compose Specification schema (check-jsonschema $("$venv_bin/check-jsonschema" --version | awk '{print $NF}'))"
else
  fail "compose: deploy/compose.yaml does not match the Compose Specification schema:"
  indent <<<"$out"
fi

if docker compose version >/dev/null 2>&1; then
  if out=$(docker compose -f deploy/compose.yaml config --quiet 2>&1); then
    ok "compose: docker compose config accepts deploy/compose.yaml"
  else
    fail "compose: docker compose config: $out"
  fi
else
  skip "compose: docker compose config (no Docker Compose plugin here; the schema check above stands in)"
fi

if [[ -z $promtool ]]; then
  fail "promtool not found (set PROMTOOL, or install Debian's prometheus package)"
else
  if [[ -f $tmp/dashboard-rules.yaml ]]; then
    if out=$("$promtool" check rules "$tmp/dashboard-rules.yaml" 2>&1); then
      ok "dashboard: every expression parses as PromQL (promtool check rules)"
    else
      fail "dashboard: promtool check rules on the dashboard's expressions:"
      indent <<<"$out"
    fi
  fi
  if [[ -f $tmp/prometheus.yml ]]; then
    if out=$("$promtool" check config "$tmp/prometheus.yml" 2>&1); then
      ok "prometheus: promtool check config accepts deploy/compose/prometheus.yml (with its rule file)"
    else
      fail "prometheus: promtool check config on deploy/compose/prometheus.yml:"
      indent <<<"$out"
    fi
  fi
fi

if [[ -f $tmp/gateway.yaml ]]; then
  if out=$("$bin" check -c "$tmp/gateway.yaml" 2>&1); then
    # The admin listener binds 0.0.0.0 in a container: that warning is expected, any other
    # fails (what `check --strict` would refuse). So are the modes of the public development
    # files compose bind-mounts: hookgate (uid 65532) reads them through their "other" bits,
    # so they cannot be private to their owner here.
    others=$(grep -i 'warning' <<<"$out" | grep -v 'warning: admin.addr: 0.0.0.0:9090 is not loopback' \
      | grep -Ev 'deploy/(dev-secrets/[a-z]+\.secret|compose/admin-token) has mode ' || true)
    if [[ -n $others ]]; then
      fail "gateway: hookgate check warns about deploy/compose/gateway.yaml:"
      indent <<<"$others"
    else
      ok "gateway: hookgate check accepts deploy/compose/gateway.yaml (container paths mapped to the repository), no warning but the admin listener's"
    fi
  else
    fail "gateway: hookgate check rejects deploy/compose/gateway.yaml:"
    indent <<<"$out"
  fi
fi

if ((failures)); then
  echo "compose: $failures check(s) failed"
  exit 1
fi
echo "compose: all checks passed"
