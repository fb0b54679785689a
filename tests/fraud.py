"""The demo fraud model's build script, for tests: `models/fraud/build.py` as a module."""

from __future__ import annotations

import importlib.util
from functools import cache
from pathlib import Path
from types import ModuleType

BUILD_PY = Path(__file__).resolve().parents[1] / "models" / "fraud" / "build.py"


@cache
def fraud_build() -> ModuleType:
    """The build script, loaded once (it is a script, not part of a package)."""
    spec = importlib.util.spec_from_file_location("fraud_build", BUILD_PY)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
