"""The value types say what the published schemas say: each TypedDict has exactly the keys
of its schema object, and requires exactly the keys the schema requires. A field added to
a schema and not to its type (or the other way round) fails here."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from integration.values import envelope, machine

SCHEMAS = Path(__file__).resolve().parent.parent / "schemas"


def schema_at(file: str, *path: str) -> dict[str, Any]:
    """The schema object at `path` (property names; an array's items are stepped into)."""
    node: dict[str, Any] = json.loads((SCHEMAS / file).read_text(encoding="utf-8"))
    for step in path:
        node = node["$defs"][step] if step in node.get("$defs", {}) else node["properties"][step]
        if node.get("type") == "array":
            node = node["items"]
    return node


@pytest.mark.parametrize(("value_type", "file", "path"), [
    (machine.Machine, "machine.schema.json", ()),
    (machine.OperatingSystem, "machine.schema.json", ("os",)),
    (machine.Group, "machine.schema.json", ("groups",)),
    (machine.NetworkInterface, "machine.schema.json", ("network_interfaces",)),
    (machine.MdeDetails, "machine.schema.json", ("mde",)),
    (machine.InterfaceDetails, "machine.schema.json", ("mde", "network_interfaces")),
    (machine.ContactTimeline, "machine.schema.json", ("mde", "contact")),
    (machine.Process, "machine.schema.json", ("mde", "contact", "process")),
    (envelope.EnvelopeRecord, "envelope.schema.json", ()),
    (envelope.SummaryRecord, "envelope.schema.json", ("summary",)),
    (envelope.IndicatorRecord, "common.schema.json", ("indicator",)),
    (envelope.PrincipalRecord, "common.schema.json", ("principal",)),
    (envelope.ErrorRecord, "common.schema.json", ("error",)),
], ids=lambda value: value.__name__ if isinstance(value, type) else None)
def test_value_type_has_the_keys_its_schema_has(value_type: Any, file: str,
                                                path: tuple[str, ...]) -> None:
    schema = schema_at(file, *path)
    assert value_type.__required_keys__ | value_type.__optional_keys__ == \
        set(schema["properties"])
    assert value_type.__required_keys__ == set(schema.get("required", ()))
