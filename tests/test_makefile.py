"""The Makefile's targets are the project's commands: each one a user runs is in `make help` and in
the README, and what CI needs is in the README's prerequisites."""

from __future__ import annotations

import re
import subprocess

from tests.conftest import ROOT

# Internal steps (venv is what every target depends on) and housekeeping that needs no page.
_UNLISTED = {"help", "venv", "clean"}


def _phony_targets() -> set[str]:
    makefile = (ROOT / "Makefile").read_text()
    declared = re.findall(r"^\.PHONY:(.*)$", makefile, flags=re.MULTILINE)
    return {target for line in declared for target in line.split()} - _UNLISTED


def test_every_target_is_in_make_help() -> None:
    listed = subprocess.run(
        ["make", "-s", "help"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    described = {line.split()[1] for line in listed.splitlines() if line.startswith("make ")}
    assert _phony_targets() <= described


def test_every_target_is_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    assert {target for target in _phony_targets() if f"make {target}" not in readme} == set()


def test_the_readme_names_what_ci_needs() -> None:
    readme = (ROOT / "README.md").read_text()
    for prerequisite in ("Python 3.11", "Java 17", "Maven", "Go ≥ 1.24"):
        assert prerequisite in readme
