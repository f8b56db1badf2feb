"""Playbooks: load a YAML file, validate it against schemas/playbook.schema.json, compile every
expression, check every action and parameter name. Whatever is wrong is reported with the
file and the step it is in, before anything runs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from integration import schemas
from integration.bounded import DOCUMENT, parse_yaml, read_capped
from integration.errors import PluginError
from integration.playbook.errors import PlaybookError, where
from integration.playbook.expressions import (
    Expression,
    ExpressionError,
    compile_expression,
    compile_template,
    template_expressions,
)

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

SCHEMA = "playbook.schema.json"
Trigger = Literal["alert", "manual", "schedule"]
# What an expression may read from the root, besides `steps.<id>` and `inputs.<name>`.
ROOTS = frozenset({"alert", "inputs", "steps", "enrichment", "item", "index", "playbook"})
_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,), "integer": (int,), "number": (int, float), "boolean": (bool,),
    "array": (list,), "object": (dict,)}


@dataclass(frozen=True)
class InputSpec:
    name: str
    type: str
    required: bool = False
    default: Any = None
    has_default: bool = False
    enum: tuple[Any, ...] | None = None
    description: str = ""

    def check(self, value: Any) -> str | None:
        """What is wrong with `value` for this input, or None."""
        allowed = _TYPES[self.type]
        if isinstance(value, bool) and bool not in allowed:
            return f"must be {self.type}, not boolean"
        if not isinstance(value, allowed):
            return f"must be {self.type}, not {type(value).__name__}"
        if self.enum is not None and value not in self.enum:
            return f"must be one of {', '.join(map(repr, self.enum))}, not {value!r}"
        return None

    def coerce(self, text: str) -> Any:
        """A command-line string turned into this input's type."""
        if self.type == "string":
            return text
        if self.type == "boolean":
            lowered = text.strip().lower()
            if lowered in ("true", "yes", "1"):
                return True
            if lowered in ("false", "no", "0"):
                return False
            raise ValueError(f"expected true or false, got {text!r}")
        from integration.bounded import parse_json

        try:
            return parse_json(text, limits=DOCUMENT, what=f"input {self.name!r}")
        except PluginError as exc:
            raise ValueError(exc.message) from exc


@dataclass(frozen=True)
class Step:
    index: int
    id: str
    action: str | None
    builtin: str | None
    params: Mapping[str, Any]  # compiled template: literals and Expressions
    for_each: Expression | None = None
    when: Expression | None = None
    on_error: Literal["continue", "fail"] = "fail"
    output: str | None = None
    description: str = ""


def _names_alert(template: Any) -> bool:
    if isinstance(template, Expression):
        return re.search(r"\balert\b", template.source) is not None
    if isinstance(template, Mapping):
        return any(_names_alert(value) for value in template.values())
    if isinstance(template, (list, tuple)):
        return any(_names_alert(value) for value in template)
    return False


@dataclass(frozen=True)
class Playbook:
    name: str
    trigger: Trigger
    steps: tuple[Step, ...]
    inputs: Mapping[str, InputSpec] = field(default_factory=dict)
    description: str = ""
    source: str = "<playbook>"  # the file, as named in messages

    def where(self, step: Step | None = None) -> str:
        return where(self.source, step.index, step.id) if step else self.source

    @property
    def reads_alert(self) -> bool:
        """Whether a run needs an alert: an alert playbook always; a scheduled one when a step
        extracts from it or an expression names it (a sweep over feeds reads none)."""
        if self.trigger == "alert":
            return True
        if self.trigger == "manual":
            return False
        return any(step.builtin == "extract_indicators"
                   or any(_names_alert(e) for e in (step.for_each, step.when, step.params))
                   for step in self.steps)

    def resolve_inputs(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """Defaults filled in, types and enums checked. A bad value is the caller's input, not
        the playbook's fault: InvalidInput, naming the playbook and the input."""
        from integration.errors import InvalidInput

        unknown = sorted(set(given) - set(self.inputs))
        if unknown:
            known = ", ".join(self.inputs) or "none"
            raise InvalidInput(f"{self.source}: unknown input(s) {', '.join(unknown)}; "
                               f"this playbook takes: {known}")
        resolved: dict[str, Any] = {}
        for name, spec in self.inputs.items():
            if name in given:
                problem = spec.check(given[name])
                if problem:
                    raise InvalidInput(f"{self.source}: input {name!r} {problem}")
                resolved[name] = given[name]
            elif spec.has_default:
                resolved[name] = spec.default
            elif spec.required:
                raise InvalidInput(f"{self.source}: input {name!r} is required")
            else:
                resolved[name] = None
        return resolved


def load_playbook(path: str | Path | Traversable) -> Playbook:
    """A playbook file, or one the plugin ships by name (`enrich-alert`): an installed plugin
    has no playbooks/ folder in the working directory."""
    from integration.resources import playbook_file

    source = str(path)
    file = playbook_file(path) if isinstance(path, str) else path
    if not file.is_file():
        from integration.resources import shipped_playbook_names

        raise PlaybookError(f"{source}: cannot be read: no such file; the plugin ships "
                            f"{', '.join(shipped_playbook_names())} (run them by name)")
    raw = read_capped(file, DOCUMENT.max_bytes, what=source, error=PlaybookError)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PlaybookError(f"{source}: not UTF-8 text (byte {exc.start})") from exc
    data = parse_yaml(text, limits=DOCUMENT, what=source, error=PlaybookError,
                      locate=lambda line: _step_at(text.splitlines(), line))
    return parse_playbook(data, source)


def parse_playbook(data: Any, source: str = "<playbook>") -> Playbook:
    _check_schema(data, source)
    inputs = {name: _input(name, spec, source) for name, spec in (data.get("inputs") or {}).items()}
    steps: list[Step] = []
    for index, raw in enumerate(data["steps"]):
        if raw["id"] in {step.id for step in steps}:
            raise PlaybookError(f"{where(source, index, raw['id'])}: duplicate step id")
        step = _step(index, raw, source)
        _check_step(step, steps, inputs, data["trigger"], source)
        steps.append(step)
    return Playbook(name=data["name"], trigger=data["trigger"], steps=tuple(steps),
                    inputs=inputs, description=data.get("description", ""), source=source)


# --- schema ------------------------------------------------------------------------------


def _check_schema(data: Any, source: str) -> None:
    error = schemas.best_error(SCHEMA, data)
    if error is None:
        return
    path = list(error.absolute_path)
    prefix = source
    if len(path) >= 2 and path[0] == "steps" and isinstance(path[1], int):
        raw = data["steps"][path[1]]
        step_id = raw.get("id") if isinstance(raw, dict) and isinstance(raw.get("id"), str) \
            else None
        prefix = where(source, path[1], step_id)
        path = path[2:]
    at = ".".join(str(part) for part in path)
    message = error.message
    if error.validator == "oneOf" and not path:
        message = "give exactly one of 'action' and 'builtin'"
    raise PlaybookError(f"{prefix}: {at + ': ' if at else ''}{message}")


def _input(name: str, spec: Mapping[str, Any], source: str) -> InputSpec:
    enum = tuple(spec["enum"]) if "enum" in spec else None
    made = InputSpec(name=name, type=spec["type"], required=spec.get("required", False),
                     default=spec.get("default"), has_default="default" in spec, enum=enum,
                     description=spec.get("description", ""))
    if made.has_default:
        problem = made.check(made.default)
        if problem:
            raise PlaybookError(f"{source}: inputs.{name}.default {problem}")
    return made


# --- steps -------------------------------------------------------------------------------


def _step(index: int, raw: Mapping[str, Any], source: str) -> Step:
    prefix = where(source, index, raw["id"])

    def expression(key: str) -> Expression | None:
        if key not in raw:
            return None
        try:
            return compile_expression(raw[key])
        except ExpressionError as exc:
            raise PlaybookError(f"{prefix}: {key}: {exc}") from exc

    try:
        params = compile_template(raw.get("params") or {}, "params")
    except ExpressionError as exc:
        raise PlaybookError(f"{prefix}: {exc}") from exc
    return Step(index=index, id=raw["id"], action=raw.get("action"), builtin=raw.get("builtin"),
                params=params, for_each=expression("for_each"), when=expression("when"),
                on_error=raw.get("on_error", "fail"), output=raw.get("output"),
                description=raw.get("description", ""))


def _check_step(step: Step, earlier: list[Step], inputs: Mapping[str, InputSpec],
                trigger: str, source: str) -> None:
    prefix = where(source, step.index, step.id)
    given = set(step.params)
    if step.action is not None:
        required, optional = _action_params(step.action, prefix)
        what = f"action {step.action!r}"
    else:
        from integration.playbook.steps import BUILTINS

        builtin = BUILTINS[step.builtin or ""]
        required, optional = builtin.required, builtin.optional
        what = f"builtin {step.builtin!r}"
    unknown = sorted(given - required - optional)
    if unknown:  # first: a misspelt name is also a missing one, and this says which
        takes = ", ".join(sorted(required | optional))
        raise PlaybookError(f"{prefix}: {what} has no param(s) {', '.join(unknown)}; "
                            f"it takes {takes}")
    missing = sorted(required - given)
    if missing:
        raise PlaybookError(f"{prefix}: {what} needs params {', '.join(missing)}")
    if step.builtin == "set_field":
        from integration.playbook.steps import check_output_path

        path = step.params.get("path")
        problem = None if isinstance(path, Expression) else check_output_path(path)
        if problem:
            raise PlaybookError(f"{prefix}: params.path: {problem}")
    expressions = [e for e in (step.for_each, step.when) if e is not None]
    expressions += template_expressions(step.params)
    known_steps = {s.id for s in earlier}
    for expression in expressions:
        for root, name in expression.root_references():
            if root not in ROOTS:
                raise PlaybookError(f"{prefix}: expression {expression.source!r} reads "
                                    f"{root!r}; an expression reads from "
                                    f"{', '.join(sorted(ROOTS))}")
            if root == "item" and step.for_each is None:
                raise PlaybookError(f"{prefix}: expression {expression.source!r} reads "
                                    "item, but the step has no for_each")
            if root == "steps" and name not in known_steps:
                raise PlaybookError(f"{prefix}: expression {expression.source!r} reads "
                                    f"steps.{name}, which is not an earlier step")
            if root == "inputs" and name not in inputs:
                raise PlaybookError(f"{prefix}: expression {expression.source!r} reads "
                                    f"inputs.{name}, which the playbook does not declare")
            if root == "alert" and trigger == "manual":
                raise PlaybookError(f"{prefix}: expression {expression.source!r} reads the "
                                    "alert, but a manual playbook has none")


def _action_params(action_id: str, prefix: str) -> tuple[frozenset[str], frozenset[str]]:
    from integration.errors import PluginError
    from integration.manifest import manifest

    try:
        action = manifest().action(action_id)
    except PluginError as exc:
        raise PlaybookError(f"{prefix}: {exc.message}") from exc
    schema = schemas.schema(action.input_schema)
    properties = frozenset(schema.get("properties", {}))
    required = frozenset(schema.get("required", []))
    return required, properties - required


_STEP_LINE = re.compile(r"^\s*-\s+id:\s*['\"]?([^'\"\s#]+)")


def _step_at(lines: list[str], line: int) -> str:
    """' (in step 'files')' for a YAML error on `line`: the last `- id:` above it, once
    `steps:` has begun; '' before the steps."""
    step_id = None
    for text in lines[:line]:
        if text.startswith("steps:"):
            step_id = ""
        elif step_id is not None and (found := _STEP_LINE.match(text)):
            step_id = found.group(1)
    return f" (in step {step_id!r})" if step_id else ""
