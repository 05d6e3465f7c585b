#!/usr/bin/env bash
# Interop suite: hookgate's presets against the providers' own webhook SDKs (see interop.py).
#
#   bash tests/interop/run.sh [interop.py options]
#
# Installs the pinned SDKs (PyPI: requirements.txt into target/interop/venv; npm:
# package-lock.json into target/interop/node), each only when its pins changed; builds
# target/debug/hookgate (under $CARGO_TARGET_DIR when that is set; cargo: a no-op when up to
# date); then runs interop.py, which starts hookgate and a recording upstream on loopback
# ports of its own and prints one line per check.
# Needs python3 (3.10+) and node (20+) with npm; reaches PyPI and the npm registry only.
set -euo pipefail
cd "$(dirname "$0")/../.."

HERE=tests/interop
OUT=target/interop
VENV=$OUT/venv
NODE_DIR=$OUT/node

stamp_of() { cat "$@" | sha256sum | cut -d' ' -f1; }

for tool in python3 node npm; do
    command -v "$tool" >/dev/null 2>&1 || { echo "tests/interop/run.sh: $tool is required" >&2; exit 2; }
done
mkdir -p "$OUT"

# PyPI SDKs, into a venv of their own.
want=$(stamp_of "$HERE/requirements.txt")
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$VENV/.requirements.sha256" 2>/dev/null)" != "$want" ]; then
    echo "== installing PyPI SDKs into $VENV"
    [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$HERE/requirements.txt"
    echo "$want" > "$VENV/.requirements.sha256"
fi

# npm SDKs, exactly as locked.
want=$(stamp_of "$HERE/package.json" "$HERE/package-lock.json")
if [ ! -d "$NODE_DIR/node_modules" ] || [ "$(cat "$NODE_DIR/.lock.sha256" 2>/dev/null)" != "$want" ]; then
    echo "== installing npm SDKs into $NODE_DIR"
    mkdir -p "$NODE_DIR"
    cp "$HERE/package.json" "$HERE/package-lock.json" "$NODE_DIR/"
    (cd "$NODE_DIR" && npm ci --no-audit --no-fund --loglevel=error)
    echo "$want" > "$NODE_DIR/.lock.sha256"
fi

# The gateway under test, built from the sources as they are (a no-op when it is up to date;
# a stale binary would test old code). Another build may hold cargo's lock for a while: that
# wait is normal.
# The binary is where cargo puts it: under $CARGO_TARGET_DIR when that is set.
HOOKGATE=${CARGO_TARGET_DIR:-target}/debug/hookgate
echo "== building $HOOKGATE"
CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-1} cargo build -q --bin hookgate

exec "$VENV/bin/python" "$HERE/interop.py" --hookgate "$HOOKGATE" --node-dir "$NODE_DIR" "$@"
