"""Routing-rules files for tests and the benchmark.

Each section's body is YAML as it would stand in the file under its key, written at any
indentation (it is dedented and put under the key)::

    write_rules(path, "default_user_id: before")
    write_rules(path, '''
        header_patterns:
          - {header: user-agent, pattern: "^bench-store/", user_id: bench-store}
        default_user_id: default-dev
        ''', memory="per_user_id: {default-dev: {store: false}}")
"""

from __future__ import annotations

import textwrap
from pathlib import Path

DEFAULT_MAPPINGS = "default_user_id: default-dev"


def _section(key: str, body: str) -> str:
    return f"{key}:\n" + textwrap.indent(textwrap.dedent(body).strip("\n") + "\n", "  ")


def rules_yaml(
    mappings: str = DEFAULT_MAPPINGS,
    *,
    rate_limits: str | None = None,
    memory: str | None = None,
) -> str:
    """The text of a rules file: ``user_id_mappings``, then the optional sections."""
    text = _section("user_id_mappings", mappings)
    if rate_limits is not None:
        text += _section("rate_limits", rate_limits)
    if memory is not None:
        text += _section("memory", memory)
    return text


def write_rules(
    path: Path,
    mappings: str = DEFAULT_MAPPINGS,
    *,
    rate_limits: str | None = None,
    memory: str | None = None,
) -> Path:
    """Write ``rules_yaml(...)`` to ``path`` (replacing it: a running router reloads it)."""
    path.write_text(rules_yaml(mappings, rate_limits=rate_limits, memory=memory))
    return path
