"""A wrong key and a missing key, through the router to the real LiteLLM: the client gets
LiteLLM's own answer, byte for byte, and the router's log names the likely cause
(router/hints.py). This is where the answers the hints recognise are checked against
LiteLLM itself."""

from __future__ import annotations

import httpx
import openai
import pytest

from router.hints import MISSING_KEY, WRONG_KEY
from tests.support.clients import OPENAI_FORMAT_MODEL
from tests.support.polling import wait_for

from .services import Router

pytestmark = pytest.mark.e2e

CHAT = {"model": OPENAI_FORMAT_MODEL, "messages": [{"role": "user", "content": "hi"}]}
WRONG = "sk-not-the-master-key-0123456789abcdef"


def both(router: Router, path: str, headers: dict[str, str]) -> tuple[httpx.Response, ...]:
    """The same request through the router and straight to LiteLLM."""
    with httpx.Client(timeout=30, trust_env=False) as client:
        return tuple(
            client.post(f"{base}{path}", json=CHAT, headers=headers)
            for base in (router.url, router.litellm.url)
        )


def wait_for_hint(router: Router, request_id: str, hint: str) -> None:
    wait_for(
        lambda: f"{request_id} hint: {hint}" in router.process.log(),
        timeout=10,
        what="the router's hint in its log",
    )


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/v1/chat/completions", {"Authorization": f"Bearer {WRONG}"}),
        ("/v1/messages", {"x-api-key": WRONG, "anthropic-version": "2023-06-01"}),
    ],
)
def test_a_wrong_key_gets_litellms_answer_and_a_hint(
    router: Router, path: str, headers: dict[str, str]
) -> None:
    through, direct = both(router, path, headers)
    assert through.status_code == direct.status_code == 400
    assert through.content == direct.content
    assert through.json()["error"]["type"] == "no_db_connection"
    assert through.headers["content-type"] == direct.headers["content-type"]
    wait_for_hint(router, through.headers["x-request-id"], WRONG_KEY)
    assert WRONG not in router.process.log()


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/v1/chat/completions", {}),
        ("/v1/messages", {"anthropic-version": "2023-06-01"}),
    ],
)
def test_a_missing_key_gets_litellms_answer_and_a_hint(
    router: Router, path: str, headers: dict[str, str]
) -> None:
    through, direct = both(router, path, headers)
    assert through.status_code == direct.status_code == 500
    assert through.content == direct.content == b"Internal Server Error"
    assert through.headers["content-type"] == direct.headers["content-type"]
    wait_for_hint(router, through.headers["x-request-id"], MISSING_KEY)


def test_what_an_sdk_client_sees_for_a_wrong_key(router: Router) -> None:
    client = openai.OpenAI(base_url=f"{router.url}/v1", api_key=WRONG, max_retries=0)
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(**CHAT)
    client.close()
    assert caught.value.status_code == 400
    assert "No connected db." in str(caught.value)
    request_id = caught.value.response.headers["x-request-id"]
    wait_for_hint(router, request_id, WRONG_KEY)


def test_the_right_key_gets_no_hint(router: Router) -> None:
    with httpx.Client(timeout=60, trust_env=False) as client:
        answer = client.post(
            f"{router.url}/v1/chat/completions",
            json=CHAT,
            headers={"Authorization": f"Bearer {router.litellm.master_key}"},
        )
    assert answer.status_code == 200
    request_id = answer.headers["x-request-id"]
    # Another request's hint is logged after this one has finished: then this one's
    # would be there too.
    marker, _ = both(router, "/v1/chat/completions", {})
    wait_for_hint(router, marker.headers["x-request-id"], MISSING_KEY)
    assert f"{request_id} hint:" not in router.process.log()
