"""README.md against the shipped files: every model a request example names is one
litellm/config.yaml serves by that name, and the README's list of served models is the
config's."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from tests.support.readme import README, code_blocks

ROOT = Path(__file__).resolve().parents[2]

# A model named in a request: JSON ("model": "x"), Python (model="x"), JS/TS (model: "x").
_MODEL = re.compile(r"""["']?\bmodel["']?\s*[:=]\s*["']([^"']+)["']""")


def request_models(markdown: str) -> set[str]:
    """The model names the code blocks of ``markdown`` send in requests."""
    return {name for block in code_blocks(markdown) for name in _MODEL.findall(block.text)}


def served_models() -> tuple[set[str], set[str]]:
    """litellm/config.yaml's model names: those it serves by exactly that name, and its
    wildcards (``claude-*``)."""
    config = yaml.safe_load((ROOT / "litellm" / "config.yaml").read_text())
    names = {entry["model_name"] for entry in config["model_list"]}
    wildcards = {name for name in names if "*" in name}
    return names - wildcards, wildcards


@pytest.mark.parametrize(
    ("block", "expected"),
    [
        ("```bash\ncurl -d '{\"model\": \"m-json\", \"messages\": []}'\n```\n", {"m-json"}),
        ('```python\nclient.create(\n    model="m-py",\n)\n```\n', {"m-py"}),
        ('```ts\nclient.create({\n  model: "m-ts",\n});\n```\n', {"m-ts"}),
        ("```yaml\n- model_name: not-a-request\n```\n", set()),
        ('Prose with model="outside-a-block" is no example.\n', set()),
    ],
)
def test_request_models_finds_each_way_of_naming_a_model(block: str, expected: set[str]) -> None:
    assert request_models(block) == expected


def test_every_model_in_a_request_example_is_served_by_that_name() -> None:
    named, _ = served_models()
    used = request_models(README.read_text())
    assert used, "no request example names a model: the extraction is broken"
    # A wildcard would pass an unknown name on to Anthropic, who would refuse it: an
    # example must use a name the config lists.
    assert used <= named, f"README examples name models the config does not serve: {used - named}"


def test_the_readme_lists_the_models_litellm_serves() -> None:
    named, wildcards = served_models()
    # "LiteLLM serves `a`, `b` ... and any `claude-*` id Claude Code asks for, both to ..."
    (sentence,) = re.findall(r"LiteLLM serves (`.*?), both to", README.read_text(), re.S)
    listed = set(re.findall(r"`([^`]+)`", sentence))
    assert listed == named | wildcards
