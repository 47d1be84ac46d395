"""The team's project: a folder with ``slmops.yaml`` at its root, found by walking up like git finds its repo.

Usage:
    root = find_project()                      # from the working directory, or SLMOPS_PROJECT
    init_project(Path("my-project"), example=examples()[0])

A project holds what is the team's, never the package's: ``slmops.yaml`` (the params every profile shares),
``profiles/<name>.yaml`` (overlays), ``tasks/<name>.yaml`` with ``tasks/<name>.gates.yaml`` beside it, the
team's own Python (a callable teacher, a Task subclass: importable by ``target:`` strings because the root
is put on ``sys.path``), and the data, models and reports DVC tracks.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from importlib import resources
from pathlib import Path

PROJECT_FILE = "slmops.yaml"
GITIGNORE = """\
# slmops run state: never committed (data and models are DVC's, see dvc.yaml)
.prefect/
.slmops/
.cache/
.dvc-site-cache/
mlruns.db
mlartifacts/
logs/
__pycache__/
dvc-remote/
"""


class ProjectNotFound(ValueError):
    """No ``slmops.yaml`` in the folder or any folder above it."""


def templates() -> Path:
    """The project templates the package ships (one folder per example)."""
    return Path(str(resources.files("slmops") / "templates"))


def examples() -> list[str]:
    return sorted(p.name for p in templates().iterdir() if (p / PROJECT_FILE).is_file())


def example_dir(name: str) -> Path:
    """An example project as the package ships it (read it, never run in it: ``init_project`` copies it)."""
    path = templates() / name
    if not (path / PROJECT_FILE).is_file():
        raise ProjectNotFound(f"no example {name!r}; examples: {', '.join(examples())}")
    return path


def find_project(start: Path | None = None) -> Path:
    """The nearest folder at or above ``start`` (default: ``SLMOPS_PROJECT``, else the working directory)
    that holds ``slmops.yaml``."""
    here = Path(start or os.environ.get("SLMOPS_PROJECT") or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / PROJECT_FILE).is_file():
            return folder
    raise ProjectNotFound(
        f"not inside an slmops project: no {PROJECT_FILE} in {here} or above it. "
        "Create one with `slmops init <dir> [--example NAME]`, or pass --project <dir>."
    )


def use_project(root: Path) -> None:
    """Make the project's own modules importable (``target: my_teacher:answer``, ``task: my_tasks:Invoice``)."""
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))


def init_project(dest: Path, example: str | None = None) -> Path:
    """Write a project into ``dest`` from an example (or the blank template), then ``git init`` and ``dvc init``
    with a local DVC remote. Refuses a folder that already holds a project."""
    dest = dest.resolve()
    if (dest / PROJECT_FILE).exists():
        raise ProjectNotFound(f"{dest} already holds an slmops project ({PROJECT_FILE})")
    source = example_dir(example or "blank")
    shutil.copytree(source, dest, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    (dest / ".gitignore").write_text(GITIGNORE, encoding="utf-8")
    if not (dest / ".git").exists():
        _run(["git", "init", "-q"], dest)
    if not (dest / ".dvc").exists():
        dvc = shutil.which("dvc") or str(Path(sys.executable).with_name("dvc"))
        _run([dvc, "init", "-q"], dest)
        _run([dvc, "remote", "add", "-d", "local", "dvc-remote"], dest)  # stored as ../dvc-remote
        _run([dvc, "config", "core.autostage", "true"], dest)
    return dest


def _run(cmd: list[str], cwd: Path) -> None:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:2])} failed in {cwd}: {proc.stderr.strip() or proc.stdout.strip()}")
