"""The minilm model's build script, for tests: `models/minilm/build.py` as a module."""

from __future__ import annotations

import importlib.util
from functools import cache
from pathlib import Path
from types import ModuleType

BUILD_PY = Path(__file__).resolve().parents[1] / "models" / "minilm" / "build.py"


@cache
def minilm_build() -> ModuleType:
    """The build script, loaded once (it is a script, not part of a package)."""
    spec = importlib.util.spec_from_file_location("minilm_build", BUILD_PY)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
