"""The rate_limits section of the config (router/ratelimit/config.py): a default and per-id
overrides, and the errors that name the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from router.exceptions import ConfigError
from router.ratelimit import Limit
from router.ratelimit.config import RateLimits, describe_limit
from router.rules import load_rules, parse_rules
from tests.support.configs import rules_yaml, write_rules


def test_default_and_overrides(tmp_path: Path) -> None:
    rules = load_rules(
        write_rules(
            tmp_path / "r.yaml",
            rate_limits="""
            default: {requests_per_minute: 120, tokens_per_minute: 60000}
            per_user_id:
              heavy: {requests_per_minute: 600, burst: 50}
              free: {tokens_per_minute: null}
              unlimited: {requests_per_minute: null, tokens_per_minute: null}
            """,
        )
    )
    limits: RateLimits = rules.limits
    assert limits.for_user("anyone") == Limit(requests_per_minute=120, tokens_per_minute=60000)
    assert limits.for_user("heavy") == Limit(
        requests_per_minute=600, tokens_per_minute=60000, burst=50
    )
    assert limits.for_user("free") == Limit(requests_per_minute=120)
    assert limits.for_user("unlimited") is None


def test_no_section_means_no_limits(tmp_path: Path) -> None:
    path = write_rules(tmp_path / "r.yaml", "default_user_id: d")
    assert load_rules(path).limits.for_user("d") is None


@pytest.mark.parametrize(
    ("limits", "fragment"),
    [
        ("default: {requests_per_minute: 0}\n", "rate_limits: default.requests_per_minute"),
        ("default: {rpm: 5}\n", "default.rpm: unknown key"),
        ("per_user_id: {'bad id': {requests_per_minute: 5}}\n", "invalid user id 'bad id'"),
        ("defaults: {}\n", "defaults: unknown key"),
    ],
)
def test_bad_limits_config(tmp_path: Path, limits: str, fragment: str) -> None:
    path = write_rules(tmp_path / "r.yaml", rate_limits=limits)
    with pytest.raises(ConfigError) as caught:
        load_rules(path)
    assert str(path) in str(caught.value) and fragment in str(caught.value)


def test_an_empty_rate_limits_section_limits_nothing() -> None:
    rules = parse_rules(rules_yaml("default_user_id: d\n") + "rate_limits:\n")
    assert rules.limits.for_user("d") is None


@pytest.mark.parametrize(
    ("limits", "summary"),
    [
        (RateLimits(), "none"),
        (
            RateLimits(default=Limit(requests_per_minute=120)),
            "default 120 requests/min (burst 20), 0 ids with their own",
        ),
        (
            RateLimits(overrides={"a": Limit(tokens_per_minute=5)}),
            "default unlimited, 1 id with their own",
        ),
        (
            RateLimits(
                default=Limit(requests_per_minute=6, burst=2, tokens_per_minute=9000),
                overrides={"a": None, "b": Limit(requests_per_minute=1)},
            ),
            "default 6 requests/min (burst 2), 9000 tokens/min, 2 ids with their own",
        ),
    ],
)
def test_rate_limits_describe_themselves_for_the_log(limits: RateLimits, summary: str) -> None:
    assert limits.describe() == summary


def test_describe_limit() -> None:
    assert describe_limit(None) == "unlimited"
    assert describe_limit(Limit()) == "unlimited"
    assert describe_limit(Limit(tokens_per_minute=10)) == "10 tokens/min"
