"""API keys in the routing config: referenced, never written in plain text.

A key is given either as ``sha256:<64 hex digits>`` (the digest of the key) or
as ``env:NAME`` (the key is in environment variable NAME, read when the config
loads). Requests carry the key as OpenAI (``Authorization: Bearer``), Anthropic
(``x-api-key``) and Azure (``api-key``) clients send it.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping

KEY_HEADERS = ("authorization", "x-api-key", "api-key")
_SHA256 = re.compile(r"sha256:([0-9a-fA-F]{64})")
_ENV = re.compile(r"env:([A-Za-z_][A-Za-z0-9_]*)")


def digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def check_key_ref(value: str) -> str:
    """Validate a key reference's form (used by the config model)."""
    if not (_SHA256.fullmatch(value) or _ENV.fullmatch(value)):
        raise ValueError(
            "an API key must be given as 'sha256:<64 hex digits>' or 'env:VARIABLE', "
            "never in plain text"
        )
    return value


def resolve_key_ref(value: str, environ: Mapping[str, str] | None = None) -> str:
    """The SHA-256 digest a reference stands for. Raises ValueError if unresolvable."""
    env = os.environ if environ is None else environ
    match = _SHA256.fullmatch(value)
    if match:
        return match.group(1).lower()
    match = _ENV.fullmatch(value)
    if match:
        key = env.get(match.group(1), "")
        if not key:
            raise ValueError(f"environment variable {match.group(1)} is not set or empty")
        return digest(key)
    raise ValueError(check_key_ref(value))


def api_key_from(headers: Mapping[str, str]) -> str | None:
    """The caller's API key, from the first of the usual headers that has one."""
    auth = headers.get("authorization")
    if auth:
        scheme, _, token = auth.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    for name in ("x-api-key", "api-key"):
        value = headers.get(name)
        if value:
            return value.strip()
    return None
