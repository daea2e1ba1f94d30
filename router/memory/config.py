"""The ``memory`` section of the routing config: storage and retrieval switches per id.

    memory:
      store: true          # defaults for every id (both default to true)
      retrieve: true
      per_user_id:
        claude-code-cli: {store: false}     # Claude Code's tool loops: retrieve, don't store
        private-notes: {store: false, retrieve: false}

The section is part of the config file's model (``router.config.RouterConfig.memory``)
and is compiled with the routing rules (``RoutingRules.memory``), so a reload changes it
with the rules, in one step. ``parse_memory_config`` validates and compiles a section on
its own (a mapping, or None when absent); a bad section raises ``MemoryConfigError``
naming each problem.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError

from router.exceptions import InvalidUserId, MemoryConfigError
from router.memory.backend import check_user_id

__all__ = [
    "MemoryConfigError",
    "MemoryPolicy",
    "MemorySection",
    "Switches",
    "compile_memory",
    "parse_memory_config",
]


def _user_id_key(value: str) -> str:
    try:
        return check_user_id(value)
    except InvalidUserId:
        raise ValueError(f"{value!r} is not a user id (1-100 of A-Z a-z 0-9 _ : -)") from None


class _Override(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    store: bool | None = None
    retrieve: bool | None = None


class MemorySection(BaseModel):
    """The ``memory`` section as the config file writes it."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    store: bool = True
    retrieve: bool = True
    per_user_id: dict[Annotated[str, AfterValidator(_user_id_key)], _Override] = {}


@dataclass(frozen=True, slots=True)
class Switches:
    """What memory may do for one id."""

    store: bool = True
    retrieve: bool = True


@dataclass(frozen=True, slots=True)
class MemoryPolicy:
    """The compiled section: defaults, and the ids that differ from them."""

    default: Switches = Switches()
    per_user_id: Mapping[str, Switches] = field(default_factory=lambda: MappingProxyType({}))

    def for_user(self, user_id: str) -> Switches:
        return self.per_user_id.get(user_id, self.default)


def parse_memory_config(section: Mapping[str, Any] | None) -> MemoryPolicy:
    """Validate the ``memory`` section and compile it; None means all defaults."""
    if section is None:
        return MemoryPolicy()
    if not isinstance(section, Mapping):
        raise MemoryConfigError("memory: must be a mapping")
    try:
        parsed = MemorySection.model_validate(dict(section))
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            where = ".".join(str(p) for p in ("memory", *error["loc"]))
            problems.append(f"{where}: {error['msg']}".replace("Value error, ", ""))
        raise MemoryConfigError("; ".join(problems)) from None
    return compile_memory(parsed)


def compile_memory(parsed: MemorySection) -> MemoryPolicy:
    """The validated section as a ``MemoryPolicy``: a dict lookup per request."""
    default = Switches(store=parsed.store, retrieve=parsed.retrieve)
    overrides = {
        user_id: Switches(
            store=default.store if o.store is None else o.store,
            retrieve=default.retrieve if o.retrieve is None else o.retrieve,
        )
        for user_id, o in parsed.per_user_id.items()
    }
    return MemoryPolicy(default, MappingProxyType(overrides))
