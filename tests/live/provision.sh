#!/usr/bin/env bash
# Gets the live tier what it needs, and is the one place that does it:
#   1. a running Docker engine: Debian's docker.io (dockerd 20.10), installed with apt
#      and started in the background when none answers;
#   2. Compose v2: Debian trixie's docker-compose 2.26.1, the only .deb taken from
#      trixie, unpacked into /usr/local/lib/docker/cli-plugins/ (the system itself
#      stays on bookworm and is never upgraded);
#   3. the local stand-in images (images/build.sh; see images/README.md).
# Steps already done are skipped, so a second run takes seconds.
#
# Exit status: 0 ready; 3 no usable engine can be had here (the last line of
# stderr says why: the tier is then skipped); anything else is a real failure.
# tests/live/conftest.py runs it; it can also be run by hand.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
logs="${MEMORY_ROUTER_LIVE_LOGS:-$repo/test-logs/live}"
mkdir -p "$logs"
export MEMORY_ROUTER_LIVE_LOGS="$logs"

say() { printf '[provision %s] %s\n' "$(date +%T)" "$*"; }
unavailable() { echo "no usable Docker engine: $*" >&2; exit 3; }
is_root() { [ "$(id -u)" = 0 ]; }

PLUGIN_DIR=/usr/local/lib/docker/cli-plugins
TRIXIE_COMPOSE=docker-compose   # Compose v2.26.1 in Debian trixie

compose_v2() { docker compose version --short 2>/dev/null | grep -Eq '^v?2\.'; }

apt_install() {
    is_root && command -v apt-get > /dev/null \
        || unavailable "$* missing, and installing needs root and apt-get"
    say "apt-get install $*"
    { apt-get update -qq \
        && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"; } \
        > "$logs/apt.log" 2>&1 \
        || unavailable "apt-get install $* failed (see $logs/apt.log)"
}

# Compose v2 from trixie: one .deb, fetched with a separate source list and its own
# apt state in a temporary directory, unpacked with dpkg -x. Nothing is installed
# through dpkg and the system's apt sources are untouched.
install_compose() {
    compose_v2 && return 0
    is_root || unavailable "Docker Compose v2 is missing, and installing it needs root"
    local tmp opts
    tmp="$(mktemp -d)"
    mkdir -p "$tmp/lists/partial" "$tmp/cache/archives/partial"
    echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main" \
        > "$tmp/trixie.list"
    opts=(-o "Dir::Etc::sourcelist=$tmp/trixie.list" -o "Dir::Etc::sourceparts=-"
          -o "Dir::State::Lists=$tmp/lists" -o "Dir::Cache=$tmp/cache"
          -o "APT::Sandbox::User=root" -o "Debug::NoLocking=1")
    say "Compose v2: $TRIXIE_COMPOSE from Debian trixie (dpkg -x)"
    { apt-get "${opts[@]}" update -qq \
        && (cd "$tmp" && apt-get "${opts[@]}" download "$TRIXIE_COMPOSE") \
        && dpkg -x "$tmp"/"$TRIXIE_COMPOSE"_*.deb "$tmp/root"; } > "$logs/compose-install.log" 2>&1 \
        || { rm -rf "$tmp"; unavailable "fetching Compose v2 from trixie failed (see $logs/compose-install.log)"; }
    mkdir -p "$PLUGIN_DIR"
    install -m 755 "$tmp/root/usr/libexec/docker/cli-plugins/docker-compose" "$PLUGIN_DIR/"
    rm -rf "$tmp"
    compose_v2 || unavailable "docker compose version does not answer v2 after installing it"
}

start_engine() {
    docker info > /dev/null 2>&1 && return 0
    is_root || unavailable "no Docker engine answers, and starting dockerd needs root"
    command -v dockerd > /dev/null || unavailable "dockerd is not installed"
    say "starting dockerd (log: $logs/dockerd.log)"
    # Detached from this shell and from the test run: it stays up for the next run.
    setsid nohup dockerd > "$logs/dockerd.log" 2>&1 < /dev/null &
    for _ in $(seq 120); do
        docker info > /dev/null 2>&1 && return 0
        sleep 0.5
    done
    unavailable "dockerd did not answer within 60 s (see $logs/dockerd.log)"
}

if ! docker info > /dev/null 2>&1; then
    # No engine answers: install one (with debootstrap for the base image) if need be.
    packages=()
    command -v dockerd > /dev/null || packages+=(docker.io)
    command -v debootstrap > /dev/null || packages+=(debootstrap)
    ((${#packages[@]} == 0)) || apt_install "${packages[@]}"
    start_engine
fi
install_compose
if ! docker image inspect memory-router-live/base:bookworm > /dev/null 2>&1 \
        && ! command -v debootstrap > /dev/null; then
    apt_install debootstrap
fi
say "engine $(docker version -f '{{.Server.Version}}'), compose $(docker compose version --short)"
"$here/images/build.sh"
