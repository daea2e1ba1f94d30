"""docker-compose.yml, unchanged, on a real engine, checked with the real SDKs on the
published port.

The tests run in file order against one stack: the last two stop the router and take the
stack down.
"""

from __future__ import annotations

import json
import os
import threading
import time
from datetime import datetime
from typing import Any

import httpx
import pytest
import yaml
from anthropic import Anthropic
from openai import OpenAI

from tests.doubles.controls import header_values
from tests.support.clients import (
    CLAUDE_CODE_MODEL,
    OPENAI_FORMAT_MODEL,
    PYCHARM_UA,
    Clients,
    assert_streamed_in_lockstep,
    chat,
    nonce,
    openai_stream_in_lockstep,
)

from .conftest import SingleStack
from .stack import REPO, docker, wait_until

pytestmark = pytest.mark.live

# Prometheus scrapes every 15 s in the shipped config: allow a few scrapes.
SCRAPE_WAIT = 60.0
SERVICES = ("litellm", "router", "prometheus", "supermemory")


def openai_client(
    clients: Clients, stack: SingleStack, headers: dict[str, str] | None = None
) -> OpenAI:
    return clients.openai(stack.router_url, stack.keys.litellm_master, headers)


def chat_as(clients: Clients, stack: SingleStack, sent: dict[str, int], text: str) -> None:
    """``sent[id]`` chats from a client naming ``id`` in x-memory-user-id, for each id."""
    for user_id, count in sent.items():
        client = openai_client(clients, stack, {"x-memory-user-id": user_id})
        for _ in range(count):
            chat(client, text)


def claude_code(clients: Clients, stack: SingleStack) -> Anthropic:
    return clients.claude_code(stack.router_url, stack.keys.litellm_master)


def ask_claude(client: Anthropic, text: str) -> str:
    message = client.messages.create(
        model=CLAUDE_CODE_MODEL, max_tokens=256, messages=[{"role": "user", "content": text}]
    )
    return "".join(block.text for block in message.content if block.type == "text")


def test_up_wait_reaches_healthy(single_stack: SingleStack) -> None:
    stack = single_stack.stack
    for service in SERVICES:
        (container,) = stack.containers(service)
        state = stack.inspect(container)["State"]
        assert state["Health"]["Status"] == "healthy", (service, state)
    # The shipped images, by the names docker-compose.yml gives them.
    images = {s: stack.inspect(stack.containers(s)[0])["Config"]["Image"] for s in SERVICES}
    assert images["litellm"] == "ghcr.io/berriai/litellm:v1.108.7"
    assert images["prometheus"] == "prom/prometheus:v3.5.0"
    assert images["router"] == f"{stack.project}-router"
    assert httpx.get(f"{single_stack.router_url}/health/readiness").json()["status"] == "ready"


def test_each_client_keeps_its_own_memory(single_stack: SingleStack, clients: Clients) -> None:
    marker = nonce()
    app_id = f"live-app-{marker}"
    pycharm = openai_client(clients, single_stack, {"User-Agent": PYCHARM_UA})
    app = openai_client(clients, single_stack, {"x-memory-user-id": app_id})
    default = openai_client(clients, single_stack)
    claude = claude_code(clients, single_stack)

    facts = {
        "pycharm": f"remember: the PyCharm project {marker} uses Django",
        "claude": f"remember: the Claude Code repo {marker} uses Rust",
        "app": f"remember: the mobile app {marker} uses Kotlin",
        "default": f"remember: the scratch script {marker} uses Bash",
    }
    chat(pycharm, facts["pycharm"])
    ask_claude(claude, facts["claude"])
    chat(app, facts["app"])
    chat(default, facts["default"])

    answers = {
        "pycharm": chat(pycharm, f"what does {marker} use? (pycharm)"),
        "claude": ask_claude(claude, f"what does {marker} use? (claude)"),
        "app": chat(app, f"what does {marker} use? (app)"),
        "default": chat(default, f"what does {marker} use? (default)"),
    }
    for client, answer in answers.items():
        assert facts[client] in answer, f"{client} lost its own memory: {answer}"
        others = [fact for other, fact in facts.items() if other != client]
        assert not any(fact in answer for fact in others), f"{client} saw another's: {answer}"

    # Supermemory was told four different users, one per client.
    users = {
        client: {
            r["user_id"] for r in single_stack.double.requests_with(f"{marker} use? ({client})")
        }
        for client in answers
    }
    assert users == {
        "pycharm": {"pycharm-ai-chat"},
        "claude": {"claude-code-cli"},
        "app": {app_id},
        "default": {"default-dev"},
    }


def test_streams_arrive_chunk_by_chunk(single_stack: SingleStack, clients: Clients) -> None:
    """The double sends each text chunk only once the client has read the one before:
    a hop that held a chunk back would stall the stream, and the answer would end early."""
    double = single_stack.double
    marker = nonce()
    question = f"stream {marker}"
    client = openai_client(clients, single_stack)
    pieces = openai_stream_in_lockstep(client, double, marker, question)
    assert_streamed_in_lockstep(pieces, question)

    question = f"claude stream {marker}"
    double.hold(marker)
    pieces = []
    with claude_code(clients, single_stack).messages.stream(
        model=CLAUDE_CODE_MODEL,
        max_tokens=256,
        messages=[{"role": "user", "content": question}],
    ) as events:
        for piece in events.text_stream:
            pieces.append(piece)
            double.allow(marker)
    assert_streamed_in_lockstep(pieces, question)


def test_the_key_never_comes_back(single_stack: SingleStack) -> None:
    key = single_stack.keys.supermemory
    url = single_stack.router_url
    auth = {"Authorization": f"Bearer {single_stack.keys.litellm_master}"}
    marker = nonce()
    body = {"model": OPENAI_FORMAT_MODEL, "messages": [{"role": "user", "content": marker}]}
    seen: list[str] = []
    with httpx.Client(timeout=60, trust_env=False) as http:
        for stream in (False, True):
            with http.stream(
                "POST", f"{url}/v1/chat/completions", json={**body, "stream": stream}, headers=auth
            ) as response:
                assert response.status_code == 200
                seen.append(str(response.headers) + response.read().decode())
        for path in (
            "/memory-routing/info",
            "/memory-routing/stats",
            "/memory-routing/dashboard",
            "/metrics",
            "/health/readiness",
        ):
            seen.append(http.get(url + path).text)
    assert all(key not in text for text in seen)
    assert key not in single_stack.stack.logs("router")
    # Control: the key did travel upstream, in the one header meant for it.
    records = single_stack.double.requests_with(marker)
    assert len(records) == 2
    assert all(header_values(r, "x-supermemory-api-key") == [key] for r in records)


def test_prometheus_counts_each_client_exactly(single_stack: SingleStack, clients: Clients) -> None:
    marker = nonce()
    sent = {f"prom-a-{marker}": 2, f"prom-b-{marker}": 3}
    chat_as(clients, single_stack, sent, f"count me {marker}")

    expr = f'sum by (user_id) (memory_router_requests_total{{user_id=~"prom-.-{marker}"}})'
    prometheus = single_stack.prometheus

    def counted() -> dict[str, float] | None:
        values = prometheus.values(expr, "user_id")
        return (
            values
            if values
            and all(v >= sent.get(k, 0) for k, v in values.items())
            and (set(values) == set(sent))
            else None
        )

    assert wait_until("both clients' series in Prometheus", counted, SCRAPE_WAIT) == sent
    series = prometheus.query(f'memory_router_requests_total{{user_id="prom-b-{marker}"}}')
    assert [(s["metric"]["route"], s["metric"]["status"], s["value"][1]) for s in series] == [
        ("/v1/chat/completions", "200", "3")
    ]


def test_the_dashboard_shows_each_client(single_stack: SingleStack, clients: Clients) -> None:
    """After ``docker compose up``: the page on the published port, and its stats counting
    each client's requests apart."""
    marker = nonce()
    sent = {f"dash-a-{marker}": 1, f"dash-b-{marker}": 2}
    chat_as(clients, single_stack, sent, f"show me {marker}")
    url = single_stack.router_url
    with httpx.Client(timeout=30, trust_env=False) as http:
        page = http.get(url + "/memory-routing/dashboard")
        assert page.status_code == 200 and "dashboard/dashboard.js" in page.text
        assert http.get(url + "/memory-routing/dashboard/dashboard.js").status_code == 200
        stats = http.get(url + "/memory-routing/stats").json()
    counted = {c["user_id"]: c["requests"] for c in stats["clients"] if marker in c["user_id"]}
    assert counted == sent
    assert stats["router"]["litellm"]["status"] == "ok"
    assert stats["router"]["supermemory_key_configured"] is True


def test_every_shipped_scrape_target_is_up(single_stack: SingleStack) -> None:
    shipped = yaml.safe_load((REPO / "prometheus" / "prometheus.yml").read_text())
    jobs = {job["job_name"] for job in shipped["scrape_configs"]}

    def all_scraped() -> list[dict[str, Any]] | None:
        targets = single_stack.prometheus.targets()
        return targets if all(t["health"] != "unknown" for t in targets) else None

    targets = wait_until("every target scraped once", all_scraped, SCRAPE_WAIT)
    assert {t["labels"]["job"] for t in targets} == jobs
    down = {t["labels"]["job"]: t["lastError"] for t in targets if t["health"] != "up"}
    assert down == {}
    # LiteLLM's target serves LiteLLM's own metrics.
    assert single_stack.prometheus.query('up{job="litellm"} == 1')
    assert single_stack.prometheus.query('{job="litellm", __name__=~"litellm_.+"}')


def test_a_rules_edit_on_the_host_is_hot_reloaded(
    single_stack: SingleStack, clients: Clients
) -> None:
    marker = nonce()
    header = {"x-live-client": marker}
    info_url = f"{single_stack.router_url}/memory-routing/info"
    assert httpx.get(info_url, headers=header).json()["user_id"] == "default-dev"

    rules_path = single_stack.stack.router_dir / "config.yaml"
    rules = yaml.safe_load(rules_path.read_text())
    rules["user_id_mappings"]["header_patterns"].insert(
        0, {"header": "x-live-client", "pattern": f"^{marker}$", "user_id": f"reloaded-{marker}"}
    )
    # As editors save: a new file renamed over the old one.
    staged = rules_path.with_name(".config.yaml.new")
    staged.write_text(yaml.safe_dump(rules))
    staged.chmod(0o644)
    os.replace(staged, rules_path)

    wait_until(
        "the router in its container applies the edited rules",
        lambda: httpx.get(info_url, headers=header).json()["user_id"] == f"reloaded-{marker}",
        timeout=30,
    )
    chat(openai_client(clients, single_stack, header), f"after reload {marker}")
    (record,) = single_stack.double.requests_with(f"after reload {marker}")
    assert record["user_id"] == f"reloaded-{marker}"


def test_the_router_runs_as_a_non_root_user(single_stack: SingleStack) -> None:
    stack = single_stack.stack
    (container,) = stack.containers("router")
    assert stack.inspect(container)["Config"]["User"] == "10001:10001"
    uid = stack.python_in(container, "import os; print(os.getuid(), os.getgid())").split()
    assert uid == ["10001", "10001"]


def test_no_secret_in_the_built_image(single_stack: SingleStack) -> None:
    stack = single_stack.stack
    image = f"{stack.project}-router"
    history = docker("history", "--no-trunc", "--format", "{{.CreatedBy}}", image)
    inspected = json.dumps(stack.inspect(image))
    assert "pip install" in history  # control: the history is really there
    for secret in single_stack.keys.all():
        assert secret not in history and secret not in inspected
    env = stack.inspect(image)["Config"]["Env"]
    assert not [e for e in env if e.split("=")[0].endswith(("_KEY", "_TOKEN", "_SECRET"))]
    # At run time the container has the key it needs, from the environment only.
    (container,) = stack.containers("router")
    assert (
        f"SUPERMEMORY_API_KEY={single_stack.keys.supermemory}"
        in (stack.inspect(container)["Config"]["Env"])
    )


def _log_time(line: str) -> float:
    """The timestamp `docker compose logs --timestamps` put on a line, in epoch seconds."""
    stamp = next(word for word in line.split() if word[:4].isdigit() and "T" in word)
    whole, _, fraction = stamp.rstrip("Z").partition(".")
    parsed = datetime.fromisoformat(whole + "+00:00")
    return parsed.timestamp() + float("0." + (fraction or "0"))


def test_stop_drains_an_open_stream_and_exits_0(
    single_stack: SingleStack, clients: Clients
) -> None:
    stack = single_stack.stack
    (container,) = stack.containers("router")
    grace = stack.inspect(container)["Config"].get("StopTimeout") or 10
    marker = nonce()
    # Held: the stream stays open, one chunk at a time, until this test has seen the
    # router start draining.
    single_stack.double.hold(marker)
    stream = openai_client(clients, single_stack).chat.completions.create(
        model=OPENAI_FORMAT_MODEL,
        messages=[{"role": "user", "content": f"drain {marker}"}],
        stream=True,
    )
    arrivals: list[float] = []
    text = ""
    finish = None
    stopper: dict[str, Any] = {}
    stop_sent = False

    def stop() -> None:
        stopper["started"] = time.time()
        process = stack.popen("stop", "router")
        stopper["output"] = process.communicate(timeout=grace + 60)[0]
        stopper["code"] = process.returncode
        stopper["ended"] = time.time()

    thread = threading.Thread(target=stop)
    for chunk in stream:
        choice = chunk.choices[0] if chunk.choices else None
        if choice and choice.delta.content:
            arrivals.append(time.time())
            text += choice.delta.content
            if not stop_sent:
                stop_sent = True
                thread.start()
                # Go on reading only once the router is shutting down with the stream open.
                wait_until(
                    "the router to start draining",
                    lambda: "Waiting for connections to close" in stack.logs("router", tail=20),
                    timeout=20,
                    interval=0.1,
                )
            single_stack.double.allow(marker)
        if choice and choice.finish_reason:
            finish = choice.finish_reason
    thread.join(timeout=grace + 90)

    assert finish == "stop" and f"drain {marker}" in text, text
    assert stopper.get("code") == 0, stopper
    draining = next(
        line for line in stack.logs("router").splitlines() if "Waiting for connections" in line
    )
    assert arrivals[-1] > _log_time(draining), "no chunk arrived after the drain began"
    state = stack.inspect(container)["State"]
    assert (state["Status"], state["ExitCode"]) == ("exited", 0)
    assert stopper["ended"] - stopper["started"] < grace


def test_down_leaves_nothing_behind(single_stack: SingleStack) -> None:
    stack = single_stack.stack
    assert stack.leftovers()["containers"]  # control: the stack is there
    stack.down()
    assert stack.leftovers() == {"containers": [], "networks": [], "volumes": []}
