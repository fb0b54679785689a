"""Imports flow one way (docs/architecture.md): the services (api, worker, scheduler,
autoscaler) import inferfleet, never each other, and inferfleet imports none of them;
bench/ may import the services, and nothing imports bench/ or the tests.

Inside inferfleet, each concept package imports only those before it in LAYERS, and the
top-level modules (settings, errors, ...) import none of them; only the CLI sees every
one. Inside the API, the plumbing never imports the routes or the app.

Every import is checked, including those inside functions and `if TYPE_CHECKING:` blocks,
and relative imports are resolved against the importing file's package.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN: dict[str, set[str]] = {
    "inferfleet": {"api", "worker", "scheduler", "autoscaler", "bench", "tests"},
    "api": {"worker", "scheduler", "autoscaler", "bench", "tests"},
    "worker": {"api", "scheduler", "autoscaler", "bench", "tests"},
    "scheduler": {"api", "worker", "autoscaler", "bench", "tests"},
    "autoscaler": {"api", "worker", "scheduler", "bench", "tests"},
    "bench": {"tests"},
}
# The shared package's concepts, lowest first: each imports only those before it.
LAYERS = ("clients", "models", "jobs", "tenants", "batches")
# Top-level modules of inferfleet that may import every concept package.
ENTRY_POINTS = {"inferfleet.cli"}
# Inside a service: a package and the modules it never imports.
INSIDE: dict[str, set[str]] = {
    "api.plumbing": {"api.routes", "api.app"},
    "api.routes": {"api.app"},
}


def under(module: str, prefix: str) -> bool:
    """Whether `module` is `prefix` or inside it."""
    return module == prefix or module.startswith(prefix + ".")


def forbidden_for(importer: str) -> set[str]:
    """The modules (and packages) that the module named `importer` may not import."""
    parts = importer.split(".")
    found = set(FORBIDDEN.get(parts[0], ()))
    if parts[0] == "inferfleet" and len(parts) > 1 and importer not in ENTRY_POINTS:
        rank = LAYERS.index(parts[1]) if parts[1] in LAYERS else -1
        found |= {f"inferfleet.{layer}" for layer in LAYERS[rank + 1 :]}
    for package, never in INSIDE.items():
        if under(importer, package):
            found |= never
    return found


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
    for top in FORBIDDEN:
        for path in sorted((root / top).rglob("*.py")):
            relative = path.relative_to(root)
            package = ".".join(relative.parent.parts)
            importer = ".".join(relative.with_suffix("").parts).removesuffix(".__init__")
            forbidden = forbidden_for(importer)
            for line, module in imported_modules(path, package):
                if any(under(module, f) for f in forbidden):
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
        # The layout inside the shared package and the API, and bench/tests.
        (
            "inferfleet/clients/a.py",
            "from inferfleet.jobs import messages\n",
            "inferfleet/clients/a.py:1 imports inferfleet.jobs",
        ),
        (
            "inferfleet/jobs/a.py",
            "from ..batches.view import batch_view\n",
            "inferfleet/jobs/a.py:1 imports inferfleet.batches.view",
        ),
        (
            "inferfleet/settings.py",
            "import inferfleet.clients.db\n",
            "inferfleet/settings.py:1 imports inferfleet.clients.db",
        ),
        (
            "api/plumbing/a.py",
            "from api.routes import jobs\n",
            "api/plumbing/a.py:1 imports api.routes",
        ),
        (
            "api/plumbing/a.py",
            "def f():\n    from api.app import create_app\n",
            "api/plumbing/a.py:2 imports api.app",
        ),
        ("worker/a.py", "import bench.workload\n", "worker/a.py:1 imports bench.workload"),
        ("bench/a.py", "from tests.builds import x\n", "bench/a.py:1 imports tests.builds"),
    ],
)
def test_an_import_against_the_contract_is_named_with_its_file_and_line(
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


def test_lower_layers_the_cli_and_routes_to_plumbing_are_allowed(tmp_path: Path) -> None:
    write(tmp_path, "inferfleet/batches/a.py", "from inferfleet.jobs import messages\n")
    write(tmp_path, "inferfleet/tenants/a.py", "from ..jobs.claims import claim_uri\n")
    write(tmp_path, "inferfleet/jobs/a.py", "from inferfleet.clients import broker\n")
    write(tmp_path, "inferfleet/cli.py", "from inferfleet.batches import schedules\n")
    write(tmp_path, "api/routes/a.py", "from api.plumbing.deps import ServicesDep\n")
    write(tmp_path, "api/app.py", "from api.routes import jobs\n")
    write(tmp_path, "bench/a.py", "from worker import persist\n")

    assert violations(tmp_path) == []
