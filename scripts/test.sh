#!/usr/bin/env bash
# Installs everything the tests need, then runs lint, type checks and every test tier.
#
#   scripts/test.sh              all tiers (unit, proxy, stack, e2e, live)
#   scripts/test.sh tests/test_rules.py   any pytest arguments narrow the run
#   scripts/test.sh -m 'not live'   everything but the Docker tier
#
# What the tests need outside .venv comes from scripts/provision.sh, the one place that
# installs it: the system packages (Prometheus' promtool and server, redis-server, nginx,
# wrk) from apt here, first; as root they are installed, otherwise it says what to
# install. Python packages go into .venv. The end-to-end tier has provision.sh install
# LiteLLM into its own .venvs/litellm (pinned in tests/e2e/requirements-litellm.txt), so
# its pins never clash with the router's. The live tier (tests/live/) runs the
# compose stacks on a Docker engine: tests/live/provision.sh, which its fixture runs,
# installs and starts one as root when none answers, and builds the local stand-ins
# for the registry images; without an engine the tier is skipped and says why
# (MEMORY_ROUTER_REQUIRE_LIVE=1, as .ci/run sets, makes that a failure).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

log() { printf '\n== %s\n' "$*"; }

bash scripts/provision.sh system

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
