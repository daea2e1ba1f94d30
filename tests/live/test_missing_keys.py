"""docker-compose.yml started with an empty .env: each service says which key is missing,
as the compose file's header promises, and the stack still comes up."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest

from tests.support.clients import OPENAI_FORMAT_MODEL

from .stack import NO_DOUBLE_FILES, Stack, running

pytestmark = pytest.mark.live


@pytest.fixture(scope="module")
def keyless_stack(docker_engine: None) -> Iterator[Stack]:
    stack = Stack("nokeys", NO_DOUBLE_FILES, env_text="")
    with running(stack):
        yield stack


def test_the_stack_comes_up_without_keys(keyless_stack: Stack) -> None:
    for service in ("litellm", "router", "prometheus"):
        (container,) = keyless_stack.containers(service)
        assert keyless_stack.inspect(container)["State"]["Health"]["Status"] == "healthy"


def test_each_service_logs_the_warning_it_documents(keyless_stack: Stack) -> None:
    litellm = keyless_stack.logs("litellm")
    assert "WARNING: ANTHROPIC_API_KEY is not set." in litellm
    assert "WARNING: LITELLM_MASTER_KEY is not set." in litellm
    assert "SUPERMEMORY_API_KEY is not set" in keyless_stack.logs("router")


def test_every_request_is_refused_until_the_master_key_is_set(keyless_stack: Stack) -> None:
    router = keyless_stack.url("router", 8765)
    # Whatever key a client guesses, LiteLLM (no database for its own keys) refuses it.
    with (
        openai.OpenAI(base_url=f"{router}/v1", api_key="sk-guess", max_retries=0) as client,
        pytest.raises(openai.BadRequestError, match="No connected db"),
    ):
        client.chat.completions.create(
            model=OPENAI_FORMAT_MODEL, messages=[{"role": "user", "content": "hello"}]
        )
