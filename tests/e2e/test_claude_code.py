"""Claude Code's path: Anthropic-format /v1/messages, streamed, with Claude Code's own
User-Agent, through router and LiteLLM to Supermemory."""

from __future__ import annotations

import pytest

from tests.support.clients import (
    CLAUDE_CODE_MODEL,
    Clients,
    assert_streamed_in_lockstep,
    nonce,
    one_record,
    only_header,
)

from .services import Double, Router

pytestmark = pytest.mark.e2e


def test_claude_code_streams_as_claude_code_cli(
    router: Router, double: Double, clients: Clients
) -> None:
    marker = nonce()
    question = f"refactor this function {marker}"
    client = clients.claude_code(router.url, router.litellm.master_key)
    # The double sends each text chunk only once the last one has arrived here.
    double.hold(marker)

    kinds: list[str] = []
    pieces: list[str] = []
    with client.messages.create(
        model=CLAUDE_CODE_MODEL,
        max_tokens=256,
        messages=[{"role": "user", "content": question}],
        stream=True,
    ) as stream:
        for event in stream:
            kinds.append(event.type)
            if event.type == "content_block_delta" and event.delta.type == "text_delta":
                pieces.append(event.delta.text)
                double.allow(marker)

    assert kinds[0] == "message_start" and kinds[-1] == "message_stop", kinds
    assert "message_delta" in kinds
    assert_streamed_in_lockstep(pieces, question)

    record = one_record(double.requests_with(marker))
    assert record["path"] == "/v3/https://api.anthropic.com/v1/messages"
    assert record["body"]["stream"] is True
    assert only_header(record, "x-sm-user-id") == "claude-code-cli"
    # Claude Code's own x- header survives the trip as well.
    assert only_header(record, "x-app") == "cli"
