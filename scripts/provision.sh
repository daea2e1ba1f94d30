#!/usr/bin/env bash
# Installs what the tests and the benchmark need outside .venv, and is the one place
# that does it: scripts/test.sh runs it first, and the test fixtures run it when
# something is missing (pytest run directly, a fresh checkout).
#
#   scripts/provision.sh            system packages, then LiteLLM
#   scripts/provision.sh system     the system packages: Prometheus (promtool and the
#                                   server), redis-server, nginx, wrk, Chromium,
#                                   chromedriver and a JDK (javac)
#   scripts/provision.sh prometheus | redis-server | nginx | wrk | chromium | chromedriver
#                        | javac      one of them
#   scripts/provision.sh litellm    LiteLLM into .venvs/litellm
#
# System packages come from apt-get when running as root; otherwise the script says
# what to install and exits 1. LiteLLM gets a venv of its own (.venvs/litellm, pinned
# in tests/e2e/requirements-litellm.txt), since its pins clash with the router's; a
# stamp of the requirements file's sha256 makes a current install a no-op. $PYTHON
# creates that venv (default python3).
#
# Exit status: 0 ready; 1 something is missing that it may not or could not install
# (the last lines say what); 3 LiteLLM is missing and the package index cannot be
# reached at all.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"

say() { printf '\n== %s\n' "$*"; }

# tool -> Debian package
package_of() {
    case $1 in
        prometheus) echo prometheus ;;
        redis-server) echo redis-server ;;
        nginx) echo nginx-light ;;
        wrk) echo wrk ;;
        # The dashboard's browser test: Debian's Chromium and its driver (no browser
        # download is possible where the tests run).
        chromium) echo chromium ;;
        chromedriver) echo chromium-driver ;;
        # The wire tier's Java client: the JDK's own HttpClient, as JVM-based IDEs use it.
        javac) echo default-jdk-headless ;;
        *) echo "provision.sh: unknown tool $1" >&2; exit 2 ;;
    esac
}

present() {
    case $1 in
        # promtool for the stack tier, the server for the end-to-end tier: one package.
        prometheus) command -v promtool >/dev/null 2>&1 \
            && { command -v prometheus >/dev/null 2>&1 || [ -x /usr/bin/prometheus ]; } ;;
        nginx) [ -x /usr/sbin/nginx ] || command -v nginx >/dev/null 2>&1 ;;
        *) command -v "$1" >/dev/null 2>&1 ;;
    esac
}

system_packages() {
    local packages=() tool
    for tool in "$@"; do
        present "$tool" || packages+=("$(package_of "$tool")")
    done
    ((${#packages[@]})) || return 0
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        say "apt-get install ${packages[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            "${packages[@]}" >/dev/null
    else
        echo "missing system packages: ${packages[*]}" >&2
        echo "install them with: sudo apt-get install ${packages[*]}" >&2
        exit 1
    fi
}

index_reachable() {
    # Whether pip's package index answers at all (pip's own config decides which one).
    "${PYTHON:-python3}" - <<'PY'
import os, subprocess, sys, urllib.error, urllib.request

index = os.environ.get("PIP_INDEX_URL") or subprocess.run(
    [sys.executable, "-m", "pip", "config", "get", "global.index-url"],
    capture_output=True, text=True, timeout=30,
).stdout.strip()
index = (index or "https://pypi.org/simple").rstrip("/")
try:
    urllib.request.urlopen(f"{index}/litellm/", timeout=15).close()
except urllib.error.HTTPError:
    pass  # it answered, just not with 200
except OSError:
    sys.exit(1)
PY
}

litellm() {
    local venv="$repo/.venvs/litellm"
    local requirements="$repo/tests/e2e/requirements-litellm.txt"
    local stamp="$venv/.requirements.sha256" wanted
    wanted=$(sha256sum "$requirements" | cut -d' ' -f1)
    if [ -x "$venv/bin/litellm" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$wanted" ]; then
        return 0
    fi
    say "LiteLLM into $venv (${requirements#"$repo"/})"
    if { [ -x "$venv/bin/python" ] || "${PYTHON:-python3}" -m venv "$venv"; } \
        && "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
            -r "$requirements" \
        && [ -x "$venv/bin/litellm" ]; then
        echo "$wanted" > "$stamp"
        return 0
    fi
    if ! index_reachable; then
        echo "LiteLLM is not installed and the package index cannot be reached;" \
            "set LITELLM_BIN or install ${requirements#"$repo"/} into $venv" >&2
        exit 3
    fi
    echo "installing LiteLLM into $venv failed (pip's output is above)" >&2
    exit 1
}

SYSTEM=(prometheus redis-server nginx wrk chromium chromedriver javac)
[ "$#" -gt 0 ] || set -- system litellm
for what in "$@"; do
    case $what in
        system) system_packages "${SYSTEM[@]}" ;;
        litellm) litellm ;;
        *) system_packages "$what" ;;
    esac
done
