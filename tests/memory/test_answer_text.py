"""The answer's text for memory: event streams and JSON bodies of every API, fed chunk by
chunk through ``router.answer.Answer``."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from router.answer import MAX_JSON_BYTES, MAX_LINE_BYTES, Answer
from router.memory.answer_text import (
    AnswerText,
    ChatText,
    GeminiText,
    MessagesText,
    ResponsesText,
    TextResult,
    answer_text,
)
from tests.support.answers import JSON, read_answer


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


def run(
    text: AnswerText, raw: bytes, size: int = 7, content_type: bytes = b"text/event-stream"
) -> TextResult:
    read_answer(raw, [text], content_type=content_type, size=size)
    return text.result()


OPENAI_SSE_CASES: list[tuple[str, list[Any], TextResult]] = [
    ("normal", openai_stream("Hel", "lo ", "wörld 🙂"), TextResult("Hello wörld 🙂", True)),
    ("no [DONE]: aborted", openai_stream("Hi", done=False), TextResult("Hi", False)),
    ("length", openai_stream("Hi", finish="length"), TextResult("Hi", False)),
    ("no finish_reason", openai_stream("Hi", finish=None), TextResult("Hi", True)),
    (
        "tool calls",
        [
            oa_chunk({"role": "assistant", "content": None}),
            oa_chunk({"tool_calls": [{"index": 0, "id": "x", "function": {"name": "f"}}]}),
            oa_chunk({}, "tool_calls"),
            OA_DONE,
        ],
        TextResult("", False),
    ),
    (
        "error event",
        [oa_chunk({"content": "Hi"}), (None, {"error": {"message": "boom"}}), OA_DONE],
        TextResult("Hi", False),
    ),
    (
        "only choice 0 counts",
        [
            oa_chunk({"content": "A"}),
            oa_chunk({"content": "B"}, index=1),
            oa_chunk({}, "stop"),
            OA_DONE,
        ],
        TextResult("A", True),
    ),
    (
        "junk lines are ignored",
        [(None, "not json"), (None, "[1,2]"), *openai_stream("ok")],
        TextResult("ok", True),
    ),
]


@pytest.mark.parametrize(
    ("events", "expected"),
    [c[1:] for c in OPENAI_SSE_CASES],
    ids=[c[0] for c in OPENAI_SSE_CASES],
)
@pytest.mark.parametrize("crlf", [False, True])
def test_openai_sse(events: list[Any], expected: TextResult, crlf: bool) -> None:
    assert run(ChatText(), sse(*events, crlf=crlf)) == expected


ANTHROPIC_SSE_CASES: list[tuple[str, list[Any], TextResult]] = [
    ("normal", anthropic_stream("Hel", "lo"), TextResult("Hello", True)),
    ("no message_stop: aborted", anthropic_stream("Hi", stop=False), TextResult("Hi", False)),
    ("max_tokens", anthropic_stream("Hi", stop_reason="max_tokens"), TextResult("Hi", False)),
    (
        "tool_use",
        anthropic_stream("Let me look", stop_reason="tool_use", tool=True),
        TextResult("Let me look", False),
    ),
    (
        "error event",
        [*anthropic_stream("Hi", stop=False), ("error", {"type": "error", "error": {}})],
        TextResult("Hi", False),
    ),
    ("empty text", anthropic_stream(), TextResult("", True)),
]


@pytest.mark.parametrize(
    ("events", "expected"),
    [c[1:] for c in ANTHROPIC_SSE_CASES],
    ids=[c[0] for c in ANTHROPIC_SSE_CASES],
)
def test_anthropic_sse(events: list[Any], expected: TextResult) -> None:
    assert run(MessagesText(), sse(*events)) == expected


def test_storable_needs_complete_and_some_text() -> None:
    assert TextResult("hi", True).storable
    assert not TextResult("hi", False).storable
    assert not TextResult("  \n", True).storable


@given(
    cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=40),
    api=st.sampled_from(["openai", "anthropic"]),
)
def test_any_chunking_gives_the_same_result(cuts: list[int], api: str) -> None:
    if api == "openai":
        raw, make = sse(*openai_stream("Grüße ", "aus ", "日本", "🙂")), ChatText
    else:
        raw, make = sse(*anthropic_stream("Grüße ", "aus ", "日本", "🙂")), MessagesText
    bounds = sorted({0, len(raw), *(c % (len(raw) + 1) for c in cuts)})
    text = make()
    answer = Answer(api, [text], content_type=b"text/event-stream")  # type: ignore[arg-type]
    for start, end in itertools.pairwise(bounds):
        answer.feed(raw[start:end])
    answer.finish()
    assert text.result() == TextResult("Grüße aus 日本🙂", True)


def test_a_stream_cut_inside_the_last_line_is_finished_at_the_end() -> None:
    raw = sse(*openai_stream("x")).rstrip(b"\n")  # the final "data: [DONE]" has no newline
    assert run(ChatText(), raw) == TextResult("x", True)


def test_text_is_capped() -> None:
    tap = MessagesText(max_text=10)
    result = run(tap, sse(*anthropic_stream("abcdefgh", "ijklmnop")))
    assert result == TextResult("abcdefghij", True, truncated=True)


def test_an_overlong_line_makes_the_answer_unstorable() -> None:
    text = ChatText()
    raw = sse(oa_chunk({"content": "x" * 2 * MAX_LINE_BYTES}), *openai_stream("tail"))
    result = run(text, raw, size=64 * 1024)
    assert not result.complete


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


JSON_CASES: list[tuple[str, str, bytes, TextResult]] = [
    ("openai", "openai", openai_json("Hi there"), TextResult("Hi there", True)),
    ("openai length", "openai", openai_json("Hi", finish="length"), TextResult("Hi", False)),
    (
        "openai tool calls",
        "openai",
        openai_json(None, finish="tool_calls", tool_calls=[{"id": "c"}]),
        TextResult("", False),
    ),
    ("openai no choices", "openai", b'{"choices": []}', TextResult("", False)),
    (
        "anthropic",
        "anthropic",
        anthropic_json([{"type": "text", "text": "Hel"}, {"type": "text", "text": "lo"}]),
        TextResult("Hello", True),
    ),
    (
        "anthropic tool_use",
        "anthropic",
        anthropic_json(
            [{"type": "text", "text": "Reading"}, {"type": "tool_use", "id": "t", "name": "R"}],
            stop_reason="tool_use",
        ),
        TextResult("Reading", False),
    ),
    (
        "anthropic error",
        "anthropic",
        b'{"type": "error", "error": {"type": "overloaded_error"}}',
        TextResult("", False),
    ),
    ("not json", "openai", b"<html>", TextResult("", False)),
    (
        "cut short",
        "anthropic",
        anthropic_json([{"type": "text", "text": "x"}])[:-5],
        TextResult("", False),
    ),
]


@pytest.mark.parametrize(
    ("fmt", "raw", "expected"), [c[1:] for c in JSON_CASES], ids=[c[0] for c in JSON_CASES]
)
def test_json_answers(fmt: Any, raw: bytes, expected: TextResult) -> None:
    text = answer_text(fmt, status=200, content_type=JSON)
    assert text is not None
    assert run(text, raw, size=5, content_type=JSON) == expected


def test_an_oversized_json_answer_is_dropped() -> None:
    text = ChatText()
    result = run(text, openai_json("x" * MAX_JSON_BYTES), size=1024 * 1024, content_type=JSON)
    assert result == TextResult("", False)


# ------------------------------------------------------------------ Responses API


def response_obj(output: list[Any], status: str = "completed") -> dict[str, Any]:
    return {"id": "resp_1", "object": "response", "status": status, "output": output}


def message_item(*texts: str) -> dict[str, Any]:
    return {
        "type": "message",
        "role": "assistant",
        "content": [{"type": "output_text", "text": t, "annotations": []} for t in texts],
    }


REASONING = {"type": "reasoning", "id": "rs_1", "summary": []}
FUNCTION_CALL = {"type": "function_call", "call_id": "c1", "name": "shell", "arguments": "{}"}


def responses_stream(response: dict[str, Any], *, final: str = "response.completed") -> bytes:
    events: list[tuple[str | None, Any]] = [
        ("response.created", {"type": "response.created", "response": {**response, "output": []}}),
        (
            "response.output_text.delta",
            {"type": "response.output_text.delta", "delta": "ignored: the final response counts"},
        ),
        (final, {"type": final, "response": response}),
        (None, "[DONE]"),
    ]
    return sse(*events)


RESPONSES_CASES: list[tuple[str, bytes, TextResult]] = [
    (
        "stream",
        responses_stream(response_obj([REASONING, message_item("Hel", "lo")])),
        TextResult("Hello", True),
    ),
    (
        "stream with a tool call",
        responses_stream(response_obj([message_item("Running it"), FUNCTION_CALL])),
        TextResult("Running it", False),
    ),
    (
        "stream incomplete",
        responses_stream(
            response_obj([message_item("Hi")], status="incomplete"), final="response.incomplete"
        ),
        TextResult("", False),
    ),
    (
        "stream cut before completed",
        sse(("response.created", {"type": "response.created", "response": response_obj([])})),
        TextResult("", False),
    ),
    (
        "stream with an error event",
        sse(("error", {"type": "error", "message": "boom"}))
        + responses_stream(response_obj([message_item("Hi")])),
        TextResult("Hi", False),
    ),
]


@pytest.mark.parametrize(
    ("raw", "expected"), [c[1:] for c in RESPONSES_CASES], ids=[c[0] for c in RESPONSES_CASES]
)
def test_responses_stream(raw: bytes, expected: TextResult) -> None:
    assert run(ResponsesText(), raw) == expected


@pytest.mark.parametrize(
    ("output", "status", "expected"),
    [
        ([message_item("Done.")], "completed", TextResult("Done.", True)),
        ([FUNCTION_CALL], "completed", TextResult("", False)),
        ([{"type": "custom_tool_call", "name": "apply_patch"}], "completed", TextResult("", False)),
        ([message_item("Half")], "in_progress", TextResult("Half", False)),
    ],
)
def test_responses_json(output: list[Any], status: str, expected: TextResult) -> None:
    raw = json.dumps(response_obj(output, status)).encode()
    assert run(ResponsesText(), raw, content_type=JSON) == expected


# ------------------------------------------------------------------ Gemini


def gemini_chunk(*parts: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": list(parts)}, "index": 0}
    candidate["finishReason"] = finish
    return {"candidates": [candidate], "modelVersion": "gemini-x"}


GEMINI_CASES: list[tuple[str, list[dict[str, Any]], TextResult]] = [
    (
        "text",
        [gemini_chunk({"text": "Hel"}), gemini_chunk({"text": "lo"}, finish="STOP")],
        TextResult("Hello", True),
    ),
    (
        "thoughts are left out",
        [
            gemini_chunk({"text": "hmm", "thought": True}),
            gemini_chunk({"text": "A"}, finish="STOP"),
        ],
        TextResult("A", True),
    ),
    (
        "function call",
        [
            gemini_chunk({"text": "Reading"}, {"functionCall": {"name": "read", "args": {}}}),
            gemini_chunk(finish="STOP"),
        ],
        TextResult("Reading", False),
    ),
    ("max tokens", [gemini_chunk({"text": "Hi"}, finish="MAX_TOKENS")], TextResult("Hi", False)),
    ("cut before the finish", [gemini_chunk({"text": "Hi"})], TextResult("Hi", False)),
]


@pytest.mark.parametrize(
    ("chunks", "expected"), [c[1:] for c in GEMINI_CASES], ids=[c[0] for c in GEMINI_CASES]
)
def test_gemini_stream_and_json(chunks: list[dict[str, Any]], expected: TextResult) -> None:
    assert run(GeminiText(), sse(*[(None, c) for c in chunks])) == expected
    # streamGenerateContent without alt=sse sends one JSON array
    assert run(GeminiText(), json.dumps(chunks).encode(), content_type=JSON) == expected


# ------------------------------------------------------------------ choosing a reader


@pytest.mark.parametrize(
    ("fmt", "status", "ctype", "encoding", "kind"),
    [
        ("openai", 200, b"text/event-stream; charset=utf-8", None, ChatText),
        ("anthropic", 200, "text/event-stream", None, MessagesText),
        ("anthropic", 200, b"application/json", b"identity", MessagesText),
        ("openai", 201, b"Application/JSON", None, ChatText),
        ("responses", 200, b"text/event-stream", None, ResponsesText),
        ("gemini", 200, b"application/json", None, GeminiText),
        ("openai", 200, b"application/json", b"gzip", None),
        ("openai", 400, b"application/json", None, None),
        ("anthropic", 529, b"application/json", None, None),
        ("openai", 200, b"text/plain", None, None),
        ("openai", 200, None, None, None),
    ],
)
def test_reader_choice(
    fmt: Any, status: int, ctype: Any, encoding: Any, kind: type[Any] | None
) -> None:
    tap = answer_text(fmt, status=status, content_type=ctype, content_encoding=encoding)
    if kind is None:
        assert tap is None
    else:
        assert isinstance(tap, kind)
