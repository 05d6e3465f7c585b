#!/usr/bin/env bash
# Side-by-side benchmark: direct, hookgate, nginx (see bench/bench.py and docs/performance.md).
# Installs wrk and nginx from Debian's packages, builds hookgate and the upstream in release
# mode, then runs interleaved rounds on loopback. Arguments go to bench.py, e.g.
#   bash bench/run.sh --duration 5 --rounds 3
# `bash bench/run.sh --network-keys [...]` runs bench/network_keys.py instead: routes whose
# keys are fetched (SNS, eBay) beside an HMAC route and the upstream direct.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v wrk >/dev/null 2>&1 || need+=(wrk)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v taskset >/dev/null 2>&1 || need+=(util-linux)
command -v python3 >/dev/null 2>&1 || need+=(python3)
# The network-keys bench signs as SNS and eBay do, and makes its own test CA.
if [ "${1:-}" = "--network-keys" ]; then
    python3 -c 'import cryptography' >/dev/null 2>&1 || need+=(python3-cryptography)
fi
if [ ${#need[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi
export PATH="$PATH:/usr/sbin"

CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}" cargo build --release --bin hookgate --example upstream --example loadgen

# 10,000 idle connections need file descriptors on both ends.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

if [ "${1:-}" = "--network-keys" ]; then
    shift
    python3 bench/network_keys.py "$@"
else
    python3 bench/bench.py "$@"
fi
