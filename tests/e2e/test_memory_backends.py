"""The memory backends the router runs itself, end to end: the real router (CLI), the real
LiteLLM (started by scripts/litellm, calling the provider directly) and a fake provider that
echoes what it was given, with the real openai and anthropic SDKs as clients.

``local`` runs with no Supermemory key at all; ``supermemory-api`` talks to the Supermemory
v5 double. For both: a fact one client tells is recalled for that client and never for
another; streams still arrive chunk by chunk; a slow or failing memory backend costs at most
the budget and nothing fails. ``off`` keeps ids and metrics and sends no memory anywhere.
Every process's HTTP(S)_PROXY is a recorder that must stay empty.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from anthropic import Anthropic
from openai import OpenAI
from prometheus_client.parser import text_string_to_metric_families

from tests.doubles.anthropic_provider import ECHO_PREFIX
from tests.support.clients import (
    CLAUDE_CODE_MODEL,
    CLAUDE_CODE_UA,
    OPENAI_FORMAT_MODEL,
    PYCHARM_UA,
    Clients,
    header_values,
    nonce,
)
from tests.support.polling import wait_for

from .services import ApiDouble, BackendRouter, NetworkTrap, Provider, Secrets

pytestmark = pytest.mark.e2e

HEADER = "x-memory-router-memory"
MEMORIES = "/memory-routing/memories"
OPEN_TAG = "<memory-router-memories>"


@pytest.fixture(params=["local", "supermemory-api"])
def stack(request: pytest.FixtureRequest, network_trap: NetworkTrap) -> Iterator[BackendRouter]:
    router: BackendRouter = request.getfixturevalue(
        "router_local" if request.param == "local" else "router_api"
    )
    yield router
    # Nothing went anywhere but loopback: the provider, the double, LiteLLM.
    assert network_trap.connections == []


class Client:
    """One client as the router sees it: how it calls, and the headers that identify it."""

    def __init__(self, sdk: OpenAI | Anthropic, identity: dict[str, str], user_id: str) -> None:
        self.sdk = sdk
        self.identity = identity
        self.user_id = user_id

    def ask(self, text: str) -> tuple[str, str | None]:
        """One non-streaming turn: the answer text and the memory header."""
        messages: Any = [{"role": "user", "content": text}]
        if isinstance(self.sdk, OpenAI):
            raw = self.sdk.chat.completions.with_raw_response.create(
                model=OPENAI_FORMAT_MODEL, messages=messages
            )
            return raw.parse().choices[0].message.content or "", raw.headers.get(HEADER)
        answer = self.sdk.messages.with_raw_response.create(
            model=CLAUDE_CODE_MODEL, max_tokens=512, messages=messages
        )
        block = answer.parse().content[0]
        return (block.text if block.type == "text" else ""), answer.headers.get(HEADER)

    def memories(self, router: BackendRouter, query: str) -> list[str]:
        response = httpx.get(
            router.url + MEMORIES, params={"q": query}, headers=self.identity, trust_env=False
        )
        assert response.status_code == 200, response.text
        assert response.json()["user_id"] == self.user_id
        return [m["text"] for m in response.json()["memories"]]


def three_clients(router: BackendRouter, clients: Clients, app_id: str) -> list[Client]:
    key = router.litellm.master_key
    jetbrains = {"User-Agent": PYCHARM_UA}
    app = {"x-memory-user-id": app_id}
    return [
        Client(clients.openai(router.url, key, jetbrains), jetbrains, "pycharm-ai-chat"),
        Client(
            clients.claude_code(router.url, key), {"User-Agent": CLAUDE_CODE_UA}, "claude-code-cli"
        ),
        Client(clients.openai(router.url, key, app), app, app_id),
    ]


def test_each_client_recalls_its_own_fact_and_no_one_elses(
    stack: BackendRouter, provider: Provider, clients: Clients, e2e_secrets: Secrets
) -> None:
    marker = nonce()
    people = three_clients(stack, clients, f"notes-app-{marker}")
    pets = ["Ziggy", "Mochi", "Pixel"]
    for person, pet in zip(people, pets, strict=True):
        _, header = person.ask(f"Remember: my cat {marker} is called {pet}{marker}.")
        assert header in ("none", "injected")
        # Stored in the background once the answer has ended; the caller can see it.
        wait_for(lambda p=person, n=pet: any(n in m for m in p.memories(stack, n + marker)))

    for person, pet in zip(people, pets, strict=True):
        answer, header = person.ask(f"What is my cat {marker} called?")
        assert header == "injected", (person.user_id, header)
        assert answer.startswith(ECHO_PREFIX)
        assert f"is called {pet}{marker}" in answer, (person.user_id, answer)
        others = [p for p in pets if p != pet]
        assert not any(f"{other}{marker}" in answer for other in others), (person.user_id, answer)

    # What reached the provider: each question's memories in its last user message, and
    # none of Supermemory's headers, nor its key, on any request.
    asked = [r for r in provider.requests_with(f"What is my cat {marker} called?")]
    assert len(asked) == 3
    for record in asked:
        last = json.dumps(record["body"]["messages"][-1])
        assert OPEN_TAG in last
        assert header_values(record, "x-sm-user-id") == []
        assert header_values(record, "x-supermemory-api-key") == []
    assert e2e_secrets.supermemory_key not in json.dumps(provider.requests())


@pytest.mark.parametrize("sdk", ["openai", "anthropic"])
def test_streams_still_arrive_chunk_by_chunk(
    stack: BackendRouter, provider: Provider, clients: Clients, sdk: str
) -> None:
    marker = nonce()
    app = {"x-memory-user-id": f"stream-app-{marker}"}
    key = stack.litellm.master_key
    teller = clients.openai(stack.url, key, app)
    teller.chat.completions.create(
        model=OPENAI_FORMAT_MODEL,
        messages=[{"role": "user", "content": f"Remember: the vault code is {marker}-4711"}],
    )
    wait_for(
        lambda: (
            "4711"
            in json.dumps(httpx.get(stack.url + MEMORIES, headers=app, trust_env=False).json())
        )
    )

    provider.hold(marker)  # each text chunk waits until the test has read the one before
    question = f"What is the vault code {marker}?"
    messages: Any = [{"role": "user", "content": question}]
    pieces: list[str] = []
    if sdk == "openai":
        with teller.chat.completions.with_streaming_response.create(
            model=OPENAI_FORMAT_MODEL, messages=messages, stream=True
        ) as response:
            assert response.headers[HEADER] == "injected"
            for chunk in response.parse():
                if chunk.choices and chunk.choices[0].delta.content:
                    pieces.append(chunk.choices[0].delta.content)
                    provider.allow(marker)
    else:
        claude = clients.anthropic(stack.url, key, app)
        with claude.messages.with_streaming_response.create(
            model=CLAUDE_CODE_MODEL, max_tokens=512, messages=messages, stream=True
        ) as response:
            assert response.headers[HEADER] == "injected"
            for event in response.parse():
                if event.type == "content_block_delta" and event.delta.type == "text_delta":
                    pieces.append(event.delta.text)
                    provider.allow(marker)
    streamed(pieces, question)


def streamed(pieces: list[str], question: str) -> None:
    """The whole answer came, from a stream the provider held chunk by chunk: had any hop
    held a chunk back, the provider would have waited for an ``allow`` that never came, and
    the stream would have broken off early."""
    text = "".join(pieces)
    assert text.startswith(ECHO_PREFIX) and text.endswith(question), text
    assert "vault code is" in text  # the memory reached the model
    assert len(pieces) >= 6, pieces


@pytest.fixture
def slow_backend(stack: BackendRouter, api_double: ApiDouble) -> Iterator[None]:
    """Make the memory backend slower than the budget until the test ends.

    supermemory-api: the double holds every search. local: another connection holds the
    SQLite write lock, so the store queue's insert waits for its busy timeout (2 s) on the
    store's one worker thread, and a search queued behind it cannot finish in the budget
    (1 s). Reads alone never wait in WAL mode, hence the insert."""
    if stack.backend == "supermemory-api":
        api_double.hold("search")
        try:
            yield
        finally:
            api_double.release()
        return
    assert stack.store is not None
    lock = sqlite3.connect(stack.store, isolation_level=None)
    lock.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        lock.execute("COMMIT")
        lock.close()


def test_a_slow_memory_backend_costs_the_budget_and_nothing_fails(
    stack: BackendRouter, provider: Provider, clients: Clients, slow_backend: None
) -> None:
    marker = nonce()
    app_id = f"patient-app-{marker}"
    (client,) = three_clients(stack, clients, app_id)[2:]
    if stack.backend == "local":
        # A new turn, answered in full, whose store then waits on the lock.
        _, header = client.ask(f"Remember: the kettle {marker} is blue")
        assert header == "none"
    answer, header = client.ask(f"What colour is the kettle {marker}?")
    assert header == "skipped-timeout"
    assert answer == f"{ECHO_PREFIX} What colour is the kettle {marker}?"  # no memories, no error


def test_a_failing_memory_backend_is_skipped(
    router_api: BackendRouter, api_double: ApiDouble, clients: Clients, network_trap: NetworkTrap
) -> None:
    marker = nonce()
    (client,) = three_clients(router_api, clients, f"unlucky-app-{marker}")[2:]
    api_double.fail(503)
    answer, header = client.ask(f"Anything about {marker}?")
    assert header == "skipped-error"
    assert answer == f"{ECHO_PREFIX} Anything about {marker}?"
    assert network_trap.connections == []


def test_the_api_backend_scopes_every_call_by_the_decided_id(
    router_api: BackendRouter, api_double: ApiDouble, clients: Clients
) -> None:
    marker = nonce()
    people = three_clients(router_api, clients, f"scoped-app-{marker}")
    for person in people:
        person.ask(f"Remember: scope check {marker}")
    for person in people:
        wait_for(lambda p=person: any(marker in m for m in p.memories(router_api, marker)))
    mine = [r for r in api_double.requests() if marker in json.dumps(r["body"])]
    namespaces = {r["path"].split("/")[2] for r in mine}
    assert namespaces == {p.user_id for p in people}
    assert {r["operation"] for r in mine} >= {"search", "add"}


def test_memory_off_keeps_ids_and_metrics_and_sends_no_memory(
    router_off: BackendRouter,
    provider: Provider,
    clients: Clients,
    e2e_secrets: Secrets,
    network_trap: NetworkTrap,
) -> None:
    marker = nonce()
    (jetbrains,) = three_clients(router_off, clients, "unused")[:1]
    jetbrains.ask(f"Remember: my dog {marker} is called Rex")
    answer, header = jetbrains.ask(f"What is my dog {marker} called?")
    assert header is None
    assert answer == f"{ECHO_PREFIX} What is my dog {marker} called?"

    records = provider.requests_with(marker)
    assert len(records) == 2
    for record in records:
        assert header_values(record, "x-sm-user-id") == []
        assert header_values(record, "x-litellm-end-user-id") == ["pycharm-ai-chat"]
    assert e2e_secrets.supermemory_key not in json.dumps(provider.requests())

    refused = httpx.get(router_off.url + MEMORIES, headers=jetbrains.identity, trust_env=False)
    assert refused.status_code == 404 and refused.json()["error"]["code"] == "memory_off"
    metrics = httpx.get(router_off.url + "/metrics", trust_env=False).text
    counted = {
        (s.labels["user_id"], s.labels["route"], s.labels["status"]): s.value
        for family in text_string_to_metric_families(metrics)
        for s in family.samples
        if s.name == "memory_router_requests_total"
    }
    assert counted == {("pycharm-ai-chat", "/v1/chat/completions", "200"): 2.0}
    assert network_trap.connections == []
