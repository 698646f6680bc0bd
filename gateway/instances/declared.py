"""Instances declared in files (GitOps, Helm): one body or a list of bodies per JSON or YAML file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import yaml

from gateway.errors import InstanceValidationError, Problem
from gateway.instances.validate import validate_instance

_SUFFIXES = (".json", ".yaml", ".yml")


def load_declared_instances(path: Path) -> dict[str, dict[str, Any]]:
    """Every instance body under `path`, by id, validated; all problems of all files are raised at once."""
    files = sorted(p for p in path.iterdir() if p.suffix in _SUFFIXES) if path.is_dir() else [path]
    bodies: dict[str, dict[str, Any]] = {}
    problems: list[Problem] = []
    for file in files:
        for index, body in enumerate(_documents(file, problems)):
            where = f"{file.name}[{index}]"
            instance_id = body.get("id") if isinstance(body, dict) else None
            if not isinstance(body, dict) or not isinstance(instance_id, str) or not instance_id:
                problems.append(Problem(f"{where}: $.id", "a declared instance needs a string id"))
                continue
            try:
                validate_instance(body, instance_id=instance_id)
            except InstanceValidationError as exc:
                problems.extend(Problem(f"{where}: {p.path}", p.message) for p in exc.problems)
                continue
            if instance_id in bodies:
                problems.append(Problem(f"{where}: $.id", f"id {instance_id!r} is declared twice"))
            bodies[instance_id] = body
    if problems:
        raise InstanceValidationError(problems)
    return bodies


def _documents(file: Path, problems: list[Problem]) -> list[Any]:
    text = file.read_bytes()
    try:
        loaded = orjson.loads(text) if file.suffix == ".json" else yaml.safe_load(text)
    except (orjson.JSONDecodeError, yaml.YAMLError) as exc:
        problems.append(Problem(f"{file.name}: $", f"cannot be parsed: {exc}"))
        return []
    return loaded if isinstance(loaded, list) else [loaded]
