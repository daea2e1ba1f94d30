#!/usr/bin/env bash
# Installs everything the tests need, then runs lint, type checks and every test tier.
#
#   scripts/test.sh              all tiers (unit, proxy, stack, e2e, live)
#   scripts/test.sh tests/unit   any pytest arguments narrow the run
#   scripts/test.sh -m 'not live'   everything but the Docker tier
#
# System packages (Prometheus' promtool and server, redis-server, nginx, wrk) come
# from apt when missing:
# as root they are installed, otherwise the script says what to install.
# Python packages go into .venv. The end-to-end tier installs LiteLLM itself,
# into its own .venvs/litellm (pinned in tests/e2e/requirements-litellm.txt),
# so its pins never clash with the router's. The live tier (tests/live/) runs the
# compose stacks on a Docker engine: tests/live/provision.sh, which its fixture runs,
# installs and starts one as root when none answers, and builds the local stand-ins
# for the registry images; without an engine the tier is skipped and says why
# (MEMORY_ROUTER_REQUIRE_LIVE=1, as .ci/run sets, makes that a failure).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

log() { printf '\n== %s\n' "$*"; }

apt_packages=()
command -v promtool >/dev/null 2>&1 || apt_packages+=(prometheus)
command -v redis-server >/dev/null 2>&1 || apt_packages+=(redis-server)
[ -x /usr/sbin/nginx ] || command -v nginx >/dev/null 2>&1 || apt_packages+=(nginx-light)
command -v wrk >/dev/null 2>&1 || apt_packages+=(wrk)
if ((${#apt_packages[@]})); then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        log "apt-get install ${apt_packages[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            "${apt_packages[@]}" >/dev/null
    else
        echo "missing system packages: ${apt_packages[*]}" >&2
        echo "install them with: sudo apt-get install ${apt_packages[*]}" >&2
        exit 1
    fi
fi

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    log "creating .venv"
    "$python" -m venv .venv
fi
log "pip install -e .[test]"
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'

export PATH="$repo/.venv/bin:$PATH"

log "ruff"
ruff check .
log "mypy"
mypy
log "pytest"
set +e
python -m pytest "$@"
status=$?
set -e
if [ "$status" = 5 ]; then
    echo "pytest collected no tests: failing" >&2
    exit 1
fi
exit "$status"
