#!/usr/bin/env bash
# Every check of the deploy kit (deploy/), one script per piece; stops at the first failure.
set -euo pipefail
cd "$(dirname "$0")/../.."
# kubectl renders the Kubernetes kit. It comes with this project's machines but from none of
# the registries the tests may install from (Debian, PyPI, npm): without it, the test command
# still runs every other check, and says loudly what it skipped.
if ! command -v "${KUBECTL:-kubectl}" >/dev/null 2>&1 && [[ -z ${HOOKGATE_SKIP_KUBECTL:-} ]]; then
    echo "WARNING: kubectl not found: the Kubernetes kit is not rendered or validated in this run"
    export HOOKGATE_SKIP_KUBECTL=1
fi
for check in prometheus systemd docker kubernetes compose; do
    echo "== tests/deploy/$check.sh"
    bash "tests/deploy/$check.sh"
done
