"""The supermemory-api backend against the v5 double: what it sends, and how failures map."""

from __future__ import annotations

import pytest

from router.memory.backend import MemoryBackendError, TransientMemoryError, Turn
from router.memory.supermemory_api import API_VERSION, SupermemoryApiBackend
from tests.memory.conftest import Double
from tests.support.ports import closed_port


def test_the_targeted_api_version() -> None:
    assert API_VERSION == "v5"


async def test_store_sends_one_document_per_turn(
    api_backend: SupermemoryApiBackend, double: Double
) -> None:
    turn = Turn("hello there", "hi!", conversation_id="sess-1", metadata={"model": "gpt-x"})

    stored = await api_backend.store("alice", turn)

    assert stored == turn.id
    (request,) = double.requests_for("add")
    assert request["path"] == "/ns/alice/document"
    assert request["query"] == {}
    assert request["body"] == {
        "content": "User: hello there\nAssistant: hi!",
        "id": turn.id,
        "metadata": {"model": "gpt-x", "source": "memory-router", "conversationId": "sess-1"},
    }


async def test_search_sends_the_query_in_the_body(
    api_backend: SupermemoryApiBackend, double: Double
) -> None:
    await api_backend.search("alice", "where do I live", limit=500)

    (request,) = double.requests_for("search")
    assert request["path"] == "/ns/alice/search"
    assert request["query"] == {}
    assert request["body"] == {"query": "where do I live", "limit": 100, "searchMode": "hybrid"}


async def test_search_merges_a_memory_and_its_chunk(
    api_backend: SupermemoryApiBackend,
) -> None:
    await api_backend.store("alice", Turn("my dog is Rex", "nice"))

    found = await api_backend.search("alice", "dog", limit=10)

    assert [m.text for m in found] == ["User: my dog is Rex\nAssistant: nice"]


async def test_forget_accepts_a_memory_id_from_a_search(
    api_backend: SupermemoryApiBackend, double: Double
) -> None:
    await api_backend.store("alice", Turn("forget this fact", "ok"))
    memory_ids = list(double.state.namespaces["alice"].memories)

    assert await api_backend.forget("alice", memory_ids[0]) is True
    assert double.state.namespaces["alice"].memories[memory_ids[0]].forgotten
    assert [r["operation"] for r in double.state.requests][-2:] == [
        "delete_documents",
        "forget_memories",
    ]


async def test_forget_all_deletes_the_namespace(
    api_backend: SupermemoryApiBackend, double: Double
) -> None:
    await api_backend.store("alice", Turn("x", "y"))
    assert await api_backend.forget_all("alice") == 1
    (request,) = double.requests_for("delete_namespace")
    assert request["method"] == "DELETE"
    assert request["path"] == "/ns/alice"
    assert request["query"] == {}


@pytest.mark.parametrize("status", [500, 502, 503, 429, 408])
async def test_retryable_statuses_are_transient(
    api_backend: SupermemoryApiBackend, double: Double, status: int
) -> None:
    double.state.fail_next.append(status)
    with pytest.raises(TransientMemoryError):
        await api_backend.store("alice", Turn("x", "y"))
    assert len(double.requests_for("add")) == 1, "the SDK must not retry on its own"


@pytest.mark.parametrize("status", [400, 403, 404, 422])
async def test_refusals_are_not_transient(
    api_backend: SupermemoryApiBackend, double: Double, status: int
) -> None:
    double.state.fail_next.append(status)
    with pytest.raises(MemoryBackendError) as caught:
        await api_backend.search("alice", "anything", limit=1)
    assert not isinstance(caught.value, TransientMemoryError)


async def test_a_wrong_key_is_a_permanent_error_without_the_key(double: Double) -> None:
    key = "sm_wrong_key_never_shown"
    backend = SupermemoryApiBackend.create(api_key=key, base_url=double.url, trust_env=False)
    try:
        with pytest.raises(MemoryBackendError) as caught:
            await backend.search("alice", "anything", limit=1)
    finally:
        await backend.aclose()
    assert not isinstance(caught.value, TransientMemoryError)
    assert "401" in str(caught.value)
    assert key not in str(caught.value)
    assert caught.value.__cause__ is None


async def test_an_unreachable_server_is_transient() -> None:
    with closed_port() as port:  # bound but never listening: connections are refused
        backend = SupermemoryApiBackend.create(
            api_key="k", base_url=f"http://127.0.0.1:{port}", trust_env=False
        )
        try:
            with pytest.raises(TransientMemoryError):
                await backend.search("alice", "anything", limit=1)
        finally:
            await backend.aclose()


async def test_the_base_url_may_carry_a_trailing_slash(double: Double) -> None:
    backend = SupermemoryApiBackend.create(
        api_key=double.api_key, base_url=double.url + "/", trust_env=False
    )
    try:
        await backend.store("alice", Turn("slash", "ok"))
    finally:
        await backend.aclose()
    assert double.requests_for("add")[0]["path"] == "/ns/alice/document"
