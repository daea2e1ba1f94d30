"""The routing config file: its model, and loading it from YAML.

One pydantic model, ``RouterConfig``, describes the whole document: the
``user_id_mappings`` section (custom header, its policy, API keys, precedence,
header patterns, default id), the ``rate_limits`` section and the ``memory``
section (storage and retrieval switches per id). Other top-level keys are
ignored, so the file may also be a LiteLLM config. Loading reads the
file, parses the YAML and validates it; a problem raises ``ConfigError`` naming
the file, the place in the document and what is wrong::

    rules.yaml: user_id_mappings.header_patterns[1] (rule 2): pattern: invalid regular
    expression 'x(': missing ), unterminated subpattern at position 1

Compiling the model into rules the proxy can run is ``router.rules``' job.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)

from router.api_keys import check_key_ref
from router.exceptions import ConfigError
from router.memory.config import MemorySection
from router.ratelimit.config import RateLimitsSection
from router.user_ids import UserId

IdentitySource = Literal["custom_header", "api_key", "header_patterns"]
DEFAULT_PRECEDENCE: tuple[IdentitySource, ...] = ("custom_header", "api_key", "header_patterns")
# RFC 9110 token characters: what a header name may be made of.
_HEADER_NAME_RE = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def _check_header_name(value: str) -> str:
    if not _HEADER_NAME_RE.fullmatch(value):
        raise ValueError(f"invalid header name {value!r}")
    return value.lower()


def _check_regex(value: str) -> str:
    try:
        re.compile(value, re.IGNORECASE)
    except re.error as exc:
        raise ValueError(f"invalid regular expression {value!r}: {exc}") from None
    return value


HeaderName = Annotated[str, AfterValidator(_check_header_name)]
Regex = Annotated[str, AfterValidator(_check_regex)]
KeyRef = Annotated[str, AfterValidator(check_key_ref)]


class HeaderPattern(BaseModel):
    """One rule: if ``pattern`` is found in header ``header``, the caller is ``user_id``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    header: HeaderName
    pattern: Regex
    user_id: UserId


class CustomHeaderPolicy(BaseModel):
    """Who may name their own id with the custom header. Default: anyone, any valid id."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    allowed_ids: list[UserId] | None = None
    allowed_pattern: Regex | None = None
    api_keys: list[KeyRef] | None = None


class ApiKeyMapping(BaseModel):
    """One API key (by reference) and the id its caller gets."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: KeyRef
    user_id: UserId


class UserIdMappings(BaseModel):
    """The ``user_id_mappings`` section of the config file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    custom_header: HeaderName = "x-memory-user-id"
    custom_header_policy: CustomHeaderPolicy = Field(default_factory=CustomHeaderPolicy)
    api_keys: list[ApiKeyMapping] = Field(default_factory=list)
    precedence: list[IdentitySource] = Field(default_factory=lambda: list(DEFAULT_PRECEDENCE))
    header_patterns: list[HeaderPattern] = Field(default_factory=list)
    default_user_id: UserId

    @field_validator("precedence")
    @classmethod
    def _check_precedence(cls, value: list[IdentitySource]) -> list[IdentitySource]:
        if len(set(value)) != len(value):
            raise ValueError("lists a source twice")
        return value


class RouterConfig(BaseModel):
    """The whole config document. Keys other than these three are ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    user_id_mappings: UserIdMappings
    rate_limits: RateLimitsSection = Field(default_factory=RateLimitsSection)
    memory: MemorySection = Field(default_factory=MemorySection)

    @field_validator("rate_limits", "memory", mode="before")
    @classmethod
    def _empty_section(cls, value: object) -> object:
        return {} if value is None else value  # a section with everything commented out


@dataclass(frozen=True, slots=True)
class ConfigFile:
    """A validated config, where it came from, and a digest of its text."""

    config: RouterConfig
    source: str = "<memory>"
    digest: str = ""  # the first 16 hex digits of the text's SHA-256


def parse_config(text: str, *, source: str = "<memory>") -> ConfigFile:
    """Parse and validate config text; ``source`` names it in error messages."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: {describe_yaml_error(exc)}") from None
    try:
        config = RouterConfig.model_validate({} if document is None else document)
    except ValidationError as exc:
        problems = "; ".join(describe_error(e) for e in exc.errors())
        raise ConfigError(f"{source}: {problems}") from None
    return ConfigFile(config, source, hashlib.sha256(text.encode()).hexdigest()[:16])


def load_config(path: str | Path) -> ConfigFile:
    """Read, parse and validate the config file at ``path``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: config is not UTF-8 text") from None
    return parse_config(text, source=str(path))


def describe_yaml_error(exc: yaml.YAMLError) -> str:
    """A YAML error on one line, with the line and column (counted from 1) where it was
    found, and where the construct it broke began; PyYAML's own message names the text
    "<unicode string>" rather than the file."""
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        message = (
            f"line {mark.line + 1}, column {mark.column + 1}: not valid YAML: "
            f"{exc.problem or 'syntax error'}"
        )
        if exc.context:
            started = exc.context_mark
            where = (started.line, started.column) if started is not None else None
            if where is not None and where != (mark.line, mark.column):
                line, column = where[0] + 1, where[1] + 1
                message += f" ({exc.context} that began at line {line}, column {column})"
            else:
                message += f" ({exc.context})"
        return message
    plain = " ".join(str(exc).split())
    return "not valid YAML: " + plain.replace('in "<unicode string>", ', "at ")


# Lists whose items a reader counts: "header_patterns[1] (rule 2)".
_ITEM_NAMES = {"header_patterns": "rule", "api_keys": "key"}


def describe_error(error: Mapping[str, Any]) -> str:
    """One pydantic error as ``place: field: problem``.

    The place is the section, down to the list item or mapping an error is in;
    the field is the path below that.
    """
    loc: Sequence[int | str] = tuple(error.get("loc", ()))
    kind = error.get("type")
    if not loc:
        return "the document must be a mapping with a 'user_id_mappings' section"
    if kind == "missing" and len(loc) == 1:
        return f"no {loc[0]!r} section"
    message = _problem(error)
    if loc[-1] == "[key]":  # a mapping's key is wrong
        where, key = ".".join(str(p) for p in loc[:-2]), loc[-2]
        if repr(key) in message:  # "invalid user id 'a b': …" names it already
            return f"{where}: {message}"
        return f"{where}: key {key!r}: {message}"
    items = [i for i, part in enumerate(loc) if isinstance(part, int)]
    if items:
        end = items[-1]
        parent, index = str(loc[end - 1]), int(loc[end])
        where = ".".join(str(p) for p in loc[: end - 1]) + f".{parent}[{index}]"
        if parent in _ITEM_NAMES:
            where += f" ({_ITEM_NAMES[parent]} {index + 1})"
        field_path = loc[end + 1 :]
    else:
        where, field_path = str(loc[0]), loc[1:]
    if field_path:
        return f"{where}: {'.'.join(str(p) for p in field_path)}: {message}"
    return f"{where}: {message}"


def _problem(error: Mapping[str, Any]) -> str:
    kind = error.get("type")
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required field is missing"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return "must be a mapping"
    return str(error.get("msg", "invalid")).removeprefix("Value error, ")
