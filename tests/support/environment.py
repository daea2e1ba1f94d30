"""The environment a started process gets: this one's, minus whatever could steer it.

A developer's shell may carry the router's own settings, LiteLLM's or a provider's keys
and URLs; none of them may reach the processes under test or measurement. Loopback
traffic never goes through a proxy the environment names."""

from __future__ import annotations

import os
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager

# Prefixes and names of variables that steer the router, LiteLLM or the SDKs.
STEERING_PREFIXES = ("MEMORY_ROUTER_", "LITELLM_", "SUPERMEMORY_", "ANTHROPIC_", "OPENAI_")
STEERING_NAMES = ("DATABASE_URL", "LOG_LEVEL", "REDIS_URL")
PROXY_NAMES = ("http_proxy", "https_proxy", "all_proxy")  # any case
LOOPBACK = ("127.0.0.1", "localhost")


def steers(name: str) -> bool:
    """Whether an environment variable could steer the router, LiteLLM or the SDKs."""
    return name.startswith(STEERING_PREFIXES) or name in STEERING_NAMES


def _no_proxy(current: str | None) -> str:
    return ",".join(filter(None, [current or "", *LOOPBACK]))


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without the steering variables, loopback exempt from
    any proxy, Python unbuffered; then ``extra``."""
    env = {k: v for k, v in os.environ.items() if not steers(k)}
    no_proxy = _no_proxy(env.get("NO_PROXY"))
    env.update(NO_PROXY=no_proxy, no_proxy=no_proxy, PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


@contextmanager
def loopback_without_proxy(environ: MutableMapping[str, str] = os.environ) -> Iterator[None]:
    """While the block runs, clients in this process (the SDKs honour ``*_PROXY``) reach
    loopback directly."""
    saved = {k: environ.get(k) for k in ("NO_PROXY", "no_proxy")}
    environ["NO_PROXY"] = environ["no_proxy"] = _no_proxy(saved["NO_PROXY"])
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                environ.pop(key, None)
            else:
                environ[key] = old
