"""The compose stack with a memory backend the router runs itself, switched by the one
`.env` variable MEMORY_ROUTER_MEMORY_BACKEND: ``local`` with no Supermemory key at all, and
``supermemory-api`` against the v5 double. LiteLLM then calls the provider directly (a fake
that echoes what it was given), and JetBrains' AI chat and Claude Code each get their own
memory, never each other's."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from anthropic import Anthropic
from openai import OpenAI

from tests.doubles.controls import header_values
from tests.support.clients import (
    CLAUDE_CODE_MODEL,
    CLAUDE_CODE_UA,
    OPENAI_FORMAT_MODEL,
    PYCHARM_UA,
    Clients,
    nonce,
)

from .stack import MEMORY_FILES, Keys, Stack, read_json, running, wait_until

pytestmark = pytest.mark.live

HEADER = "x-memory-router-memory"
ECHO_PREFIX = "Provider echo. You said:"  # tests/doubles/anthropic_provider.py
OPEN_TAG = "<memory-router-memories>"


@dataclass
class MemoryStack:
    stack: Stack
    keys: Keys
    backend: str
    router_url: str
    provider_url: str
    api_double_url: str

    def provider_requests_with(self, text: str) -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = read_json(f"{self.provider_url}/_double/requests")
        return [r for r in records if text in json.dumps(r["body"])]


@pytest.fixture(scope="module", params=["local", "supermemory-api"])
def memory_stack(request: pytest.FixtureRequest, docker_engine: None) -> Iterator[MemoryStack]:
    backend: str = request.param
    keys = Keys()
    env = (
        f"ANTHROPIC_API_KEY={keys.anthropic}\n"
        f"LITELLM_MASTER_KEY={keys.litellm_master}\n"
        f"MEMORY_ROUTER_MEMORY_BACKEND={backend}\n"
    )
    if backend == "supermemory-api":
        env += f"SUPERMEMORY_API_KEY={keys.supermemory}\n"
    stack = Stack(f"mem-{backend}", MEMORY_FILES, env)
    with running(stack):
        yield MemoryStack(
            stack=stack,
            keys=keys,
            backend=backend,
            router_url=stack.url("router", 8765),
            provider_url=stack.url("provider", 9100),
            api_double_url=stack.url("supermemory-api", 9200),
        )


def _ask(sdk: OpenAI | Anthropic, text: str) -> tuple[str, str | None]:
    messages: Any = [{"role": "user", "content": text}]
    if isinstance(sdk, OpenAI):
        raw = sdk.chat.completions.with_raw_response.create(
            model=OPENAI_FORMAT_MODEL, messages=messages
        )
        return raw.parse().choices[0].message.content or "", raw.headers.get(HEADER)
    answer = sdk.messages.with_raw_response.create(
        model=CLAUDE_CODE_MODEL, max_tokens=512, messages=messages
    )
    block = answer.parse().content[0]
    return (block.text if block.type == "text" else ""), answer.headers.get(HEADER)


def _memories(stack: MemoryStack, identity: dict[str, str], query: str) -> list[str]:
    answer = httpx.get(
        f"{stack.router_url}/memory-routing/memories",
        params={"q": query},
        headers=identity,
        trust_env=False,
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    return [m["text"] for m in answer.json()["memories"]]


def test_jetbrains_and_claude_code_each_keep_their_own_memory(
    memory_stack: MemoryStack, clients: Clients
) -> None:
    url, key = memory_stack.router_url, memory_stack.keys.litellm_master
    jetbrains = {"User-Agent": PYCHARM_UA}
    claude = {"User-Agent": CLAUDE_CODE_UA, "x-app": "cli"}
    people: list[tuple[OpenAI | Anthropic, dict[str, str], str]] = [
        (clients.openai(url, key, jetbrains), jetbrains, "Ziggy"),
        (clients.anthropic(url, key, claude), claude, "Mochi"),
    ]
    marker = nonce()
    for sdk, identity, pet in people:
        _, outcome = _ask(sdk, f"Remember: my cat {marker} is called {pet}{marker}.")
        assert outcome in ("none", "injected")
        # Stored in the background once the answer ended; then the caller can find it.
        wait_until(
            f"{pet}'s memory stored",
            lambda i=identity, p=pet: any(p in m for m in _memories(memory_stack, i, p + marker)),
            timeout=30,
        )

    for sdk, identity, pet in people:
        answer, outcome = _ask(sdk, f"What is my cat {marker} called?")
        assert outcome == "injected", (identity, outcome)
        assert answer.startswith(ECHO_PREFIX)
        assert f"is called {pet}{marker}" in answer, answer
        other = next(p for _, _, p in people if p != pet)
        assert f"{other}{marker}" not in answer, answer
        assert not any(other in m for m in _memories(memory_stack, identity, other + marker))

    # The provider got each question's memories in its last user message, and nothing of
    # Supermemory's: no memory-router headers, no key.
    asked = memory_stack.provider_requests_with(f"What is my cat {marker} called?")
    assert len(asked) == 2
    for record in asked:
        assert OPEN_TAG in json.dumps(record["body"]["messages"][-1])
        assert header_values(record, "x-sm-user-id") == []
        assert header_values(record, "x-supermemory-api-key") == []
    assert memory_stack.keys.supermemory not in json.dumps(
        read_json(f"{memory_stack.provider_url}/_double/requests")
    )


def test_where_the_memories_live(memory_stack: MemoryStack) -> None:
    stack = memory_stack.stack
    (router,) = stack.containers("router")
    env = dict(item.split("=", 1) for item in stack.inspect(router)["Config"]["Env"] if "=" in item)
    assert env["MEMORY_ROUTER_MEMORY_BACKEND"] == memory_stack.backend
    api_calls: list[dict[str, Any]] = read_json(f"{memory_stack.api_double_url}/_double/requests")
    if memory_stack.backend == "local":
        # No Supermemory key anywhere, no call to Supermemory's API, and the store on
        # the memory-data volume, where it outlives the container.
        assert env.get("SUPERMEMORY_API_KEY", "") == ""
        assert api_calls == []
        mounts = stack.inspect(router)["Mounts"]
        assert any(
            m["Type"] == "volume"
            and m["Name"].endswith("_memory-data")
            and m["Destination"] == "/var/lib/memory-router"
            for m in mounts
        ), mounts
    else:
        # Every call scoped by a decided id, in the path as v5 wants it, with the key.
        assert api_calls
        namespaces = {call["path"].split("/")[2] for call in api_calls}
        assert namespaces <= {"pycharm-ai-chat", "claude-code-cli", "default-dev"}, namespaces
    logs = stack.logs("litellm")
    assert "api.supermemory.ai" not in logs
