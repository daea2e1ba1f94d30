"""Which rules file runs, and why (router/config_source.py): the flag, the environment, a
checkout's ./router/config.yaml, the per-user file, the packaged defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from router.config_source import (
    find_config,
    is_checkout,
    packaged_config_path,
    user_config_path,
)

PYPROJECT = '[project]\nname = "memory-router"\nversion = "0.1.0"\n'


def make_dir(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


CHECKOUT = {"router/config.yaml": "rules", "pyproject.toml": PYPROJECT}


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        (CHECKOUT, True),
        ({"router/config.yaml": "rules"}, False),  # no pyproject.toml
        ({"pyproject.toml": PYPROJECT}, False),  # no rules file
        ({"router/config.yaml": "r", "pyproject.toml": '[project]\nname = "other"\n'}, False),
        ({"router/config.yaml": "r", "pyproject.toml": "[tool.x]\n"}, False),  # no [project]
        ({"router/config.yaml": "r", "pyproject.toml": "not = [toml"}, False),
        ({"router/config.yaml/x": "a folder", "pyproject.toml": PYPROJECT}, False),
    ],
)
def test_what_counts_as_a_checkout(tmp_path: Path, files: dict[str, str], expected: bool) -> None:
    assert is_checkout(make_dir(tmp_path, files)) is expected


def test_the_repository_itself_is_a_checkout() -> None:
    assert is_checkout(Path(__file__).resolve().parent.parent)


HOME_FILE = "/home/u/.config/memory-router/config.yaml"


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"XDG_CONFIG_HOME": "/xdg", "HOME": "/home/u"}, "/xdg/memory-router/config.yaml"),
        ({"HOME": "/home/u"}, HOME_FILE),
        ({"XDG_CONFIG_HOME": "", "HOME": "/home/u"}, HOME_FILE),
        # The XDG spec: a relative path is invalid and is ignored.
        ({"XDG_CONFIG_HOME": "rel", "HOME": "/home/u"}, HOME_FILE),
    ],
)
def test_user_config_path(environ: dict[str, str], expected: str) -> None:
    assert user_config_path(environ) == Path(expected)


@pytest.mark.parametrize(
    ("given", "from_flag", "files", "user_file", "origin", "path"),
    [
        # An explicit file wins over everything, and is taken as given.
        ("mine.yaml", True, CHECKOUT, True, "flag", "mine.yaml"),
        ("/etc/rules.yaml", False, CHECKOUT, True, "env", "/etc/rules.yaml"),
        # Then a checkout's own file, even when the user has one.
        (None, False, CHECKOUT, True, "checkout", "{cwd}/router/config.yaml"),
        # Not a checkout: the user's file, else the packaged one.
        (None, False, {"router/config.yaml": "r"}, True, "user", "{user}"),
        (None, False, {}, True, "user", "{user}"),
        (None, False, {}, False, "packaged", "{packaged}"),
    ],
)
def test_find_config(
    tmp_path: Path,
    given: str | None,
    from_flag: bool,
    files: dict[str, str],
    user_file: bool,
    origin: str,
    path: str,
) -> None:
    cwd = make_dir(tmp_path / "cwd", files) if files else tmp_path / "cwd"
    cwd.mkdir(exist_ok=True)
    environ = {"XDG_CONFIG_HOME": str(tmp_path / "xdg"), "HOME": str(tmp_path / "home")}
    user = user_config_path(environ)
    if user_file:
        make_dir(tmp_path / "xdg", {"memory-router/config.yaml": "user rules"})
    source = find_config(given, from_flag=from_flag, cwd=cwd, environ=environ)
    expected = path.format(cwd=cwd, user=user, packaged=packaged_config_path())
    assert (source.origin, str(source.path)) == (origin, expected)
    assert source.describe() == f"{expected} ({origin}: {source.reason})"
    assert source.as_dict() == {"path": expected, "origin": origin, "reason": source.reason}


@pytest.mark.parametrize(
    ("given", "from_flag", "files", "fragment"),
    [
        ("r.yaml", True, {}, "--config"),
        ("r.yaml", False, {}, "MEMORY_ROUTER_CONFIG"),
        (None, False, CHECKOUT, "checkout"),
        (None, False, {}, "not in a checkout"),
    ],
)
def test_the_reason_says_why(
    tmp_path: Path, given: str | None, from_flag: bool, files: dict[str, str], fragment: str
) -> None:
    environ = {"XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    source = find_config(given, from_flag=from_flag, cwd=make_dir(tmp_path, files), environ=environ)
    assert fragment in source.reason
    if source.origin == "packaged":  # names the user file it looked for
        assert str(user_config_path(environ)) in source.reason


def test_the_packaged_file_is_shipped() -> None:
    path = packaged_config_path()
    assert path.is_file() and path.name == "config.yaml" and path.parent.name == "router"
