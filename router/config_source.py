"""Which rules file the router runs, and why.

In order, the first that applies wins:

1. ``flag``: ``--config PATH``;
2. ``env``: ``MEMORY_ROUTER_CONFIG`` (the environment, or ``.env``);
3. ``checkout``: ``./router/config.yaml`` when the working directory is a checkout
   of this project (it holds ``router/config.yaml`` and a ``pyproject.toml`` whose
   ``[project] name`` is ``memory-router``), so the file a developer edits is the
   one that runs, whether the package was installed editable or not;
4. ``user``: the per-user file, ``$XDG_CONFIG_HOME/memory-router/config.yaml``
   (``~/.config/memory-router/config.yaml`` when ``XDG_CONFIG_HOME`` is unset or
   not an absolute path, as the XDG base directory spec says);
5. ``packaged``: the defaults shipped inside the package.

A flag or an environment variable naming a missing file is an error when the file
is loaded, never a silent fall-through; the checkout and user files are used only
when they exist.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal

Origin = Literal["flag", "env", "checkout", "user", "packaged"]

PROJECT_NAME = "memory-router"
CHECKOUT_CONFIG = Path("router") / "config.yaml"
ENV_NAME = "MEMORY_ROUTER_CONFIG"


def packaged_config_path() -> Path:
    """The rules shipped inside the package (``router/config.yaml`` in site-packages,
    or in the checkout for an editable install)."""
    return Path(str(resources.files("router").joinpath("config.yaml")))


def user_config_path(environ: Mapping[str, str] | None = None) -> Path:
    """``$XDG_CONFIG_HOME/memory-router/config.yaml``, else under ``~/.config``."""
    env = os.environ if environ is None else environ
    base = env.get("XDG_CONFIG_HOME", "")
    if not base or not os.path.isabs(base):
        home = env.get("HOME") or str(Path.home())
        base = os.path.join(home, ".config")
    return Path(base) / PROJECT_NAME / "config.yaml"


def is_checkout(directory: Path) -> bool:
    """Whether ``directory`` is a checkout of this project: it has ``router/config.yaml``
    and a ``pyproject.toml`` naming ``memory-router``. Another project that happens to
    have a ``router/`` folder is not one."""
    if not (directory / CHECKOUT_CONFIG).is_file():
        return False
    try:
        with (directory / "pyproject.toml").open("rb") as f:
            project = tomllib.load(f).get("project")
    except (OSError, tomllib.TOMLDecodeError):
        return False
    return isinstance(project, dict) and project.get("name") == PROJECT_NAME


@dataclass(frozen=True, slots=True)
class ConfigSource:
    """The rules file in use and why it was chosen. A file named by the flag or the
    environment keeps the path as given; the others are absolute."""

    path: Path
    origin: Origin
    reason: str

    def describe(self) -> str:
        """``PATH (origin: reason)``, for a log line or the CLI."""
        return f"{self.path} ({self.origin}: {self.reason})"

    def as_dict(self) -> dict[str, str]:
        return {"path": str(self.path), "origin": self.origin, "reason": self.reason}


def find_config(
    given: str | Path | None,
    *,
    from_flag: bool = False,
    cwd: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> ConfigSource:
    """The rules file to load. ``given`` is what settings hold (``--config`` or
    ``MEMORY_ROUTER_CONFIG``), ``from_flag`` whether it came from the flag."""
    here = Path.cwd() if cwd is None else cwd
    if given is not None:
        path = Path(given)
        if from_flag:
            return ConfigSource(path, "flag", "given with --config")
        return ConfigSource(path, "env", f"named by {ENV_NAME} (environment or .env)")
    if is_checkout(here):
        return ConfigSource(
            here / CHECKOUT_CONFIG,
            "checkout",
            "the working directory is a memory-router checkout",
        )
    user = user_config_path(environ)
    if user.is_file():
        return ConfigSource(user, "user", "the per-user rules file exists")
    return ConfigSource(
        packaged_config_path(),
        "packaged",
        f"no --config, no {ENV_NAME}, not in a checkout, and no {user}",
    )
