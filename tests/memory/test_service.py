"""MemoryService.prepare/finish with real backends: the local store and the v5 double."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from router.memory.answer_text import ChatText, MessagesText
from router.memory.backend import MemoryBackend, Turn
from router.memory.chat import CLOSE_TAG, OPEN_TAG
from router.memory.config import parse_memory_config
from router.memory.local import LocalBackend
from router.memory.metrics import MemoryMetrics
from router.memory.service import MemoryService, Outcome
from router.memory.supermemory_api import SupermemoryApiBackend
from tests.memory.conftest import Double, assistant, backend_metric, user
from tests.support.answers import read_answer

SESSION = "54c1eb09-bc4c-4d2f-98eb-6d2ab2d5e2fe"
CC_METADATA = {"user_id": json.dumps({"device_id": "d", "account_uuid": "", "session_id": SESSION})}


def anthropic(*messages: dict[str, Any], **extra: Any) -> bytes:
    return json.dumps(
        {"model": "claude-x", "max_tokens": 100, "messages": list(messages), **extra}
    ).encode()


def openai(*messages: dict[str, Any], **extra: Any) -> bytes:
    return json.dumps({"model": "gpt-x", "messages": list(messages), **extra}).encode()


TOOL_USE = assistant([{"type": "tool_use", "id": "t1", "name": "Read", "input": {}}])
TOOL_RESULT = user([{"type": "tool_result", "tool_use_id": "t1", "content": "file text"}])


@pytest.fixture
async def local_service(
    local_backend: LocalBackend, registry: CollectorRegistry
) -> AsyncIterator[MemoryService]:
    service = MemoryService(local_backend, MemoryMetrics(registry, "local"), budget=5.0)
    service.start()
    yield service
    await service.queue.close(5)


@pytest.fixture
async def api_service(
    api_backend: SupermemoryApiBackend, registry: CollectorRegistry
) -> AsyncIterator[MemoryService]:
    service = MemoryService(
        api_backend, MemoryMetrics(registry, "supermemory-api"), budget=5.0, store_backoff=0
    )
    service.start()
    yield service
    await service.queue.close(5)


@pytest.fixture
def warnings() -> Iterator[list[str]]:
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    handler = Collect(level=logging.WARNING)
    log = logging.getLogger("memory_router.memory")
    log.addHandler(handler)
    try:
        yield lines
    finally:
        log.removeHandler(handler)


def sent_content(body: bytes, index: int = -1) -> Any:
    return json.loads(body)["messages"][index]["content"]


# ------------------------------------------------------------------ prepare


async def test_a_new_turn_gets_its_users_memories(
    local_service: MemoryService, local_backend: LocalBackend, registry: CollectorRegistry
) -> None:
    await local_backend.store("alice", Turn("my favourite colour is teal", "noted"))
    await local_backend.store("bob", Turn("my favourite colour is red", "noted"))
    body = openai(user("what is my favourite colour?"))

    new, outcome, context = await local_service.prepare("alice", "/v1/chat/completions", body)

    assert outcome == "injected"
    content = sent_content(new)
    assert content.startswith(OPEN_TAG)
    assert "teal" in content and "red" not in content
    assert content.endswith(f"{CLOSE_TAG}\n\nwhat is my favourite colour?")
    assert context is not None and context.new_turn and context.store
    assert (
        backend_metric(
            registry, "memory_router_memory_retrievals_total", "local", outcome="injected"
        )
        == 1
    )
    assert backend_metric(registry, "memory_router_memory_injected_sum", "local") == 1
    assert (
        backend_metric(
            registry,
            "memory_router_memory_operations_total",
            "local",
            operation="search",
            outcome="ok",
        )
        == 1
    )


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/embeddings", b'{"input": "x", "model": "m"}'),
        ("/v1/chat/completions", b"not json"),
        ("/v1/messages", b'{"messages": []}'),
        ("/v1/models", b""),
    ],
)
async def test_what_is_not_a_chat_is_left_alone(
    local_service: MemoryService, registry: CollectorRegistry, path: str, body: bytes
) -> None:
    new, outcome, context = await local_service.prepare("alice", path, body)
    assert (new, outcome, context) == (body, None, None)
    assert new is body
    assert registry.get_sample_value("memory_router_memory_retrievals_total", {}) is None


async def test_nothing_found_leaves_the_body_as_it_was(local_service: MemoryService) -> None:
    body = anthropic(user("a question about nothing stored"))
    new, outcome, _ = await local_service.prepare("alice", "/v1/messages", body)
    assert outcome == "none"
    assert new is body


async def test_retrieval_switched_off_for_an_id(
    local_backend: LocalBackend, local_service: MemoryService
) -> None:
    await local_backend.store("quiet", Turn("stored fact", "ok"))
    local_service.policy = parse_memory_config(
        {"per_user_id": {"quiet": {"retrieve": False}, "mute": {"store": False}}}
    )
    body = anthropic(user("stored fact?"))

    new, outcome, context = await local_service.prepare("quiet", "/v1/messages", body)
    assert (new, outcome) == (body, "skipped-off")
    assert context is not None and context.store

    _, outcome, context = await local_service.prepare("mute", "/v1/messages", body)
    assert outcome == "none"
    assert context is not None and not context.store
    assert context.reader(status=200, content_type="text/event-stream") is None


async def test_an_image_only_message_has_no_query(local_service: MemoryService) -> None:
    body = openai(user([{"type": "image_url", "image_url": {"url": "data:,"}}]))
    new, outcome, context = await local_service.prepare("alice", "/chat/completions", body)
    assert (new, outcome) == (body, "skipped-no-query")
    assert context is not None and not context.store


async def test_a_slow_backend_costs_at_most_the_budget(
    api_backend: SupermemoryApiBackend,
    double: Double,
    registry: CollectorRegistry,
    warnings: list[str],
) -> None:
    service = MemoryService(api_backend, MemoryMetrics(registry, "supermemory-api"), budget=0.05)
    double.state.hold.add("search")
    body = anthropic(user("secret question text"))

    new, outcome, context = await service.prepare("alice", "/v1/messages", body)

    assert (new, outcome) == (body, "skipped-timeout")
    assert context is not None and context.store  # the answer can still be stored
    name = "memory_router_memory_operations_total"
    assert (
        backend_metric(registry, name, "supermemory-api", operation="search", outcome="timeout")
        == 1
    )
    assert any("alice" in line and "0.050" in line for line in warnings)
    assert not any("secret question" in line for line in warnings)


async def test_a_failing_backend_is_skipped(
    api_service: MemoryService,
    double: Double,
    registry: CollectorRegistry,
    warnings: list[str],
) -> None:
    double.state.fail_next.append(503)
    body = openai(user("anything"))

    new, outcome, _ = await api_service.prepare("alice", "/v1/chat/completions", body)

    assert (new, outcome) == (body, "skipped-error")
    assert (
        backend_metric(
            registry,
            "memory_router_memory_retrievals_total",
            "supermemory-api",
            outcome="skipped-error",
        )
        == 1
    )
    assert any("503" in line for line in warnings)
    assert not any(double.api_key in line for line in warnings)


async def test_a_closed_local_store_is_skipped(tmp_path: Any, registry: CollectorRegistry) -> None:
    backend = await LocalBackend.open(tmp_path / "m.sqlite3")
    await backend.aclose()
    service = MemoryService(backend, MemoryMetrics(registry, "local"))
    body = anthropic(user("hello there"))

    new, outcome, context = await service.prepare("alice", "/v1/messages", body)

    assert (new, outcome) == (body, "skipped-error")
    assert context is not None and context.store


async def test_an_id_a_backend_refuses_fails_open(local_service: MemoryService) -> None:
    body = anthropic(user("hello there"))
    new, outcome, _ = await local_service.prepare("not a valid id", "/v1/messages", body)
    assert (new, outcome) == (body, "skipped-error")


# ------------------------------------------------------------------ tool loops


async def test_a_tool_loop_reuses_the_turns_block_without_searching(
    api_service: MemoryService, api_backend: SupermemoryApiBackend, double: Double
) -> None:
    await api_backend.store("alice", Turn("the repo uses poetry", "ok"))
    turn = user([{"type": "text", "text": "how do I install the repo?"}])
    first, outcome, _ = await api_service.prepare(
        "alice", "/v1/messages", anthropic(turn, metadata=CC_METADATA)
    )
    assert outcome == "injected"
    searches = len(double.requests_for("search"))

    loop_body = anthropic(turn, TOOL_USE, TOOL_RESULT, metadata=CC_METADATA)
    again, outcome, context = await api_service.prepare("alice", "/v1/messages", loop_body)

    assert outcome == "reused"
    assert len(double.requests_for("search")) == searches
    # The block goes back where it was, so the prompt prefix matches the turn's first request.
    assert sent_content(again, 0) == sent_content(first, 0)
    assert json.loads(again)["messages"][1:] == json.loads(loop_body)["messages"][1:]
    assert context is not None and not context.store


@pytest.mark.parametrize(
    ("user_id", "metadata"),
    [
        ("bob", CC_METADATA),  # another id never sees alice's block
        ("alice", {"user_id": json.dumps({"session_id": "other-session"})}),
    ],
)
async def test_reuse_is_scoped_to_the_id_and_conversation(
    local_service: MemoryService,
    local_backend: LocalBackend,
    user_id: str,
    metadata: dict[str, str],
) -> None:
    await local_backend.store("alice", Turn("alice's private detail", "ok"))
    turn = user("what is my private detail?")
    _, outcome, _ = await local_service.prepare(
        "alice", "/v1/messages", anthropic(turn, metadata=CC_METADATA)
    )
    assert outcome == "injected"

    loop_body = anthropic(turn, TOOL_USE, TOOL_RESULT, metadata=metadata)
    new, outcome, _ = await local_service.prepare(user_id, "/v1/messages", loop_body)

    assert (new, outcome) == (loop_body, "skipped-tool-loop")


async def test_an_openai_tool_result_is_a_tool_loop(
    api_service: MemoryService, double: Double
) -> None:
    body = openai(
        user("list files"),
        {"role": "assistant", "tool_calls": [{"id": "c", "type": "function"}]},
        {"role": "tool", "tool_call_id": "c", "content": "a.txt"},
    )
    new, outcome, context = await api_service.prepare("alice", "/v1/chat/completions", body)
    assert (new, outcome) == (body, "skipped-tool-loop")
    assert double.requests_for("search") == []
    assert (
        context is not None and context.reader(status=200, content_type="application/json") is None
    )


# ------------------------------------------------------------------ finish


def anthropic_sse(text: str, stop_reason: str = "end_turn", stop: bool = True) -> bytes:
    events = [
        {"type": "message_start", "message": {"id": "m"}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}},
        {"type": "message_delta", "delta": {"stop_reason": stop_reason}},
    ]
    if stop:
        events.append({"type": "message_stop"})
    return "".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in events).encode()


async def test_finish_stores_the_turn_in_the_background(
    api_service: MemoryService, double: Double
) -> None:
    reminder = "<system-reminder>today is Monday</system-reminder>"
    body = anthropic(
        user([{"type": "text", "text": reminder}, {"type": "text", "text": "I moved to Oslo"}]),
        metadata=CC_METADATA,
    )
    _, _, context = await api_service.prepare("alice", "/v1/messages", body)
    assert context is not None
    tap = context.reader(status=200, content_type=b"text/event-stream")
    assert isinstance(tap, MessagesText)
    read_answer(anthropic_sse("Oslo is lovely."), [tap], fmt="anthropic")

    assert api_service.finish(context, tap) is True
    await api_service.queue.join()

    (add,) = double.requests_for("add")
    assert add["body"] == {
        "content": "User: I moved to Oslo\nAssistant: Oslo is lovely.",
        "id": add["body"]["id"],  # type: ignore[index]
        "metadata": {
            "api": "anthropic",
            "model": "claude-x",
            "source": "memory-router",
            "conversationId": SESSION,
        },
    }


async def test_a_stored_turn_is_recalled_on_the_next_request(
    local_service: MemoryService,
) -> None:
    body = openai(user("my build tool is bazel"))
    _, _, context = await local_service.prepare("alice", "/v1/chat/completions", body)
    assert context is not None
    tap = context.reader(status=200, content_type="text/event-stream")
    assert isinstance(tap, ChatText)
    read_answer(
        b'data: {"choices":[{"index":0,"delta":{"content":"Bazel, got it."}}]}\n\n'
        b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n'
        b"data: [DONE]\n\n",
        [tap],
    )
    assert local_service.finish(context, tap)
    await local_service.queue.join()

    new, outcome, _ = await local_service.prepare(
        "alice", "/v1/chat/completions", openai(user("which build tool do I use?"))
    )
    assert outcome == "injected"
    assert "bazel" in sent_content(new)


@pytest.mark.parametrize(
    "stream",
    [
        anthropic_sse("cut off", stop=False),
        anthropic_sse("calling a tool", stop_reason="tool_use"),
        anthropic_sse(""),
    ],
    ids=["aborted", "tool_use", "empty"],
)
async def test_finish_skips_answers_that_did_not_end_well(
    local_service: MemoryService, local_backend: LocalBackend, stream: bytes
) -> None:
    _, _, context = await local_service.prepare("alice", "/v1/messages", anthropic(user("hi")))
    assert context is not None
    tap = context.reader(status=200, content_type="text/event-stream")
    assert tap is not None
    read_answer(stream, [tap], fmt="anthropic")

    assert local_service.finish(context, tap) is False
    await local_service.queue.join()
    assert await local_backend.list("alice") == []


async def test_finish_without_context_or_tap(local_service: MemoryService) -> None:
    assert local_service.finish(None, None) is False
    _, _, context = await local_service.prepare("alice", "/v1/messages", anthropic(user("hi")))
    assert local_service.finish(context, None) is False
    assert context is not None
    assert context.reader(status=500, content_type="application/json") is None


async def test_aclose_drains_and_closes_the_backend(
    tmp_path: Any, registry: CollectorRegistry
) -> None:
    backend: MemoryBackend = await LocalBackend.open(tmp_path / "m.sqlite3")
    service = MemoryService(backend, MemoryMetrics(registry, "local"))
    service.start()
    for i in range(5):
        service.queue.submit("alice", Turn(f"turn {i}", "x"))

    assert await service.aclose(5) == 0

    reopened = await LocalBackend.open(tmp_path / "m.sqlite3")
    try:
        assert len(await reopened.list("alice")) == 5
    finally:
        await reopened.aclose()


def test_outcome_values_are_the_documented_header_values() -> None:
    assert {o.value for o in Outcome} == {
        "injected",
        "none",
        "reused",
        "skipped-tool-loop",
        "skipped-no-query",
        "skipped-off",
        "skipped-timeout",
        "skipped-error",
    }
