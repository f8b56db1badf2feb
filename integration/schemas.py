"""The one schema loader: reads schemas/ once; validators are built once.

Two ways to use a schema, both from the same files:
- `errors()`: jsonschema with a `referencing` registry of every file. The authority, and
  the source of every error message.
- `check()`: first a quick, exact verdict for the few keywords our input and configuration
  schemas use (type, properties, required, additionalProperties, lengths, pattern, enum,
  const, bounds, $ref, not, oneOf). Only when it cannot decide, or the instance is invalid,
  is jsonschema asked. Importing jsonschema costs ~45 ms, a third of a lookup's start-up in
  the fresh process a SOAR platform starts for each action run; a valid call never pays it.
  tests/test_schemas.py checks on generated instances that both always agree.

Schemas are shipped files (`integration.resources.SCHEMAS`): `schemas/` in the repository,
package data in the wheel.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from functools import cache, lru_cache
from typing import TYPE_CHECKING, Any

from integration.resources import SCHEMAS

if TYPE_CHECKING:
    from jsonschema.protocols import Validator
    from referencing import Registry

SCHEMA_DIR = SCHEMAS
ID_PREFIX = "https://mde-enrich.invalid/schemas/"


@cache
def schema(name: str) -> dict[str, Any]:
    """A schema by file name (`envelope.schema.json`) or by its full $id."""
    file_name = name.removeprefix(ID_PREFIX)
    schema: dict[str, Any] = json.loads((SCHEMA_DIR / file_name).read_text(encoding="utf-8"))
    return schema


@cache
def registry() -> Registry:
    from referencing import Registry, Resource

    names = sorted(path.name for path in SCHEMA_DIR.iterdir() if path.name.endswith(".json"))
    return Registry().with_resources(
        (schema(name)["$id"], Resource.from_contents(schema(name))) for name in names)


@cache
def validator(name: str) -> Validator:
    from jsonschema import Draft202012Validator

    return Draft202012Validator(schema(name), registry=registry(),
                                format_checker=Draft202012Validator.FORMAT_CHECKER)


def errors(name: str, instance: Any) -> list[str]:
    """Every way `instance` fails `name`, each as 'at <json path>: <message>', best first."""
    from jsonschema.exceptions import relevance

    found = sorted(validator(name).iter_errors(instance), key=relevance)
    return [f"at {error.json_path}: {_bounded(error.message)}" for error in found]


def _bounded(message: str, limit: int = 300) -> str:
    """jsonschema quotes the instance in its message: a pasted 100 KB value is cut short."""
    return message if len(message) <= limit else f"{message[:limit - 1]}…"


def unknown_names(given: Iterable[Any], known: Iterable[str], noun: str) -> str | None:
    """"unknown key 'tennant_id' (did you mean 'tenant_id'?); known keys: ..." for the names
    in `given` that are not `known`, or None when there are none. One wording for config keys
    and action parameters."""
    known = list(known)
    unknown = sorted(str(name) for name in given if name not in known)
    if not unknown:
        return None
    import difflib

    hints = []
    for name in unknown:
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.75)
        hints.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    plural = "s" if len(unknown) > 1 else ""
    return f"unknown {noun}{plural} {', '.join(hints)}; known {noun}s: {', '.join(known)}"


def best_error(name: str, instance: Any) -> Any:
    """jsonschema's most relevant error (a ValidationError with its path), or None."""
    from jsonschema.exceptions import best_match

    return best_match(validator(name).iter_errors(instance))


def check(name: str, instance: Any) -> list[str]:
    """Like `errors`, but a valid instance of a simple schema costs no jsonschema import."""
    if _flat_and_valid(name, instance):
        return []
    if quick_verdict(schema(name), instance, name) is True:
        return []
    return errors(name, instance)


def _flat_and_valid(name: str, instance: Any) -> bool:
    """Action parameters repeat: remember the verdict for a flat object of scalars."""
    if not isinstance(instance, dict) or len(instance) > 8:
        return False
    try:
        key = (name, *sorted((k, type(v), v) for k, v in instance.items()))
        return _remembered_verdict(key)
    except TypeError:  # a nested or unhashable value: no shortcut
        return False


@lru_cache(maxsize=1024)
def _remembered_verdict(key: tuple[Any, ...]) -> bool:
    name, *items = key
    return quick_verdict(schema(name), {k: v for k, _, v in items}, name) is True


# -- the quick verdict -----------------------------------------------------------------------

# Keywords that say nothing about validity: skipped.
_ANNOTATIONS = frozenset({"$schema", "$id", "$comment", "$defs", "title", "description",
                          "default", "examples", "writeOnly", "readOnly", "deprecated"})
_TYPES: dict[str, Any] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "integer": lambda v: (isinstance(v, int) and not isinstance(v, bool))
    or (isinstance(v, float) and v.is_integer()),
}


def quick_verdict(node: Any, instance: Any, base: str) -> bool | None:
    """True or False when certain; None when the schema uses something not handled here."""
    if node is True or node is False:
        return node
    if not isinstance(node, dict):
        return None
    verdict: bool | None = True
    for keyword, value in node.items():
        if keyword in _ANNOTATIONS:
            continue
        outcome = _keyword(keyword, value, node, instance, base)
        if outcome is False:
            return False
        if outcome is None:
            verdict = None
    return verdict


def _keyword(keyword: str, value: Any, node: dict[str, Any], instance: Any,
             base: str) -> bool | None:
    if keyword == "type":
        kinds = value if isinstance(value, list) else [value]
        return any(_TYPES[kind](instance) for kind in kinds if kind in _TYPES)
    if keyword == "$ref":
        target = _resolve(value, base)
        return None if target is None else quick_verdict(target[0], instance, target[1])
    if keyword == "not":
        inner = quick_verdict(value, instance, base)
        return None if inner is None else not inner
    if keyword == "oneOf":
        verdicts = [quick_verdict(option, instance, base) for option in value]
        return None if None in verdicts else verdicts.count(True) == 1
    if keyword == "enum":
        return any(_same(instance, option) for option in value)
    if keyword == "const":
        return _same(instance, value)
    if isinstance(instance, dict):
        return _object_keyword(keyword, value, node, instance, base)
    if isinstance(instance, str):
        return _string_keyword(keyword, value, instance)
    if isinstance(instance, (int, float)) and not isinstance(instance, bool):
        return _number_keyword(keyword, value, instance)
    # Object, string and number keywords do not apply to other types.
    return True if keyword in _TYPED_KEYWORDS else None


def _object_keyword(keyword: str, value: Any, node: dict[str, Any], instance: dict[str, Any],
                    base: str) -> bool | None:
    if keyword == "required":
        return all(key in instance for key in value)
    if keyword == "properties":
        verdicts = [quick_verdict(value[key], instance[key], base)
                    for key in value if key in instance]
        return False if False in verdicts else (None if None in verdicts else True)
    if keyword == "additionalProperties":
        extra = [key for key in instance if key not in node.get("properties", {})]
        verdicts = [quick_verdict(value, instance[key], base) for key in extra]
        return False if False in verdicts else (None if None in verdicts else True)
    return True if keyword in _TYPED_KEYWORDS else None


def _string_keyword(keyword: str, value: Any, instance: str) -> bool | None:
    if keyword == "minLength":
        return bool(len(instance) >= value)
    if keyword == "maxLength":
        return bool(len(instance) <= value)
    if keyword == "pattern":
        return _pattern(value).search(instance) is not None
    return True if keyword in _TYPED_KEYWORDS else None


def _number_keyword(keyword: str, value: Any, instance: float) -> bool | None:
    comparisons = {"minimum": instance >= value, "maximum": instance <= value,
                   "exclusiveMinimum": instance > value, "exclusiveMaximum": instance < value}
    if keyword in comparisons:
        return bool(comparisons[keyword])
    return True if keyword in _TYPED_KEYWORDS else None


# Keywords that constrain only one type of instance, so they hold for any other type.
_TYPED_KEYWORDS = frozenset({"required", "properties", "additionalProperties", "minLength",
                             "maxLength", "pattern", "minimum", "maximum", "exclusiveMinimum",
                             "exclusiveMaximum"})


def _same(a: Any, b: Any) -> bool:
    """JSON equality, at every depth: 1 == 1.0, but True is not 1 (nor [True] [1])."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[key], b[key]) for key in a)
    if isinstance(a, (list, dict)) or isinstance(b, (list, dict)):
        return False
    return bool(a == b)


@cache
def _pattern(expression: str) -> re.Pattern[str]:
    return re.compile(expression)


def deref(node: Any, base: str) -> tuple[dict[str, Any], str]:
    """A schema node with its $ref (to one of our files) followed, its own keys kept over the
    target's, and the file it ended in. Adapters that generate platform files read the
    schemas through this, so $ref is resolved in one place."""
    while isinstance(node, dict) and "$ref" in node:
        found = _resolve(node["$ref"], base)
        if found is None:
            raise KeyError(f"{base}: unresolvable $ref {node['$ref']!r}")
        target, base = found
        node = {**target, **{key: value for key, value in node.items() if key != "$ref"}}
    return (node if isinstance(node, dict) else {}), base


def properties(name: str) -> dict[str, Any]:
    """An object schema's properties by name; a `name: true` entry takes its definition from
    the schema's $ref (how the input schemas share lookup_options)."""
    node = schema(name)
    inherited = deref({"$ref": node["$ref"]}, name)[0].get("properties", {}) \
        if "$ref" in node else {}
    return {key: inherited.get(key, {}) if value is True else value
            for key, value in node.get("properties", {}).items()}


def _resolve(reference: str, base: str) -> tuple[Any, str] | None:
    """A $ref to one of our files and a JSON pointer into it, such as
    `common.schema.json#/$defs/error` or `#/$defs/action`."""
    file_name, _, pointer = reference.partition("#")
    file_name = file_name or base
    if "/" in file_name.removeprefix(ID_PREFIX) or not (SCHEMA_DIR / file_name).is_file():
        return None
    node: Any = schema(file_name)
    for part in filter(None, pointer.split("/")):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node, file_name
