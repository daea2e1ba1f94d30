#!/usr/bin/env bash
# memory-router without Docker, in one command: LiteLLM and the router as two local
# processes (README: "Run without Docker").
#
#   scripts/dev.sh                LiteLLM on 127.0.0.1:4000, the router on 127.0.0.1:8765
#   scripts/dev.sh --prometheus   also Prometheus on 127.0.0.1:9090, scraping both
#                                 (prometheus/prometheus.local.yml; Prometheus must be
#                                 installed: it is optional, and nothing installs it)
#
# Ctrl-C stops everything it started, and it exits 0.
#
# It works from the repository root whatever the current directory, and installs what
# is missing first, showing each command it runs:
#   - the router into .venv (pip install -e ., so an edit under router/ applies on the
#     next start), with $PYTHON (default python3, 3.11 or newer);
#   - LiteLLM into .venvs/litellm (scripts/provision.sh litellm, pinned by
#     tests/e2e/requirements-litellm.txt), unless LITELLM_BIN names one already installed.
#
# Both processes read ./.env themselves, as they do when started by hand (LiteLLM through
# scripts/litellm): the router never gets the Anthropic or LiteLLM keys. This script reads
# .env only for the settings below, and exports nothing from it, with one exception: a
# REDIS_URL that names compose's `redis` host, which exists only inside the compose
# network, is overridden with an empty value, so rate limits stay in the router.
#
# Settings, each from the environment, else from ./.env, else the default:
#   MEMORY_ROUTER_PORT   the router's port (8765)
#   LITELLM_PORT         LiteLLM's port (4000)
#   PROMETHEUS_PORT      Prometheus' port, with --prometheus (9090)
#   LITELLM_BIN          a LiteLLM executable to use instead of .venvs/litellm's
#   PROMETHEUS_BIN       the Prometheus executable (default: `prometheus` on PATH)
#   DEV_START_TIMEOUT    seconds to wait for the router's readiness (180)
# Where LiteLLM sends model calls is scripts/litellm's business: SUPERMEMORY_ANTHROPIC_BASE_URL
# or ANTHROPIC_PROVIDER_URL, by MEMORY_ROUTER_MEMORY_BACKEND (the tests point them at a double).
#
# Exit status: 0 stopped by Ctrl-C (or SIGTERM); 1 a process failed or did not become
# ready (its output is above); 2 bad usage or a missing setting.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

say() { printf 'dev.sh: %s\n' "$*" >&2; }
fail() { say "$*"; exit 2; }

with_prometheus=0
for arg in "$@"; do
    case $arg in
        --prometheus) with_prometheus=1 ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
        *) fail "unknown argument $arg (try --help)" ;;
    esac
done

# --- settings: the environment, else ./.env, else a default -------------------------------

dotenv_value() {
    # The value of $1 in ./.env (the last assignment; surrounding quotes removed), or nothing.
    [ -f .env ] || return 0
    local line name value found=""
    while IFS= read -r line || [ -n "$line" ]; do
        case $line in '' | '#'*) continue ;; esac
        name=${line%%=*}
        [ "$name" = "$1" ] || continue
        value=${line#*=}
        case $value in
            \"*\") value=${value#\"} value=${value%\"} ;;
            \'*\') value=${value#\'} value=${value%\'} ;;
        esac
        found=$value
    done < .env
    printf '%s' "$found"
}

setting() {
    # $1 from the environment when set there, else from ./.env; $2 when both are empty.
    local value
    if [ -n "${!1+set}" ]; then value=${!1}; else value=$(dotenv_value "$1"); fi
    printf '%s' "${value:-${2:-}}"
}

port_setting() {
    local value
    value=$(setting "$1" "$2")
    case $value in '' | *[!0-9]*) fail "$1=$value is not a port number" ;; esac
    [ "$value" -ge 1 ] && [ "$value" -le 65535 ] || fail "$1=$value is not a port number"
    printf '%s' "$value"
}

router_port=$(port_setting MEMORY_ROUTER_PORT 8765)
litellm_port=$(port_setting LITELLM_PORT 4000)
prometheus_port=$(port_setting PROMETHEUS_PORT 9090)
litellm_bin=$(setting LITELLM_BIN)
start_timeout=$(setting DEV_START_TIMEOUT 180)
case $start_timeout in '' | *[!0-9]*) fail "DEV_START_TIMEOUT=$start_timeout is not a number of seconds" ;; esac

# The router listens where MEMORY_ROUTER_HOST says (127.0.0.1 by default); it is asked
# for its readiness on loopback when it listens on every address.
router_host=$(setting MEMORY_ROUTER_HOST 127.0.0.1)
case $router_host in 0.0.0.0 | :: | '[::]') probe_host=127.0.0.1 ;; *) probe_host=$router_host ;; esac

if [ ! -f .env ]; then
    say "no .env here: the keys come from the environment alone" \
        "(cp .env.example .env, then put your keys in it)"
fi
if [ -z "$(setting LITELLM_MASTER_KEY)" ]; then
    fail "LITELLM_MASTER_KEY is not set, and LiteLLM will not start without it." \
        "Copy .env.example to .env and put your keys in it (README: Quick start)."
fi

redis_url=$(setting REDIS_URL)
case $redis_url in
    *://redis | *://redis[:/]* | *@redis | *@redis[:/]*)
        say "ignoring REDIS_URL=$redis_url: the host redis exists only in the compose" \
            "network, so rate limits stay in the router (set REDIS_URL to a Redis this" \
            "machine reaches to share them)"
        export REDIS_URL=
        ;;
esac

listening() {
    # Whether something accepts connections on 127.0.0.1:$1.
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

check_free() {
    # $1 the port, $2 the setting that moves it, $3 who wants it
    if listening "$1"; then
        fail "port $1, for $3, is already taken (is the compose stack up? docker compose" \
            "down stops it); stop what listens there, or set $2 to another port"
    fi
}

check_free "$router_port" MEMORY_ROUTER_PORT "the router"
check_free "$litellm_port" LITELLM_PORT LiteLLM
if [ "$with_prometheus" = 1 ]; then
    check_free "$prometheus_port" PROMETHEUS_PORT Prometheus
fi

# --- installing what is missing --------------------------------------------------------

show() {
    # Print a command, its program with the path it resolves to, then run it.
    local program
    program=$(command -v "$1" || printf '%s' "$1")
    printf '+ %s\n' "$(printf '%q ' "$program" "${@:2}" | sed 's/ $//')" >&2
    "$@"
}

if [ ! -x .venv/bin/memory-router ]; then
    python=${PYTHON:-python3}
    command -v "$python" >/dev/null 2>&1 || fail "$python not found: install Python 3.11 or newer, or set PYTHON"
    "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
        || fail "$python is Python $("$python" -c 'import platform; print(platform.python_version())'): the router needs 3.11 or newer; set PYTHON to one"
    say "installing the router into $repo/.venv"
    [ -x .venv/bin/python ] || show "$python" -m venv "$repo/.venv"
    show "$repo/.venv/bin/python" -m pip install --disable-pip-version-check -e "$repo"
fi

if [ -n "$litellm_bin" ]; then
    [ -x "$litellm_bin" ] || fail "LITELLM_BIN=$litellm_bin is not an executable file"
    export LITELLM_BIN=$litellm_bin
else
    # A no-op when .venvs/litellm is current; on first use it takes a minute or two.
    [ -x .venvs/litellm/bin/litellm ] || say "installing LiteLLM into $repo/.venvs/litellm (a minute or two)"
    show "$repo/scripts/provision.sh" litellm || exit 1
fi

if [ "$with_prometheus" = 1 ]; then
    prometheus_bin=$(setting PROMETHEUS_BIN)
    if [ -z "$prometheus_bin" ]; then
        prometheus_bin=$(command -v prometheus || true)
        [ -n "$prometheus_bin" ] || [ ! -x /usr/bin/prometheus ] || prometheus_bin=/usr/bin/prometheus
    fi
    [ -n "$prometheus_bin" ] && [ -x "$prometheus_bin" ] \
        || fail "--prometheus needs Prometheus (Debian: apt-get install prometheus;" \
            "or a release from prometheus.io, named by PROMETHEUS_BIN)"
    # prometheus/prometheus.local.yml with the ports in use, beside its rules, in .dev/.
    prometheus_dir=$repo/.dev/prometheus
    mkdir -p "$prometheus_dir"
    cp prometheus/rules.yml "$prometheus_dir/rules.yml"
    sed -e "s/127\.0\.0\.1:8765/127.0.0.1:$router_port/" \
        -e "s/127\.0\.0\.1:4000/127.0.0.1:$litellm_port/" \
        -e "s/127\.0\.0\.1:9090/127.0.0.1:$prometheus_port/" \
        prometheus/prometheus.local.yml > "$prometheus_dir/prometheus.yml"
fi

# --- running, and stopping ---------------------------------------------------------------

pids=()
names=()
stopping=0

start() {
    # Start "$2..." in the background as $1, each line of its output prefixed with [$1].
    # The prefixing awk ignores SIGINT, so it outlives Ctrl-C and prints the last lines.
    local name=$1
    shift
    printf '+ %s\n' "$(printf '%q ' "$@" | sed 's/ $//')" >&2
    PYTHONUNBUFFERED=1 "$@" \
        > >(trap '' INT; exec awk -v p="[$name] " '{ print p $0; fflush() }') 2>&1 &
    pids+=("$!")
    names+=("$name")
}

alive() { kill -0 "$1" 2>/dev/null; }

stop_all() {
    # SIGTERM to each process it started, then up to 40 s for them to finish (the router
    # lets open streams end for MEMORY_ROUTER_DRAIN_SECONDS, 30 s), then SIGKILL.
    # Returns 1 when one had to be killed.
    local pid i deadline killed=0
    stopping=1
    for pid in "${pids[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    deadline=$((SECONDS + 40))
    for i in "${!pids[@]}"; do
        while alive "${pids[$i]}" && [ "$SECONDS" -lt "$deadline" ]; do
            sleep 0.2
        done
        if alive "${pids[$i]}"; then
            say "${names[$i]} did not stop within 40 s: killing it"
            kill -KILL "${pids[$i]}" 2>/dev/null || true
            killed=1
        fi
    done
    wait 2>/dev/null || true  # the processes and the awk behind each
    return "$killed"
}

on_exit() {
    local status=$?
    trap '' INT TERM  # a second Ctrl-C reaches the processes themselves
    if [ "${#pids[@]}" -gt 0 ]; then
        stop_all || status=1
    fi
    exit "$status"
}
trap on_exit EXIT
trap 'printf "\n" >&2; say "stopping"; exit 0' INT TERM

start litellm "$repo/scripts/litellm" --config "$repo/litellm/config.yaml" \
    --host 127.0.0.1 --port "$litellm_port"
start router "$repo/.venv/bin/memory-router" serve --port "$router_port" \
    --litellm-url "http://127.0.0.1:$litellm_port"
if [ "$with_prometheus" = 1 ]; then
    start prometheus "$prometheus_bin" --config.file="$prometheus_dir/prometheus.yml" \
        --storage.tsdb.path="$prometheus_dir/data" \
        --web.listen-address="127.0.0.1:$prometheus_port" --log.level=warn
fi

ready() {
    # Whether the router's /health/readiness answers 200 (LiteLLM answers it too).
    (
        exec 3<>"/dev/tcp/$probe_host/$router_port" || exit 1
        printf 'GET /health/readiness HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n' \
            "$probe_host" >&3
        IFS= read -r -t 5 status_line <&3 || exit 1
        case $status_line in "HTTP/1."?" 200 "*) exit 0 ;; *) exit 1 ;; esac
    ) 2>/dev/null
}

exited() {
    # The name of a process that has exited, if any.
    local i
    for i in "${!pids[@]}"; do
        alive "${pids[$i]}" || { printf '%s' "${names[$i]}"; return 0; }
    done
    return 1
}

deadline=$((SECONDS + start_timeout))
until ready; do
    if gone=$(exited); then
        say "$gone exited before the router was ready (its output is above); stopping"
        exit 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
        say "the router was not ready within $start_timeout s (the output is above); stopping"
        exit 1
    fi
    sleep 0.5
done

say "ready: the router is http://$probe_host:$router_port, in front of LiteLLM on" \
    "http://127.0.0.1:$litellm_port; clients use your LITELLM_MASTER_KEY"
if [ "$with_prometheus" = 1 ]; then
    say "Prometheus: http://127.0.0.1:$prometheus_port"
fi
say "Ctrl-C stops them"

# Until one of them exits by itself (a crash), or Ctrl-C runs the trap above.
until gone=$(exited); do
    wait -n 2>/dev/null || sleep 1
done
say "$gone exited; stopping the others"
exit 1
