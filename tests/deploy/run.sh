#!/usr/bin/env bash
# Every check of the deploy kit (deploy/), one script per piece; stops at the first failure.
set -euo pipefail
cd "$(dirname "$0")/../.."
for check in prometheus systemd docker kubernetes compose; do
    echo "== tests/deploy/$check.sh"
    bash "tests/deploy/$check.sh"
done
