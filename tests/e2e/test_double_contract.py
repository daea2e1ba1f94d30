"""The Supermemory double itself keeps to the documented contract, so the other tests can
trust what it reports."""

from __future__ import annotations

import httpx
import pytest

from tests.doubles.supermemory_router import ANSWER_PREFIX
from tests.support.clients import Clients, nonce

from .services import Double

pytestmark = pytest.mark.e2e


def test_double_rejects_a_wrong_key_with_json(double: Double) -> None:
    response = httpx.post(
        f"{double.anthropic_base}/v1/messages",
        headers={"x-supermemory-api-key": "wrong", "x-api-key": "k", "x-sm-user-id": "u"},
        json={"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": "x"}]},
        timeout=10.0,
        trust_env=False,
    )

    assert response.status_code == 401
    assert response.json()["error"]["type"] == "authentication_error"


def test_double_falls_back_to_body_user_then_query(double: Double) -> None:
    """Documented order: x-sm-user-id, else `user` in the body, else ?userId=."""
    marker = nonce()
    base = {"x-supermemory-api-key": double.api_key, "x-api-key": "k"}

    def send(headers: dict[str, str], body_extra: dict[str, str], query: str) -> None:
        response = httpx.post(
            f"{double.anthropic_base}/v1/messages{query}",
            headers={**base, **headers},
            json={
                "model": "m",
                "max_tokens": 1,
                "messages": [{"role": "user", "content": f"fallback {marker}"}],
                **body_extra,
            },
            timeout=10.0,
            trust_env=False,
        )
        assert response.status_code == 200, response.text
        assert response.headers["x-supermemory-conversation-id"]

    send({"x-sm-user-id": f"h-{marker}"}, {"user": f"b-{marker}"}, f"?userId=q-{marker}")
    send({}, {"user": f"b-{marker}"}, f"?userId=q-{marker}")
    send({}, {}, f"?userId=q-{marker}")

    decided = [r["user_id"] for r in double.requests_with(marker)]
    assert decided == [f"h-{marker}", f"b-{marker}", f"q-{marker}"]


def test_double_speaks_openai_chat_completions(double: Double, clients: Clients) -> None:
    """The OpenAI mount, JSON and streamed, read by the real OpenAI SDK."""
    marker = nonce()
    base = f"{double.url}/v3/https://api.openai.com"  # the SDK client adds /v1
    headers = {"x-supermemory-api-key": double.api_key, "x-sm-user-id": f"oa-{marker}"}
    client = clients.openai(base, "sk-openai-dummy", headers)
    completion = client.chat.completions.create(
        model="gpt-x", messages=[{"role": "user", "content": f"first {marker}"}]
    )
    chunks = list(
        client.chat.completions.create(
            model="gpt-x",
            messages=[{"role": "user", "content": f"second {marker}"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )

    assert completion.usage is not None and completion.usage.total_tokens > 0
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed.startswith(ANSWER_PREFIX) and f"first {marker}" in streamed
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) >= 3
