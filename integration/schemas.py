"""The one schema loader: reads schemas/ once into a `referencing` registry, validators once.

Schemas live at the project root (`schemas/`) so that platforms and people can read them
beside plugin.yaml; they are found relative to this package.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jsonschema.protocols import Validator
    from referencing import Registry

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SCHEMA_DIR = PROJECT_ROOT / "schemas"
ID_PREFIX = "https://mde-enrich.invalid/schemas/"


@cache
def registry() -> Registry:
    from referencing import Registry, Resource

    resources = []
    for path in sorted(SCHEMA_DIR.glob("*.json")):
        contents = json.loads(path.read_text(encoding="utf-8"))
        resources.append((contents["$id"], Resource.from_contents(contents)))
    return Registry().with_resources(resources)


def schema(name: str) -> dict[str, Any]:
    """A schema by file name (`envelope.schema.json`) or by its full $id."""
    uri = name if name.startswith("https://") else ID_PREFIX + name
    return registry().contents(uri)


@cache
def validator(name: str) -> Validator:
    from jsonschema import Draft202012Validator

    return Draft202012Validator(schema(name), registry=registry(),
                                format_checker=Draft202012Validator.FORMAT_CHECKER)


def errors(name: str, instance: Any) -> list[str]:
    """Every way `instance` fails `name`, each as 'at <json path>: <message>', best first."""
    from jsonschema.exceptions import relevance

    found = sorted(validator(name).iter_errors(instance), key=relevance)
    return [f"at {error.json_path}: {error.message}" for error in found]
