#!/usr/bin/env bash
# deploy/Dockerfile: hadolint (best practices, shellcheck of RUN lines), and the promises the
# README makes about the image checked in the file itself. No image is built here: the base
# images come from registries this machine cannot reach. What the image does at run time
# (non-root, read-only configuration, one writable directory, `hookgate healthcheck`) is
# tested against the real binary in tests/e2e/deploy_kit.rs.
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/lib.sh

bin="$(deploy_venv)"
"$bin/hadolint" --failure-threshold info deploy/Dockerfile
echo "docker: hadolint passed with no findings"

fail=0
expect() { # PATTERN WHAT
    if ! grep -Eq "$1" deploy/Dockerfile; then
        echo "docker: deploy/Dockerfile does not $2"
        fail=1
    fi
}
expect '^FROM gcr\.io/distroless/cc-debian12:nonroot AS runtime$' "end on the distroless runtime stage"
[ "$(grep -E '^FROM ' deploy/Dockerfile | tail -1)" = "FROM gcr.io/distroless/cc-debian12:nonroot AS runtime" ] \
    || { echo "docker: the runtime stage must be the last (the default target)"; fail=1; }
expect '^USER 65532:65532$' "run as uid/gid 65532"
expect 'CMD \["/usr/local/bin/hookgate", "healthcheck", "-c", "/etc/hookgate/gateway.yaml"\]' "use hookgate healthcheck as HEALTHCHECK"
expect '^CMD \["run", "-c", "/etc/hookgate/gateway.yaml"\]$' "read /etc/hookgate/gateway.yaml"
expect 'cargo build --release --locked --bin hookgate --example echo' "build with the lock file"
expect '^VOLUME \["/var/lib/hookgate"\]$' "declare the state volume"
# Everything the build stage copies is in the build context, and nothing heavy or secret is.
# (COPY lines without --from: every word but the last is a source.)
for p in $(awk '$1 == "COPY" && $2 !~ /^--/ { for (i = 2; i < NF; i++) print $i }' deploy/Dockerfile); do
    [ -e "$p" ] || { echo "docker: COPY $p: no such path"; fail=1; }
    if grep -qx "$p" deploy/Dockerfile.dockerignore; then
        echo "docker: COPY $p, but the ignore file leaves it out"; fail=1
    fi
done
for p in target .git deploy tests; do
    grep -qx "$p" deploy/Dockerfile.dockerignore \
        || { echo "docker: the build context must leave out $p"; fail=1; }
done
# The build's `--locked` holds: Cargo.lock matches Cargo.toml.
cargo metadata --locked --format-version 1 --no-deps >/dev/null \
    || { echo "docker: Cargo.lock is out of date (the image build uses --locked)"; fail=1; }
[ "$fail" -eq 0 ] && echo "docker: the image's user, paths, health check and build context are as documented"
exit "$fail"
