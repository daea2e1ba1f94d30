"""The shipped LiteLLM config answers the sampling parameters real clients send on the
default model, end to end: the router (``local``) in front of the real LiteLLM on
litellm/config.yaml, calling the fake provider. The requests are the ones the programs
really sent, as recorded in tests/clients/shapes/: aider's ``temperature: 0`` on chat
completions, Gemini CLI's ``topP: 0.95`` (with ``temperature`` and ``topK``) on
``streamGenerateContent``. LiteLLM 1.108.7 refuses both on Claude models unless told to
drop what a model does not take (``drop_params``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.clients import OPENAI_FORMAT_MODEL

from .services import BackendRouter

pytestmark = pytest.mark.e2e

SHAPES = Path(__file__).parents[1] / "clients" / "shapes"


def _recorded(client: str) -> dict[str, Any]:
    request: dict[str, Any] = json.loads((SHAPES / f"{client}.json").read_text())[0]
    return request


def test_aiders_temperature_zero_is_answered(router_local: BackendRouter) -> None:
    recorded = _recorded("aider")
    body = {**recorded["body"], "model": OPENAI_FORMAT_MODEL}
    assert body["temperature"] == 0
    with httpx.stream(
        "POST",
        f"{router_local.url}/v1/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {router_local.litellm.master_key}"},
        timeout=60,
    ) as r:
        text = r.read().decode()
    assert r.status_code == 200, text
    assert '"finish_reason":"stop"' in text and text.endswith("data: [DONE]\n\n")


def test_gemini_clis_top_p_is_answered(router_local: BackendRouter) -> None:
    recorded = _recorded("gemini-cli")
    body = recorded["body"]
    assert body["generationConfig"]["topP"] == 0.95
    with httpx.stream(
        "POST",
        f"{router_local.url}/v1beta/models/{OPENAI_FORMAT_MODEL}:streamGenerateContent?alt=sse",
        json=body,
        headers={"x-goog-api-key": router_local.litellm.master_key},
        timeout=60,
    ) as r:
        text = r.read().decode()
    assert r.status_code == 200, text
    assert '"finishReason": "STOP"' in text
