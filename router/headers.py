"""Pure header rewriting: what goes upstream to LiteLLM and what comes back.

Headers are ASGI-style lists of ``(name, value)`` byte pairs with lower-case
names. Nothing here mutates its input.
"""

from __future__ import annotations

import itertools
import re
import secrets
from collections.abc import Callable, Mapping, Sequence

RawHeaders = Sequence[tuple[bytes, bytes]]

SM_USER_ID = "x-sm-user-id"
SM_API_KEY = "x-supermemory-api-key"
LITELLM_END_USER = "x-litellm-end-user-id"
REQUEST_ID = "x-request-id"

# Connection-scoped headers (RFC 9110 7.6.1) plus the ones the proxy recomputes.
_HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"expect",
    }
)
_NOT_UPSTREAM = _HOP_BY_HOP | {b"host", b"content-length", REQUEST_ID.encode()}
_NOT_DOWNSTREAM = _HOP_BY_HOP | {REQUEST_ID.encode()}
_SM_PREFIX = b"x-supermemory-"
_SM_USER = SM_USER_ID.encode()
_SM_KEY = SM_API_KEY.encode()
_REQUEST_ID_RE = re.compile(rb"[A-Za-z0-9._:-]{1,128}")


_PLAIN_CONNECTION = frozenset({b"keep-alive", b"close", b"Keep-Alive", b"Close"})


def _without(drop: frozenset[bytes], headers: RawHeaders) -> frozenset[bytes]:
    """``drop`` plus the header names listed in ``Connection``, which are
    hop-by-hop too (RFC 9110 7.6.1). The usual bare ``keep-alive`` or ``close``
    names nothing else, and costs no set."""
    tokens: set[bytes] | None = None
    for name, value in headers:
        if name == b"connection" and value not in _PLAIN_CONNECTION:
            if tokens is None:
                tokens = set()
            tokens.update(t.strip().lower() for t in value.split(b","))
    return drop if tokens is None else drop | tokens


def upstream_headers(
    headers: RawHeaders,
    *,
    custom_header: bytes,
    inject: Sequence[tuple[bytes, bytes]],
) -> list[tuple[bytes, bytes]]:
    """Headers to send to LiteLLM.

    Drops hop-by-hop headers, Host and Content-Length (the HTTP client
    recomputes them), ``x-request-id`` (the router sends its own), the custom id
    header, and every memory header the client sent itself (``x-sm-user-id``,
    ``x-supermemory-*``), then appends ``inject``.
    """
    drop = _without(_NOT_UPSTREAM, headers)
    out = [
        (name, value)
        for name, value in headers
        if name not in drop
        and name != custom_header
        and name != _SM_USER
        and not name.startswith(_SM_PREFIX)
    ]
    out.extend(inject)
    return out


def downstream_headers(
    headers: Sequence[tuple[bytes, bytes]], *, request_id: bytes
) -> list[tuple[bytes, bytes]]:
    """Headers to return to the client: upstream's (lower-case names), less
    hop-by-hop ones, those the upstream named in ``Connection``, and any echo of
    the Supermemory key header, plus our request id."""
    drop = _without(_NOT_DOWNSTREAM, headers)
    out = [
        (name, value)
        for name, value in headers
        if name not in drop and not name.endswith(_SM_KEY)
    ]
    out.append((REQUEST_ID.encode(), request_id))
    return out


def memory_headers(
    user_id: str,
    supermemory_key: str | None,
    *,
    litellm_end_user: bool = False,
    supermemory: bool = True,
) -> list[tuple[bytes, bytes]]:
    """The headers the router adds. ``user_id`` must already be a valid id.

    ``supermemory`` is True when Supermemory's memory router does the memory (the
    ``supermemory-router`` backend): only then do the id and the key go upstream as
    ``x-sm-user-id`` and ``x-supermemory-api-key``. With any other backend they would
    apply memory a second time, or hand the key to the provider."""
    out: list[tuple[bytes, bytes]] = []
    if supermemory:
        out.append((SM_USER_ID.encode(), user_id.encode()))
        if supermemory_key:
            out.append((SM_API_KEY.encode(), supermemory_key.encode()))
    if litellm_end_user:
        out.append((LITELLM_END_USER.encode(), user_id.encode()))
    return out


class RequestIds:
    """Makes request ids: 16 hex digits, a random per-process prefix and a counter
    (cheaper than 8 random bytes per request, and unique across processes)."""

    __slots__ = ("_counter", "_prefix")

    def __init__(self) -> None:
        self._prefix = secrets.token_hex(4).encode()
        self._counter = itertools.count(secrets.randbelow(1 << 24))

    def __call__(self) -> bytes:
        return self._prefix + b"%08x" % (next(self._counter) & 0xFFFFFFFF)


def memory_header_names(
    supermemory_key: str | None, *, litellm_end_user: bool, supermemory: bool = True
) -> list[str]:
    """The names of the headers ``memory_headers`` adds with these settings."""
    added = memory_headers(
        "-", supermemory_key, litellm_end_user=litellm_end_user, supermemory=supermemory
    )
    return [n.decode() for n, _ in added]


def request_id_from(value: bytes | None, make: Callable[[], bytes] | None = None) -> bytes:
    """Keep a well-formed incoming request id; otherwise make a new one."""
    if value is not None and _REQUEST_ID_RE.fullmatch(value):
        return value
    return make() if make is not None else secrets.token_hex(8).encode()


def lower_keys(headers: Mapping[str, str]) -> dict[str, str]:
    """A copy of ``headers`` with lower-case names."""
    return {str(k).lower(): v for k, v in headers.items()}


def inject_memory_headers(
    headers: Mapping[str, str],
    *,
    user_id: str,
    supermemory_key: str | None,
    custom_header: str,
) -> dict[str, str]:
    """The seed's integration API: a new header dict ready to forward.

    Client-sent memory headers and the custom header are removed; the decided
    id (and the key, when given) are set.
    """
    raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
    rewritten = upstream_headers(
        raw,
        custom_header=custom_header.lower().encode("latin-1"),
        inject=memory_headers(user_id, supermemory_key),
    )
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in rewritten}


def duration_text(seconds: float) -> str:
    """A duration as OpenAI writes it in ``x-ratelimit-reset-*``: ``850ms``, ``12s``, ``1m30s``."""
    if seconds < 1:
        return f"{max(0, round(seconds * 1000))}ms"
    whole = int(-(-seconds // 1))
    minutes, secs = divmod(whole, 60)
    return f"{minutes}m{secs}s" if minutes else f"{secs}s"


def rate_limit_headers(
    *, limit: int, remaining: int, reset_seconds: float, retry_after: float
) -> list[tuple[bytes, bytes]]:
    """``Retry-After`` and, when a request limit applies, OpenAI's ``x-ratelimit-*`` headers."""
    out = [(b"retry-after", str(max(1, int(-(-retry_after // 1)))).encode())]
    if limit:
        out += [
            (b"x-ratelimit-limit-requests", str(limit).encode()),
            (b"x-ratelimit-remaining-requests", str(remaining).encode()),
            (b"x-ratelimit-reset-requests", duration_text(reset_seconds).encode()),
        ]
    return out
