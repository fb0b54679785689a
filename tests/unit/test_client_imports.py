"""The client distribution stands alone: it imports the standard library, httpx, pydantic
and itself, nothing of the server, and declares exactly httpx and pydantic."""

from __future__ import annotations

import ast
import sys
import tomllib
from pathlib import Path

CLIENT = Path(__file__).resolve().parents[2] / "client"
ALLOWED = {"httpx", "pydantic", "inferfleet_client"}


def top_level_imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def test_the_client_imports_only_the_standard_library_httpx_and_pydantic() -> None:
    sources = sorted((CLIENT / "src").rglob("*.py"))
    assert sources
    foreign = {
        f"{path.relative_to(CLIENT)}: {name}"
        for path in sources
        for name in top_level_imports(path)
        if name not in ALLOWED and name not in sys.stdlib_module_names
    }
    assert foreign == set()


def test_the_client_declares_httpx_and_pydantic_only_and_ships_its_types() -> None:
    project = tomllib.loads((CLIENT / "pyproject.toml").read_text())["project"]
    names = {d.split(">")[0].split("<")[0].split("=")[0].strip() for d in project["dependencies"]}

    assert names == {"httpx", "pydantic"}
    assert project["name"] == "inferfleet-client"
    assert project["scripts"]["inferfleet-client"] == "inferfleet_client.cli:main"
    assert (CLIENT / "src" / "inferfleet_client" / "py.typed").exists()
