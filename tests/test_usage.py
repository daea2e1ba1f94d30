"""Token usage read from response bodies and event streams, chunk by chunk."""

from __future__ import annotations

import json

import pytest

from router.usage import JSONUsageTap, SSEUsageTap, tap_for
from tests.doubles.fake_litellm import (
    _anthropic_events,
    _anthropic_message,
    _openai_completion,
    _openai_events,
)


def _feed_in_pieces(tap: SSEUsageTap | JSONUsageTap, data: bytes, size: int) -> None:
    for i in range(0, len(data), size):
        tap.feed(data[i : i + size])


@pytest.mark.parametrize("piece", [1, 7, 64, 100_000])
def test_openai_stream_usage_across_any_chunking(piece: int) -> None:
    tap = SSEUsageTap()
    _feed_in_pieces(tap, b"".join(_openai_events("gpt-x", 4)), piece)
    usage = tap.finish()
    assert (usage.seen, usage.prompt, usage.completion, usage.model) == (True, 21, 4, "gpt-x")


@pytest.mark.parametrize("piece", [1, 13, 100_000])
def test_anthropic_stream_usage_is_cumulative(piece: int) -> None:
    tap = SSEUsageTap()
    _feed_in_pieces(tap, b"".join(_anthropic_events("claude-x", 5)), piece)
    usage = tap.finish()
    # input from message_start; output is the last cumulative value from message_delta
    assert (usage.prompt, usage.completion, usage.model) == (17, 8, "claude-x")


def test_anthropic_cache_tokens_count_as_prompt() -> None:
    tap = SSEUsageTap()
    event = {
        "type": "message_start",
        "message": {
            "model": "c",
            "usage": {
                "input_tokens": 3,
                "cache_creation_input_tokens": 100,
                "cache_read_input_tokens": 50,
                "output_tokens": 1,
            },
        },
    }
    tap.feed(b"event: message_start\ndata: " + json.dumps(event).encode() + b"\n\n")
    assert tap.finish().prompt == 153


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (_openai_completion("m1"), (11, 7, "m1")),
        (_anthropic_message("m2"), (13, 5, "m2")),
        ({"object": "list", "usage": {"prompt_tokens": 9, "total_tokens": 9}}, (9, 0, None)),
        (
            {
                "type": "response.completed",
                "response": {"model": "r", "usage": {"input_tokens": 4, "output_tokens": 2}},
            },
            (4, 2, "r"),
        ),
    ],
)
def test_json_usage(body: dict[str, object], expected: tuple[int, int, str | None]) -> None:
    tap = JSONUsageTap()
    _feed_in_pieces(tap, json.dumps(body).encode(), 5)
    usage = tap.finish()
    assert usage.seen
    assert (usage.prompt, usage.completion, usage.model) == expected


@pytest.mark.parametrize(
    "data",
    [
        b"not json at all",
        b'{"usage": "weird"}',
        b'{"usage": {"prompt_tokens": -1, "completion_tokens": true}}',
        b'{"choices": []}',
        b'{"usage": {"prompt_tokens": 1',
        b"",
    ],
)
def test_no_usage_no_error(data: bytes) -> None:
    for tap in (JSONUsageTap(), SSEUsageTap()):
        tap.feed(data)
        tap.feed(b"data: " + data + b"\n\n")
        assert not tap.finish().seen


def test_tap_choice() -> None:
    assert isinstance(tap_for(b"text/event-stream; charset=utf-8", None), SSEUsageTap)
    assert isinstance(tap_for(b"application/json", None), JSONUsageTap)
    assert tap_for(b"application/json", b"gzip") is None
    assert tap_for(b"audio/mpeg", None) is None
    assert tap_for(None, None) is None


def test_huge_json_is_not_kept() -> None:
    tap = JSONUsageTap()
    tap.feed(b'{"usage": {"prompt_tokens": 1}, "pad": "')
    tap.feed(b"x" * (9 * 1024 * 1024))
    tap.feed(b'"}')
    assert not tap.finish().seen


@pytest.mark.parametrize(
    "body",
    [
        b'{"usage": {"prompt_tokens": 3, "completion_tokens": 4}, "kind": "usage"}',
        b'{"choices": [{"message": {"content": "the \\"usage\\": {} key"}}],'
        b' "usage": {"prompt_tokens": 3, "completion_tokens": 4}, "model": "m"}',
        b'{"usage": {"prompt_tokens": 3, "completion_tokens": 4},'
        b' "meta": {"note": "usage", "x": {"usage": "n/a"}}}',
    ],
)
def test_json_usage_is_found_among_decoys(body: bytes) -> None:
    tap = JSONUsageTap()
    tap.feed(body)
    usage = tap.finish()
    assert (usage.seen, usage.prompt, usage.completion) == (True, 3, 4)
