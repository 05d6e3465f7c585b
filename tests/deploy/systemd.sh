#!/usr/bin/env bash
# deploy/systemd/hookgate.service: `systemd-analyze verify` (syntax, known keys, commands
# exist) with no output at all, and `systemd-analyze security` rating it OK or better.
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/lib.sh

if ! command -v systemd-analyze >/dev/null 2>&1; then
    echo "tests/deploy/systemd.sh: installing systemd (for systemd-analyze)"
    apt_install systemd
fi
unit=deploy/systemd/hookgate.service
bin="$(hookgate_bin)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# verify checks that each command exists: point them at the binary just built.
sed "s#/usr/local/bin/hookgate#$bin#g" "$unit" >"$tmp/hookgate.service"
if ! out="$(systemd-analyze verify "$tmp/hookgate.service" 2>&1)" || [ -n "$out" ]; then
    echo "systemd-analyze verify $unit:"
    echo "$out"
    exit 1
fi
echo "systemd: verify passed with no warnings"

# Exposure runs from 0.0 (best) to 10.0; "OK" or better is below 5.0. --threshold is in tenths.
report="$(systemd-analyze security --offline=true --threshold=49 "$unit" 2>&1)" || {
    echo "$report"
    echo "systemd-analyze security: exposure above 4.9 (worse than OK)"
    exit 1
}
echo "systemd: $(echo "$report" | grep 'Overall exposure level')"
