"""The ``local`` backend: one SQLite file, ranked by FTS5's BM25, no model and no network.

Every statement runs on one dedicated worker thread that owns the connection, so the
event loop never blocks on disk. Each query binds the user id as a parameter and filters
rows by it; the search text reaches FTS5 only as quoted terms (``fts_query``), so no
query syntax a client types can widen the match or break the statement.
"""

from __future__ import annotations

import asyncio
import functools
import json
import re
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from router.memory.backend import (
    Memories,
    Memory,
    MemoryBackendError,
    TransientMemoryError,
    Turn,
    check_user_id,
)

T = TypeVar("T")

SCHEMA_VERSION = 1
MAX_QUERY_TERMS = 64
MAX_LIMIT = 100

_SCHEMA = """
CREATE TABLE IF NOT EXISTS memories (
    seq INTEGER PRIMARY KEY,
    user_id TEXT NOT NULL,
    id TEXT NOT NULL,
    conversation_id TEXT,
    content TEXT NOT NULL,
    metadata TEXT NOT NULL,
    created_at TEXT NOT NULL,
    UNIQUE (user_id, id)
);
CREATE INDEX IF NOT EXISTS memories_by_user ON memories (user_id, seq);
CREATE VIRTUAL TABLE IF NOT EXISTS memories_fts USING fts5(
    content, content='memories', content_rowid='seq', tokenize='unicode61 remove_diacritics 2'
);
CREATE TRIGGER IF NOT EXISTS memories_added AFTER INSERT ON memories BEGIN
    INSERT INTO memories_fts (rowid, content) VALUES (new.seq, new.content);
END;
CREATE TRIGGER IF NOT EXISTS memories_removed AFTER DELETE ON memories BEGIN
    INSERT INTO memories_fts (memories_fts, rowid, content) VALUES ('delete', old.seq, old.content);
END;
"""

_SEARCH = """
SELECT m.id, m.content, m.created_at, m.conversation_id, bm25(memories_fts) AS rank
FROM memories_fts JOIN memories AS m ON m.seq = memories_fts.rowid
WHERE memories_fts MATCH ? AND m.user_id = ?
ORDER BY rank
LIMIT ?
"""

_TERM = re.compile(r"\w+")


def fts_query(text: str, max_terms: int = MAX_QUERY_TERMS) -> str | None:
    """An FTS5 query matching any word of ``text``; None when it has no words.

    Each word becomes a double-quoted string, which FTS5 reads literally: operators
    (``AND``, ``NEAR``, ``*``, ``^``), column filters (``content:``) and stray quotes in
    the user's text are just words. Words are lower-cased, de-duplicated and capped.
    """
    terms: list[str] = []
    seen: set[str] = set()
    for match in _TERM.finditer(text):
        term = match.group().lower()
        if (len(term) < 2 and not term.isdigit()) or term in seen:
            continue
        seen.add(term)
        terms.append(f'"{term}"')
        if len(terms) >= max_terms:
            break
    return " OR ".join(terms) if terms else None


def _connect(path: str, busy_timeout_ms: int) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=True)
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.executescript(_SCHEMA)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    except BaseException:
        conn.close()
        raise
    return conn


def _search(conn: sqlite3.Connection, user_id: str, match: str, limit: int) -> Memories:
    rows = conn.execute(_SEARCH, (match, user_id, limit)).fetchall()
    return [
        Memory(id=r[0], text=r[1], created_at=r[2], conversation_id=r[3], score=-float(r[4]))
        for r in rows
    ]


def _store(conn: sqlite3.Connection, user_id: str, turn: Turn, created_at: str) -> str:
    conn.execute(
        "INSERT OR IGNORE INTO memories"
        " (user_id, id, conversation_id, content, metadata, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (
            user_id,
            turn.id,
            turn.conversation_id,
            turn.content(),
            json.dumps(dict(turn.metadata), ensure_ascii=False, sort_keys=True),
            created_at,
        ),
    )
    return turn.id


def _list(conn: sqlite3.Connection, user_id: str, limit: int) -> Memories:
    rows = conn.execute(
        "SELECT id, content, created_at, conversation_id FROM memories"
        " WHERE user_id = ? ORDER BY seq DESC LIMIT ?",
        (user_id, limit),
    ).fetchall()
    return [Memory(id=r[0], text=r[1], created_at=r[2], conversation_id=r[3]) for r in rows]


def _forget(conn: sqlite3.Connection, user_id: str, memory_id: str) -> bool:
    cursor = conn.execute("DELETE FROM memories WHERE user_id = ? AND id = ?", (user_id, memory_id))
    return cursor.rowcount > 0


def _forget_all(conn: sqlite3.Connection, user_id: str) -> int:
    return conn.execute("DELETE FROM memories WHERE user_id = ?", (user_id,)).rowcount


def _clamp(limit: int) -> int:
    return max(1, min(int(limit), MAX_LIMIT))


class LocalBackend:
    """Memories in one SQLite file; open it with ``await LocalBackend.open(path)``."""

    def __init__(self, executor: ThreadPoolExecutor, conn: sqlite3.Connection) -> None:
        self._executor = executor
        self._conn = conn
        self._closed = False

    @property
    def name(self) -> str:
        return "local"

    @classmethod
    async def open(cls, path: Path | str, *, busy_timeout: float = 2.0) -> LocalBackend:
        """Create or open the store at ``path`` (its directory must exist).

        ``busy_timeout`` is how long a statement waits for another process's write lock
        (the CLI, say) before failing with a ``TransientMemoryError``."""
        # ``connect`` blocks until the worker thread has opened the file: off the loop.
        return await asyncio.to_thread(cls.connect, path, busy_timeout=busy_timeout)

    @classmethod
    def connect(cls, path: Path | str, *, busy_timeout: float = 2.0) -> LocalBackend:
        """``open`` for start-up code outside the event loop (``create_app``): the
        connection is still made on, and owned by, the worker thread."""
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="memory-sqlite")
        try:
            conn = executor.submit(_connect, str(path), int(busy_timeout * 1000)).result()
        except sqlite3.Error as exc:
            executor.shutdown(wait=False)
            raise MemoryBackendError(f"cannot open the memory store: {exc}") from None
        except BaseException:
            executor.shutdown(wait=False)
            raise
        return cls(executor, conn)

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        if self._closed:
            raise MemoryBackendError("the memory store is closed")
        loop = asyncio.get_running_loop()
        call = functools.partial(fn, self._conn, *args)
        try:
            return await loop.run_in_executor(self._executor, call)
        except sqlite3.OperationalError as exc:
            message = str(exc)
            if "locked" in message or "busy" in message:
                raise TransientMemoryError(f"memory store busy: {message}") from None
            raise MemoryBackendError(f"memory store error: {message}") from None
        except sqlite3.Error as exc:
            raise MemoryBackendError(f"memory store error: {exc}") from None

    async def search(self, user_id: str, query: str, limit: int) -> Memories:
        check_user_id(user_id)
        match = fts_query(query)
        if match is None:
            return []
        return await self._run(_search, user_id, match, _clamp(limit))

    async def store(self, user_id: str, turn: Turn) -> str:
        check_user_id(user_id)
        created_at = datetime.now(UTC).isoformat(timespec="milliseconds")
        return await self._run(_store, user_id, turn, created_at)

    async def list(self, user_id: str, limit: int = MAX_LIMIT) -> Memories:
        check_user_id(user_id)
        return await self._run(_list, user_id, _clamp(limit))

    async def forget(self, user_id: str, memory_id: str) -> bool:
        check_user_id(user_id)
        return await self._run(_forget, user_id, memory_id)

    async def forget_all(self, user_id: str) -> int:
        check_user_id(user_id)
        return await self._run(_forget_all, user_id)

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, self._conn.close)
        finally:
            self._executor.shutdown(wait=False)
