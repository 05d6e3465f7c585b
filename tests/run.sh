#!/usr/bin/env bash
# The test command (README "Quick start"): makes sure redis-server (for the replay tests) and
# Debian's PostgreSQL server binaries (initdb, postgres, pg_ctl) are there (real servers,
# started by the tests themselves on loopback ports they choose, in directories of their own),
# then runs the whole suite. Needs only a Rust toolchain and, where a server is missing, apt.
set -euo pipefail
cd "$(dirname "$0")/.."

. tests/lib.sh

if ! command -v redis-server >/dev/null 2>&1 && [ ! -x /usr/bin/redis-server ]; then
    echo "tests/run.sh: installing redis-server (used by tests/e2e/replay.rs)"
    apt_install redis-server
fi
# PostgreSQL (tests/e2e/pg_server.rs): the tests run initdb in a temporary directory and start
# postgres from /usr/lib/postgresql/<major>/bin themselves. Debian's package would also create
# and start a cluster of its own ("main", on port 5432); turning create_main_cluster off before
# the server package is installed leaves no cluster for a system service to start.
if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 && ! command -v postgres >/dev/null 2>&1; then
    echo "tests/run.sh: installing postgresql (used by tests/e2e/pg_server.rs)"
    apt_install postgresql-common
    as_root sed -i 's/^#* *create_main_cluster *=.*/create_main_cluster = false/' \
        /etc/postgresql-common/createcluster.conf
    apt_install postgresql
fi
# The HTTPS-upstream tests load the system's trust roots (as hookgate does by default).
if [ ! -s /etc/ssl/certs/ca-certificates.crt ]; then
    echo "tests/run.sh: installing ca-certificates (the system trust roots)"
    apt_install ca-certificates
fi
# The CLI tests send `hookgate sign`'s output with curl, as the README's walk-through does.
if ! command -v curl >/dev/null 2>&1; then
    echo "tests/run.sh: installing curl (used by tests/e2e/cli.rs)"
    apt_install curl
fi
# The suite starts its own redis-server and postgres instances; no system service is needed.

cargo test "$@"

# The presets against the providers' own SDKs (PyPI and npm, pinned): each signs and is
# verified through the running gateway, and `hookgate sign` is checked by each verifier.
bash tests/interop/run.sh

# The deploy kit (deploy/): linted and validated with the tools its users run (promtool,
# systemd-analyze, hadolint, ...), which these scripts fetch from Debian and PyPI themselves.
bash tests/deploy/run.sh
