# LOCAL STAND-IN for python:3.12-slim, for the live tests only. Never published.
# Debian bookworm's Python in a venv at /usr/local, so `python` and `pip` are on
# PATH as in the official image (see README.md in this folder).
FROM memory-router-live/base:bookworm
RUN python3 -m venv /usr/local \
    && /usr/local/bin/python -m pip --version
# pip trusts the system bundle, which holds the host's CA (see the base image).
ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt
CMD ["python3"]
