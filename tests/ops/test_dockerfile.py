"""The Dockerfile cannot be built here (no container engine): check what can be checked without one,
and build the wheel the builder stage builds, from only the files the Dockerfile copies."""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from gateway.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
RUNTIME_BASE = "python:3.11-slim"


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    instructions = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            instructions.append((keyword.upper(), rest.strip()))
    return instructions


def _stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for keyword, rest in _instructions():
        if keyword == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((keyword, rest))
    return stages


def _build_args() -> dict[str, str]:
    args = {}
    for keyword, rest in _instructions():
        if keyword == "ARG" and "=" in rest:
            name, _, value = rest.partition("=")
            args[name] = value
    return args


def _expand(text: str) -> str:
    args = _build_args()
    return re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), text)


def _copies(stage: list[tuple[str, str]]) -> list[tuple[list[str], str]]:
    """(sources, destination) of each COPY that copies from the build context."""
    copies = []
    for keyword, rest in stage:
        if keyword == "COPY" and "--from" not in rest:
            *sources, destination = shlex.split(rest)
            copies.append(([s for s in sources if not s.startswith("--")], destination))
    return copies


def _exec_form(stage: list[tuple[str, str]], keyword: str) -> list[str]:
    values = [rest for kw, rest in stage if kw == keyword]
    assert values, f"the runtime stage has no {keyword}"
    parsed = json.loads(values[-1])
    assert isinstance(parsed, list), f"{keyword} must use the exec (JSON) form"
    return [str(item) for item in parsed]


def _copied_paths() -> set[str]:
    return {source.rstrip("/") for stage in _stages() for sources, _ in _copies(stage) for source in sources}


def test_multi_stage_with_a_slim_runtime() -> None:
    stages = _stages()
    assert len(stages) >= 2
    runtime_from = _expand(stages[-1][0][1]).split()[0]
    assert runtime_from == RUNTIME_BASE
    runtime = stages[-1]
    assert any(kw == "COPY" and "--from=builder" in rest for kw, rest in runtime), (
        "venv comes from the builder"
    )


def test_copies_exactly_what_the_image_needs_and_it_exists() -> None:
    copied = _copied_paths()
    assert copied == {"pyproject.toml", "README.md", "gateway", "schemas"}
    for path in copied:
        assert (ROOT / path).exists(), f"COPY {path}: no such path in the repository"


def test_entry_point_is_the_console_script() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    runtime = _stages()[-1]
    entrypoint = _exec_form(runtime, "ENTRYPOINT")
    assert entrypoint == ["event-gateway"]
    assert entrypoint[0] in scripts
    assert _exec_form(runtime, "CMD") == ["run"]


def test_the_default_command_is_accepted_by_the_cli() -> None:
    cmd = _exec_form(_stages()[-1], "CMD")
    result = subprocess.run(
        [sys.executable, "-m", "gateway.cli", *cmd, "--help"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr


def test_runs_as_an_unprivileged_user() -> None:
    runtime = _stages()[-1]
    users = [rest for kw, rest in runtime if kw == "USER"]
    assert users, "the runtime stage sets no USER"
    uid = users[-1].split(":")[0]
    assert uid == "10001", "numeric uid, so that Kubernetes can verify runAsNonRoot"
    assert any(kw == "RUN" and "--uid 10001" in rest for kw, rest in runtime)


def test_listens_on_all_interfaces_on_the_default_ports() -> None:
    runtime = _stages()[-1]
    env = " ".join(rest for kw, rest in runtime if kw == "ENV")
    assert "GATEWAY_API_HOST=0.0.0.0" in env
    exposed = {int(port) for kw, rest in runtime if kw == "EXPOSE" for port in rest.split()}
    fields = Settings.model_fields
    assert exposed == {fields["api_port"].default, fields["metrics_port"].default}


def _ignore_patterns() -> list[str]:
    lines = (line.strip() for line in DOCKERIGNORE.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def test_dockerignore_keeps_local_state_out_of_the_context() -> None:
    patterns = {p.rstrip("/") for p in _ignore_patterns()}
    assert {".venv", ".cache", ".git"} <= patterns


def test_dockerignore_excludes_nothing_the_dockerfile_copies() -> None:
    patterns = [p.rstrip("/") for p in _ignore_patterns() if not p.startswith("!")]
    for path in _copied_paths():
        hits = [
            p for p in patterns if fnmatch.fnmatch(path, p) or fnmatch.fnmatch(path, p.removeprefix("**/"))
        ]
        assert not hits, f"{path} is copied but .dockerignore excludes it ({hits})"


def test_the_builder_stage_builds_a_complete_wheel(tmp_path: Path) -> None:
    """`pip wheel .` in a folder holding only what the builder stage copies."""
    context = tmp_path / "src"
    context.mkdir()
    builder = _stages()[0]
    for sources, _ in _copies(builder):
        for source in sources:
            origin = ROOT / source
            if origin.is_dir():
                shutil.copytree(origin, context / source, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy2(origin, context / source)
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path / "dist"), str(context)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if result.returncode != 0 and "Could not find a version that satisfies the requirement setuptools" in (
        result.stderr
    ):
        pytest.skip(f"the build backend cannot be installed (no package index?): {result.stderr[-300:]}")
    assert result.returncode == 0, result.stderr
    (wheel,) = (tmp_path / "dist").glob("event_gateway-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        console_scripts = archive.read(entry_points).decode()
    modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "gateway").rglob("*.py")}
    missing = sorted(modules - names)
    assert not missing, f"modules left out of the wheel (a package without __init__.py?): {missing}"
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    for name, target in scripts.items():
        assert f"{name} = {target}" in console_scripts
