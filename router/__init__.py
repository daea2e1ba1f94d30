"""memory-router: gives every AI client behind one LiteLLM proxy its own Supermemory user id.

Data flow, one module each: ``settings`` -> ``config`` (the rules file) -> ``rules``
(identify the client) -> ``headers`` (rewrite headers) -> ``proxy`` (forward and
stream) -> ``metrics`` (record), wired together by ``app.create_app``.
"""

from router.memory_router import MemoryRouter

__version__ = "0.1.0"

__all__ = ["MemoryRouter", "__version__", "create_app"]


def __getattr__(name: str) -> object:
    # create_app pulls in FastAPI and httpx; import it only when asked for.
    if name == "create_app":
        from router.app import create_app

        return create_app
    raise AttributeError(name)
