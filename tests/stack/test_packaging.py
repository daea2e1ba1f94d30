"""pyproject.toml: every third-party package the router imports is declared, Redis is an
extra the tests install, and every subpackage is shipped."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(requirement: str) -> str:
    return _normalize(re.split(r"[\[<>=!~;\s]", requirement, maxsplit=1)[0])


def _imported_modules() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in (REPO / "router").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            for module in modules:
                top = module.split(".")[0]
                if top not in sys.stdlib_module_names and top not in ("router", "__future__"):
                    found.setdefault(top, set()).add(str(path.relative_to(REPO)))
    return found


def test_every_imported_package_is_declared() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = {_requirement_name(r) for r in project["dependencies"]}
    declared |= {_requirement_name(r) for r in project["optional-dependencies"]["redis"]}
    distributions = importlib.metadata.packages_distributions()
    missing = {
        module: sorted(files)
        for module, files in _imported_modules().items()
        if not {_normalize(d) for d in distributions.get(module, [module])} & declared
    }
    assert missing == {}, "imported but not declared in pyproject.toml"


def test_the_check_sees_the_imports() -> None:
    modules = _imported_modules()
    assert {"watchfiles", "redis", "yaml", "pydantic_settings"} <= set(modules)
    assert modules["watchfiles"] == {"router/reload.py"}
    assert {"aiohttp", "yarl", "multidict", "uvicorn"} <= set(modules)


def test_redis_is_an_extra_that_the_tests_install() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert not any(d.startswith("redis") for d in project["dependencies"])
    assert [d for d in project["optional-dependencies"]["redis"] if d.startswith("redis")]
    assert "memory-router[redis]" in project["optional-dependencies"]["test"]


def test_the_ratelimit_package_is_shipped_by_setuptools() -> None:
    """``[tool.setuptools] packages`` is an explicit list: a subpackage missing from it
    is left out of non-editable installs (the Docker image)."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    packages = config["tool"]["setuptools"].get("packages")
    if isinstance(packages, list):  # absent or {"find": ...} discover subpackages
        assert "router.ratelimit" in packages, packages
