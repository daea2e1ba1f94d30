"""LiteLLM on the project's config, called directly (no router): does it carry the memory
headers to Supermemory, on every path the router relies on?"""

from __future__ import annotations

import httpx
import pytest

from tests.doubles.supermemory_router import ANSWER_PREFIX
from tests.support.clients import (
    OPENAI_FORMAT_MODEL,
    Clients,
    header_values,
    nonce,
    one_record,
    only_header,
)

from .services import Double, LiteLLM

pytestmark = pytest.mark.e2e


def memory_headers(double: Double, user_id: str) -> dict[str, str]:
    return {"x-sm-user-id": user_id, "x-supermemory-api-key": double.api_key}


def test_openai_format_streaming_forwards_memory_headers(
    litellm: LiteLLM, double: Double, clients: Clients
) -> None:
    marker = nonce()
    user_id = f"direct-openai-{marker}"
    client = clients.openai(litellm.url, litellm.master_key, memory_headers(double, user_id))

    stream = client.chat.completions.create(
        model=OPENAI_FORMAT_MODEL,
        messages=[{"role": "user", "content": f"stream please {marker}"}],
        stream=True,
    )
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)

    assert text.startswith(ANSWER_PREFIX)
    record = one_record(double.requests_with(marker))
    assert record["path"] == "/v3/https://api.anthropic.com/v1/messages"
    assert record["body"]["stream"] is True
    assert only_header(record, "x-sm-user-id") == user_id
    assert only_header(record, "x-supermemory-api-key") == double.api_key
    # The provider key from the config travels in Anthropic's usual header.
    assert header_values(record, "x-api-key"), "no provider key reached Supermemory"


def test_anthropic_messages_forwards_memory_headers(
    litellm: LiteLLM, double: Double, clients: Clients
) -> None:
    marker = nonce()
    user_id = f"direct-messages-{marker}"
    client = clients.anthropic(litellm.url, litellm.master_key, memory_headers(double, user_id))

    message = client.messages.create(
        model=OPENAI_FORMAT_MODEL,
        max_tokens=64,
        messages=[{"role": "user", "content": f"hello via /v1/messages {marker}"}],
    )

    assert message.content[0].type == "text"
    assert message.content[0].text.startswith(ANSWER_PREFIX)
    record = one_record(double.requests_with(marker))
    assert only_header(record, "x-sm-user-id") == user_id
    assert only_header(record, "x-supermemory-api-key") == double.api_key


def test_accepts_litellm_end_user_header(
    litellm: LiteLLM, double: Double, clients: Clients
) -> None:
    """The router may also name the user to LiteLLM's own tracking via x-litellm-end-user-id."""
    marker = nonce()
    user_id = f"direct-end-user-{marker}"
    headers = {**memory_headers(double, user_id), "x-litellm-end-user-id": user_id}
    client = clients.openai(litellm.url, litellm.master_key, headers)

    completion = client.chat.completions.create(
        model=OPENAI_FORMAT_MODEL, messages=[{"role": "user", "content": f"hi {marker}"}]
    )

    assert (completion.choices[0].message.content or "").startswith(ANSWER_PREFIX)
    record = one_record(double.requests_with(marker))
    assert only_header(record, "x-sm-user-id") == user_id


def test_supermemory_rejection_reaches_the_caller_and_does_not_lock_others_out(
    litellm: LiteLLM, double: Double
) -> None:
    """Without the Supermemory key the double answers 401 and the caller sees that 401.

    The next caller must still get through: with LiteLLM's cooldown on (the config turns it
    off), one upstream 401 would block the model's only deployment for everyone with a 429.
    """
    marker = nonce()

    def send(headers: dict[str, str], text: str) -> httpx.Response:
        return httpx.post(
            f"{litellm.url}/v1/chat/completions",
            headers={"Authorization": f"Bearer {litellm.master_key}", **headers},
            json={"model": OPENAI_FORMAT_MODEL, "messages": [{"role": "user", "content": text}]},
            timeout=60.0,
            trust_env=False,
        )

    rejected = send({"x-sm-user-id": "nobody"}, f"no key {marker}")
    accepted = send(memory_headers(double, f"next-{marker}"), f"with key {marker}")

    assert rejected.status_code == 401, rejected.text
    assert "x-supermemory-api-key" in rejected.text  # the double's own message came through
    assert accepted.status_code == 200, accepted.text
    outcomes = [r["outcome"] for r in double.requests_with(marker)]
    assert outcomes == ["bad supermemory key", "answered"]
