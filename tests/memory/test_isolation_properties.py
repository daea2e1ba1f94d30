"""Property: no sequence of stores, searches, lists and forgets from several ids ever gives
one id another id's memory, or lets one id remove another's. Checked against the local
store and against the supermemory-api backend talking to the v5 double.

Each example runs with ids of its own (a fresh suffix), in a backend that still holds
every earlier example's memories, so a leak of anything stored before also shows.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from router.memory.backend import MemoryBackend, Turn
from router.memory.local import LocalBackend
from router.memory.supermemory_api import SupermemoryApiBackend

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
