"""litellm/config.yaml as the compose stack runs it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "litellm" / "config.yaml"


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    assert CONFIG.is_file(), "litellm/config.yaml is missing: compose mounts it into LiteLLM"
    return yaml.safe_load(CONFIG.read_text())


@pytest.fixture(scope="module")
def litellm_env() -> dict[str, Any]:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return compose["services"]["litellm"]["environment"]


def test_forwards_client_headers(config: dict[str, Any]) -> None:
    # Without it x-sm-user-id and x-supermemory-api-key stop at LiteLLM.
    assert config["general_settings"]["forward_client_headers_to_llm_api"] is True


def test_master_key_comes_from_the_environment(config: dict[str, Any]) -> None:
    assert config["general_settings"]["master_key"] == "os.environ/LITELLM_MASTER_KEY"


def test_every_model_follows_the_memory_backend(config: dict[str, Any]) -> None:
    # The compose entrypoint and scripts/litellm set it: Supermemory's memory router for
    # supermemory-router, Anthropic itself otherwise (tests/stack/test_backend_switch.py).
    models = config["model_list"]
    assert models
    for model in models:
        params = model["litellm_params"]
        assert params["api_base"] == "os.environ/LITELLM_ANTHROPIC_BASE_URL", model[
            "model_name"
        ]
        assert params["api_key"] == "os.environ/ANTHROPIC_API_KEY", model["model_name"]


def _env_refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        return set().union(*(_env_refs(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_env_refs(v) for v in node))
    if isinstance(node, str) and (m := re.fullmatch(r"os\.environ/([A-Za-z_][A-Za-z0-9_]*)", node)):
        return {m.group(1)}
    return set()


def test_compose_sets_every_variable_the_config_reads(
    config: dict[str, Any], litellm_env: dict[str, Any]
) -> None:
    referenced = _env_refs(config)
    assert {
        "LITELLM_ANTHROPIC_BASE_URL",
        "ANTHROPIC_API_KEY",
        "LITELLM_MASTER_KEY",
    } <= referenced
    # The entrypoint script exports the base URL; compose sets the rest.
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    script = compose["services"]["litellm"]["entrypoint"][2]
    exported = set(re.findall(r"^\s*export ([A-Z_]+)$", script, re.M))
    assert exported == {"LITELLM_ANTHROPIC_BASE_URL"}
    missing = referenced - set(litellm_env) - exported
    assert not missing, f"litellm/config.yaml reads {sorted(missing)}, which compose never sets"
