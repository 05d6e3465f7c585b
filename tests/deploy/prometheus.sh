#!/usr/bin/env bash
# deploy/prometheus/alerts.yaml: `promtool check rules` (syntax, PromQL, templates) and
# `promtool test rules` (each alert fires on synthetic series, and does not where it must
# not). promtool comes from Debian's prometheus package, unpacked, not installed.
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/lib.sh

promtool="$(command -v promtool || debian_tool prometheus promtool)"
"$promtool" check rules deploy/prometheus/alerts.yaml
(cd deploy/prometheus && "$promtool" test rules alerts.test.yaml)
echo "prometheus: alerts.yaml checked, every alert's unit test passed"
