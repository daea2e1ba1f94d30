"""The server side of the wire (router/http_protocol.py, and uvicorn's httptools under it): a
request head that is too large or carries bytes no header may hold is refused before the
router runs."""

from __future__ import annotations

import json

import httpx
import pytest

from router.app import RouterApp
from tests.conftest import RouterFactory
from tests.doubles.fake_litellm import FakeUpstream
from tests.support.fetch import send_raw

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def test_oversized_headers_are_431(start_router: RouterFactory, upstream: FakeUpstream) -> None:
    _, url = start_router(max_header_bytes=4096)
    r = httpx.post(f"{url}/v1/chat/completions", json=CHAT, headers={"x-big": "a" * 5000})
    assert r.status_code == 431 and r.json()["error"]["code"] == "headers_too_large"
    r = httpx.post(f"{url}/v1/messages", json=CHAT, headers={"x-big": "a" * 5000})
    assert r.status_code == 431 and r.json()["type"] == "error"
    assert upstream.requests == []


@pytest.mark.parametrize("value", [b"\xff\xfe", b"caf\xc3\xa9", b"a\x01b", b"a\x7fb", b"tab\there"])
def test_non_utf8_or_control_characters_in_custom_header_are_400(
    router_app: tuple[RouterApp, str], upstream: FakeUpstream, value: bytes
) -> None:
    _, url = router_app
    body = json.dumps(CHAT).encode()
    reply = send_raw(
        url,
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nx-memory-user-id: "
        + value
        + b"\r\nContent-Type: application/json\r\nContent-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body,
    )
    assert reply.startswith(b"HTTP/1.1 400"), reply[:100]
    assert b"invalid_user_id" in reply or b"Invalid HTTP request" in reply
    assert upstream.requests == []


def test_control_characters_in_a_header_are_refused_before_the_router(
    router_app: tuple[RouterApp, str], upstream: FakeUpstream
) -> None:
    """uvicorn refuses a header value with a control character (CR and LF end the line
    anyway), so such bytes can never reach a header the router writes."""
    _, url = router_app
    reply = send_raw(url, b"GET /v1/models HTTP/1.1\r\nHost: x\r\nx-request-id: a\x0bb\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 400"), reply[:100]
    assert upstream.requests == []
