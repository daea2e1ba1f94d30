"""``MemoryRouter``: the public, embeddable API for deciding a caller's user id.

Use it on its own to add memory routing to an existing proxy, or subclass it and
override ``detect_user_id`` (for example, to look the id up in a database); the
app factory accepts an instance, so the override takes effect in the proxy. The
override may be a plain method or a coroutine function (``async def``), which
``adecide`` awaits, so a slow lookup does not hold up other requests.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from router.config_source import find_config
from router.exceptions import DetectUserIdError
from router.headers import inject_memory_headers, lower_keys
from router.rules import Decision, RoutingRules, decide, load_rules, make_cached_decider
from router.user_ids import is_valid_user_id

CachedDecider = Callable[[tuple[str | None, ...]], Decision]


def default_config_path() -> Path:
    """The rules file used when none is named: ``./router/config.yaml`` in a checkout,
    else the per-user file, else the packaged defaults (``router.config_source``)."""
    return find_config(None).path


class MemoryRouter:
    """Decides which Supermemory user id a request belongs to."""

    def __init__(
        self, config_path: str | Path | None = None, *, rules: RoutingRules | None = None
    ) -> None:
        if rules is None:
            rules = load_rules(config_path if config_path is not None else default_config_path())
        detect = type(self).detect_user_id
        self._custom_detect = detect is not MemoryRouter.detect_user_id
        self._async_detect = inspect.iscoroutinefunction(detect)
        self.rules = rules

    @property
    def rules(self) -> RoutingRules:
        return self._state[0]

    @rules.setter
    def rules(self, rules: RoutingRules) -> None:
        # One assignment swaps both, so a request sees either the old pair or the new.
        self._state: tuple[RoutingRules, CachedDecider] = (
            rules,
            make_cached_decider(rules),
        )

    @property
    def needs_all_headers(self) -> bool:
        """True when a subclass decides, since it may read any header."""
        return self._custom_detect

    # -- the decision -------------------------------------------------------
    def decide(self, headers: Mapping[str, str]) -> Decision:
        """The full decision for ``headers`` (any mapping, any case)."""
        return self.decide_lower(lower_keys(headers))

    def decide_lower(self, headers: Mapping[str, str]) -> Decision:
        """Like ``decide`` but ``headers`` already has lower-case names.

        An ``async def detect_user_id`` cannot be awaited here: use ``adecide``."""
        rules, cached = self._state
        if not self._custom_detect:
            return cached(tuple(headers.get(name) for name in rules.header_names))
        if self._async_detect:
            raise TypeError(
                f"{type(self).__name__}.detect_user_id is a coroutine function: use adecide"
            )
        return _custom_decision(self.detect_user_id(headers), headers, rules, cached)

    async def adecide(self, headers: Mapping[str, str]) -> Decision:
        """Like ``decide``, awaiting ``detect_user_id`` when it is a coroutine function.

        The proxy calls this only when a subclass overrides ``detect_user_id``; the
        rules alone are decided without a coroutine, by ``decide_lower``."""
        rules, cached = self._state  # the rules at the start, however long the lookup
        lowered = lower_keys(headers)
        if not self._custom_detect:
            return cached(tuple(lowered.get(name) for name in rules.header_names))
        user_id = self.detect_user_id(lowered)
        if inspect.isawaitable(user_id):
            user_id = await user_id
        return _custom_decision(user_id, lowered, rules, cached)

    def detect_user_id(self, headers: Mapping[str, str]) -> str | Awaitable[str]:
        """The user id for ``headers`` (lower-case names when the proxy calls it).

        Override this to plug in your own lookup, as a plain method or as
        ``async def``. This one returns ``rules_user_id(headers)``."""
        return self.rules_user_id(headers)

    def rules_user_id(self, headers: Mapping[str, str]) -> str:
        """The user id the config's rules give ``headers``: an override's fallback."""
        return decide(self._state[0], lower_keys(headers)).user_id

    def get_routing_info(self, headers: Mapping[str, str]) -> dict[str, Any]:
        """The decision as a JSON-ready dict, as ``/memory-routing/info`` shows it."""
        lowered = lower_keys(headers)
        return self._info(self.decide_lower(lowered), lowered)

    async def aget_routing_info(self, headers: Mapping[str, str]) -> dict[str, Any]:
        """``get_routing_info`` through ``adecide``, for an ``async`` ``detect_user_id``."""
        lowered = lower_keys(headers)
        return self._info(await self.adecide(lowered), lowered)

    def _info(self, decision: Decision, lowered: Mapping[str, str]) -> dict[str, Any]:
        rules = self._state[0]
        matched = None
        if decision.pattern is not None:
            matched = {
                "index": decision.pattern.index,
                **decision.pattern.rule.model_dump(),
                "matched_value": decision.matched_value,
            }
        return {
            "user_id": decision.user_id,
            "source": decision.source,
            "reason": decision.reason,
            "matched_pattern": matched,
            "custom_header": rules.custom_header,
            "custom_header_present": rules.custom_header in lowered,
            "is_default": decision.source == "default",
            "config": {"path": rules.source, "sha256": rules.digest},
        }

    def inject_memory_headers(
        self, headers: Mapping[str, str], supermemory_key: str | None
    ) -> dict[str, str]:
        """New headers for forwarding: the decided id (and key) set, spoofed ones removed."""
        return inject_memory_headers(
            headers,
            user_id=self.decide(headers).user_id,
            supermemory_key=supermemory_key,
            custom_header=self._state[0].custom_header,
        )


def _custom_decision(
    user_id: object, headers: Mapping[str, str], rules: RoutingRules, cached: CachedDecider
) -> Decision:
    """The decision for the id an override returned: the rules' own decision when they
    agree (keeping its source and rule), else source ``custom_code``."""
    if not isinstance(user_id, str) or not is_valid_user_id(user_id):
        raise DetectUserIdError(f"detect_user_id returned an invalid user id: {user_id!r}")
    base = cached(tuple(headers.get(name) for name in rules.header_names))
    return base if base.user_id == user_id else Decision(user_id, "custom_code")
