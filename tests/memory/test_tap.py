"""The response text tap: SSE and JSON answers of both APIs, fed chunk by chunk."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from router.memory.tap import (
    AnthropicSSETap,
    JSONTap,
    OpenAISSETap,
    TapResult,
    TextTap,
    text_tap,
)


def sse(*events: tuple[str | None, Any], crlf: bool = False) -> bytes:
    out = []
    for name, data in events:
        payload = data if isinstance(data, str) else json.dumps(data)
        head = f"event: {name}\n" if name else ""
        out.append(f"{head}data: {payload}\n\n")
    text = "".join(out)
    return (text.replace("\n", "\r\n") if crlf else text).encode()


def oa_chunk(delta: dict[str, Any], finish: str | None = None, index: int = 0) -> Any:
    return (
        None,
        {
            "id": "c",
            "object": "chat.completion.chunk",
            "choices": [{"index": index, "delta": delta, "finish_reason": finish}],
        },
    )


OA_USAGE = (None, {"id": "c", "object": "chat.completion.chunk", "choices": [], "usage": {}})
OA_DONE = (None, "[DONE]")


def openai_stream(*pieces: str, finish: str | None = "stop", done: bool = True) -> list[Any]:
    events = [oa_chunk({"role": "assistant", "content": ""})]
    events += [oa_chunk({"content": p}) for p in pieces]
    events.append(oa_chunk({}, finish))
    events.append(OA_USAGE)
    if done:
        events.append(OA_DONE)
    return events


def anthropic_stream(
    *pieces: str, stop_reason: str = "end_turn", stop: bool = True, tool: bool = False
) -> list[Any]:
    events: list[Any] = [
        ("message_start", {"type": "message_start", "message": {"id": "m", "content": []}}),
        (
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text"}},
        ),
        ("ping", {"type": "ping"}),
    ]
    events += [
        (
            "content_block_delta",
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}},
        )
        for p in pieces
    ]
    events.append(("content_block_stop", {"type": "content_block_stop", "index": 0}))
    if tool:
        events += [
            (
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": 1,
                    "content_block": {"type": "tool_use", "id": "t", "name": "Read", "input": {}},
                },
            ),
            (
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": 1,
                    "delta": {"type": "input_json_delta", "partial_json": '{"a":'},
                },
            ),
        ]
    events.append(
        (
            "message_delta",
            {"type": "message_delta", "delta": {"stop_reason": stop_reason}, "usage": {}},
        )
    )
    if stop:
        events.append(("message_stop", {"type": "message_stop"}))
    return events


def run(tap: TextTap, raw: bytes, size: int = 7) -> TapResult:
    for i in range(0, len(raw), size):
        tap.feed(raw[i : i + size])
    return tap.result()


OPENAI_SSE_CASES: list[tuple[str, list[Any], TapResult]] = [
    ("normal", openai_stream("Hel", "lo ", "wörld 🙂"), TapResult("Hello wörld 🙂", True)),
    ("no [DONE]: aborted", openai_stream("Hi", done=False), TapResult("Hi", False)),
    ("length", openai_stream("Hi", finish="length"), TapResult("Hi", False)),
    ("no finish_reason", openai_stream("Hi", finish=None), TapResult("Hi", True)),
    (
        "tool calls",
        [
            oa_chunk({"role": "assistant", "content": None}),
            oa_chunk({"tool_calls": [{"index": 0, "id": "x", "function": {"name": "f"}}]}),
            oa_chunk({}, "tool_calls"),
            OA_DONE,
        ],
        TapResult("", False),
    ),
    (
        "error event",
        [oa_chunk({"content": "Hi"}), (None, {"error": {"message": "boom"}}), OA_DONE],
        TapResult("Hi", False),
    ),
    (
        "only choice 0 counts",
        [
            oa_chunk({"content": "A"}),
            oa_chunk({"content": "B"}, index=1),
            oa_chunk({}, "stop"),
            OA_DONE,
        ],
        TapResult("A", True),
    ),
    (
        "junk lines are ignored",
        [(None, "not json"), (None, "[1,2]"), *openai_stream("ok")],
        TapResult("ok", True),
    ),
]


@pytest.mark.parametrize(
    ("events", "expected"),
    [c[1:] for c in OPENAI_SSE_CASES],
    ids=[c[0] for c in OPENAI_SSE_CASES],
)
@pytest.mark.parametrize("crlf", [False, True])
def test_openai_sse(events: list[Any], expected: TapResult, crlf: bool) -> None:
    assert run(OpenAISSETap(), sse(*events, crlf=crlf)) == expected


ANTHROPIC_SSE_CASES: list[tuple[str, list[Any], TapResult]] = [
    ("normal", anthropic_stream("Hel", "lo"), TapResult("Hello", True)),
    ("no message_stop: aborted", anthropic_stream("Hi", stop=False), TapResult("Hi", False)),
    ("max_tokens", anthropic_stream("Hi", stop_reason="max_tokens"), TapResult("Hi", False)),
    (
        "tool_use",
        anthropic_stream("Let me look", stop_reason="tool_use", tool=True),
        TapResult("Let me look", False),
    ),
    (
        "error event",
        [*anthropic_stream("Hi", stop=False), ("error", {"type": "error", "error": {}})],
        TapResult("Hi", False),
    ),
    ("empty text", anthropic_stream(), TapResult("", True)),
]


@pytest.mark.parametrize(
    ("events", "expected"),
    [c[1:] for c in ANTHROPIC_SSE_CASES],
    ids=[c[0] for c in ANTHROPIC_SSE_CASES],
)
def test_anthropic_sse(events: list[Any], expected: TapResult) -> None:
    assert run(AnthropicSSETap(), sse(*events)) == expected


def test_storable_needs_complete_and_some_text() -> None:
    assert TapResult("hi", True).storable
    assert not TapResult("hi", False).storable
    assert not TapResult("  \n", True).storable


@given(
    cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=40),
    api=st.sampled_from(["openai", "anthropic"]),
)
def test_any_chunking_gives_the_same_result(cuts: list[int], api: str) -> None:
    if api == "openai":
        raw, make = sse(*openai_stream("Grüße ", "aus ", "日本", "🙂")), OpenAISSETap
    else:
        raw, make = sse(*anthropic_stream("Grüße ", "aus ", "日本", "🙂")), AnthropicSSETap
    bounds = sorted({0, len(raw), *(c % (len(raw) + 1) for c in cuts)})
    tap = make()
    for start, end in itertools.pairwise(bounds):
        tap.feed(raw[start:end])
    assert tap.result() == TapResult("Grüße aus 日本🙂", True)


def test_a_stream_cut_inside_the_last_line_is_finished_at_the_end() -> None:
    raw = sse(*openai_stream("x")).rstrip(b"\n")  # the final "data: [DONE]" has no newline
    assert run(OpenAISSETap(), raw) == TapResult("x", True)


def test_text_is_capped() -> None:
    tap = AnthropicSSETap(max_text=10)
    result = run(tap, sse(*anthropic_stream("abcdefgh", "ijklmnop")))
    assert result == TapResult("abcdefghij", True, truncated=True)


def test_an_overlong_line_makes_the_answer_unstorable() -> None:
    tap = OpenAISSETap(max_line=100)
    raw = sse(oa_chunk({"content": "x" * 500}), *openai_stream("tail"))
    result = run(tap, raw, size=50)
    assert not result.complete
    assert tap._tail == b""  # nothing past the bound is kept


# ------------------------------------------------------------------ JSON answers


def openai_json(content: Any, finish: str = "stop", **message: Any) -> bytes:
    return json.dumps(
        {
            "id": "x",
            "object": "chat.completion",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content, **message},
                    "finish_reason": finish,
                }
            ],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1},
        }
    ).encode()


def anthropic_json(blocks: list[Any], stop_reason: str = "end_turn") -> bytes:
    return json.dumps(
        {
            "id": "m",
            "type": "message",
            "role": "assistant",
            "content": blocks,
            "stop_reason": stop_reason,
        }
    ).encode()


JSON_CASES: list[tuple[str, str, bytes, TapResult]] = [
    ("openai", "openai", openai_json("Hi there"), TapResult("Hi there", True)),
    ("openai length", "openai", openai_json("Hi", finish="length"), TapResult("Hi", False)),
    (
        "openai tool calls",
        "openai",
        openai_json(None, finish="tool_calls", tool_calls=[{"id": "c"}]),
        TapResult("", False),
    ),
    ("openai no choices", "openai", b'{"choices": []}', TapResult("", False)),
    (
        "anthropic",
        "anthropic",
        anthropic_json([{"type": "text", "text": "Hel"}, {"type": "text", "text": "lo"}]),
        TapResult("Hello", True),
    ),
    (
        "anthropic tool_use",
        "anthropic",
        anthropic_json(
            [{"type": "text", "text": "Reading"}, {"type": "tool_use", "id": "t", "name": "R"}],
            stop_reason="tool_use",
        ),
        TapResult("Reading", False),
    ),
    (
        "anthropic error",
        "anthropic",
        b'{"type": "error", "error": {"type": "overloaded_error"}}',
        TapResult("", False),
    ),
    ("not json", "openai", b"<html>", TapResult("", False)),
    (
        "cut short",
        "anthropic",
        anthropic_json([{"type": "text", "text": "x"}])[:-5],
        TapResult("", False),
    ),
]


@pytest.mark.parametrize(
    ("fmt", "raw", "expected"), [c[1:] for c in JSON_CASES], ids=[c[0] for c in JSON_CASES]
)
def test_json_answers(fmt: Any, raw: bytes, expected: TapResult) -> None:
    assert run(JSONTap(fmt), raw, size=5) == expected


def test_an_oversized_json_answer_is_dropped() -> None:
    tap = JSONTap("openai", max_body=100)
    result = run(tap, openai_json("x" * 200), size=10)
    assert result == TapResult("", False)
    assert tap._chunks is None


# ------------------------------------------------------------------ choosing a tap


@pytest.mark.parametrize(
    ("fmt", "status", "ctype", "encoding", "kind"),
    [
        ("openai", 200, b"text/event-stream; charset=utf-8", None, OpenAISSETap),
        ("anthropic", 200, "text/event-stream", None, AnthropicSSETap),
        ("anthropic", 200, b"application/json", b"identity", JSONTap),
        ("openai", 201, b"Application/JSON", None, JSONTap),
        ("openai", 200, b"application/json", b"gzip", None),
        ("openai", 400, b"application/json", None, None),
        ("anthropic", 529, b"application/json", None, None),
        ("openai", 200, b"text/plain", None, None),
        ("openai", 200, None, None, None),
    ],
)
def test_text_tap_choice(
    fmt: Any, status: int, ctype: Any, encoding: Any, kind: type[Any] | None
) -> None:
    tap = text_tap(fmt, status=status, content_type=ctype, content_encoding=encoding)
    if kind is None:
        assert tap is None
    else:
        assert isinstance(tap, kind)
