"""Identity from API keys, the precedence of identity sources, and the subclass hook."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from pathlib import Path

import httpx
import pytest

from router.api_keys import digest
from router.exceptions import ConfigError
from router.memory_router import MemoryRouter
from router.rules import RoutingRules, decide, load_rules, parse_rules
from tests.conftest import RouterFactory
from tests.doubles.fake_litellm import FakeUpstream
from tests.support.configs import rules_yaml, write_rules

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
ALICE_KEY = "sk-alice-0123456789"


def _rules(body: str, environ: dict[str, str] | None = None) -> RoutingRules:
    return parse_rules(rules_yaml(body), environ=environ or {})


KEYED = f"""
api_keys:
  - {{key: "sha256:{digest(ALICE_KEY)}", user_id: alice}}
  - {{key: "env:BOB_KEY", user_id: bob}}
header_patterns:
  - {{header: user-agent, pattern: "^OpenAIClientImpl/Java", user_id: pycharm-ai-chat}}
default_user_id: default-dev
"""


@pytest.mark.parametrize(
    ("headers", "user_id", "source"),
    [
        ({"authorization": f"Bearer {ALICE_KEY}"}, "alice", "api_key"),
        ({"authorization": f"bearer {ALICE_KEY}"}, "alice", "api_key"),
        ({"x-api-key": "sk-bob"}, "bob", "api_key"),  # Anthropic clients
        ({"api-key": ALICE_KEY}, "alice", "api_key"),  # Azure clients
        ({"authorization": "Bearer sk-unknown"}, "default-dev", "default"),
        ({"authorization": "Basic abc"}, "default-dev", "default"),
        # default precedence: custom header, then API key, then patterns
        (
            {"authorization": f"Bearer {ALICE_KEY}", "x-memory-user-id": "proj"},
            "proj",
            "custom_header",
        ),
        (
            {"authorization": f"Bearer {ALICE_KEY}", "user-agent": "OpenAIClientImpl/Java x"},
            "alice",
            "api_key",
        ),
    ],
)
def test_api_key_source(headers: dict[str, str], user_id: str, source: str) -> None:
    rules = _rules(KEYED, {"BOB_KEY": "sk-bob"})
    decision = decide(rules, headers)
    assert (decision.user_id, decision.source) == (user_id, source)


@pytest.mark.parametrize(
    ("precedence", "expected"),
    [
        (["custom_header", "api_key", "header_patterns"], "proj"),
        (["api_key", "custom_header", "header_patterns"], "alice"),
        (["header_patterns", "api_key", "custom_header"], "pycharm-ai-chat"),
        (["api_key"], "alice"),
        (["header_patterns"], "pycharm-ai-chat"),
        ([], "default-dev"),
    ],
)
def test_precedence_is_configurable(precedence: list[str], expected: str) -> None:
    rules = _rules(KEYED + f"precedence: {precedence}\n", {"BOB_KEY": "sk-bob"})
    headers = {
        "authorization": f"Bearer {ALICE_KEY}",
        "x-memory-user-id": "proj",
        "user-agent": "OpenAIClientImpl/Java unknown",
    }
    assert decide(rules, headers).user_id == expected


def test_key_config_errors(tmp_path: Path) -> None:
    bad = tmp_path / "rules.yaml"
    bad.write_text(
        "user_id_mappings:\n  api_keys:\n    - {key: sk-plaintext, user_id: a}\n"
        "  default_user_id: d\n"
    )
    with pytest.raises(ConfigError, match=r"api_keys\[0\] \(key 1\).*never in plain text"):
        load_rules(bad)
    bad.write_text(
        "user_id_mappings:\n  api_keys:\n    - {key: 'env:NOT_SET_ANYWHERE', user_id: a}\n"
        "  default_user_id: d\n"
    )
    with pytest.raises(
        ConfigError, match=r"api_keys\[0\] \(key 1\): key: .*NOT_SET_ANYWHERE is not"
    ):
        load_rules(bad, environ={})
    bad.write_text(
        "user_id_mappings:\n  custom_header_policy: {api_keys: ['env:NOT_SET_EITHER']}\n"
        "  default_user_id: d\n"
    )
    with pytest.raises(
        ConfigError, match=r"custom_header_policy.api_keys\[0\] \(key 1\): .*NOT_SET_EITHER"
    ):
        load_rules(bad, environ={})
    bad.write_text("user_id_mappings:\n  precedence: [api_key, api_key]\n  default_user_id: d\n")
    with pytest.raises(ConfigError, match=r"precedence.*twice"):
        load_rules(bad)
    bad.write_text("user_id_mappings:\n  precedence: [cookies]\n  default_user_id: d\n")
    with pytest.raises(ConfigError, match="precedence"):
        load_rules(bad)


def test_api_key_identity_through_the_proxy(
    start_router: RouterFactory,
    upstream: FakeUpstream,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    client: httpx.Client,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("BOB_KEY", "sk-bob")
    cfg = write_rules(tmp_path / "rules.yaml", KEYED)
    app, url = start_router(config=cfg)
    with caplog.at_level(logging.INFO, logger="memory_router"):
        r = client.post(
            f"{url}/v1/chat/completions",
            json=CHAT,
            headers={"Authorization": f"Bearer {ALICE_KEY}"},
        )
        client.post(f"{url}/v1/messages", json=CHAT, headers={"x-api-key": "sk-bob"})
    assert r.status_code == 200
    assert [req.header("x-sm-user-id") for req in upstream.requests] == ["alice", "bob"]
    # the key still reaches LiteLLM, which authenticates with it
    assert upstream.requests[0].header("authorization") == f"Bearer {ALICE_KEY}"
    info = client.get(
        f"{url}/memory-routing/info", headers={"Authorization": f"Bearer {ALICE_KEY}"}
    ).json()
    assert (info["user_id"], info["source"]) == ("alice", "api_key")
    assert any("user_id=alice source=api_key" in rec.getMessage() for rec in caplog.records)
    assert ALICE_KEY not in caplog.text
    assert (
        app.metrics.registry.get_sample_value(
            "memory_router_routing_decisions_total", {"user_id": "alice", "source": "api_key"}
        )
        == 1
    )


class DatabaseRouter(MemoryRouter):
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
    app, url = start_router(router=DatabaseRouter(db_path))
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
