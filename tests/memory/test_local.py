"""The local SQLite/FTS5 backend: query safety, ranking, threading and the file itself."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import pytest

from router.memory.backend import MemoryBackendError, TransientMemoryError, Turn
from router.memory.local import LocalBackend, fts_query


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("hello world", '"hello" OR "world"'),
        ("Hello HELLO hello", '"hello"'),
        ("a b c", None),
        ("", None),
        ("   \n\t", None),
        ("route 66 and a 7", '"route" OR "66" OR "and" OR "7"'),
        ('say "hi" NEAR(x y)', '"say" OR "hi" OR "near"'),
        ("content:secret", '"content" OR "secret"'),
        ("user_id:* OR 1=1", '"user_id" OR "or" OR "1"'),
        ("^start* -minus +plus", '"start" OR "minus" OR "plus"'),
        ('"unbalanced', '"unbalanced"'),
        ("Grüße aus Köln", '"grüße" OR "aus" OR "köln"'),
        ("日本語のテキスト", '"日本語のテキスト"'),
    ],
)
def test_fts_query(text: str, expected: str | None) -> None:
    assert fts_query(text) == expected


def test_fts_query_caps_the_terms() -> None:
    text = " ".join(f"word{i}" for i in range(500))
    query = fts_query(text, max_terms=10)
    assert query is not None
    assert query.count(" OR ") == 9


@pytest.mark.parametrize(
    "hostile",
    [
        '" OR "" = "',
        "NEAR(secret vault, 3)",
        "secret AND NOT vault",
        "content: vault",
        "* ",
        "vault*",
        "{content}: vault",
        "')); DROP TABLE memories; --",
        "\x00vault",
        '"' * 33,
    ],
)
async def test_fts_syntax_in_the_query_neither_fails_nor_leaks(
    local_backend: LocalBackend, hostile: str
) -> None:
    await local_backend.store("bob", Turn("the secret vault code is 1234", "ok"))
    await local_backend.store("alice", Turn("alice likes tea", "ok"))

    found = await local_backend.search("alice", hostile, limit=10)

    assert all("vault" not in m.text for m in found)
    assert len(await local_backend.list("bob")) == 1


async def test_bm25_ranks_the_closer_match_first(local_backend: LocalBackend) -> None:
    await local_backend.store("alice", Turn("I use vim for editing", "fine"))
    await local_backend.store("alice", Turn("my vim config uses lua plugins for vim", "fine"))
    await local_backend.store("alice", Turn("I like tea", "fine"))

    found = await local_backend.search("alice", "vim lua plugins", limit=5)

    assert [("lua" in m.text) for m in found] == [True, False]
    assert found[0].score is not None and found[1].score is not None
    assert found[0].score > found[1].score


async def test_queries_run_off_the_event_loop(local_backend: LocalBackend) -> None:
    """While the store's thread is busy, the loop keeps running other work."""
    gate = threading.Event()
    local_backend._executor.submit(gate.wait)  # occupy the single worker thread
    search = asyncio.create_task(local_backend.search("alice", "anything", limit=1))
    try:
        ticks = 0
        for _ in range(50):
            await asyncio.sleep(0)
            ticks += 1
        assert ticks == 50
        assert not search.done()
    finally:
        gate.set()
    assert await search == []


async def test_all_statements_share_one_worker_thread(local_backend: LocalBackend) -> None:
    names: set[str] = set()
    loop = asyncio.get_running_loop()
    for _ in range(5):
        name = await loop.run_in_executor(
            local_backend._executor, lambda: threading.current_thread().name
        )
        names.add(name)
    assert len(names) == 1
    assert names.pop().startswith("memory-sqlite")
    assert threading.current_thread().name != "memory-sqlite"


async def test_memories_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite3"
    first = await LocalBackend.open(path)
    await first.store("alice", Turn("persist me", "ok"))
    await first.aclose()

    second = await LocalBackend.open(path)
    try:
        found = await second.search("alice", "persist", limit=1)
    finally:
        await second.aclose()
    assert [m.text for m in found] == ["User: persist me\nAssistant: ok"]


async def test_rows_carry_their_owner(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite3"
    backend = await LocalBackend.open(path)
    await backend.store("alice", Turn("a", "b", metadata={"model": "m", "n": 2}))
    await backend.aclose()

    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT user_id, metadata FROM memories").fetchall()
    assert rows == [("alice", '{"model": "m", "n": 2}')]


async def test_a_locked_database_is_a_transient_error(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite3"
    backend = await LocalBackend.open(path, busy_timeout=0)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(TransientMemoryError):
            await backend.store("alice", Turn("blocked", "ok"))
    finally:
        other.execute("ROLLBACK")
        other.close()
        await backend.aclose()


async def test_a_closed_store_refuses_calls(tmp_path: Path) -> None:
    backend = await LocalBackend.open(tmp_path / "store.sqlite3")
    await backend.aclose()
    await backend.aclose()  # closing twice is harmless
    with pytest.raises(MemoryBackendError):
        await backend.search("alice", "something", limit=1)
    with pytest.raises(MemoryBackendError):
        await backend.store("alice", Turn("a", "b"))


async def test_an_unopenable_path_is_a_backend_error(tmp_path: Path) -> None:
    with pytest.raises(MemoryBackendError):
        await LocalBackend.open(tmp_path / "missing-dir" / "store.sqlite3")
