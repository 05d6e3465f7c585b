#!/usr/bin/env bash
# Validates the Kubernetes kit in deploy/kubernetes/ offline:
#
#   1. renders the base and every overlay with `kubectl kustomize`;
#   2. validates every rendered object against the Kubernetes API schemas (PyPI
#      kubernetes-validate, pinned, in a venv under target/deploy-tools/venv) for each version in
#      KUBE_VERSIONS; the Prometheus Operator kinds (ServiceMonitor, PrometheusRule) have no
#      schema there and get field checks of their own;
#   3. checks what matters for hookgate: probes, the termination grace against the rendered
#      gateway.yaml's drain_delay + shutdown_grace, the restricted securityContext, the admin
#      port kept out of the webhook Service and behind the NetworkPolicy, and `hookgate check`
#      on each rendered gateway.yaml with the files and environment the pod would have (taken
#      from the rendered ConfigMaps and Secrets the Deployment mounts);
#   4. checks that base/prometheusrule.yaml is what base/prometheusrule.sh generates from
#      deploy/prometheus/alerts.yaml.
#
# Run from anywhere: bash tests/deploy/kubernetes.sh. One line per check; exit 1 on any failure.
#
# Environment:
#   HOOKGATE_BIN            the hookgate binary (default target/debug/hookgate; built with cargo
#                           when that is missing)
#   KUBECTL                 the kubectl to render with (default: kubectl on PATH)
#   HOOKGATE_SKIP_KUBECTL=1 without kubectl: skip everything that needs a render (steps 1-3)
#                           instead of failing
#   KUBE_VERSIONS           Kubernetes versions to validate against (default "1.31.0 1.37.0")
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
root=$PWD
kit=deploy/kubernetes
targets=(base overlays/redis overlays/postgres)
kube_versions=${KUBE_VERSIONS:-1.31.0 1.37.0}
kubectl=${KUBECTL:-kubectl}

failures=0
ok() { printf 'ok   %s\n' "$*"; }
fail() { printf 'FAIL %s\n' "$*"; failures=$((failures + 1)); }
skipped=0
skip() { printf 'skip %s\n' "$*"; skipped=$((skipped + 1)); }

# --- tools -------------------------------------------------------------------------------------

# The pinned tools (tests/deploy/requirements.txt), in the venv all deploy checks share.
. tests/lib.sh
venv_bin=$(deploy_venv)
py=$venv_bin/python

bin=$(hookgate_bin)

tmp=$(mktemp -d "${TMPDIR:-/tmp}/hookgate-k8s.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# --- 4. the PrometheusRule is generated from alerts.yaml ----------------------------------------

rule=$kit/base/prometheusrule.yaml
if [[ ! -f deploy/prometheus/alerts.yaml ]]; then
  fail "prometheusrule: deploy/prometheus/alerts.yaml is missing (prometheusrule.yaml is generated from it)"
elif ! PYTHON=$py "$kit/base/prometheusrule.sh" --stdout >"$tmp/prometheusrule.yaml" 2>"$tmp/prometheusrule.err"; then
  fail "prometheusrule: prometheusrule.sh failed: $(cat "$tmp/prometheusrule.err")"
elif ! diff -u "$rule" "$tmp/prometheusrule.yaml" >"$tmp/prometheusrule.diff"; then
  fail "prometheusrule: $rule differs from deploy/prometheus/alerts.yaml; run $kit/base/prometheusrule.sh"
  head -40 "$tmp/prometheusrule.diff" | sed 's/^/     /'
else
  ok "prometheusrule: $rule is prometheusrule.sh's output for deploy/prometheus/alerts.yaml"
fi

# --- 1. render ----------------------------------------------------------------------------------

rendered=()
if ! command -v "$kubectl" >/dev/null 2>&1; then
  if [[ ${HOOKGATE_SKIP_KUBECTL:-} == 1 ]]; then
    skip "render and validate: $kubectl not found and HOOKGATE_SKIP_KUBECTL=1"
  else
    fail "render: $kubectl not found (install kubectl, or set HOOKGATE_SKIP_KUBECTL=1 to skip the render and every check on it)"
  fi
else
  for t in "${targets[@]}"; do
    out=$tmp/$(echo "$t" | tr / _).yaml
    if "$kubectl" kustomize "$kit/$t" >"$out" 2>"$out.err"; then
      ok "$t: kubectl kustomize renders $(grep -c '^kind:' "$out") objects"
      # The example Secrets (public placeholder values) must never be applied: an operator
      # creates the real ones first. The checks below stand them in, as the operator would.
      if grep -q '^kind: Secret$' "$out"; then
        fail "$t: the render contains a Secret (kubectl apply -k would deploy example values)"
      else
        ok "$t: the render contains no Secret (the *.example.yaml ones are not applied)"
      fi
      examples=("$kit/base"/*.example.yaml)
      [[ $t == base ]] || examples+=("$kit/$t"/*.example.yaml)
      for example in "${examples[@]}"; do
        [[ -f $example ]] || continue
        printf -- '---\n' >>"$out"
        cat "$example" >>"$out"
      done
      rendered+=("$t=$out")
    else
      fail "$t: kubectl kustomize failed: $(cat "$out.err")"
    fi
  done
fi

# --- 2, 3. validate and check -------------------------------------------------------------------

if ((${#rendered[@]})); then
  if ! "$py" - "$bin" "$tmp" "$kube_versions" "${rendered[@]}" <<'PY'; then
import base64
import os
import re
import subprocess
import sys

import kubernetes_validate
import yaml

HOOKGATE, TMP, VERSIONS = sys.argv[1], sys.argv[2], sys.argv[3].split()
TARGETS = [a.split("=", 1) for a in sys.argv[4:]]
ALERTS = "deploy/prometheus/alerts.yaml"
# Kinds kubernetes-validate has no schema for: checked field by field below.
CRDS = {("monitoring.coreos.com/v1", "ServiceMonitor"), ("monitoring.coreos.com/v1", "PrometheusRule")}
failures = 0


def report(name, problems, detail=""):
    global failures
    if problems:
        failures += 1
        print(f"FAIL {name}")
        for p in problems:
            print(f"       {p}")
    else:
        print(f"ok   {name}{': ' + detail if detail else ''}")
    sys.stdout.flush()


def duration(text, default):
    """hookgate's durations: 500ms, 10s, 15m, 24h (one unit)."""
    if text is None:
        return default
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)\s*", str(text))
    if not m:
        raise ValueError(f"unparseable duration {text!r}")
    return float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[m.group(2)]


def quantity(text):
    """Kubernetes memory quantities in bytes (Ki/Mi/Gi, k/M/G, plain)."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|k|M|G|T)?", str(text))
    if not m:
        raise ValueError(f"unparseable quantity {text!r}")
    mult = {None: 1, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40,
            "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}[m.group(2)]
    return float(m.group(1)) * mult


def selects(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def secret_data(secret):
    data = {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}
    data.update({k: v.encode() for k, v in (secret.get("stringData") or {}).items()})
    return data


def configmap_data(cm):
    data = {k: v.encode() for k, v in (cm.get("data") or {}).items()}
    data.update({k: base64.b64decode(v) for k, v in (cm.get("binaryData") or {}).items()})
    return data


def check_target(target, path):
    with open(path, encoding="utf-8") as f:
        objs = [o for o in yaml.safe_load_all(f) if o]
    by = {}
    for o in objs:
        by.setdefault(o["kind"], []).append(o)

    def one(kind, name):
        found = [o for o in by.get(kind, []) if o["metadata"]["name"] == name]
        return found[0] if len(found) == 1 else None

    def named(kind, name):
        return next((o for o in by.get(kind, []) if o["metadata"]["name"] == name), None)

    # --- schemas --------------------------------------------------------------------------
    problems = []
    for o in objs:
        if (o.get("apiVersion"), o.get("kind")) in CRDS:
            continue
        for v in VERSIONS:
            try:
                kubernetes_validate.validate(o, v, strict=True)
            except kubernetes_validate.ValidationError as e:
                problems.append(f"{o['kind']}/{o['metadata']['name']} ({v}): {e.message} at {'/'.join(map(str, e.path))}")
            except kubernetes_validate.SchemaNotFoundError:
                problems.append(f"{o['kind']}/{o['metadata']['name']} ({v}): no schema for {o.get('apiVersion')}")
    report(f"{target}: {len(objs) - sum(1 for o in objs if (o.get('apiVersion'), o.get('kind')) in CRDS)} objects "
           f"valid against the Kubernetes {', '.join(VERSIONS)} schemas (strict)", problems)

    expected = [("Deployment", "hookgate"), ("Service", "hookgate"), ("Service", "hookgate-admin"),
                ("PodDisruptionBudget", "hookgate"), ("HorizontalPodAutoscaler", "hookgate"),
                ("NetworkPolicy", "hookgate"), ("ServiceMonitor", "hookgate"),
                ("PrometheusRule", "hookgate"), ("Secret", "hookgate-secrets")]
    problems = [f"no single {k} {n}" for k, n in expected if one(k, n) is None]
    report(f"{target}: every expected object is there", problems)
    if problems:
        return

    dep = one("Deployment", "hookgate")
    pod = dep["spec"]["template"]["spec"]
    pod_labels = dep["spec"]["template"]["metadata"].get("labels", {})
    ctr = next(c for c in pod["containers"] if c["name"] == "hookgate")
    ports = {p["name"]: p["containerPort"] for p in ctr.get("ports", [])}
    volumes = {v["name"]: v for v in pod.get("volumes", [])}

    def port_number(p):
        return ports.get(p, p) if isinstance(p, str) else p

    # --- references: kustomize's hashed names resolve --------------------------------------
    problems = []
    for v in volumes.values():
        if "configMap" in v and named("ConfigMap", v["configMap"]["name"]) is None:
            problems.append(f"volume {v['name']}: ConfigMap {v['configMap']['name']} not in the render")
        if "secret" in v and named("Secret", v["secret"]["secretName"]) is None:
            problems.append(f"volume {v['name']}: Secret {v['secret']['secretName']} not in the render")
    for e in ctr.get("env", []):
        ref = (e.get("valueFrom") or {}).get("secretKeyRef")
        if ref:
            s = named("Secret", ref["name"])
            if s is None or ref["key"] not in secret_data(s):
                problems.append(f"env {e['name']}: Secret {ref['name']} key {ref['key']} not in the render")
    for m in ctr.get("volumeMounts", []):
        if m["name"] not in volumes:
            problems.append(f"volumeMount {m['mountPath']}: no volume {m['name']}")
    report(f"{target}: volumes and env refer to objects in the render", problems)

    # --- the gateway configuration the pod reads --------------------------------------------
    args = ctr.get("args", [])
    cfg_path = args[args.index("-c") + 1] if "-c" in args and args.index("-c") + 1 < len(args) else None
    problems = []
    if ctr.get("image", "").split("@")[0].split(":")[0].rsplit("/", 1)[-1] != "hookgate":
        problems.append(f"image {ctr.get('image')!r} is not hookgate")
    if args[:1] != ["run"] or cfg_path is None:
        problems.append(f"args {args} are not `run -c FILE`")
    if ctr.get("command"):
        problems.append("command overrides the image's ENTRYPOINT")
    if ports != {"webhooks": 8080, "admin": 9090}:
        problems.append(f"container ports {ports}, expected webhooks 8080 and admin 9090")
    report(f"{target}: container runs `{' '.join(args)}` on ports {ports}", problems)

    # Lay out the files the container would see, from the rendered ConfigMaps and Secrets.
    fsroot = os.path.join(TMP, "fs-" + target.replace("/", "_"))
    mounts = sorted(ctr.get("volumeMounts", []), key=lambda m: len(m["mountPath"]))
    writable = []
    for m in mounts:
        v = volumes.get(m["name"], {})
        files = {}
        if "configMap" in v:
            cm = named("ConfigMap", v["configMap"]["name"])
            files = configmap_data(cm) if cm else {}
            items = v["configMap"].get("items")
        elif "secret" in v:
            s = named("Secret", v["secret"]["secretName"])
            files = secret_data(s) if s else {}
            items = v["secret"].get("items")
        else:
            items = None
            if not m.get("readOnly"):
                writable.append(m["mountPath"])
        if items:
            files = {i["path"]: files[i["key"]] for i in items if i["key"] in files}
        if "subPath" in m:
            files = {"": files[m["subPath"]]} if m["subPath"] in files else {}
        os.makedirs(fsroot + m["mountPath"] if "subPath" not in m else os.path.dirname(fsroot + m["mountPath"]), exist_ok=True)
        for key, content in files.items():
            dest = os.path.join(fsroot + m["mountPath"], key) if key else fsroot + m["mountPath"]
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            with open(dest, "wb") as f:
                f.write(content)
    if cfg_path is None or not os.path.isfile(fsroot + cfg_path):
        report(f"{target}: gateway.yaml is mounted at {cfg_path}", [f"no file at {cfg_path} in the pod's mounts"])
        return
    with open(fsroot + cfg_path, encoding="utf-8") as f:
        text = f.read()
    cfg = yaml.safe_load(text)

    # hookgate check, with every absolute path under a mount moved under fsroot and the
    # container's environment (values from the rendered Secrets).
    prefixes = sorted({m["mountPath"].rstrip("/") + "/" for m in mounts}, key=len, reverse=True)
    rewritten = re.sub(r"(?<![\w./-])(" + "|".join(map(re.escape, prefixes)) + ")",
                       lambda mo: fsroot + mo.group(1), text) if prefixes else text
    check_file = fsroot + cfg_path + ".check.yaml"
    with open(check_file, "w", encoding="utf-8") as f:
        f.write(rewritten)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/")}
    for e in ctr.get("env", []):
        if "value" in e:
            env[e["name"]] = e["value"]
        elif (e.get("valueFrom") or {}).get("secretKeyRef"):
            ref = e["valueFrom"]["secretKeyRef"]
            env[e["name"]] = secret_data(named("Secret", ref["name"]))[ref["key"]].decode()
        elif (e.get("valueFrom") or {}).get("configMapKeyRef"):
            ref = e["valueFrom"]["configMapKeyRef"]
            env[e["name"]] = configmap_data(named("ConfigMap", ref["name"]))[ref["key"]].decode()
    run = subprocess.run([HOOKGATE, "check", "-c", check_file], env=env, capture_output=True, text=True)
    out = (run.stdout + run.stderr).replace(fsroot, "")
    problems = []
    if run.returncode != 0:
        problems.append(f"exit status {run.returncode}")
    # The admin listener must bind 0.0.0.0 in a pod (kubelet probes, Prometheus); `check`
    # warns about that by design, and the NetworkPolicy is what keeps it private here. The
    # secret files here are written by this test as its own user, so `check` judges modes
    # the pod does not have (there: root's files, shared with hookgate's fsGroup, 0440,
    # which it accepts). Any other warning fails.
    warnings = [l for l in out.splitlines() if "warning" in l.lower()
                and "warning: admin.addr: 0.0.0.0:9090 is not loopback" not in l
                and not re.search(r" has mode 0[0-7]+: ", l)]
    if warnings:
        problems.append("warnings")
    if problems:
        problems += [l for l in out.splitlines()]
    summary = out.strip().splitlines()[-1].split(": ", 1)[-1] if out.strip() and not problems else ""
    report(f"{target}: hookgate check accepts the rendered {cfg_path} with the pod's mounts and env",
           problems, summary)

    limits = cfg.get("limits") or {}
    drain = duration(limits.get("drain_delay"), 5)
    grace = duration(limits.get("shutdown_grace"), 30)
    tgps = pod.get("terminationGracePeriodSeconds", 30)
    report(f"{target}: terminationGracePeriodSeconds {tgps} >= drain_delay {drain:g}s + shutdown_grace {grace:g}s + 5s",
           [] if tgps >= drain + grace + 5 else [f"{tgps} < {drain + grace + 5:g}: the kubelet would SIGKILL requests still in flight"])

    # --- listeners and probes -------------------------------------------------------------
    problems = []
    listen_ports = {int(l["addr"].rsplit(":", 1)[1]) for l in cfg.get("listeners", [])}
    if listen_ports != {ports.get("webhooks")}:
        problems.append(f"listeners on {sorted(listen_ports)}, container port webhooks is {ports.get('webhooks')}")
    admin = cfg.get("admin") or {}
    host, _, aport = str(admin.get("addr", "127.0.0.1:9090")).rpartition(":")
    if host.strip("[]") not in ("0.0.0.0", "::"):
        problems.append(f"admin.addr {admin.get('addr')}: the kubelet and Prometheus cannot reach it")
    if int(aport) != ports.get("admin"):
        problems.append(f"admin.addr port {aport}, container port admin is {ports.get('admin')}")
    if not admin.get("token_file"):
        problems.append("no admin.token_file (required off loopback)")
    for kind, want in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = (ctr.get(kind) or {}).get("httpGet") or {}
        if get.get("path") != want or port_number(get.get("port")) != ports.get("admin"):
            problems.append(f"{kind}: {get or 'none'}, expected httpGet {want} on the admin port")
    get = (ctr.get("startupProbe") or {}).get("httpGet")
    if get is not None and port_number(get.get("port")) != ports.get("admin"):
        problems.append(f"startupProbe not on the admin port: {get}")
    if (ctr.get("lifecycle") or {}).get("preStop"):
        problems.append("a preStop hook: hookgate drains itself, and the image has no shell")
    report(f"{target}: listeners and admin match the container ports; probes /healthz and /readyz on admin", problems)

    # --- security -----------------------------------------------------------------------
    problems = []
    psc = pod.get("securityContext") or {}
    for k, want in (("runAsNonRoot", True), ("runAsUser", 65532), ("runAsGroup", 65532), ("fsGroup", 65532)):
        if psc.get(k) != want:
            problems.append(f"pod securityContext.{k} = {psc.get(k)!r}, expected {want!r}")
    if (psc.get("seccompProfile") or {}).get("type") != "RuntimeDefault":
        problems.append("pod seccompProfile is not RuntimeDefault")
    for k in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(k):
            problems.append(f"pod {k}")
    for c in pod.get("containers", []) + pod.get("initContainers", []):
        sc = c.get("securityContext") or {}
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{c['name']}: allowPrivilegeEscalation is not false")
        if sc.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{c['name']}: readOnlyRootFilesystem is not true")
        caps = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []) or caps.get("add"):
            problems.append(f"{c['name']}: capabilities {caps}, expected drop [ALL] and no add")
        if sc.get("privileged"):
            problems.append(f"{c['name']}: privileged")
    if any("hostPath" in v for v in volumes.values()):
        problems.append("a hostPath volume")
    # Writable state only at /var/lib/hookgate, and an embedded queue needs a writable volume.
    for w in writable:
        if not (w + "/").startswith("/var/lib/hookgate/"):
            problems.append(f"writable mount {w} outside /var/lib/hookgate")
    qs = cfg.get("queue_store") or {}
    if qs and qs.get("type", "embedded") == "embedded":
        qpath = qs.get("path", "")
        if not any((qpath + "/").startswith(w.rstrip("/") + "/") for w in writable):
            problems.append(f"queue_store.path {qpath} is on no writable volume")
    report(f"{target}: restricted securityContext (non-root 65532, RuntimeDefault, read-only root, no capabilities)", problems)

    problems = []
    res = ctr.get("resources") or {}
    for side in ("requests", "limits"):
        for r in ("cpu", "memory"):
            if r not in (res.get(side) or {}):
                problems.append(f"no resources.{side}.{r}")
    mem = (res.get("limits") or {}).get("memory")
    buffered = limits.get("max_buffered_body_bytes", 268435456)
    if mem and buffered >= quantity(mem) / 2:
        problems.append(f"limits.max_buffered_body_bytes {buffered} is not under half the memory limit {mem}")
    report(f"{target}: resources set; max_buffered_body_bytes {buffered} well under the memory limit {mem}", problems)

    # --- Services -------------------------------------------------------------------------
    problems = []
    svc, adm = one("Service", "hookgate"), one("Service", "hookgate-admin")
    for s in (svc, adm):
        if not selects(s["spec"].get("selector"), pod_labels):
            problems.append(f"Service {s['metadata']['name']} does not select the pods")
    for p in svc["spec"]["ports"]:
        if port_number(p.get("targetPort", p["port"])) == ports["admin"] or p["port"] == ports["admin"]:
            problems.append(f"Service hookgate exposes the admin port: {p}")
        if port_number(p.get("targetPort", p["port"])) != ports["webhooks"]:
            problems.append(f"Service hookgate port {p} does not reach the webhooks port")
    if [port_number(p.get("targetPort", p["port"])) for p in adm["spec"]["ports"]] != [ports["admin"]]:
        problems.append(f"Service hookgate-admin ports {adm['spec']['ports']}, expected the admin port only")
    if svc["spec"].get("type", "ClusterIP") != "ClusterIP":
        problems.append(f"Service hookgate is {svc['spec']['type']}, expected ClusterIP")
    report(f"{target}: Service hookgate serves webhooks only (80 -> 8080), hookgate-admin the admin port only", problems)

    # --- PDB, HPA, spreading -----------------------------------------------------------------
    problems = []
    pdb, hpa = one("PodDisruptionBudget", "hookgate"), one("HorizontalPodAutoscaler", "hookgate")
    if not selects(pdb["spec"].get("selector", {}).get("matchLabels"), pod_labels):
        problems.append("PodDisruptionBudget does not select the pods")
    if pdb["spec"].get("maxUnavailable") != 1:
        problems.append(f"PodDisruptionBudget maxUnavailable {pdb['spec'].get('maxUnavailable')}, expected 1")
    ref = hpa["spec"]["scaleTargetRef"]
    if (ref.get("kind"), ref.get("name")) != ("Deployment", "hookgate"):
        problems.append(f"HPA scales {ref}")
    hmin, hmax = hpa["spec"].get("minReplicas", 1), hpa["spec"]["maxReplicas"]
    if hmin < 2 or hmax < hmin:
        problems.append(f"HPA min {hmin} max {hmax}: expected at least 2 and max >= min")
    if dep["spec"].get("replicas", 1) != hmin:
        problems.append(f"Deployment replicas {dep['spec'].get('replicas')} != HPA minReplicas {hmin}")
    cpu = [m for m in hpa["spec"].get("metrics", []) if m.get("type") == "Resource" and m["resource"]["name"] == "cpu"]
    if not cpu:
        problems.append("HPA has no CPU metric")
    spread = pod.get("topologySpreadConstraints", [])
    if not any(t.get("topologyKey") == "kubernetes.io/hostname" and selects(t.get("labelSelector", {}).get("matchLabels"), pod_labels) for t in spread):
        problems.append("no topologySpreadConstraints across nodes selecting the pods")
    if any(t.get("whenUnsatisfiable") != "ScheduleAnyway" for t in spread):
        problems.append("a hard topologySpreadConstraint (expected soft: ScheduleAnyway)")
    report(f"{target}: replicas {dep['spec'].get('replicas')}, HPA {hmin}-{hmax} on CPU, PDB maxUnavailable 1, spread across nodes", problems)

    # --- NetworkPolicy ------------------------------------------------------------------------
    problems = []
    np_ = one("NetworkPolicy", "hookgate")
    spec = np_["spec"]
    if not selects(spec.get("podSelector", {}).get("matchLabels"), pod_labels):
        problems.append("NetworkPolicy does not select the pods")
    if set(spec.get("policyTypes", [])) != {"Ingress", "Egress"}:
        problems.append(f"policyTypes {spec.get('policyTypes')}, expected Ingress and Egress")
    admin_from = []
    for rule in spec.get("ingress", []):
        rports = [port_number(p.get("port")) for p in rule.get("ports", [])]
        if not rports or None in rports or ports["admin"] in rports:
            if not rule.get("from"):
                problems.append(f"ingress rule {rule} lets anyone reach the admin port")
            for peer in rule.get("from", []):
                ns = (peer.get("namespaceSelector") or {}).get("matchLabels") or {}
                if "ipBlock" in peer or ns.get("kubernetes.io/metadata.name") != "monitoring":
                    problems.append(f"admin port open to {peer}")
                admin_from.append(ns.get("kubernetes.io/metadata.name"))
    if not admin_from:
        problems.append("no ingress rule lets the monitoring namespace scrape the admin port")
    if not any(ports["webhooks"] in [port_number(p.get("port")) for p in r.get("ports", [])] for r in spec.get("ingress", [])):
        problems.append("no ingress rule for the webhooks port")
    egress_ports = {port_number(p.get("port")) for r in spec.get("egress", []) for p in r.get("ports", [])}
    # Every port hookgate dials must be allowed: DNS, each upstream, and the stores.
    need = {53}
    for route in cfg.get("routes", []):
        m = re.match(r"(https?)://[^/:]+(?::(\d+))?", route["upstream"])
        need.add(int(m.group(2)) if m.group(2) else (443 if m.group(1) == "https" else 80))
    for store, default in (("replay_store", 6379), ("queue_store", 5432)):
        url = (cfg.get(store) or {}).get("url")
        if url:
            url = re.sub(r"\$\{(\w+)\}", lambda mo: env.get(mo.group(1), ""), url)
            m = re.match(r"\w+://(?:[^@/]*@)?[^/:?]+(?::(\d+))?", url)
            need.add(int(m.group(1)) if m and m.group(1) else default)
    if need - egress_ports:
        problems.append(f"egress allows ports {sorted(egress_ports)}, hookgate needs {sorted(need)}")
    report(f"{target}: NetworkPolicy: admin port from the monitoring namespace only; egress to ports {sorted(need)}", problems)

    # --- Prometheus Operator objects (no schema in kubernetes-validate) -----------------------
    problems = []
    sm = one("ServiceMonitor", "hookgate")
    if not selects(sm["spec"].get("selector", {}).get("matchLabels"), adm["metadata"].get("labels", {})):
        problems.append("ServiceMonitor does not select Service hookgate-admin")
    if selects(sm["spec"].get("selector", {}).get("matchLabels"), svc["metadata"].get("labels", {})):
        problems.append("ServiceMonitor also selects Service hookgate (no admin port there)")
    eps = sm["spec"].get("endpoints", [])
    adm_port_names = {p.get("name") for p in adm["spec"]["ports"]}
    if len(eps) != 1 or eps[0].get("port") not in adm_port_names or eps[0].get("path") != "/metrics" \
            or eps[0].get("interval") != "15s":
        problems.append(f"ServiceMonitor endpoints {eps}, expected port admin, path /metrics, interval 15s")
    pr = one("PrometheusRule", "hookgate")
    with open(ALERTS, encoding="utf-8") as f:
        alerts = yaml.safe_load(f)
    if pr["spec"].get("groups") != alerts.get("groups"):
        problems.append(f"PrometheusRule spec.groups differ from {ALERTS} groups")
    for g in pr["spec"].get("groups", []):
        for r in g.get("rules", []):
            if not r.get("expr") or not (r.get("alert") or r.get("record")):
                problems.append(f"group {g.get('name')}: rule without alert/record and expr: {r}")
    report(f"{target}: ServiceMonitor scrapes hookgate-admin /metrics every 15s; PrometheusRule groups = {ALERTS}", problems)


for target, path in TARGETS:
    check_target(target, path)
sys.exit(1 if failures else 0)
PY
    failures=$((failures + 1))
  fi
fi

if ((failures)); then
  echo "tests/deploy/kubernetes.sh: FAILED"
  exit 1
fi
if ((skipped)); then
  echo "tests/deploy/kubernetes.sh: passed, with $skipped step(s) skipped"
else
  echo "tests/deploy/kubernetes.sh: all checks passed"
fi
