"""plugin.yaml: it validates, every action resolves, and a broken manifest names the problem."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from integration import schemas
from integration.errors import ConfigError, InvalidInput
from integration.manifest import MANIFEST_PATH, load_manifest, manifest


def test_the_shipped_manifest_declares_the_three_actions() -> None:
    assert list(manifest().actions) == ["get_machines_for_domain", "get_machines_for_file_hash",
                                        "test_connectivity"]


def test_the_lookup_actions_carry_their_human_names() -> None:
    names = {action.id: action.name for action in manifest().actions.values()}
    assert names["get_machines_for_domain"] == "get machines for domain"
    assert names["get_machines_for_file_hash"] == "get machines for file hash"


@pytest.mark.parametrize("action_id", ["get_machines_for_domain", "get_machines_for_file_hash",
                                       "test_connectivity"])
def test_every_action_resolves_to_a_callable_with_its_schemas(action_id: str) -> None:
    action = manifest().action(action_id)
    assert callable(action.resolve())
    assert schemas.schema(action.input_schema)["$id"].endswith(action.input_schema)
    assert schemas.schema(action.output_schema)["$id"].endswith(action.output_schema)


def test_every_action_is_read_only_and_names_its_permissions_and_limits() -> None:
    for entry in manifest().data["actions"]:
        assert entry["read_only"] is True
        assert "Machine.Read.All" in entry["permissions"]["application_any_of"]
        assert entry["rate_limit"] == {"per_minute": 100, "per_hour": 1500}


def test_an_unknown_action_id_is_invalid_input() -> None:
    with pytest.raises(InvalidInput, match="unknown action 'nope'"):
        manifest().action("nope")


def broken_manifest(tmp_path: Path, change: dict) -> Path:
    data = yaml.safe_load(MANIFEST_PATH.read_text())
    data["actions"][0].update(change)
    (tmp_path / "schemas").symlink_to(schemas.SCHEMA_DIR)
    path = tmp_path / "plugin.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_a_manifest_that_breaks_its_schema_is_refused_naming_where(tmp_path: Path) -> None:
    path = broken_manifest(tmp_path, {"read_only": "yes"})
    with pytest.raises(ConfigError, match=r"plugin.yaml: at \$.actions\[0\].read_only"):
        load_manifest(path)


def test_an_entry_point_that_does_not_exist_is_a_config_error(tmp_path: Path) -> None:
    path = broken_manifest(tmp_path, {"entry_point": "integration.actions:missing"})
    with pytest.raises(ConfigError, match=r"entry point 'integration\.actions:missing'"):
        load_manifest(path).action("get_machines_for_domain").resolve()


def test_a_schema_reference_to_a_missing_file_is_refused(tmp_path: Path) -> None:
    path = broken_manifest(tmp_path, {"input": {"$ref": "schemas/missing.schema.json"}})
    with pytest.raises(ConfigError, match=r"schemas/missing.schema.json does not exist"):
        load_manifest(path)
