"""The compiled rules and the decision (router/rules.py): table-driven, the shipped rules
against real clients, and the identity sources (custom header policy, API keys,
precedence) through the proxy."""

from __future__ import annotations

import logging
import textwrap
from pathlib import Path

import httpx
import pytest

from router.api_keys import digest
from router.config_source import packaged_config_path
from router.exceptions import InvalidCustomHeader
from router.rules import RoutingRules, decide, load_rules, parse_rules
from tests.conftest import RouterFactory
from tests.doubles.fake_litellm import FakeUpstream
from tests.support.configs import rules_yaml, write_rules

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}

RULES = parse_rules(
    textwrap.dedent(
        """
        model_list: [{model_name: x}]   # LiteLLM's keys are ignored
        general_settings: {master_key: os.environ/LITELLM_MASTER_KEY}
        user_id_mappings:
          custom_header: "X-Memory-User-Id"
          header_patterns:
            - header: "User-Agent"
              pattern: "OpenAIClientImpl/Java"
              user_id: "pycharm-ai-chat"
            - header: "user-agent"
              pattern: "MyApp/\\\\d+\\\\.\\\\d+"
              user_id: "myapp-client"
            - header: "x-client-id"
              pattern: "frontend-.*"
              user_id: "web-frontend"
            - header: "user-agent"
              pattern: "java"
              user_id: "any-java"
          default_user_id: "default-dev"
        """
    )
)


@pytest.mark.parametrize(
    ("headers", "user_id", "source", "rule_index"),
    [
        ({"user-agent": "OpenAIClientImpl/Java unknown"}, "pycharm-ai-chat", "pattern", 0),
        # first match in file order wins, even when a later rule matches too
        ({"user-agent": "OpenAIClientImpl/Java 1.2"}, "pycharm-ai-chat", "pattern", 0),
        # case-insensitive search anywhere in the value
        ({"user-agent": "prefix openaiclientimpl/JAVA"}, "pycharm-ai-chat", "pattern", 0),
        ({"user-agent": "MyApp/2.10"}, "myapp-client", "pattern", 1),
        ({"user-agent": "MyApp/2x10"}, "default-dev", "default", None),
        ({"x-client-id": "frontend-web"}, "web-frontend", "pattern", 2),
        ({"user-agent": "okhttp java"}, "any-java", "pattern", 3),
        ({"user-agent": "curl/7.68.0"}, "default-dev", "default", None),
        ({}, "default-dev", "default", None),
        # the custom header wins over every pattern
        (
            {"x-memory-user-id": "project-alpha", "user-agent": "OpenAIClientImpl/Java unknown"},
            "project-alpha",
            "custom_header",
            None,
        ),
        ({"x-memory-user-id": "a:b_c-D9"}, "a:b_c-D9", "custom_header", None),
        ({"x-memory-user-id": "x" * 100}, "x" * 100, "custom_header", None),
    ],
)
def test_decision(
    headers: dict[str, str], user_id: str, source: str, rule_index: int | None
) -> None:
    decision = decide(RULES, headers)
    assert decision.user_id == user_id
    assert decision.source == source
    if rule_index is None:
        assert decision.pattern is None
    else:
        assert decision.pattern is not None and decision.pattern.index == rule_index


@pytest.mark.parametrize(
    "value",
    ["", "has space", "x" * 101, "semi;colon", "slash/", "ünïcode", "new\nline", "a,b"],
)
def test_invalid_custom_header_is_refused_not_defaulted(value: str) -> None:
    with pytest.raises(InvalidCustomHeader) as caught:
        decide(RULES, {"x-memory-user-id": value, "user-agent": "OpenAIClientImpl/Java"})
    assert caught.value.header == "x-memory-user-id"
    assert "A-Z a-z 0-9 _ : -" in caught.value.problem


def test_header_names_are_lowercased_from_config() -> None:
    assert RULES.custom_header == "x-memory-user-id"
    assert RULES.patterns[0].rule.header == "user-agent"
    assert RULES.header_names == ("x-memory-user-id", "user-agent", "x-client-id")


def test_defaults_for_custom_header() -> None:
    rules = parse_rules(rules_yaml("default_user_id: d\n"))
    assert rules.custom_header == "x-memory-user-id"
    assert rules.patterns == ()
    assert decide(rules, {"x-memory-user-id": "me"}).user_id == "me"


# Real User-Agent strings, as the clients send them today.
SHIPPED = load_rules(packaged_config_path())


@pytest.mark.parametrize(
    ("user_agent", "user_id"),
    [
        ("OpenAIClientImpl/Java unknown", "pycharm-ai-chat"),
        ("OpenAIClientAsyncImpl/Java 2.8.1", "pycharm-ai-chat"),
        ("claude-cli/2.0.14 (external, cli)", "claude-code-cli"),
        ("claude-cli/1.0.98 (external, claude-vscode)", "claude-code-cli"),
        ("claude-cli/2.0.1 (external, sdk-py, agent-sdk/0.1.0)", "claude-code-cli"),
        ("Anthropic/Python 0.69.0", "anthropic-sdk"),
        ("AsyncAnthropic/Python 0.69.0", "anthropic-sdk"),
        ("OpenAI/Python 1.109.1", "default-dev"),
        ("AsyncOpenAI/Python 1.109.1", "default-dev"),
        ("OpenAI/JS 5.23.0", "default-dev"),
        ("curl/7.68.0", "default-dev"),
        ("litellm/1.108.7", "default-dev"),
    ],
)
def test_shipped_rules_match_real_clients(user_agent: str, user_id: str) -> None:
    assert decide(SHIPPED, {"user-agent": user_agent}).user_id == user_id


def test_shipped_rule_ids_and_no_seed_patterns_that_match_nothing() -> None:
    ids = {p.rule.user_id for p in SHIPPED.patterns}
    assert ids == {
        "pycharm-ai-chat",
        "anthropic-sdk",
        "claude-code-cli",
        "codex-cli",
        "gemini-cli",
        "opencode",
    }
    assert SHIPPED.default_user_id == "default-dev"
    patterns = {p.rule.pattern for p in SHIPPED.patterns}
    assert "Claude Code" not in patterns
    assert "anthropic-sdk-python" not in patterns


def test_custom_header_can_be_turned_off(
    start_router: RouterFactory, upstream: FakeUpstream, tmp_path: Path
) -> None:
    cfg = write_rules(
        tmp_path / "rules.yaml",
        """
        custom_header_policy: {enabled: false}
        header_patterns:
          - {header: user-agent, pattern: "^OpenAIClientImpl/Java", user_id: pycharm-ai-chat}
        default_user_id: default-dev
        """,
    )
    _, url = start_router(config=cfg)
    httpx.post(
        f"{url}/v1/chat/completions",
        json=CHAT,
        headers={"x-memory-user-id": "someone-else", "User-Agent": "OpenAIClientImpl/Java x"},
    )
    got = upstream.last()
    assert got.header("x-sm-user-id") == "pycharm-ai-chat"
    assert got.header("x-memory-user-id") is None


def test_custom_header_allow_list_and_pattern(
    start_router: RouterFactory, upstream: FakeUpstream, tmp_path: Path
) -> None:
    cfg = write_rules(
        tmp_path / "rules.yaml",
        """
        custom_header_policy:
          allowed_ids: [mobile-app]
          allowed_pattern: "proj-[a-z]+"
        default_user_id: default-dev
        """,
    )
    _, url = start_router(config=cfg)
    for allowed in ("mobile-app", "proj-alpha"):
        r = httpx.post(
            f"{url}/v1/chat/completions", json=CHAT, headers={"x-memory-user-id": allowed}
        )
        assert r.status_code == 200
        assert upstream.last().header("x-sm-user-id") == allowed
    count = len(upstream.requests)
    for refused in ("desktop-app", "proj-alpha2", "xproj-alpha"):
        r = httpx.post(
            f"{url}/v1/chat/completions", json=CHAT, headers={"x-memory-user-id": refused}
        )
        assert r.status_code == 403
        assert r.json()["error"]["code"] == "user_id_not_allowed"
        r = httpx.post(f"{url}/v1/messages", json=CHAT, headers={"x-memory-user-id": refused})
        assert r.status_code == 403 and r.json()["error"]["type"] == "permission_error"
    assert len(upstream.requests) == count


def test_custom_header_requires_an_api_key(
    start_router: RouterFactory,
    upstream: FakeUpstream,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TEAM_KEY", "sk-team-secret")
    cfg = write_rules(
        tmp_path / "rules.yaml",
        f"""
        custom_header_policy:
          api_keys: ["env:TEAM_KEY", "sha256:{digest("sk-other")}"]
        default_user_id: default-dev
        """,
    )
    _, url = start_router(config=cfg)
    for headers in (
        {"Authorization": "Bearer sk-team-secret"},
        {"x-api-key": "sk-other"},
        {"api-key": "sk-team-secret"},
    ):
        r = httpx.post(
            f"{url}/v1/chat/completions", json=CHAT, headers={**headers, "x-memory-user-id": "team"}
        )
        assert r.status_code == 200, headers
        assert upstream.last().header("x-sm-user-id") == "team"
    for headers in ({}, {"Authorization": "Bearer sk-wrong"}):
        r = httpx.post(
            f"{url}/v1/chat/completions", json=CHAT, headers={**headers, "x-memory-user-id": "team"}
        )
        assert r.status_code == 403
        assert "authorized API key" in r.json()["error"]["message"]
    # without the custom header, no key is needed
    assert httpx.post(f"{url}/v1/chat/completions", json=CHAT).status_code == 200


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
