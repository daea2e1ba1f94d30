"""``MemoryRouter``: the public, embeddable API for deciding a caller's user id.

Use it on its own to add memory routing to an existing proxy, or subclass it and
override ``detect_user_id`` (for example, to look the id up in a database); the
app factory accepts an instance, so the override takes effect in the proxy.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from router.exceptions import DetectUserIdError
from router.headers import inject_memory_headers, lower_keys
from router.rules import Decision, RoutingRules, decide, load_rules, make_cached_decider
from router.user_ids import is_valid_user_id


def default_config_path() -> Path:
    """The rules shipped inside the package (``router/config.yaml``)."""
    return Path(str(resources.files("router").joinpath("config.yaml")))


class MemoryRouter:
    """Decides which Supermemory user id a request belongs to."""

    def __init__(
        self, config_path: str | Path | None = None, *, rules: RoutingRules | None = None
    ) -> None:
        if rules is None:
            rules = load_rules(config_path if config_path is not None else default_config_path())
        self._custom_detect = type(self).detect_user_id is not MemoryRouter.detect_user_id
        self.rules = rules

    @property
    def rules(self) -> RoutingRules:
        return self._state[0]

    @rules.setter
    def rules(self, rules: RoutingRules) -> None:
        # One assignment swaps both, so a request sees either the old pair or the new.
        self._state: tuple[RoutingRules, Callable[[tuple[str | None, ...]], Decision]] = (
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
        """Like ``decide`` but ``headers`` already has lower-case names."""
        rules, cached = self._state
        if not self._custom_detect:
            return cached(tuple(headers.get(name) for name in rules.header_names))
        user_id = self.detect_user_id(headers)
        if not isinstance(user_id, str) or not is_valid_user_id(user_id):
            raise DetectUserIdError(f"detect_user_id returned an invalid user id: {user_id!r}")
        base = cached(tuple(headers.get(name) for name in rules.header_names))
        return base if base.user_id == user_id else Decision(user_id, "custom_code")

    def detect_user_id(self, headers: Mapping[str, str]) -> str:
        """The user id for ``headers``. Override this to plug in your own lookup."""
        return decide(self._state[0], lower_keys(headers)).user_id

    def get_routing_info(self, headers: Mapping[str, str]) -> dict[str, Any]:
        """The decision as a JSON-ready dict, as ``/memory-routing/info`` shows it."""
        rules = self._state[0]
        lowered = lower_keys(headers)
        decision = self.decide_lower(lowered)
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
            user_id=self.detect_user_id(headers),
            supermemory_key=supermemory_key,
            custom_header=self._state[0].custom_header,
        )
