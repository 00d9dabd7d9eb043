# Shared by scripts/test and scripts/demo: make sure the machine can build and run finq.
# Sourced, not run.

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/finq/target}"

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"
    elif command -v sudo >/dev/null 2>&1; then sudo "$@"
    else echo "need root to run: $*" >&2; return 1
    fi
}

apt_install() {
    command -v apt-get >/dev/null 2>&1 || {
        echo "missing packages ($*) and no apt-get: install them with your package manager" >&2
        return 1
    }
    echo "installing Debian packages: $*" >&2
    as_root apt-get update -qq >&2 || true
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >&2
}

pg_bin_dir() {
    if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
        dirname "$(command -v pg_ctl)"; return 0
    fi
    ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}

ensure_build_tools() {
    if ! command -v cargo >/dev/null 2>&1; then
        echo "Rust is not installed: install it with rustup (https://rustup.rs), then run this again" >&2
        return 1
    fi
    local missing=()
    command -v c++ >/dev/null 2>&1 || missing+=(g++)
    command -v make >/dev/null 2>&1 || missing+=(make)
    [ ${#missing[@]} -eq 0 ] || apt_install "${missing[@]}"
}

# The PostgreSQL server binaries (finq runs its own private cluster from them).
ensure_pg_binaries() {
    local bin
    bin=$(pg_bin_dir)
    if [ -z "$bin" ] || [ ! -x "$bin/initdb" ]; then
        apt_install postgresql
    fi
}

# Debian's Chromium and ChromeDriver, for the browser tests (the Link page).
ensure_chromium() {
    local missing=()
    command -v chromium >/dev/null 2>&1 || missing+=(chromium)
    command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
    [ ${#missing[@]} -eq 0 ] || apt_install "${missing[@]}"
}

# A pinned Python package in a virtualenv of finq's, ~/.cache/finq/NAME.
ensure_venv() {  # NAME PACKAGE VERSION MODULE (whose __version__ is VERSION)
    local venv="$HOME/.cache/finq/$1"
    if ! "$venv/bin/python" -c "import $4, sys; sys.exit($4.__version__ != '$3')" 2>/dev/null; then
        command -v python3 >/dev/null 2>&1 || apt_install python3
        rm -rf "$venv"
        python3 -m venv "$venv" 2>/dev/null || { apt_install python3-venv; rm -rf "$venv"; python3 -m venv "$venv"; }
        echo "installing $2 $3 for the tests" >&2
        "$venv/bin/pip" install -q --disable-pip-version-check "$2==$3" >&2
    fi
}

# The ledger tools the exports are checked with: Debian's hledger, and beancount.
ensure_ledger_tools() {
    command -v hledger >/dev/null 2>&1 || apt_install hledger
    ensure_venv beancount beancount 3.2.3 beancount
    export FINQ_BEAN_CHECK="$HOME/.cache/finq/beancount/bin/bean-check"
}

# Plaid's official Python client: the tests run it against the simulator.
ensure_plaid_python() {
    ensure_venv plaid-python plaid-python 46.0.0 plaid
    export FINQ_PLAID_PYTHON="$HOME/.cache/finq/plaid-python/bin/python"
}
