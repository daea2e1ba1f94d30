"""A contract double of Supermemory's v5 API (the one the ``supermemory`` 5.x SDK speaks).

What it enforces, from Supermemory's v5 reference and migration guide:

* ``Authorization: Bearer <key>`` on every route, else 401 ``{"error": ...}``;
* a namespace in the path, 1-100 characters of ``A-Z a-z 0-9 _ : -``, else 400;
* options in their documented place, else 400: POST bodies carry every option, except the
  list pagination (``page``, ``limit``, ``sort``, ``order``), which stays in the query string;
  DELETE /ns/{ns} reads only ``moveTo`` from the query and ignores any body;
* typed bodies: a missing required field, a wrong type or an unknown field is a 400 in the
  API's validation shape ``{"success": false, "error": [{"message", "path"}]}`` (unknown
  fields are refused outright; the API documents typed bodies, and a strict double shows
  that the SDK sends nothing it does not know);
* isolation: every document, chunk and memory lives in exactly one namespace, and no route
  reads or changes another namespace's content.

Routes::

    POST   /ns/{ns}/document        add, or append to a caller-chosen id
    POST   /ns/{ns}/search          ranked memories and chunks
    POST   /ns/{ns}/list/{type}     documents | chunks | memories, paginated
    DELETE /ns/{ns}/document        delete documents (and what was derived from them)
    DELETE /ns/{ns}/memories        forget memories by id
    DELETE /ns/{ns}                 delete a namespace, or move it with ?moveTo=

Where the real service uses models, the double is plain: each added text becomes one chunk
and, at once, one memory holding the same text; search scores are the share of the query's
words found in a text. Tests can look at ``DoubleState`` directly (``requests``, the stored
``namespaces``), make the next answers fail (``fail_next``) or hold requests
(``hold`` with ``release``).

When it runs as a process, the same controls are test-only routes, outside the contract
and without auth: ``GET /_double/health``, ``GET /_double/requests``,
``GET /_double/texts/{ns}`` (the namespace's document texts), ``POST /_double/hold/{op}``
(hold that operation, e.g. ``search``), ``POST /_double/release`` (free held requests,
hold nothing more) and ``POST /_double/fail/{status}?count=N``.

Run it as a process::

    SUPERMEMORY_DOUBLE_API_KEY=... python -m tests.doubles.supermemory_api --port 6767
"""

from __future__ import annotations

import functools
import itertools
import json
import re
import secrets
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, TypeVar

import anyio.to_thread
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.doubles.formats import recorder_routes, run

NAMESPACE = re.compile(r"[A-Za-z0-9_:-]{1,100}")
_WORD = re.compile(r"\w+")

MetadataValue = str | float | bool | list[str]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@functools.lru_cache(maxsize=65536)
def _words(text: str) -> frozenset[str]:
    """The words of a text, lower-cased (cached: the double scores every stored text on
    each search, and the benchmark searches a warm store thousands of times)."""
    return frozenset(w.lower() for w in _WORD.findall(text))


# ------------------------------------------------------------------ request bodies


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class AddBody(_Body):
    content: Annotated[str, Field(min_length=1)]
    id: Annotated[str, Field(min_length=1, max_length=255)] | None = None
    supportingContext: Annotated[str, Field(max_length=1500)] | None = None
    metadata: dict[str, MetadataValue] | None = None
    group: dict[str, MetadataValue] | None = None
    date: str | None = None
    taskType: Literal["memory", "superrag"] | None = None
    dreaming: Literal["dynamic", "instant"] | None = None


class SearchInclude(_Body):
    documents: bool | None = None
    related: bool | None = None
    forgotten: bool | None = None


class SearchBody(_Body):
    query: Annotated[str, Field(min_length=1)]
    filter: dict[str, Any] | None = None
    searchMode: Literal["hybrid", "memories", "chunks"] | None = None
    limit: Annotated[int, Field(ge=1, le=100)] | None = None
    include: SearchInclude | None = None
    threshold: Annotated[float, Field(ge=0, le=1)] | None = None
    rerank: Literal["none", "order", "aggregate"] | None = None
    rewriteQuery: bool | None = None


class ListInclude(_Body):
    content: bool | None = None
    memoryCount: bool | None = None
    forgotten: bool | None = None


class ListBody(_Body):
    filter: dict[str, Any] | None = None
    include: ListInclude | None = None


class ListQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    page: Annotated[int, Field(ge=1)] = 1
    limit: Annotated[int, Field(ge=1, le=100)] = 50
    sort: Literal["createdAt", "updatedAt", "position"] = "createdAt"
    order: Literal["asc", "desc"] = "desc"


class IdsBody(_Body):
    ids: Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1, max_length=500)]


# ------------------------------------------------------------------ stored state


@dataclass
class StoredMemory:
    id: str
    document_id: str
    text: str
    metadata: dict[str, Any]
    created_at: str
    forgotten: bool = False


@dataclass
class StoredDocument:
    id: str
    content: str
    metadata: dict[str, Any]
    created_at: str
    updated_at: str
    chunks: list[tuple[str, str, str]] = field(default_factory=list)  # (id, text, created_at)


@dataclass
class Namespace:
    documents: dict[str, StoredDocument] = field(default_factory=dict)
    memories: dict[str, StoredMemory] = field(default_factory=dict)


@dataclass
class DoubleState:
    """Everything the double holds; one per app, nothing global."""

    api_key: str
    namespaces: dict[str, Namespace] = field(default_factory=dict)
    requests: list[dict[str, Any]] = field(default_factory=list)
    # Statuses to answer instead of serving, one per request, in order (e.g. [503, 503]).
    fail_next: list[int] = field(default_factory=list)
    # Operations ("add", "search", ...) that wait until ``release`` is set.
    hold: set[str] = field(default_factory=set)
    release: threading.Event = field(default_factory=threading.Event)
    held: int = 0
    _ids: itertools.count[int] = field(default_factory=itertools.count)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def new_id(self, prefix: str) -> str:
        return f"{prefix}_{next(self._ids):06d}{secrets.token_hex(4)}"

    def texts(self, namespace: str) -> list[str]:
        """Every document text stored under ``namespace`` (test helper)."""
        space = self.namespaces.get(namespace)
        return [d.content for d in space.documents.values()] if space else []


# ------------------------------------------------------------------ responses


def _error(status: int, error: str, details: str | None = None) -> JSONResponse:
    body: dict[str, Any] = {"error": error}
    if details:
        body["details"] = details
    return JSONResponse(body, status_code=status)


def _validation_error(exc: ValidationError) -> JSONResponse:
    items = [
        {"message": e["msg"], "path": [p for p in e["loc"] if isinstance(p, str | int)]}
        for e in exc.errors()
    ]
    return JSONResponse({"success": False, "error": items}, status_code=400)


def _wrong_place(names: list[str], where: str) -> JSONResponse:
    return _error(400, "Invalid request", f"options not accepted in the {where}: {sorted(names)}")


def _memory_json(memory: StoredMemory) -> dict[str, Any]:
    return {
        "id": memory.id,
        "memory": memory.text,
        "metadata": memory.metadata,
        "isStatic": False,
        "isInference": False,
        "isLatest": not memory.forgotten,
        "isForgotten": memory.forgotten,
        "version": 1,
        "system": {"createdAt": memory.created_at, "updatedAt": memory.created_at},
    }


def _document_json(doc: StoredDocument, space: Namespace, include: ListInclude) -> dict[str, Any]:
    system: dict[str, Any] = {
        "status": "done",
        "dreamingStatus": "done",
        "createdAt": doc.created_at,
        "updatedAt": doc.updated_at,
    }
    if include.memoryCount:
        system["memoryCount"] = sum(
            1 for m in space.memories.values() if m.document_id == doc.id and not m.forgotten
        )
    item: dict[str, Any] = {
        "id": doc.id,
        "title": None,
        "type": "text",
        "summary": None,
        "metadata": doc.metadata,
        "url": None,
        "system": system,
    }
    if include.content:
        item["content"] = doc.content
    return item


# ------------------------------------------------------------------ the app


Handler = Callable[[Request, str, Any], Awaitable[Response]]
M = TypeVar("M", bound=BaseModel)


class _Refused(Exception):
    """A request the double answers with ``response`` (a 400 in the API's shape)."""

    def __init__(self, response: JSONResponse) -> None:
        super().__init__()
        self.response = response


def create_app(*, api_key: str) -> Starlette:
    """The double as an ASGI app; ``app.state.double`` is its ``DoubleState``."""
    state = DoubleState(api_key=api_key)

    async def read_json(request: Request) -> tuple[Any, Response | None]:
        raw = await request.body()
        if not raw:
            return {}, None
        try:
            return json.loads(raw), None
        except ValueError:
            return None, _error(400, "Invalid JSON body")

    def route(operation: str, *, query: frozenset[str] = frozenset()) -> Callable[[Handler], Any]:
        """Wraps a handler with recording, auth, faults, namespace and query-string checks."""

        def wrap(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
            async def endpoint(request: Request) -> Response:
                body, bad_json = await read_json(request)
                with state.lock:
                    state.requests.append(
                        {
                            "operation": operation,
                            "method": request.method,
                            "path": request.url.path,
                            "query": dict(request.query_params),
                            "headers": dict(request.headers),
                            "body": body,
                        }
                    )
                auth = request.headers.get("authorization", "")
                expected = f"Bearer {state.api_key}"
                if not secrets.compare_digest(auth.encode(), expected.encode()):
                    return _error(401, "Unauthorized", "missing or invalid bearer token")
                with state.lock:
                    fault = state.fail_next.pop(0) if state.fail_next else None
                if fault is not None:
                    return _error(fault, "Injected failure")
                if operation in state.hold:
                    with state.lock:
                        state.held += 1
                    await anyio.to_thread.run_sync(state.release.wait)
                namespace = request.path_params["namespace"]
                if NAMESPACE.fullmatch(namespace) is None:
                    return _error(400, "Invalid namespace", "1-100 characters of A-Z a-z 0-9 _ : -")
                extra = [k for k in request.query_params if k not in query]
                if extra:
                    return _wrong_place(extra, "query string")
                if bad_json is not None:
                    return bad_json
                try:
                    return await handler(request, namespace, body)
                except _Refused as refused:
                    return refused.response

            return endpoint

        return wrap

    def parse(model: type[M], body: Any) -> M:
        """The body as ``model``; a body that is not one refuses the request (_Refused)."""
        if not isinstance(body, dict):
            raise _Refused(_error(400, "Invalid request", "the body must be a JSON object"))
        try:
            return model.model_validate(body)
        except ValidationError as exc:
            raise _Refused(_validation_error(exc)) from None

    @route("add")
    async def add(request: Request, namespace: str, body: Any) -> Response:
        parsed = parse(AddBody, body)
        now = _now()
        with state.lock:
            space = state.namespaces.setdefault(namespace, Namespace())
            doc_id = parsed.id or state.new_id("doc")
            doc = space.documents.get(doc_id)
            if doc is not None and doc.content.endswith(parsed.content):
                return JSONResponse({"id": doc_id, "status": "done"})  # an unchanged duplicate
            metadata = dict(parsed.metadata or {})
            if doc is None:
                doc = StoredDocument(doc_id, parsed.content, metadata, now, now)
                space.documents[doc_id] = doc
            else:
                doc.content = f"{doc.content}\n{parsed.content}"
                doc.metadata.update(metadata)
                doc.updated_at = now
            doc.chunks.append((state.new_id("chk"), parsed.content, now))
            memory_id = state.new_id("mem")
            space.memories[memory_id] = StoredMemory(
                memory_id, doc_id, parsed.content, dict(doc.metadata), now
            )
        return JSONResponse({"id": doc_id, "status": "queued"})

    @route("search")
    async def search(request: Request, namespace: str, body: Any) -> Response:
        parsed = parse(SearchBody, body)
        wanted = _words(parsed.query)
        mode = parsed.searchMode or "hybrid"
        threshold = parsed.threshold or 0.0
        forgotten = bool(parsed.include and parsed.include.forgotten)
        scored: list[tuple[float, dict[str, Any]]] = []
        with state.lock:
            space = state.namespaces.get(namespace, Namespace())
            if mode in ("hybrid", "memories"):
                for memory in space.memories.values():
                    if memory.forgotten and not forgotten:
                        continue
                    score = len(wanted & _words(memory.text)) / max(1, len(wanted))
                    if score > 0 and score >= threshold:
                        scored.append((score, {**_memory_json(memory), "similarity": score}))
            if mode in ("hybrid", "chunks"):
                for doc in space.documents.values():
                    for chunk_id, text, created in doc.chunks:
                        score = len(wanted & _words(text)) / max(1, len(wanted))
                        if score > 0 and score >= threshold:
                            scored.append(
                                (
                                    score,
                                    {
                                        "id": chunk_id,
                                        "chunk": text,
                                        "metadata": doc.metadata,
                                        "similarity": score,
                                        "isLatest": True,
                                        "isInference": False,
                                        "system": {"createdAt": created, "updatedAt": created},
                                    },
                                )
                            )
        scored.sort(key=lambda pair: -pair[0])
        results = []
        for _, item in scored[: parsed.limit or 10]:
            item.pop("isStatic", None)
            item.pop("isForgotten", None)
            item.pop("version", None)
            results.append(item)
        return JSONResponse({"results": results, "searchTime": 1.0})

    @route("list", query=frozenset({"page", "limit", "sort", "order"}))
    async def list_(request: Request, namespace: str, body: Any) -> Response:
        kind = request.path_params["type"]
        if kind not in ("documents", "chunks", "memories"):
            return _error(400, "Invalid list type", "documents, chunks or memories")
        try:
            query = ListQuery.model_validate(dict(request.query_params))
        except ValidationError as exc:
            return _validation_error(exc)
        parsed = parse(ListBody, body)
        include = parsed.include or ListInclude()
        with state.lock:
            space = state.namespaces.get(namespace, Namespace())
            items: list[tuple[str, dict[str, Any]]]
            if kind == "documents":
                items = [
                    (d.created_at, _document_json(d, space, include))
                    for d in space.documents.values()
                ]
            elif kind == "memories":
                items = [
                    (m.created_at, _memory_json(m))
                    for m in space.memories.values()
                    if include.forgotten or not m.forgotten
                ]
            else:
                items = [
                    (
                        created,
                        {
                            "id": chunk_id,
                            "position": position,
                            "content": text,
                            "type": "text",
                            "metadata": d.metadata,
                            "system": {"createdAt": created},
                            "documentId": d.id,
                        },
                    )
                    for d in space.documents.values()
                    for position, (chunk_id, text, created) in enumerate(d.chunks)
                ]
        # Insertion order breaks ties between equal timestamps.
        ordered = [item for _, item in sorted(items, key=lambda pair: pair[0])]
        if query.order == "desc":
            ordered.reverse()
        start = (query.page - 1) * query.limit
        page = ordered[start : start + query.limit]
        total = len(ordered)
        return JSONResponse(
            {
                "documents": page if kind == "documents" else [],
                "chunks": page if kind == "chunks" else [],
                "memories": page if kind == "memories" else [],
                "pagination": {
                    "currentPage": query.page,
                    "limit": query.limit,
                    "totalItems": total,
                    "totalPages": -(-total // query.limit),
                },
            }
        )

    @route("delete_documents")
    async def delete_documents(request: Request, namespace: str, body: Any) -> Response:
        parsed = parse(IdsBody, body)
        count, errors = 0, []
        with state.lock:
            space = state.namespaces.get(namespace, Namespace())
            for doc_id in parsed.ids:
                if space.documents.pop(doc_id, None) is None:
                    errors.append({"id": doc_id, "error": "Document not found"})
                    continue
                count += 1
                for memory_id in [m.id for m in space.memories.values() if m.document_id == doc_id]:
                    del space.memories[memory_id]
        return JSONResponse({"count": count, "errors": errors})

    @route("forget_memories")
    async def forget_memories(request: Request, namespace: str, body: Any) -> Response:
        parsed = parse(IdsBody, body)
        matches, errors = [], []
        with state.lock:
            space = state.namespaces.get(namespace, Namespace())
            for memory_id in parsed.ids:
                memory = space.memories.get(memory_id)
                if memory is None or memory.forgotten:
                    errors.append({"id": memory_id, "error": "Memory not found"})
                    continue
                memory.forgotten = True
                matches.append({"id": memory.id, "memory": memory.text})
        return JSONResponse({"count": len(matches), "errors": errors, "matches": matches})

    @route("delete_namespace", query=frozenset({"moveTo"}))
    async def delete_namespace(request: Request, namespace: str, body: Any) -> Response:
        # Documented: this route ignores a JSON body; only ?moveTo= moves instead of deleting.
        move_to = request.query_params.get("moveTo")
        if move_to is not None and NAMESPACE.fullmatch(move_to) is None:
            return _error(400, "Invalid namespace", "moveTo: 1-100 characters of A-Z a-z 0-9 _ : -")
        with state.lock:
            space = state.namespaces.pop(namespace, None)
            if space is None:
                return _error(404, "Namespace not found")
            if move_to is not None:
                target = state.namespaces.setdefault(move_to, Namespace())
                target.documents.update(space.documents)
                target.memories.update(space.memories)
                return JSONResponse(
                    {
                        "status": "queued",
                        "operationId": state.new_id("op"),
                        "namespace": namespace,
                        "moveTo": move_to,
                    }
                )
        return JSONResponse(
            {
                "status": "deleted",
                "namespace": namespace,
                "deletedDocumentsCount": len(space.documents),
                "deletedMemoriesCount": len(space.memories),
            }
        )

    async def not_found(request: Request) -> Response:
        return _error(404, "Not found", f"{request.method} {request.url.path}")

    # -- test-only controls (not part of the API's contract) --------------------------

    def recorded() -> list[dict[str, Any]]:
        with state.lock:
            return list(state.requests)

    async def texts(request: Request) -> Response:
        with state.lock:
            return JSONResponse(state.texts(request.path_params["namespace"]))

    async def hold(request: Request) -> Response:
        with state.lock:
            state.hold.add(request.path_params["operation"])
        return JSONResponse({"held": sorted(state.hold)})

    async def release(request: Request) -> Response:
        with state.lock:
            state.hold.clear()
            state.held = 0
        state.release.set()  # wakes every held request
        state.release.clear()
        return JSONResponse({"held": []})

    async def fail(request: Request) -> Response:
        count = int(request.query_params.get("count", "1"))
        with state.lock:
            state.fail_next.extend([int(request.path_params["status"])] * count)
        return JSONResponse({"fail_next": list(state.fail_next)})

    app = Starlette(
        routes=[
            *recorder_routes(recorded),
            Route("/_double/texts/{namespace}", texts, methods=["GET"]),
            Route("/_double/hold/{operation}", hold, methods=["POST"]),
            Route("/_double/release", release, methods=["POST"]),
            Route("/_double/fail/{status:int}", fail, methods=["POST"]),
            Route("/ns/{namespace}/document", add, methods=["POST"]),
            Route("/ns/{namespace}/document", delete_documents, methods=["DELETE"]),
            Route("/ns/{namespace}/search", search, methods=["POST"]),
            Route("/ns/{namespace}/list/{type}", list_, methods=["POST"]),
            Route("/ns/{namespace}/memories", forget_memories, methods=["DELETE"]),
            Route("/ns/{namespace}", delete_namespace, methods=["DELETE"]),
            Route("/{path:path}", not_found, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
        ]
    )
    app.state.double = state
    return app


if __name__ == "__main__":
    run(__doc__.splitlines()[0], create_app, "SUPERMEMORY_DOUBLE_API_KEY")
