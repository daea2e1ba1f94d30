# LOCAL STAND-IN for redis:7.4.2-alpine, for the live tests only. Never published.
# Debian's Redis 7.0. Like the official image's entrypoint, `redis-server` runs
# with protected mode off unless a config file given first sets it (see README.md).
FROM memory-router-live/base:bookworm
RUN apt-get update \
    && apt-get install -y --no-install-recommends redis-server \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /data && chown redis:redis /data \
    && printf '%s\n' \
        '#!/bin/sh' \
        'set -e' \
        'case "$1" in -*) set -- redis-server "$@" ;; esac' \
        'if [ "$1" = redis-server ]; then' \
        '    shift' \
        '    config=' \
        '    if [ -f "${1:-}" ]; then config=$1; shift; fi' \
        '    if [ -n "$config" ] && grep -q "^protected-mode" "$config"; then' \
        '        set -- redis-server "$config" "$@"' \
        '    else' \
        '        set -- redis-server $config --protected-mode no "$@"' \
        '    fi' \
        'fi' \
        'exec "$@"' \
        > /usr/local/bin/docker-entrypoint.sh \
    && chmod 755 /usr/local/bin/docker-entrypoint.sh
USER redis
WORKDIR /data
EXPOSE 6379
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["redis-server"]
