"""Hints for LiteLLM's misleading answers (router/hints.py): which answers are looked at,
which get a hint, and through a real server, that the answer reaches the client unchanged
while the log names the likely cause. tests/e2e/test_auth_hints.py does the same against
the real LiteLLM."""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import pytest

from router.hints import MISSING_KEY, PEEK_BYTES, WRONG_KEY, hint_for, wants_peek
from tests.conftest import RouterFactory
from tests.doubles.fake_litellm import LITELLM_NO_DB, LITELLM_NO_KEY, FakeUpstream
from tests.support.configs import write_rules
from tests.support.metrics import settle

JSON = b"application/json"
SSE = b"text/event-stream"


@pytest.mark.parametrize(
    ("status", "content_type", "encoding", "length", "expected"),
    [
        (400, JSON, None, b"92", True),
        (500, b"text/plain; charset=utf-8", None, None, True),  # chunked: bounded by the peek
        (400, JSON, None, str(PEEK_BYTES).encode(), True),
        (400, JSON, None, str(PEEK_BYTES + 1).encode(), False),  # too big to be one
        (400, JSON, None, b"x", False),
        (400, SSE, None, None, False),  # a stream is never looked at
        (400, b"Text/Event-Stream; charset=utf-8", None, None, False),
        (400, JSON, b"gzip", b"40", False),
        (200, JSON, None, b"92", False),
        (401, JSON, None, b"92", False),
        (404, JSON, None, b"92", False),
        (502, b"text/plain", None, None, False),
        (400, None, None, None, True),
    ],
)
def test_which_answers_are_looked_at(
    status: int,
    content_type: bytes | None,
    encoding: bytes | None,
    length: bytes | None,
    expected: bool,
) -> None:
    assert wants_peek(status, content_type, encoding, length) is expected


@pytest.mark.parametrize(
    ("status", "body", "has_key", "expected"),
    [
        (400, LITELLM_NO_DB, True, WRONG_KEY),
        (400, LITELLM_NO_DB, False, WRONG_KEY),
        (500, LITELLM_NO_KEY, False, MISSING_KEY),
        (500, LITELLM_NO_KEY + b"\n", False, MISSING_KEY),
        # With a key, a 500 has some other cause: no guess.
        (500, LITELLM_NO_KEY, True, None),
        (500, b'{"error": {"message": "Internal Server Error"}}', False, None),
        (400, b'{"error": {"message": "bad model", "type": "invalid_request_error"}}', True, None),
        (401, LITELLM_NO_DB, True, None),
        (200, LITELLM_NO_DB, True, None),
    ],
)
def test_which_answers_get_a_hint(
    status: int, body: bytes, has_key: bool, expected: str | None
) -> None:
    assert hint_for(status, body, has_key=has_key) == expected


def test_the_hints_name_the_cause_and_the_fix() -> None:
    assert "did not accept the client's API key" in WRONG_KEY
    assert "carried no API key" in MISSING_KEY
    for hint in (WRONG_KEY, MISSING_KEY):
        assert "LITELLM_MASTER_KEY" in hint and "\n" not in hint


CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
CLIENT_KEY = "sk-not-the-master-key-0123456789"


def hints(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if " hint: " in r.getMessage()]


@pytest.mark.parametrize(
    ("auth", "headers", "status", "body", "content_type", "hint"),
    [
        (
            "wrong-key",
            {"authorization": f"Bearer {CLIENT_KEY}"},
            400,
            LITELLM_NO_DB,
            "application/json",
            WRONG_KEY,
        ),
        ("wrong-key", {"x-api-key": CLIENT_KEY}, 400, LITELLM_NO_DB, "application/json", WRONG_KEY),
        ("no-key", {}, 500, LITELLM_NO_KEY, "text/plain; charset=utf-8", MISSING_KEY),
        # An empty bearer token is no key either.
        (
            "no-key",
            {"authorization": "Bearer"},
            500,
            LITELLM_NO_KEY,
            "text/plain; charset=utf-8",
            MISSING_KEY,
        ),
        # The same answer to a request with a key: not the known case, no hint.
        (
            "no-key",
            {"authorization": f"Bearer {CLIENT_KEY}"},
            500,
            LITELLM_NO_KEY,
            "text/plain; charset=utf-8",
            None,
        ),
    ],
)
def test_litellm_auth_failures_pass_unchanged_and_the_log_names_the_cause(
    start_router: RouterFactory,
    upstream: FakeUpstream,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    auth: str,
    headers: dict[str, str],
    status: int,
    body: bytes,
    content_type: str,
    hint: str | None,
) -> None:
    app, url = start_router(config=write_rules(tmp_path / "r.yaml"))
    with caplog.at_level(logging.INFO, logger="memory_router"):
        answer = httpx.post(
            f"{url}/v1/chat/completions",
            json=CHAT,
            headers={**headers, "x-test-litellm-auth": auth},
        )
        settle(app, 1)  # the request is done, its hint (if any) logged
    assert answer.status_code == status
    assert answer.content == body
    assert answer.headers["content-type"] == content_type
    found = hints(caplog)
    if hint is None:
        assert found == []
    else:
        assert found == [f"{answer.headers['x-request-id']} hint: {hint}"]
    assert all(CLIENT_KEY not in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("knobs", [{}, {"x-test-status": "400"}, {"x-test-status": "500"}])
def test_other_answers_get_no_hint(
    start_router: RouterFactory,
    upstream: FakeUpstream,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    knobs: dict[str, str],
) -> None:
    app, url = start_router(config=write_rules(tmp_path / "r.yaml"))
    with caplog.at_level(logging.INFO, logger="memory_router"):
        plain = httpx.post(f"{url}/v1/chat/completions", json=CHAT, headers=knobs)
        streamed = httpx.post(
            f"{url}/v1/chat/completions", json={**CHAT, "stream": True}, headers=knobs
        )
        settle(app, 2)
    assert plain.status_code == streamed.status_code == int(knobs.get("x-test-status", "200"))
    assert hints(caplog) == []
