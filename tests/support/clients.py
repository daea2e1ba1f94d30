"""The SDK clients as users configure them, for the end-to-end and live tiers, and
readers for what the Supermemory router double recorded."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Mapping
from typing import Any

from anthropic import Anthropic
from openai import OpenAI

from tests.doubles.controls import DoubleControls, header_values
from tests.doubles.supermemory_router import ANSWER_PREFIX

# Model names from litellm/config.yaml. OpenAI-format clients use the config's alias; the
# Claude Code client uses Anthropic's own id, which the config's `claude-*` entry serves.
OPENAI_FORMAT_MODEL = "claude-sonnet-5.5"
CLAUDE_CODE_MODEL = "claude-sonnet-5-5"

# Real User-Agents (see the project's field notes).
PYCHARM_UA = "OpenAIClientImpl/Java unknown"
CLAUDE_CODE_UA = "claude-cli/2.0.14 (external, cli)"

CLIENT_TIMEOUT = 60.0


def nonce() -> str:
    """A short random marker; each test puts its own into its prompts to find its records."""
    return secrets.token_hex(4)


class Clients:
    """SDK clients configured as a user would, closed together at the end of a test."""

    def __init__(self) -> None:
        self._stack = contextlib.ExitStack()

    def close(self) -> None:
        self._stack.close()

    def openai(
        self, base_url: str, api_key: str, headers: Mapping[str, str] | None = None
    ) -> OpenAI:
        """The OpenAI SDK pointed at `base_url` (the router, or LiteLLM)."""
        client = OpenAI(
            base_url=f"{base_url}/v1",
            api_key=api_key,
            default_headers=dict(headers or {}),
            max_retries=0,
            timeout=CLIENT_TIMEOUT,
        )
        return self._stack.enter_context(client)

    def anthropic(
        self, base_url: str, api_key: str, headers: Mapping[str, str] | None = None
    ) -> Anthropic:
        """The Anthropic SDK pointed at `base_url`, as Claude Code is via ANTHROPIC_BASE_URL."""
        client = Anthropic(
            base_url=base_url,
            api_key=api_key,
            default_headers=dict(headers or {}),
            max_retries=0,
            timeout=CLIENT_TIMEOUT,
        )
        return self._stack.enter_context(client)

    def claude_code(self, base_url: str, api_key: str) -> Anthropic:
        return self.anthropic(base_url, api_key, {"User-Agent": CLAUDE_CODE_UA, "x-app": "cli"})


def chat(client: OpenAI, text: str) -> str:
    """One non-streaming chat completion; the answer text."""
    completion = client.chat.completions.create(
        model=OPENAI_FORMAT_MODEL, messages=[{"role": "user", "content": text}]
    )
    return completion.choices[0].message.content or ""


def only_header(record: Mapping[str, Any], name: str) -> str:
    """The single value of header `name`; fails when it is missing or repeated."""
    values = header_values(record, name)
    assert len(values) == 1, f"expected exactly one {name} header upstream, got {values}"
    return values[0]


def one_record(records: list[dict[str, Any]]) -> dict[str, Any]:
    """The only recorded request, failing clearly when LiteLLM retried or nothing arrived."""
    assert len(records) == 1, f"expected one request at the double, got {len(records)}: {records}"
    return records[0]


def openai_stream_in_lockstep(
    client: OpenAI, double: DoubleControls, marker: str, question: str
) -> list[str]:
    """Stream a chat about ``question`` (which mentions ``marker``) from a double that
    holds each text chunk after the first until the test allows it, allowing the next
    one each time a piece arrives; the pieces read (``assert_streamed_in_lockstep``)."""
    double.hold(marker)
    pieces: list[str] = []
    stream = client.chat.completions.create(
        model=OPENAI_FORMAT_MODEL,
        messages=[{"role": "user", "content": question}],
        stream=True,
    )
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
            double.allow(marker)
    return pieces


def assert_streamed_in_lockstep(pieces: list[str], question: str) -> None:
    """The whole answer arrived from a stream the double held (``Double.hold``).

    The double sent each text chunk only after the test, having read the one before,
    allowed it: had any hop held a chunk back, the stream would have stalled and broken
    off, and the answer would end early.
    """
    text = "".join(pieces)
    assert text.startswith(ANSWER_PREFIX) and text.endswith(f"You asked: {question}"), text
    assert len(pieces) >= 6, f"the double's 6 chunks arrived as {len(pieces)} pieces"
