"""Behaviour both backends share: the local SQLite store, and Supermemory's API (the SDK
against the v5 double). Each test runs once per backend."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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


# --------------------------------------------------------------------------------------
# Property: no sequence of stores, searches, lists and forgets from several ids ever gives
# one id another id's memory, or lets one id remove another's. Checked against the local
# store and against the supermemory-api backend talking to the v5 double.
#
# Each example runs with ids of its own (a fresh suffix), in a backend that still holds
# every earlier example's memories, so a leak of anything stored before also shows.


NAMES = ("alice", "bob", "carol:team", "d-4")

WORDS = ("tea", "vault", "code", "lisbon", "cat", "ziggy", "4711", "poetry", "teal", "red")

SYNTAX = ('"', "*", "OR", "AND", "NOT", "NEAR", "(", ")", ":", "^", "user_id", "content:", "-")

words = st.lists(st.sampled_from(WORDS), min_size=1, max_size=4).map(" ".join)

queries = st.one_of(
    st.lists(st.sampled_from(WORDS + SYNTAX), min_size=1, max_size=6).map(" ".join),
    st.text(max_size=40),
)

who = st.integers(min_value=0, max_value=len(NAMES) - 1)

operations = st.lists(
    st.one_of(
        st.tuples(st.just("store"), who, words),
        st.tuples(st.just("search"), who, queries),
        st.tuples(st.just("list"), who, st.just("")),
        st.tuples(st.just("forget"), who, st.integers(min_value=0, max_value=50).map(str)),
        st.tuples(st.just("forget_all"), who, st.just("")),
    ),
    min_size=1,
    max_size=25,
)

_examples = itertools.count()


@dataclass
class Model:
    """What each id should have: turn id -> stored text, plus every turn ever stored."""

    live: dict[str, dict[str, str]] = field(default_factory=dict)
    stored: list[tuple[str, str]] = field(default_factory=list)  # (owner, turn id)


async def run(backend: MemoryBackend, ops: list[tuple[str, int, str]]) -> None:
    suffix = f"-{next(_examples)}"
    users = [name + suffix for name in NAMES]
    model = Model(live={u: {} for u in users})
    for op, index, arg in ops:
        user = users[index]
        mine = model.live[user]
        if op == "store":
            turn = Turn(user_text=f"{user} says {arg}", assistant_text="ok")
            await backend.store(user, turn)
            mine[turn.id] = turn.content()
            model.stored.append((user, turn.id))
        elif op == "search":
            for memory in await backend.search(user, arg, limit=10):
                assert memory.text in mine.values(), f"{user} got a memory that is not theirs"
        elif op == "list":
            listed = await backend.list(user)
            assert sorted(m.text for m in listed) == sorted(mine.values())
        elif op == "forget" and model.stored:
            owner, turn_id = model.stored[int(arg) % len(model.stored)]
            expected = owner == user and turn_id in mine
            removed = await backend.forget(user, turn_id)
            assert removed == expected, f"{user} forgetting {owner}'s memory: {removed}"
            if removed:
                del mine[turn_id]
        elif op == "forget_all":
            assert await backend.forget_all(user) == len(mine)
            mine.clear()
    for user in users:  # every other id's memories are intact
        assert sorted(m.text for m in await backend.list(user)) == sorted(model.live[user].values())


PROPERTY = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@PROPERTY
@given(ops=operations)
async def test_local_backend_keeps_ids_apart(
    local_backend: LocalBackend, ops: list[tuple[str, int, str]]
) -> None:
    await run(local_backend, ops)


@PROPERTY
@given(ops=operations)
async def test_supermemory_api_backend_keeps_ids_apart(
    api_backend: SupermemoryApiBackend, ops: list[tuple[str, int, str]]
) -> None:
    await run(api_backend, ops)
