"""Memory as a client experiences it: a client sees its own earlier messages, and no one
else's."""

from __future__ import annotations

import pytest

from tests.support.clients import PYCHARM_UA, Clients, chat, nonce, one_record

from .services import Double, Router

pytestmark = pytest.mark.e2e


def test_same_client_sees_its_earlier_message(
    router: Router, double: Double, clients: Clients
) -> None:
    marker = nonce()
    client = clients.openai(router.url, router.litellm.master_key)
    fact = f"remember: Project X{marker} uses Python"

    chat(client, fact)
    answer = chat(client, f"What language does Project X{marker} use?")

    assert fact in answer
    second = one_record(double.requests_with(f"What language does Project X{marker}"))
    assert fact in second["prompt_given_to_model"]


def test_memories_do_not_cross_between_clients(
    router: Router, double: Double, clients: Clients
) -> None:
    marker = nonce()
    key = router.litellm.master_key
    pycharm = clients.openai(router.url, key, {"User-Agent": PYCHARM_UA})
    mobile = clients.openai(router.url, key, {"x-memory-user-id": "mobile-app"})
    preference = f"Remember: I prefer tabs over spaces ({marker})"

    chat(pycharm, preference)
    mobile_answer = chat(mobile, f"Do I prefer tabs or spaces? ({marker})")
    pycharm_answer = chat(pycharm, f"Do I prefer tabs or spaces? again ({marker})")

    assert preference not in mobile_answer
    # Control: the memory exists, for the client that stated it.
    assert preference in pycharm_answer
    asked_by_mobile = [r for r in double.requests_with(marker) if r.get("user_id") == "mobile-app"]
    assert len(asked_by_mobile) == 1
    assert not any("tabs over spaces" in m for m in asked_by_mobile[0]["memories_injected"])
