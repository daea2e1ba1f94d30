"""The router's replies (router/errors.py): the one mapping from an exception to a reply,
the caller's format, the bodies, and no key in any of them."""

from __future__ import annotations

import json

import httpx
import pytest

from router.errors import ROUTER_BUG, RouterError, caller_format, error_for
from router.exceptions import (
    DetectUserIdError,
    Forbidden,
    InvalidCustomHeader,
    InvalidLimit,
    InvalidWindow,
    MemoryBackendError,
    MemoryNotFound,
    MemoryOff,
    TransientMemoryError,
)
from tests.conftest import SM_KEY, RouterFactory

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.parametrize(
    ("exc", "status", "code", "message"),
    [
        (
            InvalidCustomHeader("x-memory-user-id", "is empty"),
            400,
            "invalid_user_id",
            "Header x-memory-user-id is empty.",
        ),
        (
            InvalidCustomHeader("x-id", "names user id 'b', which …", kind="not_allowed"),
            403,
            "user_id_not_allowed",
            "Header x-id names user id 'b', which ….",
        ),
        (
            Forbidden(),
            403,
            "forbidden",
            "This endpoint is not available to this caller.",
        ),
        (
            DetectUserIdError("detect_user_id returned 'a b'"),
            500,
            "router_error",
            "The memory router failed to handle the request.",
        ),
        (
            InvalidLimit(),
            400,
            "invalid_limit",
            "The limit parameter must be a whole number from 1 to 100.",
        ),
        (
            InvalidWindow(),
            400,
            "invalid_window",
            "The window parameter must be a whole number of seconds from 10 to 3600.",
        ),
        (
            MemoryOff(),
            404,
            "memory_off",
            "This router keeps no memories it can reach: its memory backend is off, or has "
            "no key.",
        ),
        (
            MemoryNotFound(),
            404,
            "memory_not_found",
            "There is no memory with that id for this user id.",
        ),
        (
            MemoryBackendError("Supermemory answered 401 internal detail"),
            502,
            "memory_backend_error",
            "The memory backend refused or failed the request.",
        ),
        (
            TransientMemoryError("cannot reach Supermemory internal detail"),
            503,
            "memory_backend_unavailable",
            "The memory backend is unavailable; try again shortly.",
        ),
        (KeyError("internal detail"), 500, "router_error", ROUTER_BUG.message),
    ],
)
def test_error_for(exc: Exception, status: int, code: str, message: str) -> None:
    assert error_for(exc) == RouterError(status, code, message)
    # nothing from an exception's own text reaches a client but the refusal's problem
    assert "internal detail" not in error_for(exc).message


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"anthropic-version": "2023-06-01"}, "anthropic"),
        ({"x-api-key": "sk"}, "openai"),
        ({}, "openai"),
    ],
)
def test_caller_format(headers: dict[str, str], expected: str) -> None:
    assert caller_format(headers) == expected


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [
        (
            "openai",
            {
                "error": {
                    "message": "Header x is empty.",
                    "type": "invalid_request_error",
                    "param": None,
                    "code": "invalid_user_id",
                }
            },
        ),
        (
            "anthropic",
            {
                "type": "error",
                "error": {"type": "invalid_request_error", "message": "Header x is empty."},
            },
        ),
    ],
)
def test_bodies(fmt: str, expected: dict[str, object]) -> None:
    error = error_for(InvalidCustomHeader("x", "is empty"))
    assert json.loads(error.body(fmt)) == expected  # type: ignore[arg-type]


def test_key_not_in_error_replies(start_router: RouterFactory) -> None:
    _, url = start_router(litellm_url="http://127.0.0.1:9")
    for path in ("/v1/chat/completions", "/v1/messages"):
        r = httpx.post(url + path, json=CHAT)
        assert r.status_code == 502
        assert SM_KEY not in r.text and SM_KEY not in str(r.headers)
