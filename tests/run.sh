#!/usr/bin/env bash
# The test command (README "Quick start"): makes sure redis-server is there for the replay
# tests (a real Redis, started by the tests themselves on loopback ports they choose), then
# runs the whole suite. Needs only a Rust toolchain and, where redis-server is missing, apt.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v redis-server >/dev/null 2>&1 && [ ! -x /usr/bin/redis-server ]; then
    echo "tests/run.sh: installing redis-server (used by tests/e2e/replay.rs)"
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq redis-server >/dev/null
fi
# The HTTPS-upstream tests load the system's trust roots (as hookgate does by default).
if [ ! -s /etc/ssl/certs/ca-certificates.crt ]; then
    echo "tests/run.sh: installing ca-certificates (the system trust roots)"
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq ca-certificates >/dev/null
fi
# The suite starts its own redis-server instances; a system service is not needed.

cargo test "$@"
