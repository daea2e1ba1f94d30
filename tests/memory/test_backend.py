"""Behaviour both backends share: the local SQLite store, and Supermemory's API (the SDK
against the v5 double). Each test runs once per backend."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from router.memory.backend import InvalidUserId, MemoryBackend, Turn
from router.memory.local import LocalBackend
from router.memory.supermemory_api import SupermemoryApiBackend
from tests.memory.conftest import Double


@pytest.fixture(params=["local", "supermemory-api"])
async def backend(
    request: pytest.FixtureRequest,
    local_backend: LocalBackend,
    api_backend: SupermemoryApiBackend,
) -> AsyncIterator[MemoryBackend]:
    yield local_backend if request.param == "local" else api_backend


def turn(user: str, assistant: str = "noted", **kwargs: object) -> Turn:
    return Turn(user_text=user, assistant_text=assistant, **kwargs)  # type: ignore[arg-type]


async def test_a_stored_turn_is_found_by_its_words(backend: MemoryBackend) -> None:
    await backend.store("alice", turn("my cat is called Ziggy", "what a name"))
    await backend.store("alice", turn("I live in Lisbon"))

    found = await backend.search("alice", "what is my cat called?", limit=5)

    assert found, "the stored turn should match"
    assert "Ziggy" in found[0].text
    assert "Assistant: what a name" in found[0].text


async def test_search_stays_within_the_user(backend: MemoryBackend) -> None:
    await backend.store("alice", turn("the vault code is 4711"))

    assert await backend.search("bob", "vault code 4711", limit=5) == []
    assert await backend.list("bob") == []


async def test_list_is_newest_first_and_limited(backend: MemoryBackend) -> None:
    for word in ("first", "second", "third"):
        await backend.store("alice", turn(word))

    listed = await backend.list("alice", limit=2)

    assert [m.text.splitlines()[0] for m in listed] == ["User: third", "User: second"]
    assert all(m.id and m.created_at for m in listed)


async def test_storing_the_same_turn_twice_keeps_one(backend: MemoryBackend) -> None:
    once = turn("retry me")
    first = await backend.store("alice", once)
    second = await backend.store("alice", once)

    assert first == second == once.id
    assert len(await backend.list("alice")) == 1


async def test_the_conversation_id_is_kept(backend: MemoryBackend) -> None:
    await backend.store("alice", turn("remember the conversation", conversation_id="sess-42"))

    (listed,) = await backend.list("alice")
    (found,) = await backend.search("alice", "conversation", limit=1)

    assert listed.conversation_id == "sess-42"
    assert found.conversation_id == "sess-42"


async def test_forget_removes_only_the_users_own_memory(backend: MemoryBackend) -> None:
    await backend.store("alice", turn("alice's fact"))
    await backend.store("bob", turn("bob's fact"))
    (alices,) = await backend.list("alice")

    assert await backend.forget("bob", alices.id) is False
    assert len(await backend.list("alice")) == 1

    assert await backend.forget("alice", alices.id) is True
    assert await backend.list("alice") == []
    assert await backend.search("alice", "fact", limit=5) == []
    assert len(await backend.list("bob")) == 1


async def test_forget_an_unknown_id(backend: MemoryBackend) -> None:
    await backend.store("alice", turn("something"))
    assert await backend.forget("alice", "no-such-id") is False
    assert len(await backend.list("alice")) == 1


async def test_forget_all_empties_one_user(backend: MemoryBackend) -> None:
    await backend.store("alice", turn("one"))
    await backend.store("alice", turn("two"))
    await backend.store("bob", turn("three"))

    assert await backend.forget_all("alice") == 2
    assert await backend.list("alice") == []
    assert len(await backend.list("bob")) == 1
    assert await backend.forget_all("alice") == 0


@pytest.mark.parametrize("query", ["", "   ", "?!", "\n"])
async def test_a_query_without_words_finds_nothing(backend: MemoryBackend, query: str) -> None:
    await backend.store("alice", turn("anything at all"))
    assert await backend.search("alice", query, limit=5) == []


@pytest.mark.parametrize(
    "user_id", ["", "a b", "../bob", "bob/../alice", "x" * 101, "alice?x=1", "é", "a\nb"]
)
async def test_invalid_user_ids_are_refused(backend: MemoryBackend, user_id: str) -> None:
    with pytest.raises(InvalidUserId):
        await backend.search(user_id, "x", limit=1)
    with pytest.raises(InvalidUserId):
        await backend.store(user_id, turn("x"))
    with pytest.raises(InvalidUserId):
        await backend.list(user_id)
    with pytest.raises(InvalidUserId):
        await backend.forget(user_id, "x")
    with pytest.raises(InvalidUserId):
        await backend.forget_all(user_id)


async def test_invalid_user_ids_send_nothing(
    api_backend: SupermemoryApiBackend, double: Double
) -> None:
    with pytest.raises(InvalidUserId):
        await api_backend.forget_all("bob/../alice")
    assert double.state.requests == []
