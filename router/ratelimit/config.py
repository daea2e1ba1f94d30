"""The ``rate_limits`` section of the config: a default limit and per-id overrides.

```yaml
rate_limits:
  default: {requests_per_minute: 120, tokens_per_minute: 400000}
  per_user_id:
    claude-code-cli: {requests_per_minute: 600, burst: 60}
    default-dev: {tokens_per_minute: null}     # null: no token limit for this id
```

An override changes only the fields it names; a field set to ``null`` removes
that limit for the id. Without the section, nothing is limited. The section is
part of the config file's model (``router.config.RouterConfig``) and is compiled
into ``RateLimits`` with the routing rules.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, PositiveInt

from router.ratelimit.types import Limit
from router.user_ids import UserId


class LimitSpec(BaseModel):
    """The limits of one id (or the default): per-minute budgets and bursts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    requests_per_minute: PositiveInt | None = None
    tokens_per_minute: PositiveInt | None = None
    burst: PositiveInt | None = None
    token_burst: NonNegativeInt | None = None

    def over(self, base: LimitSpec) -> LimitSpec:
        """This override applied on top of ``base``: only the fields set here change."""
        return base.model_copy(update={k: getattr(self, k) for k in self.model_fields_set})

    def limit(self) -> Limit | None:
        made = Limit(
            requests_per_minute=self.requests_per_minute,
            tokens_per_minute=self.tokens_per_minute,
            burst=self.burst,
            token_burst=self.token_burst,
        )
        return None if made.unlimited else made


class RateLimitsSection(BaseModel):
    """The ``rate_limits`` section: a default and per-id overrides."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    default: LimitSpec = Field(default_factory=LimitSpec)
    per_user_id: dict[UserId, LimitSpec] = Field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RateLimits:
    """Compiled limits: ``for_user`` is a dict lookup on the hot path."""

    default: Limit | None = None
    overrides: Mapping[str, Limit | None] = field(default_factory=dict)

    def for_user(self, user_id: str) -> Limit | None:
        return self.overrides.get(user_id, self.default)

    def describe(self) -> str:
        """A summary for a log line: ``none``, or the default and the ids with their own."""
        if self.default is None and not self.overrides:
            return "none"
        count = len(self.overrides)
        own = f"{count} id{'' if count == 1 else 's'} with their own"
        return f"default {describe_limit(self.default)}, {own}"


def describe_limit(limit: Limit | None) -> str:
    """``120 requests/min (burst 20), 400000 tokens/min``, or ``unlimited``."""
    if limit is None or limit.unlimited:
        return "unlimited"
    parts = []
    if limit.requests_per_minute is not None:
        parts.append(f"{limit.requests_per_minute} requests/min (burst {limit.effective_burst})")
    if limit.tokens_per_minute is not None:
        parts.append(f"{limit.tokens_per_minute} tokens/min")
    return ", ".join(parts)


def compile_limits(section: RateLimitsSection) -> RateLimits:
    return RateLimits(
        default=section.default.limit(),
        overrides={
            user_id: spec.over(section.default).limit()
            for user_id, spec in section.per_user_id.items()
        },
    )
