"""Memory in the router: retrieval before a call and storage after it, behind one interface.

One module each::

    backend          the MemoryBackend protocol, Memory and Turn, the errors, the id rule
    local            the local backend: one SQLite file, FTS5 BM25, one worker thread
    supermemory_api  the supermemory-api backend: Supermemory's v5 API through its SDK
    chat             pure functions over chat bodies: the turn, the query, the injection
    answer_text      the assistant's text, an observer of the answer (router.answer)
    queue            the background store queue: bounded, retried, drained at shutdown
    metrics          MemoryMetrics on an injected registry
    config           the ``memory`` config section: store/retrieve switches per id
    service          MemoryService.prepare / finish, which the proxy calls
    manage           MemoryAdmin: list, search and forget, for the endpoints and the CLI
    factory          the backend, service and admin the settings choose

``router.proxy`` calls the service on chat requests, ``router.control`` serves
``/memory-routing/memories`` through the admin, ``router.cli`` has ``memories``.
"""
