# Shared by the scripts in this folder; sourced, not run.

RUM_AGENT_VERSION=5.17.5
RUM_AGENT_DIR=vendor/agent
RUM_AGENT_BUNDLE=$RUM_AGENT_DIR/node_modules/@elastic/apm-rum/dist/bundles/elastic-apm-rum.umd.min.js

# find_python [3.11|3.12|3.13]: print the path of a supported interpreter.
# Without an argument: 3.12, else 3.13, else 3.11 (3.12 first: the bench's figures in the README
# were measured on it).
find_python() {
    local wanted=${1:-} candidates version path
    if [ -n "$wanted" ]; then candidates=$wanted; else candidates="3.12 3.13 3.11"; fi
    for version in $candidates; do
        path=$(python_for "$version") && { echo "$path"; return 0; }
    done
    echo "setup: no Python ${wanted:-3.11+} found (tried $candidates)" >&2
    return 1
}

python_for() {
    local version=$1 path full
    # pyenv shims of other versions fail unless PYENV_VERSION names them
    if command -v pyenv >/dev/null 2>&1; then
        full=$(pyenv versions --bare 2>/dev/null | grep -E "^${version//./\\.}(\.[0-9]+)?$" | sort -V | tail -1 || true)
        if [ -n "$full" ]; then
            path=$(PYENV_VERSION=$full pyenv which python3 2>/dev/null || true)
            if [ -n "$path" ] && "$path" -c 'import venv' 2>/dev/null; then echo "$path"; return 0; fi
        fi
    fi
    for path in "python$version" python3; do
        if command -v "$path" >/dev/null 2>&1 \
            && "$path" -c "import sys, venv; sys.exit(f'{sys.version_info[0]}.{sys.version_info[1]}' != '$version')" 2>/dev/null; then
            command -v "$path"; return 0
        fi
    done
    return 1
}

fetch_agent_bundle() {
    if [ -f "$RUM_AGENT_BUNDLE" ] && grep -q "\"version\": \"$RUM_AGENT_VERSION\"" "$RUM_AGENT_DIR/node_modules/@elastic/apm-rum/package.json" 2>/dev/null; then
        return 0
    fi
    command -v npm >/dev/null 2>&1 || { echo "setup: npm is needed to fetch @elastic/apm-rum (apt-get install npm)" >&2; return 1; }
    mkdir -p "$RUM_AGENT_DIR"
    npm install --silent --no-audit --no-fund --no-package-lock --prefix "$RUM_AGENT_DIR" "@elastic/apm-rum@$RUM_AGENT_VERSION" >&2
    [ -f "$RUM_AGENT_BUNDLE" ] || { echo "setup: npm did not produce $RUM_AGENT_BUNDLE" >&2; return 1; }
}

# The Debian packages the tests and the bench use: Chromium (browser tests), nginx and wrk
# (bench), valgrind (bench --instructions), iptables and iproute2 (the network-namespace tests),
# wireguard-go and wireguard-tools (WireGuard-mode test), npm (agent bundle).
ensure_system_packages() {
    local missing=()
    command -v chromium >/dev/null 2>&1 || missing+=(chromium)
    command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
    command -v wrk >/dev/null 2>&1 || missing+=(wrk)
    command -v valgrind >/dev/null 2>&1 || missing+=(valgrind)
    command -v iptables >/dev/null 2>&1 || [ -x /usr/sbin/iptables ] || missing+=(iptables)
    command -v ip >/dev/null 2>&1 || [ -x /usr/sbin/ip ] || missing+=(iproute2)
    command -v npm >/dev/null 2>&1 || missing+=(npm)
    # Without their recommendations: wireguard-tools recommends the kernel module, which Debian
    # ships in a whole kernel image; the test runs WireGuard in user space.
    local bare=()
    command -v wireguard-go >/dev/null 2>&1 || bare+=(wireguard-go)
    command -v wg >/dev/null 2>&1 || bare+=(wireguard-tools)
    local all=("${missing[@]}" "${bare[@]}")
    [ ${#all[@]} -eq 0 ] && return 0
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "setup: installing ${all[*]} with apt-get" >&2
        apt-get update -qq >&2 || [ ${#missing[@]} -eq 0 ]
        [ ${#missing[@]} -eq 0 ] || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
        # Only the WireGuard-mode test needs these: without them it is skipped, saying why.
        [ ${#bare[@]} -eq 0 ] || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${bare[@]}" >&2 \
            || echo "setup: could not install ${bare[*]}; the WireGuard-mode test will be skipped" >&2
    else
        echo "setup: missing system packages: ${all[*]} — install them (sudo apt-get install ${all[*]});" \
             "the tests that need them are skipped with that reason" >&2
    fi
}
