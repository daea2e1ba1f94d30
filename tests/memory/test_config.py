"""The memory config section: parsing, per-id switches and clear errors."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from router.exceptions import ConfigError
from router.memory.config import MemoryConfigError, MemoryPolicy, Switches, parse_memory_config
from router.rules import parse_rules


def test_absent_or_empty_means_everything_on() -> None:
    assert parse_memory_config(None) == MemoryPolicy()
    assert parse_memory_config({}).for_user("anyone") == Switches(store=True, retrieve=True)


def test_per_id_switches_from_yaml() -> None:
    section = yaml.safe_load(
        """
        per_user_id:
          claude-code-cli: {store: false}
          private:notes: {store: false, retrieve: false}
          reader: {retrieve: false}
        """
    )
    policy = parse_memory_config(section)

    assert policy.for_user("claude-code-cli") == Switches(store=False, retrieve=True)
    assert policy.for_user("private:notes") == Switches(store=False, retrieve=False)
    assert policy.for_user("reader") == Switches(store=True, retrieve=False)
    assert policy.for_user("jetbrains") == Switches(store=True, retrieve=True)


def test_overrides_inherit_the_section_defaults() -> None:
    policy = parse_memory_config(
        {"store": False, "per_user_id": {"chosen": {"store": True}, "other": {}}}
    )
    assert policy.for_user("chosen") == Switches(store=True, retrieve=True)
    assert policy.for_user("other") == Switches(store=False, retrieve=True)
    assert policy.for_user("unlisted") == Switches(store=False, retrieve=True)


def test_the_compiled_policy_is_immutable() -> None:
    policy = parse_memory_config({"per_user_id": {"a": {"store": False}}})
    with pytest.raises(TypeError):
        policy.per_user_id["b"] = Switches()  # type: ignore[index]
    with pytest.raises(AttributeError):
        policy.default = Switches(store=False)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"stor": False}, "memory.stor: Extra inputs are not permitted"),
        ({"store": "no"}, "memory.store: Input should be a valid boolean"),
        ({"per_user_id": {"bad id": {}}}, "'bad id' is not a user id"),
        ({"per_user_id": {"x" * 101: {}}}, "is not a user id"),
        ({"per_user_id": {"ok": {"store": 0}}}, "memory.per_user_id.ok.store"),
        ({"per_user_id": {"ok": {"retrive": False}}}, "memory.per_user_id.ok.retrive"),
        ({"per_user_id": ["a", "b"]}, "memory.per_user_id"),
        ({"per_user_id": {"ok": None}}, "memory.per_user_id.ok"),
    ],
)
def test_bad_sections_name_the_problem(section: dict[str, Any], message: str) -> None:
    with pytest.raises(MemoryConfigError) as caught:
        parse_memory_config(section)
    assert message in str(caught.value)


def test_a_section_that_is_not_a_mapping() -> None:
    with pytest.raises(MemoryConfigError, match="must be a mapping"):
        parse_memory_config(["store"])  # type: ignore[arg-type]


# ------------------------------------------------------------------ in the config file


def test_the_section_is_compiled_with_the_rules() -> None:
    rules = parse_rules(
        "user_id_mappings: {default_user_id: dev}\n"
        "memory:\n  retrieve: true\n  per_user_id:\n    claude-code-cli: {store: false}\n"
    )
    assert rules.memory.for_user("claude-code-cli") == Switches(store=False, retrieve=True)
    assert rules.memory.for_user("dev") == Switches()


@pytest.mark.parametrize("text", ["", "memory:\n", "memory: {}\n"])
def test_no_section_or_an_empty_one_means_the_defaults(text: str) -> None:
    rules = parse_rules("user_id_mappings: {default_user_id: dev}\n" + text)
    assert rules.memory == MemoryPolicy()


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ("memory:\n  stor: false\n", "rules.yaml: memory: stor: unknown key"),
        ("memory:\n  per_user_id:\n    'bad id': {}\n", "'bad id' is not a user id"),
        ("memory:\n  per_user_id:\n    ok: {store: 1}\n", "memory: per_user_id.ok.store: Input"),
    ],
)
def test_a_bad_section_stops_the_whole_config(section: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_rules("user_id_mappings: {default_user_id: dev}\n" + section, source="rules.yaml")
    assert message in str(caught.value)
