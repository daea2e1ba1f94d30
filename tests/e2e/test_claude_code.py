"""Claude Code's path: Anthropic-format /v1/messages, streamed, with Claude Code's own
User-Agent, through router and LiteLLM to Supermemory."""

from __future__ import annotations

import time

import pytest

from .conftest import Double, Router
from .helpers import CLAUDE_CODE_MODEL, Clients, assert_spread_out, nonce, one_record, only_header
from .supermemory_double import ANSWER_PREFIX

pytestmark = pytest.mark.e2e


def test_claude_code_streams_as_claude_code_cli(
    router: Router, double: Double, clients: Clients
) -> None:
    marker = nonce()
    client = clients.claude_code(router.url, router.litellm.master_key)

    events: list[tuple[float, str]] = []
    text_arrivals: list[float] = []
    pieces: list[str] = []
    with client.messages.create(
        model=CLAUDE_CODE_MODEL,
        max_tokens=256,
        messages=[{"role": "user", "content": f"refactor this function {marker}"}],
        stream=True,
    ) as stream:
        for event in stream:
            now = time.monotonic()
            events.append((now, event.type))
            if event.type == "content_block_delta" and event.delta.type == "text_delta":
                text_arrivals.append(now)
                pieces.append(event.delta.text)

    kinds = [kind for _, kind in events]
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop", kinds
    assert "message_delta" in kinds
    assert "".join(pieces).startswith(ANSWER_PREFIX)
    assert_spread_out(text_arrivals)
    # The first event came well before the last text: the stream was not held back.
    assert text_arrivals[-1] - events[0][0] > 0.4

    record = one_record(double.requests_with(marker))
    assert record["path"] == "/v3/https://api.anthropic.com/v1/messages"
    assert record["body"]["stream"] is True
    assert only_header(record, "x-sm-user-id") == "claude-code-cli"
    # Claude Code's own x- header survives the trip as well.
    assert only_header(record, "x-app") == "cli"
