"""README.md as tests read it: a section by its heading, and the fenced code blocks in
it, so a test runs or checks what the README says rather than a copy of it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"

_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_FENCE = re.compile(r"^(```+|~~~+)\s*([\w+-]*)")


@dataclass(frozen=True)
class CodeBlock:
    language: str  # the fence's info string ("bash", "python", ...; "" when none)
    text: str
    heading: str  # the heading of the section it stands in


def code_blocks(markdown: str) -> list[CodeBlock]:
    """Every fenced code block, in order, with the heading it stands under (lines that
    look like headings inside a block are code, not headings)."""
    blocks: list[CodeBlock] = []
    heading = ""
    fence: str | None = None
    language = ""
    body: list[str] = []
    for line in markdown.splitlines():
        if fence is None:
            opening = _FENCE.match(line)
            if opening:
                fence, language, body = opening.group(1), opening.group(2), []
                continue
            title = _HEADING.match(line)
            if title:
                heading = title.group(2)
        elif line.strip().startswith(fence) and not line.strip().strip(fence[0]):
            blocks.append(CodeBlock(language, "\n".join(body) + "\n", heading))
            fence = None
        else:
            body.append(line)
    return blocks


def blocks_under(heading: str, markdown: str | None = None) -> list[CodeBlock]:
    """The code blocks that stand directly under the heading titled ``heading``."""
    text = README.read_text() if markdown is None else markdown
    return [block for block in code_blocks(text) if block.heading == heading]


def commands(block: str) -> list[str]:
    """The shell commands of a block, one per entry: comment and blank lines dropped,
    lines continued with a backslash joined."""
    found: list[str] = []
    pending = ""
    for raw in block.splitlines():
        line = raw.rstrip()
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        found.append(pending + line)
        pending = ""
    if pending:
        found.append(pending.rstrip())
    return found
