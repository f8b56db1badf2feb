"""plugin.yaml: load it, validate it against schemas/plugin.schema.json, run actions by id."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from integration import schemas
from integration.errors import ConfigError, InvalidInput
from integration.resources import MANIFEST, SHIPPED, read_yaml

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

MANIFEST_PATH = MANIFEST
EntryPoint = Callable[..., dict[str, Any]]


@dataclass(frozen=True)
class Action:
    id: str
    name: str
    entry_point: str
    input_schema: str
    output_schema: str

    def resolve(self) -> EntryPoint:
        module_name, _, function_name = self.entry_point.partition(":")
        try:
            function: Callable[..., dict[str, Any]] = getattr(importlib.import_module(module_name),
                                                               function_name)
            return function
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f"plugin.yaml: action {self.id!r}: entry point "
                              f"{self.entry_point!r} cannot be loaded ({exc})") from exc


@dataclass(frozen=True)
class Manifest:
    data: dict[str, Any]
    actions: dict[str, Action]

    def action(self, action_id: str) -> Action:
        try:
            return self.actions[action_id]
        except KeyError:
            raise InvalidInput(f"unknown action {action_id!r}; plugin.yaml declares "
                               f"{', '.join(self.actions)}") from None

    def run(self, action_id: str, params: Mapping[str, Any],
            config: Mapping[str, Any] | None = None) -> dict[str, Any]:
        return self.action(action_id).resolve()(params, config)


def load_manifest(path: Traversable | Path = MANIFEST_PATH) -> Manifest:
    where = path.name
    # Schema references are relative to the manifest's folder.
    folder = SHIPPED if path is MANIFEST_PATH else Path(str(path)).parent
    data = read_yaml(path)
    problems = schemas.errors("plugin.schema.json", data)
    if problems:
        raise ConfigError(f"{where}: {problems[0]}")
    actions: dict[str, Action] = {}
    for index, entry in enumerate(data["actions"]):
        if entry["id"] in actions:
            raise ConfigError(f"{where}: actions[{index}]: duplicate action id {entry['id']!r}")
        input_schema, output_schema = entry["input"]["$ref"], entry["output"]["$ref"]
        for ref in (input_schema, output_schema, data["config"]["$ref"]):
            if not (folder / ref).is_file():
                raise ConfigError(f"{where}: actions[{index}] ({entry['id']}): "
                                  f"{ref} does not exist")
        actions[entry["id"]] = Action(
            id=entry["id"], name=entry["name"], entry_point=entry["entry_point"],
            input_schema=Path(input_schema).name, output_schema=Path(output_schema).name)
    return Manifest(data=data, actions=actions)


@cache
def manifest() -> Manifest:
    return load_manifest()
