"""The model build scripts under models/, loaded as modules for tests."""

from __future__ import annotations

import importlib.util
from functools import cache
from pathlib import Path
from types import ModuleType

MODELS = Path(__file__).resolve().parents[1] / "models"


@cache
def build_script(model: str) -> ModuleType:
    """`models/<model>/build.py`, loaded once (the scripts are not part of a package)."""
    spec = importlib.util.spec_from_file_location(f"{model}_build", MODELS / model / "build.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fraud_build() -> ModuleType:
    """models/fraud/build.py."""
    return build_script("fraud")


def minilm_build() -> ModuleType:
    """models/minilm/build.py."""
    return build_script("minilm")
