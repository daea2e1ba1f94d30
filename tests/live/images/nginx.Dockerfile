# LOCAL STAND-IN for nginx:1.27.4-alpine, for the live tests only. Never
# published. Debian's nginx 1.22 in the foreground, reading conf.d/*.conf and
# logging to the container's output (see README.md in this folder).
FROM memory-router-live/base:bookworm
RUN apt-get update \
    && apt-get install -y --no-install-recommends nginx-light \
    && rm -rf /var/lib/apt/lists/* /etc/nginx/sites-enabled/default \
    && ln -sf /dev/stdout /var/log/nginx/access.log \
    && ln -sf /dev/stderr /var/log/nginx/error.log
EXPOSE 80
STOPSIGNAL SIGQUIT
CMD ["nginx", "-g", "daemon off;"]
