"""The routing config file (router/config.py): loading it, and errors that name the file, the
place in the document and the problem, all at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from router.exceptions import ConfigError
from router.rules import load_rules
from tests.support.configs import rules_yaml


def refusal(tmp_path: Path, text: str) -> tuple[Path, str]:
    """Load ``text`` as a rules file, which must be refused: its path and the message."""
    path = tmp_path / "routing.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_rules(path)
    return path, str(caught.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            rules_yaml(
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
            rules_yaml(
                """
                header_patterns:
                  - {header: user-agent, pattern: ok}
                default_user_id: d
                """
            ),
            ["header_patterns[0] (rule 1)", "user_id", "required field is missing"],
        ),
        (
            rules_yaml(
                """
                header_patterns: []
                default_user_id: d
                patterns_typo: []
                """
            ),
            ["patterns_typo", "unknown key"],
        ),
        (
            rules_yaml(
                """
                header_patterns:
                  - {header: user-agent, pattern: ok, user_id: fine, priority: 1}
                default_user_id: d
                """
            ),
            ["rule 1", "priority", "unknown key"],
        ),
        (
            rules_yaml(
                """
                header_patterns:
                  - {header: user-agent, pattern: ok, user_id: "has space"}
                default_user_id: d
                """
            ),
            ["rule 1", "user_id", "invalid user id 'has space'"],
        ),
        (rules_yaml("header_patterns: []\ndefault_user_id: 'bad id'\n"), ["default_user_id"]),
        (rules_yaml("header_patterns: []\n"), ["default_user_id", "required field is missing"]),
        (
            rules_yaml("custom_header: 'bad header'\ndefault_user_id: d\n"),
            ["custom_header", "invalid header name"],
        ),
        (
            rules_yaml("custom_header_policy: {allowed_ids: [ok, 'b c']}\ndefault_user_id: d\n"),
            ["user_id_mappings.custom_header_policy.allowed_ids[1]: invalid user id 'b c'"],
        ),
        (
            rules_yaml("precedence: [api_key, cookies]\ndefault_user_id: d\n"),
            ["user_id_mappings.precedence[1]: Input should be 'custom_header'"],
        ),
        (
            rules_yaml("header_patterns: [5]\ndefault_user_id: d\n"),
            ["user_id_mappings.header_patterns[0] (rule 1): must be a mapping"],
        ),
        (
            rules_yaml("default_user_id: d\n") + "rate_limits: [1]\n",
            ["rate_limits: must be a mapping"],
        ),
        (
            rules_yaml("default_user_id: d\n") + "rate_limits: {per_user_id: {5: {}}}\n",
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
    path, message = refusal(tmp_path, text)
    assert message.startswith(str(path))
    for fragment in expected:
        assert fragment in message


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    path = tmp_path / "routing.yaml"
    path.write_text(
        rules_yaml("header_patterns: [{header: ua, pattern: '(', user_id: x}]\n")
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


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "user_id_mappings:\n  default_user_id: x\n  bad: : y\n",
            "line 3, column 8: not valid YAML: mapping values are not allowed here",
        ),
        (
            "user_id_mappings: {a: [1, 2\nb: 3\n",
            "line 2, column 2: not valid YAML: expected ',' or ']', but got ':' "
            "(while parsing a flow sequence that began at line 1, column 23)",
        ),
        (
            'user_id_mappings:\n  default_user_id: "open\n',
            "line 3, column 1: not valid YAML: found unexpected end of stream "
            "(while scanning a quoted scalar that began at line 2, column 20)",
        ),
        (
            "user_id_mappings:\n\tdefault_user_id: x\n",
            "line 2, column 1: not valid YAML: found character '\\t' that cannot start any "
            "token (while scanning for the next token)",
        ),
        ("a: \x07\n", "not valid YAML: unacceptable character #x0007"),
    ],
)
def test_a_yaml_error_names_the_file_line_and_column(
    tmp_path: Path, text: str, expected: str
) -> None:
    path, message = refusal(tmp_path, text)
    assert message.startswith(f"{path}: {expected}")
    assert "<unicode string>" not in message and "\n" not in message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config"):
        load_rules(tmp_path / "nope.yaml")
