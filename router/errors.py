"""Error responses the router itself produces, in the caller's API format.

OpenAI routes get ``{"error": {"message", "type", "param", "code"}}``; Anthropic's
``/v1/messages`` gets ``{"type": "error", "error": {"type", "message"}}``.
Messages are fixed sentences: no exception text or internals reach a client.
``error_for`` is the one place an exception becomes a reply.

The failures the router answers for itself::

    400 invalid_user_id        the custom header is empty or not a valid id
    400 invalid_header         a header value is neither ASCII nor UTF-8
    400 invalid_limit          a memory listing's limit is not 1 to 100
    403 user_id_not_allowed    the custom header policy does not allow that id here
    403 forbidden              a protected control endpoint was called without access
    404 memory_off             a memory endpoint, with no memory backend to ask
    404 memory_not_found       forget: the caller has no memory by that id
    413 request_too_large      the body is larger than max_body_bytes
    429 rate_limit_exceeded    the caller's user id is over its rate limit
    431 headers_too_large      the request headers are larger than max_header_bytes
    503 rate_limiter_unavailable  the shared limiter is down and set to fail closed
    500 router_error           a bug or a custom detect_user_id that failed
    502 upstream_unreachable   LiteLLM refused or dropped the connection
    502 memory_backend_error   a memory endpoint: the memory backend refused or failed
    503 upstream_busy          no upstream connection free in time
    503 memory_backend_unavailable  a memory endpoint: the backend is down or busy
    504 upstream_timeout       LiteLLM did not answer in time
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from router.exceptions import (
    Forbidden,
    InvalidCustomHeader,
    InvalidLimit,
    InvalidWindow,
    MemoryBackendError,
    MemoryNotFound,
    MemoryOff,
    TransientMemoryError,
    UpstreamError,
)

ApiFormat = Literal["openai", "anthropic"]

_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    431: "invalid_request_error",
    500: "api_error",
    502: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
}
_OPENAI_TYPES = {
    400: "invalid_request_error",
    403: "permission_error",
    404: "invalid_request_error",
    413: "invalid_request_error",
    431: "invalid_request_error",
    429: "rate_limit_error",
}


def api_format(path: str) -> ApiFormat:
    """Which API's error shape a path expects."""
    return "anthropic" if path.startswith(("/v1/messages", "/anthropic/")) else "openai"


def caller_format(headers: Mapping[str, str]) -> ApiFormat:
    """Which API's error shape the caller of a control endpoint expects: Anthropic's when
    it sends ``anthropic-version`` (every Anthropic SDK does), else OpenAI's."""
    return "anthropic" if "anthropic-version" in headers else "openai"


@dataclass(frozen=True, slots=True)
class RouterError:
    status: int
    code: str
    message: str

    def body(self, fmt: ApiFormat) -> bytes:
        if fmt == "anthropic":
            payload: dict[str, object] = {
                "type": "error",
                "error": {
                    "type": _ANTHROPIC_TYPES.get(self.status, "api_error"),
                    "message": self.message,
                },
            }
        else:
            payload = {
                "error": {
                    "message": self.message,
                    "type": _OPENAI_TYPES.get(self.status, "server_error"),
                    "param": None,
                    "code": self.code,
                }
            }
        return json.dumps(payload).encode()


def invalid_header(name: str) -> RouterError:
    return RouterError(400, "invalid_header", f"Header {name} is not ASCII or UTF-8 text.")


def headers_too_large(limit: int) -> RouterError:
    return RouterError(
        431, "headers_too_large", f"Request headers are larger than the limit of {limit} bytes."
    )


def rate_limited(user_id: str, reason: str, retry_after: float) -> RouterError:
    if reason == "unavailable":
        return RouterError(
            503,
            "rate_limiter_unavailable",
            "The rate limiter is unavailable; try again shortly.",
        )
    budget = "tokens" if reason == "tokens" else "requests"
    return RouterError(
        429,
        "rate_limit_exceeded",
        f"Rate limit exceeded for user id {user_id}: too many {budget} per minute. "
        f"Retry after {retry_after:.1f} s.",
    )


FORBIDDEN = RouterError(403, "forbidden", "This endpoint is not available to this caller.")


def request_too_large(limit: int) -> RouterError:
    return RouterError(
        413, "request_too_large", f"Request body is larger than the limit of {limit} bytes."
    )


ROUTER_BUG = RouterError(500, "router_error", "The memory router failed to handle the request.")
UPSTREAM_UNREACHABLE = RouterError(
    502, "upstream_unreachable", "The memory router could not reach the LiteLLM proxy."
)
UPSTREAM_BUSY = RouterError(
    503, "upstream_busy", "The memory router has no free connection to the LiteLLM proxy."
)
UPSTREAM_TIMEOUT = RouterError(504, "upstream_timeout", "The LiteLLM proxy did not answer in time.")
INVALID_LIMIT = RouterError(
    400, "invalid_limit", "The limit parameter must be a whole number from 1 to 100."
)
INVALID_WINDOW = RouterError(
    400,
    "invalid_window",
    "The window parameter must be a whole number of seconds from 10 to 3600.",
)
MEMORY_OFF = RouterError(
    404,
    "memory_off",
    "This router keeps no memories it can reach: its memory backend is off, or has no key.",
)
MEMORY_NOT_FOUND = RouterError(
    404, "memory_not_found", "There is no memory with that id for this user id."
)
MEMORY_BACKEND_ERROR = RouterError(
    502, "memory_backend_error", "The memory backend refused or failed the request."
)
MEMORY_BACKEND_UNAVAILABLE = RouterError(
    503, "memory_backend_unavailable", "The memory backend is unavailable; try again shortly."
)


def error_for(exc: BaseException) -> RouterError:
    """The reply for an exception: a refusal's own status and code, else a router bug."""
    if isinstance(exc, InvalidCustomHeader):
        message = f"Header {exc.header} {exc.problem}."
        if exc.kind == "not_allowed":
            return RouterError(403, "user_id_not_allowed", message)
        return RouterError(400, "invalid_user_id", message)
    if isinstance(exc, Forbidden):
        return FORBIDDEN
    if isinstance(exc, InvalidLimit):
        return INVALID_LIMIT
    if isinstance(exc, InvalidWindow):
        return INVALID_WINDOW
    if isinstance(exc, MemoryOff):
        return MEMORY_OFF
    if isinstance(exc, MemoryNotFound):
        return MEMORY_NOT_FOUND
    if isinstance(exc, TransientMemoryError):
        return MEMORY_BACKEND_UNAVAILABLE
    if isinstance(exc, MemoryBackendError):
        return MEMORY_BACKEND_ERROR
    if isinstance(exc, UpstreamError):
        if exc.kind == "pool_timeout":
            return UPSTREAM_BUSY
        if exc.kind in ("timeout", "connect_timeout"):
            return UPSTREAM_TIMEOUT
        return UPSTREAM_UNREACHABLE
    return ROUTER_BUG
