"""A checkout as a newcomer gets it, for tests that run the README's commands or a
script of scripts/ from the top: a copy of this one, and its ``.env`` filled in.

The copy holds the files git tracks plus new ones git does not ignore, so uncommitted
work is what gets tested, and nothing a clean clone lacks: no ``.venv``, ``.venvs``,
``.env``, logs or caches."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def checkout_files(repo: Path = REPO) -> list[Path]:
    """The files of ``repo`` a clone would have, as paths relative to it (files deleted
    in the working tree left out)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=repo,
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    names = [Path(name) for name in listed.decode().split("\0") if name]
    return [name for name in names if (repo / name).is_file() or (repo / name).is_symlink()]


def copy_checkout(dest: Path, repo: Path = REPO) -> Path:
    """Copy the checkout's files into ``dest`` (created; it must not exist), modes
    (the executable bit) and symlinks kept. Returns ``dest``."""
    dest.mkdir(parents=True)
    for name in checkout_files(repo):
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(repo / name, target, follow_symlinks=False)
    return dest


def fill_env_file(path: Path, values: Mapping[str, str]) -> None:
    """Set ``NAME=value`` in the env file ``path`` the way a user edits it: each
    assignment of the name (commented out or not) is replaced in place, a name the file
    does not have is added at the end."""
    lines = path.read_text().splitlines()
    seen: set[str] = set()
    for index, line in enumerate(lines):
        name = line.lstrip("# ").split("=", 1)[0]
        if "=" in line and name in values:
            lines[index] = f"{name}={values[name]}"
            seen.add(name)
    lines += [f"{name}={value}" for name, value in values.items() if name not in seen]
    path.write_text("\n".join(lines) + "\n")
