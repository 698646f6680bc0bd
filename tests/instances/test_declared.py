from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from gateway.errors import InstanceValidationError
from gateway.instances.declared import load_declared_instances
from tests.instances.seed_examples import seed_bodies


def test_a_directory_of_json_and_yaml_files_declares_instances_by_id(tmp_path: Path) -> None:
    first, second = seed_bodies()["2016"], seed_bodies()["earlier"]
    (tmp_path / "one.json").write_text(json.dumps({**first, "id": "crm-one"}))
    (tmp_path / "two.yaml").write_text(yaml.safe_dump([{**second, "id": "crm-two"}]))
    (tmp_path / "notes.txt").write_text("not an instance")
    declared = load_declared_instances(tmp_path)
    assert sorted(declared) == ["crm-one", "crm-two"]
    assert declared["crm-two"]["name"] == second["name"]


def test_every_problem_of_every_file_is_reported_with_its_file(tmp_path: Path) -> None:
    broken = seed_bodies()["2016"]
    del broken["configuration"]["event.poller.configuration"]["accounts"]["idField"]
    (tmp_path / "a.json").write_text(json.dumps({**broken, "id": "a"}))
    (tmp_path / "b.yaml").write_text("{unclosed")
    (tmp_path / "c.json").write_text(json.dumps(seed_bodies()["2016"]))  # no id
    with pytest.raises(InstanceValidationError) as raised:
        load_declared_instances(tmp_path)
    paths = [p.path for p in raised.value.problems]
    assert "a.json[0]: $.configuration['event.poller.configuration'].accounts.idField" in paths
    assert "b.yaml: $" in paths
    assert "c.json[0]: $.id" in paths
