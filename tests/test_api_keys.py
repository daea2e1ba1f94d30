"""API keys in the routing config (router/api_keys.py): referenced by digest or environment
variable, never written in plain text."""

from __future__ import annotations

from pathlib import Path

import pytest

from router.exceptions import ConfigError
from router.rules import load_rules
from tests.support.configs import write_rules


def test_plaintext_api_key_in_config_is_refused(tmp_path: Path) -> None:
    from router.exceptions import ConfigError
    from router.rules import load_rules

    cfg = write_rules(
        tmp_path / "rules.yaml",
        "custom_header_policy: {api_keys: [sk-plain]}\ndefault_user_id: d\n",
    )
    with pytest.raises(ConfigError, match="never in plain text"):
        load_rules(cfg)


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
