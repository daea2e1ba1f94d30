"""Property, through the proxy: no sequence of requests from several ids ever puts one id's
memory into another id's request.

A real router (uvicorn) with a real backend (the local store; the supermemory-api backend
against the v5 double) in front of the recording fake LiteLLM. Clients are told apart the
way real ones are: the ``x-memory-user-id`` header, JetBrains' and Claude Code's
User-Agents. Each request is a new turn (OpenAI or Anthropic, JSON or streamed) or a tool
loop, in a conversation that several ids share. Every fact carries a token; a token
becomes an id's own once a turn of that id holding it has been stored. Every memory
block LiteLLM receives for an id may hold only tokens that id owns.
"""

from __future__ import annotations

import itertools
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from router.app import RouterApp
from router.memory.chat import CLOSE_TAG, OPEN_TAG
from tests.conftest import RouterFactory
from tests.doubles.fake_litellm import FakeUpstream
from tests.memory.conftest import Double
from tests.support.polling import wait_for

WORDS = ("vault", "teal", "lisbon", "ziggy", "poetry", "4711", "kettle")
TOKEN = re.compile(r"tok\d+q")
BLOCK = re.compile(re.escape(OPEN_TAG) + ".*?" + re.escape(CLOSE_TAG), re.DOTALL)
SHARED_SESSION = {"user_id": json.dumps({"device_id": "d", "session_id": "shared-session"})}


def clients(suffix: str) -> list[tuple[dict[str, str], str]]:
    """(headers, the id the rules give them)."""
    return [
        ({"x-memory-user-id": f"app-a{suffix}"}, f"app-a{suffix}"),
        ({"x-memory-user-id": f"app-b{suffix}"}, f"app-b{suffix}"),
        ({"User-Agent": "OpenAIClientImpl/Java unknown"}, "pycharm-ai-chat"),
        ({"User-Agent": "claude-cli/2.0.14 (external, cli)"}, "claude-code-cli"),
    ]


words = st.lists(st.sampled_from(WORDS), min_size=1, max_size=3).map(" ".join)
plans = st.lists(
    st.tuples(
        st.sampled_from(["tell", "ask", "loop"]),
        st.integers(min_value=0, max_value=3),  # which client
        st.sampled_from(["openai", "anthropic"]),
        st.booleans(),  # streamed
        words,
        st.integers(min_value=0, max_value=50),  # an earlier token or request to refer to
    ),
    min_size=2,
    max_size=8,
)


def texts_in(body: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for message in body.get("messages", []):
        content = message.get("content")
        if isinstance(content, str):
            out.append(content)
        elif isinstance(content, list):
            out += [p["text"] for p in content if isinstance(p, dict) and "text" in p]
    return out


def stores(app: RouterApp, backend: str) -> float:
    labels = {"backend": backend, "operation": "store", "outcome": "ok"}
    return (
        app.metrics.registry.get_sample_value("memory_router_memory_operations_total", labels) or 0
    )


@pytest.fixture(params=["local", "supermemory-api"])
def memory_router(
    request: pytest.FixtureRequest, start_router: RouterFactory, tmp_path: Path
) -> tuple[RouterApp, str, str]:
    backend: str = request.param
    if backend == "local":
        app, url = start_router(memory_backend="local", memory_local_path=tmp_path / "m.sqlite3")
    else:
        double: Double = request.getfixturevalue("double")
        app, url = start_router(
            memory_backend="supermemory-api",
            supermemory_api_key=double.api_key,
            memory_api_url=double.url,
            memory_budget_seconds=5.0,  # a busy machine must not turn searches into skips
        )
    return app, url, backend


def test_no_sequence_of_requests_gives_one_id_anothers_memory(
    memory_router: tuple[RouterApp, str, str], upstream: FakeUpstream
) -> None:
    app, url, backend = memory_router
    owners: dict[str, set[str]] = {}
    outcomes: Counter[str] = Counter()
    examples = itertools.count()
    tokens = itertools.count()
    expected_stores = 0

    @settings(
        max_examples=25,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(plan=plans)
    # Always at least this: a fact, a question that finds it, and a tool loop that
    # reuses it, so the property is never checked on requests that found nothing.
    @example(
        plan=[
            ("tell", 0, "openai", False, "vault", 0),
            ("ask", 0, "openai", False, "vault", 0),
            ("loop", 0, "anthropic", False, "vault", 1),
        ]
    )
    def check(plan: list[tuple[str, int, str, bool, str, int]]) -> None:
        nonlocal expected_stores
        people = clients(f"-{next(examples)}")
        asked: list[str] = []  # this example's questions, for tool loops to continue
        with httpx.Client(timeout=30) as http:
            for kind, who, api, stream, text, ref in plan:
                headers, user_id = people[who]
                if kind == "tell":
                    question = f"note tok{next(tokens)}q {text}"
                elif kind == "ask" or not asked:
                    known = sorted(owners)
                    lure = f" {known[ref % len(known)]}" if known and ref % 2 else ""
                    question = f"what about {text}{lure}?"
                else:
                    question = asked[ref % len(asked)]
                new_turn = kind != "loop" or not asked
                messages: list[dict[str, Any]] = [{"role": "user", "content": question}]
                if not new_turn:
                    if api == "anthropic":
                        use = {"type": "tool_use", "id": "t1", "name": "Read", "input": {}}
                        result = {"type": "tool_result", "tool_use_id": "t1", "content": text}
                        messages += [
                            {"role": "assistant", "content": [use]},
                            {"role": "user", "content": [result]},
                        ]
                    else:
                        call = {"id": "t1", "type": "function", "function": {"name": "f"}}
                        messages += [
                            {"role": "assistant", "content": None, "tool_calls": [call]},
                            {"role": "tool", "tool_call_id": "t1", "content": text},
                        ]
                body: dict[str, Any] = {"model": "m", "messages": messages, "stream": stream}
                if api == "anthropic":
                    body |= {"max_tokens": 32, "metadata": SHARED_SESSION}
                    path = "/v1/messages"
                else:
                    body |= {"metadata": {"conversation_id": "shared-session"}}
                    path = "/v1/chat/completions"
                answer = http.post(url + path, json=body, headers=headers)
                assert answer.status_code == 200, answer.text
                outcomes[answer.headers["x-memory-router-memory"]] += 1

                sent = upstream.last().json()
                for block in BLOCK.findall("\n".join(texts_in(sent))):
                    for token in TOKEN.findall(block):
                        assert user_id in owners.get(token, set()), (
                            f"{user_id} was given {token}, stored only by {owners.get(token)}"
                        )
                if new_turn:
                    asked.append(question)
                    expected_stores += 1
                    target = expected_stores
                    wait_for(lambda t=target: stores(app, backend) >= t, timeout=15)
                    for token in TOKEN.findall(question):
                        owners.setdefault(token, set()).add(user_id)

    check()
    # The property is not empty: memories were found, and tool loops reused them.
    assert outcomes["injected"] > 0 and outcomes["reused"] > 0, outcomes
    assert stores(app, backend) == expected_stores
