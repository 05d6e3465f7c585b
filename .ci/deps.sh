#!/usr/bin/env bash
# Dependency health: `cargo deny check advisories bans licenses sources` (policy in deny.toml).
#
# Exits non-zero on a vulnerability advisory that matches Cargo.lock, a banned or wildcard
# dependency, a licence outside the allow-list, or a crate from anywhere but crates.io.
# Unmaintained, unsound and notice advisories are printed as warnings and do not fail; the
# docs/development.md, "Dependency health", records a decision for each one.
#
# Advisory database, in this order:
#   1. the live RustSec database (a shallow git clone, given HOOKGATE_DENY_FETCH_TIMEOUT
#      seconds, 60 by default), cached in target/advisory-dbs/live;
#   2. if that cannot be fetched (this project's machines reach only package registries),
#      the committed snapshot in deny/advisory-db/, put into a throwaway git repository
#      dated with the snapshot's own date so cargo-deny's staleness limit applies to it.
# The script prints which one it used. HOOKGATE_DENY_DB=snapshot skips the live attempt;
# HOOKGATE_DENY_DB=live fails instead of falling back. HOOKGATE_DENY_SNAPSHOT=DIR checks
# against another directory in the snapshot layout (used to test that a vulnerability fails).
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"

DENY_VERSION=0.20.2
# cargo-deny keeps each database under db-path in "<last url segment>-<hash of the url>";
# this is the directory name for https://github.com/rustsec/advisory-db (deny.toml db-urls).
DB_DIR_NAME=advisory-db-3157b0e258782691
SNAPSHOT="${HOOKGATE_DENY_SNAPSHOT:-deny/advisory-db}"
MODE="${HOOKGATE_DENY_DB:-auto}"

# cargo-deny itself, pinned; built from crates.io with its own lock file. Its release
# profile (fat LTO, one codegen unit, opt-level 3) is overridden for a quicker build
# (3:00 instead of 4:17 on one core); the check itself runs as fast (about 1 s).
if [ "$(cargo deny --version 2>/dev/null)" != "cargo-deny $DENY_VERSION" ]; then
    echo "== cargo install --locked cargo-deny --version $DENY_VERSION"
    start=$(date +%s)
    CARGO_PROFILE_RELEASE_LTO=off CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
        CARGO_PROFILE_RELEASE_OPT_LEVEL=1 \
        cargo install --quiet --locked cargo-deny --version "$DENY_VERSION"
    echo "cargo-deny built in $(( $(date +%s) - start ))s"
fi

# `cargo deny --offline` (below) reads the crates' manifests from cargo's cache.
cargo fetch --locked >/dev/null

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

db_root=""
if [ "$MODE" != snapshot ]; then
    live_root="$PWD/target/advisory-dbs/live"
    echo "== advisory database: trying the live RustSec database"
    if HOOKGATE_ADVISORY_DBS="$live_root" GIT_TERMINAL_PROMPT=0 \
        timeout "${HOOKGATE_DENY_FETCH_TIMEOUT:-60}" cargo deny fetch db >"$tmp/fetch.log" 2>&1 \
        && [ -d "$live_root/$DB_DIR_NAME/crates" ]; then
        db_root="$live_root"
        head_commit=$(git -C "$live_root/$DB_DIR_NAME" log -1 --format='%h %cs')
        echo "advisory database: LIVE RustSec advisory-db, commit $head_commit"
    elif [ "$MODE" = live ]; then
        cat "$tmp/fetch.log" >&2
        echo "advisory database: live fetch failed and HOOKGATE_DENY_DB=live" >&2
        exit 1
    else
        echo "live fetch failed: $(grep -m1 -E 'fatal|error|ERROR' "$tmp/fetch.log" || echo timeout)"
    fi
fi

if [ -z "$db_root" ]; then
    [ -f "$SNAPSHOT/SNAPSHOT" ] || { echo "no snapshot at $SNAPSHOT" >&2; exit 1; }
    snap_date=$(sed -n 's/^data-as-of = //p' "$SNAPSHOT/SNAPSHOT")
    [ -n "$snap_date" ] || { echo "$SNAPSHOT/SNAPSHOT has no data-as-of line" >&2; exit 1; }
    db="$tmp/dbs/$DB_DIR_NAME"
    mkdir -p "$db"
    cp -R "$SNAPSHOT/crates" "$db/crates"
    # cargo-deny opens a database only as a git repository and takes its age from the
    # HEAD commit (or .git/HEAD's mtime, whichever is newer): date both with the snapshot.
    git -C "$db" init -q
    git -C "$db" add -A
    GIT_AUTHOR_DATE="${snap_date}T00:00:00Z" GIT_COMMITTER_DATE="${snap_date}T00:00:00Z" \
        git -C "$db" -c user.name=hookgate-ci -c user.email=ci@hookgate.invalid \
        -c commit.gpgsign=false commit -q -m "advisory-db snapshot $snap_date"
    touch -d "${snap_date}T00:00:00Z" "$db/.git/HEAD"
    db_root="$tmp/dbs"
    files=$(find "$db/crates" -name 'RUSTSEC-*.md' | wc -l)
    age=$(( ( $(date -u +%s) - $(date -u -d "$snap_date" +%s) ) / 86400 ))
    echo "advisory database: COMMITTED SNAPSHOT $SNAPSHOT ($files advisories, data as of $snap_date, $age days old)"
    echo "  advisories published after $snap_date are NOT checked; refresh: deny/advisory-db/README.md"
    # The snapshot holds the advisories of the crates listed in CRATES (Cargo.lock when it
    # was assembled); a crate added since then was never looked up, so say so.
    if [ -f "$SNAPSHOT/CRATES" ]; then
        uncovered=$(sed -n 's/^name = "\(.*\)"$/\1/p' Cargo.lock | sort -u | grep -vx hookgate \
            | grep -vxF -f "$SNAPSHOT/CRATES" | tr '\n' ' ' || true)
        if [ -n "$uncovered" ]; then
            echo "WARNING: not covered by the snapshot (added to Cargo.lock after it): $uncovered"
        fi
    fi
    if [ "$age" -gt 90 ]; then
        echo "WARNING: the advisory snapshot is $age days old (cargo-deny refuses it after 365)"
    fi
fi

deny_check() {
    HOOKGATE_ADVISORY_DBS="$db_root" cargo deny --offline check \
        --warn unmaintained --warn unsound --warn notice "$@" \
        advisories bans licenses sources
}
echo "== cargo deny check advisories bans licenses sources"
# The inclusion graphs (which dependency pulls a crate in) are long; print them only when
# the check fails, by running it once more.
if ! deny_check --hide-inclusion-graph; then
    echo "== cargo deny check failed; again with the inclusion graphs"
    deny_check || true
    exit 1
fi
