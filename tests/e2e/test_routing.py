"""Which user id each client ends up with at Supermemory, through router and LiteLLM, and
that the memory headers cannot be forged by a client or leak back to one."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.doubles.supermemory_router import ANSWER_PREFIX
from tests.support.clients import (
    CLAUDE_CODE_MODEL,
    CLAUDE_CODE_UA,
    OPENAI_FORMAT_MODEL,
    PYCHARM_UA,
    Clients,
    assert_streamed_in_lockstep,
    chat,
    header_values,
    nonce,
    one_record,
    only_header,
    openai_stream_in_lockstep,
)

from .services import Double, Router

pytestmark = pytest.mark.e2e


def upstream_user_id(double: Double, marker: str) -> str:
    return only_header(one_record(double.requests_with(marker)), "x-sm-user-id")


def test_pycharm_user_agent_gets_pycharm_ai_chat(
    router: Router, double: Double, clients: Clients
) -> None:
    marker = nonce()
    client = clients.openai(router.url, router.litellm.master_key, {"User-Agent": PYCHARM_UA})

    answer = chat(client, f"explain this code {marker}")

    assert answer.startswith(ANSWER_PREFIX)
    assert upstream_user_id(double, marker) == "pycharm-ai-chat"


def test_custom_header_names_the_user(router: Router, double: Double, clients: Clients) -> None:
    marker = nonce()
    # Even with a User-Agent that a rule would match, the explicit header wins.
    client = clients.openai(
        router.url,
        router.litellm.master_key,
        {"x-memory-user-id": "my-project", "User-Agent": PYCHARM_UA},
    )

    chat(client, f"hello {marker}")

    record = one_record(double.requests_with(marker))
    assert only_header(record, "x-sm-user-id") == "my-project"
    # The router consumes its own header; it is not passed on.
    assert header_values(record, "x-memory-user-id") == []


def test_plain_openai_sdk_gets_the_default(
    router: Router, double: Double, clients: Clients
) -> None:
    marker = nonce()
    client = clients.openai(router.url, router.litellm.master_key)  # User-Agent OpenAI/Python x.y

    chat(client, f"hello {marker}")

    assert upstream_user_id(double, marker) == "default-dev"


def test_openai_stream_arrives_in_pieces(router: Router, double: Double, clients: Clients) -> None:
    marker = nonce()
    question = f"stream {marker}"
    client = clients.openai(router.url, router.litellm.master_key, {"User-Agent": PYCHARM_UA})
    # Each text chunk waits until the last one has arrived here.
    pieces = openai_stream_in_lockstep(client, double, marker, question)

    assert_streamed_in_lockstep(pieces, question)
    assert upstream_user_id(double, marker) == "pycharm-ai-chat"


def test_client_cannot_forge_memory_headers(
    router: Router, double: Double, clients: Clients
) -> None:
    marker = nonce()
    client = clients.openai(
        router.url,
        router.litellm.master_key,
        {
            "x-sm-user-id": "someone-else",
            "x-supermemory-api-key": "sm_forged_by_client",
            "x-supermemory-anything": "forged",
        },
    )

    chat(client, f"whose memory is this {marker}")

    record = one_record(double.requests_with(marker))
    assert header_values(record, "x-sm-user-id") == ["default-dev"]
    assert header_values(record, "x-supermemory-api-key") == [router.supermemory_key]
    assert header_values(record, "x-supermemory-anything") == []
    assert "someone-else" not in str(record["headers"])


def _exchanges(router: Router, marker: str) -> list[tuple[str, httpx.Response]]:
    """A spread of calls through the router, as raw responses (headers and exact bytes)."""
    bearer = {"Authorization": f"Bearer {router.litellm.master_key}"}
    claude = {
        **bearer,
        "User-Agent": CLAUDE_CODE_UA,
        "x-app": "cli",
        "anthropic-version": "2023-06-01",
    }
    chat_body: dict[str, Any] = {
        "model": OPENAI_FORMAT_MODEL,
        "messages": [{"role": "user", "content": f"leak check {marker}"}],
    }
    messages_body: dict[str, Any] = {
        "model": CLAUDE_CODE_MODEL,
        "max_tokens": 64,
        "messages": [{"role": "user", "content": f"leak check {marker}"}],
    }
    calls: list[tuple[str, str, str, dict[str, str], dict[str, Any] | None]] = [
        ("chat json", "POST", "/v1/chat/completions", bearer, chat_body),
        ("chat stream", "POST", "/v1/chat/completions", bearer, {**chat_body, "stream": True}),
        ("messages json", "POST", "/v1/messages", claude, messages_body),
        ("messages stream", "POST", "/v1/messages", claude, {**messages_body, "stream": True}),
        ("unknown model", "POST", "/v1/chat/completions", bearer, {**chat_body, "model": "nope"}),
        (
            "wrong LiteLLM key",
            "POST",
            "/v1/chat/completions",
            {"Authorization": "Bearer x"},
            chat_body,
        ),
        ("health", "GET", "/health", {}, None),
        ("routing info", "GET", "/memory-routing/info", {}, None),
        ("metrics", "GET", "/metrics", {}, None),
    ]
    out = []
    with httpx.Client(base_url=router.url, timeout=60.0, trust_env=False) as client:
        for name, method, path, headers, body in calls:
            response = client.request(method, path, headers=headers, json=body)
            response.read()
            out.append((name, response))
    return out


def test_supermemory_key_reaches_supermemory_but_never_a_client(
    router: Router, double: Double
) -> None:
    marker = nonce()
    key = router.supermemory_key

    exchanges = _exchanges(router, marker)

    statuses = {name: r.status_code for name, r in exchanges}
    for name in ("chat json", "chat stream", "messages json", "messages stream"):
        assert statuses[name] == 200, statuses
    assert statuses["unknown model"] >= 400 and statuses["wrong LiteLLM key"] >= 400, statuses
    for name in ("health", "routing info", "metrics"):
        assert statuses[name] == 200, statuses

    answered = [r for r in double.requests_with(marker) if r["outcome"] == "answered"]
    assert len(answered) == 4, [r["outcome"] for r in double.requests_with(marker)]
    for record in answered:
        assert header_values(record, "x-supermemory-api-key") == [key]

    for name, response in exchanges:
        for header, value in response.headers.multi_items():
            assert key not in value, f"{name}: key returned in response header {header}"
        assert key.encode() not in response.content, f"{name}: key returned in the body"


def test_litellm_takes_the_end_user_header_from_the_router(
    router: Router, double: Double, clients: Clients
) -> None:
    """The router also sends x-litellm-end-user-id (LiteLLM's own end-user tracking).
    The real LiteLLM accepts it, and as an x- header passes it on with the memory id."""
    marker = nonce()
    client = clients.openai(router.url, router.litellm.master_key, {"User-Agent": PYCHARM_UA})

    answer = chat(client, f"who am I {marker}")

    assert answer.startswith(ANSWER_PREFIX)
    record = one_record(double.requests_with(marker))
    assert only_header(record, "x-sm-user-id") == "pycharm-ai-chat"
    assert header_values(record, "x-litellm-end-user-id") == ["pycharm-ai-chat"]
