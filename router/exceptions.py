"""Every exception the router raises, in one place.

The tree::

    MemoryRouterError
    ├── SetupError                the router is set up wrongly: the CLI prints the
    │   │                         message and exits 2; a reload keeps the old rules
    │   ├── SettingsError         a flag, environment variable or .env entry is invalid
    │   ├── ConfigError           the routing config file cannot be used
    │   │   └── MemoryConfigError its ``memory`` section is invalid
    │   ├── MissingDependency     a setting needs an optional package that is not
    │   │                         installed (REDIS_URL without memory-router[redis])
    │   └── MemorySetupError      the memory backend cannot be opened (the local
    │                             store's file, say)
    ├── RequestRefused            the router answers a request itself, forwarding nothing
    │   ├── InvalidCustomHeader   the caller named its own id: kind "invalid" (not a
    │   │                         valid id) or "not_allowed" (the policy refuses it)
    │   ├── Forbidden             a protected control endpoint, called without access
    │   ├── MemoryOff             a memory endpoint, with no memory backend to ask
    │   ├── MemoryNotFound        forget: the caller has no memory by that id
    │   ├── InvalidLimit          a memory endpoint's ``limit`` is not 1 to 100
    │   └── InvalidWindow         the stats endpoint's ``window`` is out of range
    ├── UpstreamError             LiteLLM could not be reached, did not answer in time,
    │                             or answered with something that is not valid HTTP;
    │                             ``kind`` says which (the upstream_errors metric label)
    ├── MemoryBackendError        a memory backend refused or failed; do not retry
    │   └── TransientMemoryError  a timeout, a dropped connection, a 429 or a 5xx;
    │                             the store queue retries these
    ├── InvalidUserId             a memory call named an id outside the id rule,
    │                             refused before any I/O (also a ValueError)
    └── DetectUserIdError         a custom ``detect_user_id`` returned an invalid id

Exceptions say what went wrong, never which HTTP status answers it: that is
``router.errors.error_for``, the one mapping from an exception to the router's
reply, used by the proxy, the control endpoints and the CLI alike.

Some refusals are found on the hot path without raising (headers or body too
large, a rate limit); ``router.errors`` builds the replies for those directly.
``router.upstream`` turns its HTTP client's exceptions into ``UpstreamError``.
"""

from __future__ import annotations

from typing import Literal


class MemoryRouterError(Exception):
    """Base class of the router's own exceptions."""


class SetupError(MemoryRouterError):
    """The router cannot run as set up. The message says what to fix."""


class SettingsError(SetupError):
    """Settings are invalid; the message names each bad setting (never its value)."""


class ConfigError(SetupError):
    """The routing config cannot be used. The message names the file, the place in
    the document and the problem."""


class MissingDependency(SetupError):
    """A setting needs an optional package that is not installed."""


class RequestRefused(MemoryRouterError):
    """The router will not forward this request and answers it itself."""


InvalidHeaderKind = Literal["invalid", "not_allowed"]


class InvalidCustomHeader(RequestRefused):
    """The caller named its own user id, but the value is not a valid id
    (kind ``invalid``) or the custom header policy does not allow it (kind
    ``not_allowed``). Falling back to another id would mix two tenants' memories."""

    def __init__(self, header: str, problem: str, *, kind: InvalidHeaderKind = "invalid") -> None:
        super().__init__(f"header {header}: {problem}")
        self.header = header
        self.problem = problem
        self.kind: InvalidHeaderKind = kind


class Forbidden(RequestRefused):
    """A protected control endpoint was called by a caller ``control_access`` excludes."""


UpstreamErrorKind = Literal[
    "connect", "connect_timeout", "timeout", "pool_timeout", "reset", "protocol"
]


class UpstreamError(MemoryRouterError):
    """The upstream failed: ``connect`` (refused, unresolvable), ``connect_timeout``,
    ``timeout`` (no byte within the read timeout), ``pool_timeout`` (no free
    connection in time), ``reset`` (closed or reset mid-exchange) or ``protocol``
    (not a valid HTTP response, or one a proxy must not relay)."""

    def __init__(self, kind: UpstreamErrorKind, detail: str = "") -> None:
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind: UpstreamErrorKind = kind


class MemoryConfigError(ConfigError):
    """The ``memory`` section of the config is invalid; the message names each bad key."""


class MemorySetupError(SetupError):
    """The configured memory backend cannot be opened; the message says why."""


class MemoryOff(RequestRefused):
    """A memory endpoint was called, but no backend can answer it: memory is ``off``, or
    ``supermemory-router`` runs without a Supermemory key."""


class MemoryNotFound(RequestRefused):
    """The caller has no memory with the id it asked to forget."""


class InvalidLimit(RequestRefused):
    """The ``limit`` of a memory listing is not a whole number from 1 to 100."""


class InvalidWindow(RequestRefused):
    """The ``window`` of a stats request is not a whole number of seconds within the
    history the router keeps."""


class MemoryBackendError(MemoryRouterError):
    """A memory backend failed; the message never holds a key or a memory's text."""


class TransientMemoryError(MemoryBackendError):
    """A failure that may pass: a timeout, a dropped connection, a 429 or a 5xx."""


class InvalidUserId(MemoryRouterError, ValueError):
    """The user id is not 1-100 characters of ``A-Z a-z 0-9 _ : -``."""


class DetectUserIdError(MemoryRouterError, ValueError):
    """A subclass's ``detect_user_id`` returned something that is not a valid user id."""
