#!/usr/bin/env bash
# Builds the LOCAL STAND-IN images the live tier runs the compose files on, under
# the exact names the compose files use (python:3.12-slim, ghcr.io/berriai/litellm,
# prom/prometheus, redis, nginx). They stand in for registry images, which cannot
# be pulled here, and are never published. See README.md in this folder.
#
#   tests/live/images/build.sh           build what is missing or out of date
#   tests/live/images/build.sh --force   rebuild everything
#
# An image is rebuilt only when its tag is missing or its memory-router.stand-in
# label (a hash of its Dockerfile, build arguments and parent image) differs, so a
# second run takes seconds. A tag that exists without that label is a real registry
# image: it is left alone. Needs a running Docker engine; the base image also needs
# root and debootstrap.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../../.." && pwd)"
force=0
[ "${1:-}" = --force ] && force=1

BASE=memory-router-live/base:bookworm
LABEL=memory-router.stand-in
MIRROR=${MEMORY_ROUTER_DEBIAN_MIRROR:-http://deb.debian.org/debian}
HOST_CA=/etc/ssl/certs/ca-certificates.crt
logs="${MEMORY_ROUTER_LIVE_LOGS:-$repo/test-logs/live}"
mkdir -p "$logs"

say() { printf '[stand-ins %s] %s\n' "$(date +%T)" "$*"; }

image_label() {  # the stand-in hash of an image, "-" for an image without one, "" if missing
    docker image inspect -f "{{with index .Config.Labels \"$LABEL\"}}{{.}}{{else}}-{{end}}" "$1" \
        2>/dev/null || true
}

# Whether $1 must be (re)built to carry hash $2. A real registry image (no label)
# is never replaced.
needs_build() {
    local have
    have="$(image_label "$1")"
    [ "$have" = - ] && { say "$1: a real registry image, kept"; return 1; }
    [ "$force" = 1 ] || [ "$have" != "$2" ]
}

sha() { sha256sum | cut -c1-16; }

build_base() {
    local hash dir
    hash="$( { echo "minbase bookworm python3 python3-venv ca-certificates $MIRROR"
               cat "$HOST_CA"; declare -f build_base; } | sha)"
    needs_build "$BASE" "$hash" || { say "$BASE: up to date"; return 0; }
    # Exit 3: this machine cannot build the base (tests/live/provision.sh).
    command -v debootstrap >/dev/null || { echo "debootstrap is not installed" >&2; exit 3; }
    [ "$(id -u)" = 0 ] || { echo "building $BASE needs root (debootstrap)" >&2; exit 3; }
    old_base="$(docker image inspect -f '{{.Id}}' "$BASE" 2>/dev/null || true)"
    dir="$(mktemp -d /var/tmp/memory-router-base.XXXXXX)"
    say "$BASE: debootstrap bookworm (about a minute)"
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
        bookworm "$dir" "$MIRROR" > "$logs/debootstrap.log" 2>&1 \
        || { tail -20 "$logs/debootstrap.log" >&2; rm -rf "$dir"; exit 1; }
    # Trust the host's CA bundle: containers reach PyPI and Debian through a
    # TLS-intercepting proxy whose certificate only the host bundle holds.
    install -m 644 "$HOST_CA" "$dir/usr/local/share/ca-certificates/host-ca-bundle.crt"
    chroot "$dir" update-ca-certificates >> "$logs/debootstrap.log" 2>&1
    # Package scripts must not start services inside image builds.
    printf '#!/bin/sh\nexit 101\n' > "$dir/usr/sbin/policy-rc.d"
    chmod 755 "$dir/usr/sbin/policy-rc.d"
    printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' \
        > "$dir/etc/apt/apt.conf.d/90stand-in"
    chroot "$dir" apt-get clean
    rm -rf "$dir"/var/lib/apt/lists/* "$dir"/tmp/* "$dir"/var/log/*.log
    say "$BASE: docker import"
    tar -C "$dir" --numeric-owner -c . | docker import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' \
        --change "LABEL $LABEL=$hash" \
        --change 'CMD ["/bin/bash"]' \
        - "$BASE" > /dev/null
    rm -rf "$dir"
}

# build_one NAME DOCKERFILE [BUILD-ARG...]: docker build with no context (the
# Dockerfiles copy nothing), labelled with the stand-in hash.
build_one() {
    local name=$1 file=$here/$2 parent hash log old args=()
    shift 2
    for arg in "$@"; do args+=(--build-arg "$arg"); done
    parent="$(awk '/^FROM /{print $2; exit}' "$file")"
    hash="$( { cat "$file"; printf '%s\n' "$@"; docker image inspect -f '{{.Id}}' "$parent"; } | sha)"
    needs_build "$name" "$hash" || { say "$name: up to date"; return 0; }
    old="$(docker image inspect -f '{{.Id}}' "$name" 2>/dev/null || true)"
    log="$logs/build-$(basename "$file" .Dockerfile).log"
    say "$name: building (log: $log)"
    if ! docker build --label "$LABEL=$hash" -t "$name" "${args[@]}" - < "$file" > "$log" 2>&1; then
        tail -30 "$log" >&2
        echo "building the stand-in $name failed (log: $log)" >&2
        return 1
    fi
    say "$name: built"
    drop_replaced "$old"
}

# The image a rebuild replaced, if nothing uses it any more (errors ignored: a
# container or a child image may still hold it).
drop_replaced() {
    [ -n "$1" ] && docker image rm "$1" > /dev/null 2>&1 || true
}

docker info > /dev/null 2>&1 || { echo "no Docker engine answers (docker info)" >&2; exit 3; }
# Every requirement line, on one line: the LiteLLM pin and what goes with it.
litellm_reqs="$(grep -v '^[[:space:]]*#' "$repo/tests/e2e/requirements-litellm.txt" | xargs)"

build_base
# The apt-based images and the python -> litellm chain are independent: build
# them side by side.
pids=()
build_one prom/prometheus:v3.5.0 prometheus.Dockerfile & pids+=($!)
build_one redis:7.4.2-alpine redis.Dockerfile & pids+=($!)
build_one nginx:1.27.4-alpine nginx.Dockerfile & pids+=($!)
{ build_one python:3.12-slim python.Dockerfile \
    && build_one ghcr.io/berriai/litellm:v1.108.7 litellm.Dockerfile \
        "LITELLM_REQUIREMENTS=$litellm_reqs"; } & pids+=($!)
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
drop_replaced "${old_base:-}"
exit "$status"
