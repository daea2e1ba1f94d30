"""The embeddable Python API (router/memory_router.py): deciding and injecting on its own,
and a subclass's ``detect_user_id`` (plain or a coroutine) driving the proxy."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from pathlib import Path

import httpx
import pytest

from router import MemoryRouter
from router.config_source import packaged_config_path
from router.exceptions import DetectUserIdError
from router.memory_router import default_config_path
from tests.conftest import RouterFactory
from tests.doubles.fake_litellm import FakeUpstream
from tests.support.configs import write_rules

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def test_without_a_path_the_rules_are_found_as_the_cli_finds_them(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.chdir(tmp_path)
    assert default_config_path() == packaged_config_path()
    assert MemoryRouter().rules.default_user_id == "default-dev"
    # In a checkout: its own router/config.yaml.
    (tmp_path / "router").mkdir()
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "memory-router"\n')
    rules = write_rules(tmp_path / "router" / "config.yaml", "default_user_id: in-checkout")
    router = MemoryRouter()
    assert (router.rules.default_user_id, router.rules.source) == ("in-checkout", str(rules))


def test_seed_examples() -> None:
    router = MemoryRouter(packaged_config_path())

    info = router.get_routing_info({"User-Agent": "OpenAIClientImpl/Java unknown"})
    assert info["user_id"] == "pycharm-ai-chat"
    assert info["matched_pattern"]["header"] == "user-agent"
    assert info["matched_pattern"]["user_id"] == "pycharm-ai-chat"
    assert info["custom_header_present"] is False and info["is_default"] is False

    info = router.get_routing_info({"X-MEMORY-USER-ID": "project-alpha"})
    assert info["user_id"] == "project-alpha"
    assert info["custom_header_present"] is True and info["matched_pattern"] is None

    info = router.get_routing_info({"user-agent": "curl/7.68.0"})
    assert info["user_id"] == "default-dev" and info["is_default"] is True


def test_detect_and_inject() -> None:
    router = MemoryRouter()
    headers = {"User-Agent": "claude-cli/2.0.14 (external, cli)", "x-sm-user-id": "spoof"}
    assert router.detect_user_id(headers) == "claude-code-cli"
    out = router.inject_memory_headers(headers, "sm_k")
    assert out["x-sm-user-id"] == "claude-code-cli"
    assert out["x-supermemory-api-key"] == "sm_k"
    assert headers["x-sm-user-id"] == "spoof"
    assert "x-supermemory-api-key" not in router.inject_memory_headers(headers, None)


class DatabaseRouter(MemoryRouter):
    """The seed's database example: look the id up from the API key."""

    def __init__(self, table: dict[str, str], config: Path | None = None) -> None:
        super().__init__(config)
        self.table = table

    def detect_user_id(self, headers: Mapping[str, str]) -> str:
        auth = {k.lower(): v for k, v in headers.items()}.get("authorization", "")
        user_id = self.table.get(auth.removeprefix("Bearer "))
        return user_id or super().detect_user_id(headers)


def test_subclass_override_drives_decide() -> None:
    router = DatabaseRouter({"sk-alice": "alice"})
    decision = router.decide({"Authorization": "Bearer sk-alice"})
    assert (decision.user_id, decision.source) == ("alice", "custom_code")
    # falling back to the rules keeps their source and rule
    decision = router.decide({"User-Agent": "OpenAIClientImpl/Java unknown"})
    assert (decision.user_id, decision.source) == ("pycharm-ai-chat", "pattern")
    assert router.needs_all_headers


def test_subclass_returning_bad_id_is_an_error() -> None:
    router = DatabaseRouter({"sk-bad": "not valid!"})
    with pytest.raises(DetectUserIdError, match="invalid user id"):
        router.decide({"authorization": "Bearer sk-bad"})
    with pytest.raises(DetectUserIdError):  # and it is never injected
        router.inject_memory_headers({"authorization": "Bearer sk-bad"}, None)


class AsyncDatabaseRouter(MemoryRouter):
    """The same lookup as a coroutine function, as one on an async driver would be."""

    def __init__(self, table: dict[str, str]) -> None:
        super().__init__()
        self.table = table
        self.seen: list[Mapping[str, str]] = []

    async def detect_user_id(self, headers: Mapping[str, str]) -> str:
        self.seen.append(headers)
        user_id = self.table.get(headers.get("authorization", "").removeprefix("Bearer "))
        return user_id or self.rules_user_id(headers)


@pytest.mark.parametrize(
    ("headers", "user_id", "source"),
    [
        ({"Authorization": "Bearer sk-alice"}, "alice", "custom_code"),
        ({"User-Agent": "OpenAIClientImpl/Java unknown"}, "pycharm-ai-chat", "pattern"),
        ({"authorization": "Bearer sk-bad"}, None, None),
    ],
)
async def test_adecide_awaits_an_async_override(
    headers: dict[str, str], user_id: str | None, source: str | None
) -> None:
    router = AsyncDatabaseRouter({"sk-alice": "alice", "sk-bad": "not valid!"})
    if user_id is None:
        with pytest.raises(DetectUserIdError):
            await router.adecide(headers)
    else:
        decision = await router.adecide(headers)
        assert (decision.user_id, decision.source) == (user_id, source)
    assert router.needs_all_headers
    assert all(k == k.lower() for k in router.seen[0])  # the override sees lower-case names


async def test_adecide_takes_sync_overrides_and_plain_rules_too() -> None:
    decision = await DatabaseRouter({"sk-alice": "alice"}).adecide(
        {"authorization": "Bearer sk-alice"}
    )
    assert (decision.user_id, decision.source) == ("alice", "custom_code")
    plain = MemoryRouter()
    assert not plain.needs_all_headers
    decision = await plain.adecide({"User-Agent": "claude-cli/2.0.14 (external, cli)"})
    assert decision == plain.decide({"user-agent": "claude-cli/2.0.14 (external, cli)"})


async def test_routing_info_through_an_async_override() -> None:
    router = AsyncDatabaseRouter({"sk-alice": "alice"})
    info = await router.aget_routing_info({"Authorization": "Bearer sk-alice"})
    assert (info["user_id"], info["source"]) == ("alice", "custom_code")


def test_an_async_override_cannot_be_decided_synchronously() -> None:
    router = AsyncDatabaseRouter({})
    for call in (router.decide, router.get_routing_info):
        with pytest.raises(TypeError, match="coroutine function: use adecide"):
            call({"authorization": "Bearer sk-alice"})
    assert router.seen == []  # refused before any coroutine was made


class SqliteKeyRouter(MemoryRouter):
    """The README's example: look the caller's id up in a database by API key."""

    def __init__(self, db_path: str, config: Path | None = None) -> None:
        super().__init__(config)
        self.db_path = db_path

    def lookup(self, api_key: str) -> str | None:
        with closing(sqlite3.connect(self.db_path)) as db:
            row = db.execute("SELECT user_id FROM keys WHERE api_key = ?", (api_key,)).fetchone()
        return row[0] if row else None

    async def detect_user_id(self, headers: Mapping[str, str]) -> str:
        api_key = headers.get("authorization", "").removeprefix("Bearer ")
        # The query runs in a worker thread: the event loop keeps serving other requests.
        user_id = await asyncio.to_thread(self.lookup, api_key)
        return user_id or self.rules_user_id(headers)


def test_subclass_database_lookup_drives_the_proxy(
    start_router: RouterFactory, upstream: FakeUpstream, client: httpx.Client, tmp_path: Path
) -> None:
    db_path = str(tmp_path / "keys.db")
    with closing(sqlite3.connect(db_path)) as db, db:
        db.execute("CREATE TABLE keys (api_key TEXT PRIMARY KEY, user_id TEXT)")
        db.execute("INSERT INTO keys VALUES ('sk-carol', 'carol-db')")
    app, url = start_router(router=SqliteKeyRouter(db_path))
    client.post(
        f"{url}/v1/chat/completions", json=CHAT, headers={"Authorization": "Bearer sk-carol"}
    )
    client.post(
        f"{url}/v1/chat/completions",
        json=CHAT,
        headers={
            "Authorization": "Bearer sk-nobody",
            "User-Agent": "OpenAIClientImpl/Java unknown",
        },
    )
    assert [req.header("x-sm-user-id") for req in upstream.requests] == [
        "carol-db",
        "pycharm-ai-chat",
    ]
    assert (
        app.metrics.registry.get_sample_value(
            "memory_router_routing_decisions_total",
            {"user_id": "carol-db", "source": "custom_code"},
        )
        == 1
    )
    info = client.get(f"{url}/memory-routing/info", headers={"Authorization": "Bearer sk-carol"})
    assert (info.json()["user_id"], info.json()["source"]) == ("carol-db", "custom_code")


class HeaderRouter(MemoryRouter):
    """A plain (synchronous) override, as before ``async def`` was possible."""

    def detect_user_id(self, headers: Mapping[str, str]) -> str:
        return headers.get("x-team", "") or self.rules_user_id(headers)


def test_a_synchronous_override_drives_the_proxy(
    start_router: RouterFactory, upstream: FakeUpstream, client: httpx.Client
) -> None:
    _, url = start_router(router=HeaderRouter())
    for headers in ({"x-team": "blue"}, {"x-team": "not valid"}, {}):
        client.post(f"{url}/v1/chat/completions", json=CHAT, headers=headers)
    assert [req.header("x-sm-user-id") for req in upstream.requests] == ["blue", "default-dev"]
    r = client.post(f"{url}/v1/chat/completions", json=CHAT, headers={"x-team": "not valid"})
    assert r.status_code == 500 and r.json()["error"]["code"] == "router_error"


class SlowLookupRouter(MemoryRouter):
    """A lookup that blocks its worker thread until the test releases it."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.release = threading.Event()

    def lookup(self) -> str:
        self.entered.set()
        assert self.release.wait(10), "the test never released the lookup"
        return "slow-db"

    async def detect_user_id(self, headers: Mapping[str, str]) -> str:
        if headers.get("authorization") == "Bearer sk-slow":
            return await asyncio.to_thread(self.lookup)
        return self.rules_user_id(headers)


def test_other_requests_flow_while_a_lookup_is_slow(
    start_router: RouterFactory, upstream: FakeUpstream
) -> None:
    router = SlowLookupRouter()
    _, url = start_router(router=router)
    with ThreadPoolExecutor(1) as pool, httpx.Client(timeout=5) as c:
        slow = pool.submit(
            httpx.post,
            f"{url}/v1/chat/completions",
            json=CHAT,
            headers={"Authorization": "Bearer sk-slow"},
            timeout=15,
        )
        assert router.entered.wait(5), "the slow lookup never started"
        for i in range(5):  # each would time out if the loop were blocked
            r = c.post(
                f"{url}/v1/chat/completions", json=CHAT, headers={"x-memory-user-id": f"fast-{i}"}
            )
            assert r.status_code == 200
        assert c.get(f"{url}/health").status_code == 200
        assert not slow.done()  # still waiting on its lookup
        router.release.set()
        assert slow.result(10).status_code == 200
    ids = [req.header("x-sm-user-id") for req in upstream.requests]
    assert ids == [f"fast-{i}" for i in range(5)] + ["slow-db"]
