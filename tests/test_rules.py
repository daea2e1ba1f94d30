"""Table-driven tests of the routing config and the decision."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from router.exceptions import ConfigError, InvalidCustomHeader
from router.memory_router import default_config_path
from router.rules import decide, load_rules, parse_rules

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


def _config(body: str) -> str:
    return "user_id_mappings:\n" + textwrap.indent(textwrap.dedent(body), "  ")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            _config(
                """
                header_patterns:
                  - {header: user-agent, pattern: ok, user_id: fine}
                  - {header: user-agent, pattern: "x(", user_id: broken}
                default_user_id: d
                """
            ),
            ["header_patterns[1] (rule 2)", "pattern", "invalid regular expression 'x('"],
        ),
        (
            _config(
                """
                header_patterns:
                  - {header: user-agent, pattern: ok}
                default_user_id: d
                """
            ),
            ["header_patterns[0] (rule 1)", "user_id", "required field is missing"],
        ),
        (
            _config(
                """
                header_patterns: []
                default_user_id: d
                patterns_typo: []
                """
            ),
            ["patterns_typo", "unknown key"],
        ),
        (
            _config(
                """
                header_patterns:
                  - {header: user-agent, pattern: ok, user_id: fine, priority: 1}
                default_user_id: d
                """
            ),
            ["rule 1", "priority", "unknown key"],
        ),
        (
            _config(
                """
                header_patterns:
                  - {header: user-agent, pattern: ok, user_id: "has space"}
                default_user_id: d
                """
            ),
            ["rule 1", "user_id", "invalid user id 'has space'"],
        ),
        (_config("header_patterns: []\ndefault_user_id: 'bad id'\n"), ["default_user_id"]),
        (_config("header_patterns: []\n"), ["default_user_id", "required field is missing"]),
        (
            _config("custom_header: 'bad header'\ndefault_user_id: d\n"),
            ["custom_header", "invalid header name"],
        ),
        (
            _config("custom_header_policy: {allowed_ids: [ok, 'b c']}\ndefault_user_id: d\n"),
            ["user_id_mappings.custom_header_policy.allowed_ids[1]: invalid user id 'b c'"],
        ),
        (
            _config("precedence: [api_key, cookies]\ndefault_user_id: d\n"),
            ["user_id_mappings.precedence[1]: Input should be 'custom_header'"],
        ),
        (
            _config("header_patterns: [5]\ndefault_user_id: d\n"),
            ["user_id_mappings.header_patterns[0] (rule 1): must be a mapping"],
        ),
        (
            _config("default_user_id: d\n") + "rate_limits: [1]\n",
            ["rate_limits: must be a mapping"],
        ),
        (
            _config("default_user_id: d\n") + "rate_limits: {per_user_id: {5: {}}}\n",
            ["rate_limits.per_user_id: key 5: Input should be a valid string"],
        ),
        ("model_list: []\n", ["no 'user_id_mappings' section"]),
        ("", ["no 'user_id_mappings' section"]),
        ("- user_id_mappings\n", ["the document must be a mapping"]),
        ("user_id_mappings: [1, 2]\n", ["must be a mapping"]),
        ("user_id_mappings: {a: [\n", ["not valid YAML"]),
    ],
)
def test_bad_config_names_file_rule_and_problem(
    tmp_path: Path, text: str, expected: list[str]
) -> None:
    path = tmp_path / "routing.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_rules(path)
    message = str(caught.value)
    assert message.startswith(str(path))
    for fragment in expected:
        assert fragment in message


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    path = tmp_path / "routing.yaml"
    path.write_text(
        _config("header_patterns: [{header: ua, pattern: '(', user_id: x}]\n")
        + "rate_limits: {default: {rpm: 5}}\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_rules(path)
    assert str(caught.value).split("; ") == [
        f"{path}: user_id_mappings.header_patterns[0] (rule 1): pattern: invalid regular "
        "expression '(': missing ), unterminated subpattern at position 0",
        "user_id_mappings: default_user_id: required field is missing",
        "rate_limits: default.rpm: unknown key",
    ]


def test_an_empty_rate_limits_section_limits_nothing() -> None:
    rules = parse_rules(_config("default_user_id: d\n") + "rate_limits:\n")
    assert rules.limits.for_user("d") is None


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config"):
        load_rules(tmp_path / "nope.yaml")


def test_defaults_for_custom_header() -> None:
    rules = parse_rules(_config("default_user_id: d\n"))
    assert rules.custom_header == "x-memory-user-id"
    assert rules.patterns == ()
    assert decide(rules, {"x-memory-user-id": "me"}).user_id == "me"


# Real User-Agent strings, as the clients send them today.
SHIPPED = load_rules(default_config_path())


@pytest.mark.parametrize(
    ("user_agent", "user_id"),
    [
        ("OpenAIClientImpl/Java unknown", "pycharm-ai-chat"),
        ("OpenAIClientAsyncImpl/Java 2.8.1", "pycharm-ai-chat"),
        ("claude-cli/2.0.14 (external, cli)", "claude-code-cli"),
        ("claude-cli/1.0.98 (external, claude-vscode)", "claude-code-cli"),
        ("claude-cli/2.0.1 (external, sdk-py, agent-sdk/0.1.0)", "claude-code-cli"),
        ("Anthropic/Python 0.69.0", "claude-code"),
        ("AsyncAnthropic/Python 0.69.0", "claude-code"),
        ("OpenAI/Python 1.109.1", "default-dev"),
        ("AsyncOpenAI/Python 1.109.1", "default-dev"),
        ("OpenAI/JS 5.23.0", "default-dev"),
        ("curl/7.68.0", "default-dev"),
        ("litellm/1.108.7", "default-dev"),
    ],
)
def test_shipped_rules_match_real_clients(user_agent: str, user_id: str) -> None:
    assert decide(SHIPPED, {"user-agent": user_agent}).user_id == user_id


def test_shipped_rules_keep_seed_ids_and_drop_seed_patterns_that_match_nothing() -> None:
    ids = {p.rule.user_id for p in SHIPPED.patterns}
    assert ids == {"pycharm-ai-chat", "claude-code", "claude-code-cli"}
    assert SHIPPED.default_user_id == "default-dev"
    patterns = {p.rule.pattern for p in SHIPPED.patterns}
    assert "Claude Code" not in patterns
    assert "anthropic-sdk-python" not in patterns
