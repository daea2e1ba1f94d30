"""The Supermemory v5 double, driven by the real ``supermemory`` SDK.

The double refuses unknown fields and options in the wrong place, so every call that
succeeds here shows that it accepts exactly what the SDK sends; the failing calls show
that it enforces the documented contract (bearer auth, names, option placement).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
import supermemory
from supermemory import AsyncSupermemory

from tests.memory.conftest import Double


@pytest.fixture
async def sdk(double: Double) -> AsyncIterator[AsyncSupermemory]:
    async with httpx.AsyncClient(trust_env=False) as http:
        yield AsyncSupermemory(
            api_key=double.api_key, base_url=double.url, max_retries=0, http_client=http
        )


async def test_add_search_list_and_delete_round_trip(sdk: AsyncSupermemory, double: Double) -> None:
    ref = await sdk.add(
        "user_a",
        content="Alex prefers morning meetings",
        id="turn-1",
        metadata={"source": "test", "weight": 2.5, "pinned": True, "tags": ["x"]},
    )
    assert (ref.id, ref.status) == ("turn-1", "queued")

    found = await sdk.search("user_a", query="when are meetings?", limit=5, search_mode="hybrid")
    texts = {r.memory or r.chunk for r in found.results}
    assert texts == {"Alex prefers morning meetings"}
    assert all(0 < r.similarity <= 1 for r in found.results)

    page = await sdk.list(
        "user_a", "documents", limit=10, sort="createdAt", order="desc", include={"content": True}
    )
    assert [(d.id, d.content) for d in page.documents] == [
        ("turn-1", "Alex prefers morning meetings")
    ]
    assert page.pagination.total_items == 1

    memories = await sdk.list("user_a", "memories")
    memory_id = memories.memories[0].id
    forgotten = await sdk.memories.forget("user_a", ids=[memory_id])
    assert forgotten.count == 1
    only_chunks = await sdk.search("user_a", query="meetings", search_mode="memories")
    assert only_chunks.results == []

    deleted = await sdk.documents.delete("user_a", ids=["turn-1", "missing"])
    assert deleted.count == 1
    assert [e.id for e in deleted.errors] == ["missing"]
    assert double.state.texts("user_a") == []


async def test_what_the_sdk_sends(sdk: AsyncSupermemory, double: Double) -> None:
    await sdk.search("user_a", query="q", limit=3, search_mode="memories", threshold=0.5)
    await sdk.list("user_a", "documents", page=2, limit=7, sort="createdAt", order="asc")

    (search,) = double.requests_for("search")
    assert search["method"] == "POST"
    assert search["path"] == "/ns/user_a/search"
    assert search["query"] == {}
    assert search["body"] == {"query": "q", "limit": 3, "searchMode": "memories", "threshold": 0.5}
    headers = search["headers"]
    assert isinstance(headers, dict)
    assert headers["authorization"] == f"Bearer {double.api_key}"

    (listing,) = double.requests_for("list")
    assert listing["path"] == "/ns/user_a/list/documents"
    assert listing["query"] == {"page": "2", "limit": "7", "sort": "createdAt", "order": "asc"}
    assert listing["body"] in ({}, None)


async def test_a_wrong_key_is_a_401(double: Double) -> None:
    async with httpx.AsyncClient(trust_env=False) as http:
        wrong = AsyncSupermemory(
            api_key="sm_wrong", base_url=double.url, max_retries=0, http_client=http
        )
        with pytest.raises(supermemory.AuthenticationError) as caught:
            await wrong.search("user_a", query="anything")
    assert caught.value.status_code == 401


async def test_no_key_at_all_is_a_401(double: Double) -> None:
    async with httpx.AsyncClient(trust_env=False) as http:
        response = await http.post(f"{double.url}/ns/user_a/search", json={"query": "x"})
    assert response.status_code == 401
    assert "error" in response.json()


async def test_a_search_option_in_the_query_string_is_a_400(sdk: AsyncSupermemory) -> None:
    with pytest.raises(supermemory.BadRequestError) as caught:
        await sdk.search("user_a", query="x", extra_query={"limit": 5})
    assert caught.value.status_code == 400


async def test_list_pagination_in_the_body_is_a_400(sdk: AsyncSupermemory) -> None:
    with pytest.raises(supermemory.BadRequestError):
        await sdk.list("user_a", "documents", extra_body={"limit": 5})


async def test_an_unknown_body_field_is_a_400(sdk: AsyncSupermemory) -> None:
    with pytest.raises(supermemory.BadRequestError):
        await sdk.add("user_a", content="x", extra_body={"containerTag": "user_b"})


@pytest.mark.parametrize(
    "body",
    [
        {"q": "legacy v4 name for the query"},
        {"query": "x", "containerTag": "user_b"},
        {"query": "x", "limit": "5"},
        {"query": ""},
        {},
    ],
)
async def test_malformed_search_bodies_are_400(double: Double, body: dict[str, object]) -> None:
    async with httpx.AsyncClient(trust_env=False) as http:
        response = await http.post(
            f"{double.url}/ns/user_a/search",
            json=body,
            headers={"authorization": f"Bearer {double.api_key}"},
        )
    assert response.status_code == 400
    assert response.json()["success"] is False


@pytest.mark.parametrize("namespace", ["has space", "semi;colon", "dot.ted", "x" * 101, "ü"])
async def test_invalid_namespaces_are_400(sdk: AsyncSupermemory, namespace: str) -> None:
    with pytest.raises(supermemory.BadRequestError):
        await sdk.search(namespace, query="x")


async def test_the_longest_valid_namespace_is_accepted(sdk: AsyncSupermemory) -> None:
    namespace = "Az09_:-" + "x" * 93
    assert len(namespace) == 100
    await sdk.add(namespace, content="fits")
    found = await sdk.search(namespace, query="fits")
    assert [r.memory or r.chunk for r in found.results][:1] == ["fits"]


async def test_namespaces_are_isolated(sdk: AsyncSupermemory, double: Double) -> None:
    await sdk.add("user_a", content="secret plan for a", id="doc-a")

    assert (await sdk.search("user_b", query="secret plan")).results == []
    assert (await sdk.list("user_b", "documents")).documents == []
    deleted = await sdk.documents.delete("user_b", ids=["doc-a"])
    assert deleted.count == 0
    assert double.state.texts("user_a") == ["secret plan for a"]


async def test_the_same_id_in_two_namespaces_is_two_documents(
    sdk: AsyncSupermemory, double: Double
) -> None:
    await sdk.add("user_a", content="from a", id="same")
    await sdk.add("user_b", content="from b", id="same")
    assert double.state.texts("user_a") == ["from a"]
    assert double.state.texts("user_b") == ["from b"]


async def test_re_adding_the_same_content_under_an_id_is_a_no_op(
    sdk: AsyncSupermemory, double: Double
) -> None:
    first = await sdk.add("user_a", content="once", id="turn-9")
    again = await sdk.add("user_a", content="once", id="turn-9")
    assert (first.status, again.status) == ("queued", "done")
    assert double.state.texts("user_a") == ["once"]


async def test_deleting_a_namespace(sdk: AsyncSupermemory, double: Double) -> None:
    await sdk.add("user_a", content="one")
    await sdk.add("user_a", content="two")
    await sdk.add("user_b", content="kept")

    result = await sdk.namespaces.delete("user_a")

    assert result.status == "deleted"
    assert result.deleted_documents_count == 2
    assert double.state.texts("user_a") == []
    assert double.state.texts("user_b") == ["kept"]
    with pytest.raises(supermemory.NotFoundError):
        await sdk.namespaces.delete("user_a")


async def test_deleting_a_namespace_ignores_a_body(double: Double) -> None:
    """Documented: DELETE /ns/{ns} ignores a JSON body; a moveTo there does not move."""
    async with httpx.AsyncClient(trust_env=False) as http:
        auth = {"authorization": f"Bearer {double.api_key}"}
        await http.post(f"{double.url}/ns/user_a/document", json={"content": "x"}, headers=auth)
        response = await http.request(
            "DELETE", f"{double.url}/ns/user_a", json={"moveTo": "user_b"}, headers=auth
        )
    assert response.json()["status"] == "deleted"
    assert double.state.texts("user_b") == []


async def test_injected_failures_come_back_as_sdk_errors(
    sdk: AsyncSupermemory, double: Double
) -> None:
    double.state.fail_next.extend([503, 429])
    with pytest.raises(supermemory.InternalServerError):
        await sdk.search("user_a", query="x")
    with pytest.raises(supermemory.RateLimitError):
        await sdk.search("user_a", query="x")
    assert (await sdk.search("user_a", query="x")).results == []


async def test_legacy_routes_are_not_served(double: Double) -> None:
    async with httpx.AsyncClient(trust_env=False) as http:
        response = await http.post(
            f"{double.url}/v4/search",
            json={"q": "x", "containerTag": "user_a"},
            headers={"authorization": f"Bearer {double.api_key}"},
        )
    assert response.status_code == 404
