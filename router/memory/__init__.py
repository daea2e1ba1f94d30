"""Memory in the router: retrieval before a call and storage after it, behind one interface.

One module each::

    backend          the MemoryBackend protocol, Memory and Turn, the errors, the id rule
    local            the local backend: one SQLite file, FTS5 BM25, one worker thread
    supermemory_api  the supermemory-api backend: Supermemory's v5 API through its SDK
    chat             pure functions over chat bodies: the turn, the query, the injection
    tap              the assistant's text read from a response as it streams past
    queue            the background store queue: bounded, retried, drained at shutdown
    metrics          MemoryMetrics on an injected registry
    config           the ``memory`` config section: store/retrieve switches per id
    service          MemoryService.prepare / finish, which the proxy calls
    factory          the backend and service the settings choose

Not yet wired into the proxy, the control endpoints or the CLI (issue 14, phase 2).
"""
