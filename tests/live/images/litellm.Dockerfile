# LOCAL STAND-IN for ghcr.io/berriai/litellm:v1.108.7, for the live tests only.
# Never published. LiteLLM from PyPI on the python stand-in (see README.md here).
FROM python:3.12-slim
# The requirement lines of tests/e2e/requirements-litellm.txt (build.sh passes them
# in): litellm[proxy] at the pin, and prometheus-client, which the real image ships
# and LiteLLM's prometheus callback needs.
ARG LITELLM_REQUIREMENTS
# hadolint ignore=SC2086
RUN test -n "$LITELLM_REQUIREMENTS" \
    && pip install --no-cache-dir $LITELLM_REQUIREMENTS \
    && litellm --help >/dev/null
# The model cost map ships with the package; without this LiteLLM retries a
# download it cannot make here for several seconds at every start.
ENV LITELLM_LOCAL_MODEL_COST_MAP=True
WORKDIR /app
EXPOSE 4000
ENTRYPOINT ["litellm"]
CMD ["--port", "4000"]
