# LOCAL STAND-IN for prom/prometheus:v3.5.0, for the live tests only. Never
# published. Debian's Prometheus 2.42, run as nobody like the official image, with
# busybox's wget for the compose health check (see README.md in this folder).
FROM memory-router-live/base:bookworm
RUN apt-get update \
    && apt-get install -y --no-install-recommends prometheus busybox \
    && rm -rf /var/lib/apt/lists/* \
    && ln -s /bin/busybox /usr/local/bin/wget \
    && mkdir -p /prometheus /etc/prometheus \
    && chown nobody:nogroup /prometheus
USER nobody
WORKDIR /prometheus
EXPOSE 9090
ENTRYPOINT ["/usr/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]
