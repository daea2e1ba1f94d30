"""Token usage read from response bodies and event streams, chunk by chunk, as an
observer of ``router.answer.Answer``."""

from __future__ import annotations

import json

import pytest

from router.answer import MAX_JSON_BYTES, Answer
from router.apis import ApiFormat
from router.usage import Usage, UsageReader
from tests.doubles.fake_litellm import (
    _anthropic_events,
    _anthropic_message,
    _openai_completion,
    _openai_events,
)
from tests.support.answers import JSON, SSE, read_answer


def _usage(
    data: bytes, size: int, content_type: bytes = SSE, fmt: ApiFormat | None = "openai"
) -> Usage:
    reader = UsageReader()
    read_answer(data, [reader], fmt=fmt, content_type=content_type, size=size)
    return reader.usage


@pytest.mark.parametrize("piece", [1, 7, 64, 100_000])
def test_openai_stream_usage_across_any_chunking(piece: int) -> None:
    usage = _usage(b"".join(_openai_events("gpt-x", 4)), piece)
    assert (usage.seen, usage.prompt, usage.completion, usage.model) == (True, 21, 4, "gpt-x")


@pytest.mark.parametrize("piece", [1, 13, 100_000])
def test_anthropic_stream_usage_is_cumulative(piece: int) -> None:
    usage = _usage(b"".join(_anthropic_events("claude-x", 5)), piece, fmt="anthropic")
    # input from message_start; output is the last cumulative value from message_delta
    assert (usage.prompt, usage.completion, usage.model) == (17, 8, "claude-x")


def test_anthropic_cache_tokens_count_as_prompt() -> None:
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
    raw = b"event: message_start\ndata: " + json.dumps(event).encode() + b"\n\n"
    assert _usage(raw, 100).prompt == 153


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
    usage = _usage(json.dumps(body).encode(), 5, JSON)
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
    for content_type in (JSON, SSE):
        assert not _usage(data + b"data: " + data + b"\n\n", 3, content_type).seen


@pytest.mark.parametrize(
    ("content_type", "encoding"),
    [(b"application/json", b"gzip"), (b"audio/mpeg", None), (None, None)],
)
def test_answers_that_are_neither_json_nor_events_are_not_read(
    content_type: bytes | None, encoding: bytes | None
) -> None:
    reader = UsageReader()
    answer = Answer("openai", [reader], content_type=content_type, content_encoding=encoding)
    answer.feed(_openai_completion("m1"))
    answer.finish()
    assert not reader.usage.seen


def test_huge_json_is_not_kept() -> None:
    body = b'{"usage": {"prompt_tokens": 1}, "pad": "' + b"x" * MAX_JSON_BYTES + b'"}'
    assert not _usage(body, 1024 * 1024, JSON).seen


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
    usage = _usage(body, len(body), JSON)
    assert (usage.seen, usage.prompt, usage.completion) == (True, 3, 4)


GEMINI_USAGE = {"promptTokenCount": 12, "candidatesTokenCount": 5, "thoughtsTokenCount": 2}


def _gemini(
    text: str, usage: dict[str, int] | None, finish: str | None = None
) -> dict[str, object]:
    chunk: dict[str, object] = {
        "candidates": [
            {"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": finish}
        ],
        "modelVersion": "gemini-x",
    }
    if usage is not None:
        chunk["usageMetadata"] = usage
    return chunk


@pytest.mark.parametrize("piece", [1, 9, 100_000])
def test_gemini_stream_usage_is_cumulative(piece: int) -> None:
    chunks = [
        _gemini("a", {"promptTokenCount": 12, "candidatesTokenCount": 1}),
        _gemini("b", GEMINI_USAGE, finish="STOP"),
    ]
    raw = b"".join(b"data: " + json.dumps(c).encode() + b"\r\n\r\n" for c in chunks)
    usage = _usage(raw, piece, fmt="gemini")
    assert (usage.prompt, usage.completion, usage.model) == (12, 7, "gemini-x")


@pytest.mark.parametrize(
    "body",
    [
        _gemini("all", GEMINI_USAGE, finish="STOP"),
        [_gemini("a", {"promptTokenCount": 12}), _gemini("b", GEMINI_USAGE, finish="STOP")],
    ],
    ids=["generateContent", "streamGenerateContent as a JSON array"],
)
def test_gemini_json_usage(body: object) -> None:
    usage = _usage(json.dumps(body).encode(), 11, JSON, fmt="gemini")
    assert (usage.seen, usage.prompt, usage.completion) == (True, 12, 7)


def test_responses_stream_usage_comes_from_response_completed() -> None:
    response = {"id": "r", "model": "gpt-r", "status": "completed", "output": []}
    events = [
        {"type": "response.created", "response": {**response, "usage": None}},
        {"type": "response.output_text.delta", "delta": "hi"},
        {
            "type": "response.completed",
            "response": {**response, "usage": {"input_tokens": 30, "output_tokens": 4}},
        },
    ]
    raw = b"".join(
        b"event: " + e["type"].encode() + b"\ndata: " + json.dumps(e).encode() + b"\n\n"  # type: ignore[attr-defined]
        for e in events
    )
    usage = _usage(raw + b"data: [DONE]\n\n", 13, fmt="responses")
    assert (usage.prompt, usage.completion, usage.model) == (30, 4, "gpt-r")
