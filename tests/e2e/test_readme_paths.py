"""The README's way in without Docker, run as written, from a copy of the checkout that
has what a clean clone has and nothing more (no .venv, no .venvs, no .env).

The commands come from README.md itself: the bash block under "Run without Docker" (its
last command keeps running: the rest are run first, one by one), then the block under
"First request". The test stands in for the user only where the README asks them to act:
it fills in .env once the commands have created it (the keys, and LiteLLM's Anthropic
base URL on the Supermemory double), and it points the request at the free port it gave
the router. It also sets LITELLM_BIN to the LiteLLM the tier already has, which the
README documents, so that LiteLLM is not installed again; the router is installed into
the copy's own .venv, with pip's cache as it is. Whatever the README's commands stop
doing, this test fails.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.doubles.controls import header_values
from tests.doubles.supermemory_router import ANSWER_PREFIX
from tests.support.checkout import copy_checkout, fill_env_file
from tests.support.environment import clean_env
from tests.support.ports import HOST, free_port
from tests.support.readme import blocks_under, commands

from .services import LITELLM_START_TIMEOUT, Double, Secrets, press_ctrl_c, start_dev_script

pytestmark = pytest.mark.e2e

START_HEADING = "Run without Docker"
REQUEST_HEADING = "First request"
README_PORT = "localhost:8765"  # the router's address in the README's request
INSTALL_TIMEOUT = 600.0  # the router's pip install into the fresh .venv, on a busy machine


def _bash_block(heading: str) -> str:
    blocks = [block for block in blocks_under(heading) if block.language in ("bash", "sh")]
    assert len(blocks) == 1, f"README: expected one bash block under {heading!r}, {blocks}"
    return blocks[0].text


def test_the_readme_commands_without_docker_answer_through_the_router(
    tmp_path: Path, litellm_bin: Path, double: Double, e2e_secrets: Secrets
) -> None:
    *setup, keeps_running = commands(_bash_block(START_HEADING))
    request = _bash_block(REQUEST_HEADING)
    assert README_PORT in request, f"the request no longer goes to {README_PORT}"

    checkout = copy_checkout(tmp_path / "memory-router")
    router_port, litellm_port = free_port(), free_port()
    env = clean_env(LITELLM_BIN=str(litellm_bin), LITELLM_LOCAL_MODEL_COST_MAP="True")
    user_edit = {
        "ANTHROPIC_API_KEY": e2e_secrets.anthropic_key,
        "LITELLM_MASTER_KEY": e2e_secrets.litellm_master_key,
        "SUPERMEMORY_API_KEY": e2e_secrets.supermemory_key,
        "SUPERMEMORY_ANTHROPIC_BASE_URL": double.anthropic_base,
        "MEMORY_ROUTER_PORT": str(router_port),
        "LITELLM_PORT": str(litellm_port),
    }

    env_file = checkout / ".env"
    for command in setup:
        done = subprocess.run(
            ["bash", "-ec", command], cwd=checkout, env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, f"README command failed: {command}\n{done.stderr}"
    assert env_file.exists(), f"the README's commands {setup} created no .env"
    fill_env_file(env_file, user_edit)

    dev = start_dev_script(
        "readme-dev", ["bash", "-ec", keeps_running], checkout=checkout, env=env
    )
    try:
        router = f"http://{HOST}:{router_port}"
        dev.wait_http_ok(f"{router}/health/readiness", INSTALL_TIMEOUT + LITELLM_START_TIMEOUT)
        assert (checkout / ".venv" / "bin" / "memory-router").exists()

        answered = subprocess.run(
            ["bash", "-ec", request.replace(README_PORT, f"{HOST}:{router_port}")],
            cwd=checkout,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert answered.returncode == 0, answered.stderr
        reply = json.loads(answered.stdout)
        text = reply["choices"][0]["message"]["content"]
        assert text.startswith(ANSWER_PREFIX), reply
        # The double answered the README's own question, for the shared default id.
        seen = double.requests()[-1]
        content = seen["body"]["messages"][-1]["content"]  # as LiteLLM sent it to Anthropic
        if isinstance(content, list):
            content = "".join(part["text"] for part in content)
        question = content
        assert question in request and text.endswith(f"You asked: {question}"), (text, seen)
        assert header_values(seen, "x-sm-user-id") == ["default-dev"]
    finally:
        if dev.alive():
            press_ctrl_c(dev)
            try:
                dev.popen.wait(60)
            except subprocess.TimeoutExpired:
                dev.stop()
