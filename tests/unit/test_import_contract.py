"""Imports flow one way: the services (api, worker, scheduler) import inferfleet, never
each other, and inferfleet imports none of them.

Every import is checked, including those inside functions and `if TYPE_CHECKING:` blocks,
and relative imports are resolved against the importing file's package.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN: dict[str, set[str]] = {
    "inferfleet": {"api", "worker", "scheduler", "autoscaler"},
    "api": {"worker", "scheduler", "autoscaler"},
    "worker": {"api", "scheduler", "autoscaler"},
    "scheduler": {"api", "worker", "autoscaler"},
    "autoscaler": {"api", "worker", "scheduler"},
}


def imported_modules(path: Path, package: str) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in `path`, a module of `package`."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            found.append((node.lineno, absolute(node, package)))
    return found


def absolute(node: ast.ImportFrom, package: str) -> str:
    """The module an ImportFrom names, with leading dots resolved against `package`."""
    if node.level == 0:
        return node.module or ""
    parts = package.split(".")
    base = parts[: len(parts) - node.level + 1]
    return ".".join([*base, node.module] if node.module else base)


def violations(root: Path) -> list[str]:
    found = []
    for top, forbidden in FORBIDDEN.items():
        for path in sorted((root / top).rglob("*.py")):
            relative = path.relative_to(root)
            package = ".".join(relative.parent.parts)
            for line, module in imported_modules(path, package):
                if module.split(".")[0] in forbidden:
                    found.append(f"{relative}:{line} imports {module}")
    return found


def test_imports_flow_one_way() -> None:
    assert violations(ROOT) == []


def test_every_service_package_is_checked() -> None:
    for top in FORBIDDEN:
        assert list((ROOT / top).rglob("*.py")), f"no Python files under {top}/"


def write(root: Path, relative: str, source: str) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(source)


@pytest.mark.parametrize(
    ("relative", "source", "expected"),
    [
        ("inferfleet/a.py", "import api.app\n", "inferfleet/a.py:1 imports api.app"),
        (
            "inferfleet/a.py",
            "from worker.batching import Poison\n",
            "inferfleet/a.py:1 imports worker.batching",
        ),
        (
            "api/a.py",
            "def f():\n    from worker import main\n",
            "api/a.py:2 imports worker",
        ),
        (
            "worker/a.py",
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import api\n",
            "worker/a.py:3 imports api",
        ),
    ],
)
def test_a_backwards_import_is_named_with_its_file_and_line(
    tmp_path: Path, relative: str, source: str, expected: str
) -> None:
    for top in FORBIDDEN:
        write(tmp_path, f"{top}/__init__.py", "")
    write(tmp_path, relative, source)

    assert violations(tmp_path) == [expected]


def test_imports_of_the_shared_package_and_within_a_service_are_allowed(tmp_path: Path) -> None:
    write(tmp_path, "inferfleet/a.py", "from . import errors\nfrom .errors import ConfigError\n")
    write(tmp_path, "api/a.py", "from inferfleet import errors\nfrom . import problems\n")
    write(
        tmp_path, "worker/a.py", "import inferfleet.jobs.messages\nfrom .batching import Poison\n"
    )
    # Relative imports resolve inside the importing package: these are
    # inferfleet.api and worker.api, not the api service.
    write(tmp_path, "inferfleet/b.py", "from .api import thing\n")
    write(tmp_path, "worker/sub/b.py", "from ..api import thing\nfrom .. import api\n")

    assert violations(tmp_path) == []
