"""Which code a stage runs, computed: the import closure of its modules, never a hand-kept list.

Usage:
    python -c "from slmops.flows.codedeps import closure; print(*closure(['slmops.data.prepare']), sep='\\n')"

A stage's cache key and its ``code.<stage>`` entry in DVC's ``params.yaml`` are the hash of every file in
that closure (inside the slmops package, and inside the project for the team's own modules: a callable
teacher, a Task class) plus the installed package's version. Imports are read with ``ast`` (module level and
inside functions alike), so nothing is imported to compute them. A helper a stage imports through three
other modules is in its closure; a module it never reaches is not, so editing it reruns nothing.
"""

from __future__ import annotations

import ast
import hashlib
from collections.abc import Iterable
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

PACKAGE = "slmops"
PACKAGE_DIR = Path(__file__).resolve().parent.parent


def package_version() -> str:
    try:
        return version(PACKAGE)
    except PackageNotFoundError:  # run from a source tree that is not installed
        return "source"


def module_file(name: str, roots: tuple[Path, ...] = ()) -> Path | None:
    """The source file of module ``name`` when it is ours: in the slmops package or under one of ``roots``."""
    parts = name.split(".")
    bases = [PACKAGE_DIR.parent] if parts[0] == PACKAGE else [r for r in roots if r != PACKAGE_DIR.parent]
    for base in bases:
        path = base.joinpath(*parts)
        for candidate in (path.with_suffix(".py"), path / "__init__.py"):
            if candidate.is_file():
                return candidate.resolve()
    return None


def _imported_names(path: Path) -> frozenset[str]:
    return _parse_imports(path, path.stat().st_mtime_ns)


@cache
def _parse_imports(path: Path, mtime_ns: int) -> frozenset[str]:
    """Every absolute module name ``path`` imports, and each ``from X import y`` as both X and X.y."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = (
        path.parent.relative_to(PACKAGE_DIR.parent).as_posix().replace("/", ".")
        if path.is_relative_to(PACKAGE_DIR.parent)
        else ""
    )
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:  # relative: from the file's package
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*anchor, module] if module else anchor)
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return frozenset(names)


def closure(modules: Iterable[str], roots: tuple[Path, ...] = ()) -> list[Path]:
    """The files of ``modules`` and of everything they import, transitively, that is ours (package or
    ``roots``), with the ``__init__.py`` of every package on the way (importing a module runs them)."""
    seen: set[Path] = set()
    todo = list(modules)
    while todo:
        name = todo.pop()
        parts = name.split(".")
        for i in range(1, len(parts) + 1):
            path = module_file(".".join(parts[:i]), roots)
            if path is None or path in seen:
                continue
            seen.add(path)
            todo.extend(_imported_names(path))
    return sorted(seen)


def code_hash(modules: Iterable[str], roots: tuple[Path, ...] = ()) -> str:
    """One hash for the closure's contents and the package version (a new wheel is new code)."""
    digest = hashlib.sha256(package_version().encode())
    for path in closure(modules, roots):
        digest.update(_label(path, roots).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def _label(path: Path, roots: tuple[Path, ...]) -> str:
    for base in (PACKAGE_DIR.parent, *roots):
        if path.is_relative_to(base):
            return path.relative_to(base).as_posix()
    return path.name
