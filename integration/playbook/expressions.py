"""JMESPath expressions and parameter templates.

Expressions select data; they never run code. Each one is compiled when the playbook (or the
alert-format table) is loaded, so a bad one is refused before anything runs. A parameter
value is a literal unless it is an object whose only key is `expr`: `{expr: "item.value"}`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

EXPR_KEY = "expr"


class ExpressionError(ValueError):
    """An expression that does not compile, or fails on the data it is given."""


@dataclass(frozen=True)
class Expression:
    source: str
    parsed: Any  # jmespath.parser.ParsedResult

    def search(self, data: Any) -> Any:
        from jmespath.exceptions import JMESPathError

        try:
            return self.parsed.search(data)
        except JMESPathError as exc:
            raise ExpressionError(f"expression {self.source!r} failed: {_one_line(exc)}") from exc

    def root_references(self) -> Iterator[tuple[str, str]]:
        """(`steps`|`inputs`|..., name) pairs read from the root, for load-time typo checks."""
        yield from _root_references(self.parsed.parsed, at_root=True)


def compile_expression(source: Any) -> Expression:
    import jmespath
    from jmespath.exceptions import JMESPathError

    if not isinstance(source, str) or not source.strip():
        raise ExpressionError(f"an expression must be a non-empty string, not {source!r}")
    try:
        return Expression(source, jmespath.compile(source))
    except JMESPathError as exc:
        raise ExpressionError(f"invalid JMESPath expression {source!r}: {_one_line(exc)}") from exc


def is_expression(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {EXPR_KEY}


def compile_template(value: Any, path: str = "") -> Any:
    """A parameter value with every `{expr: ...}` compiled; ExpressionError names the path."""
    if is_expression(value):
        try:
            return compile_expression(value[EXPR_KEY])
        except ExpressionError as exc:
            raise ExpressionError(f"{path}: {exc}") from exc
    if isinstance(value, dict):
        return {key: compile_template(item, f"{path}.{key}" if path else str(key))
                for key, item in value.items()}
    if isinstance(value, list):
        return [compile_template(item, f"{path}[{i}]") for i, item in enumerate(value)]
    return value


def render_template(template: Any, data: Any) -> Any:
    if isinstance(template, Expression):
        return template.search(data)
    if isinstance(template, dict):
        return {key: render_template(item, data) for key, item in template.items()}
    if isinstance(template, list):
        return [render_template(item, data) for item in template]
    return template


def template_expressions(template: Any) -> Iterator[Expression]:
    if isinstance(template, Expression):
        yield template
    elif isinstance(template, dict):
        for item in template.values():
            yield from template_expressions(item)
    elif isinstance(template, list):
        for item in template:
            yield from template_expressions(item)


def truthy(value: Any) -> bool:
    """JMESPath's idea of truth: null, false and empty string/array/object are false."""
    return not (value is None or value is False or value in ("", [], {}))


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())


# Node types whose later children see an element (or a result), not the root document.
_ELEMENT_SCOPED = {"projection", "filter_projection", "value_projection", "subexpression",
                   "pipe", "index_expression"}


def _root_references(node: Any, at_root: bool) -> Iterator[tuple[str, str]]:
    if not isinstance(node, dict):
        return
    kind, children = node.get("type"), node.get("children") or []
    if at_root and kind == "subexpression" and len(children) >= 2 \
            and children[0].get("type") == "field" and children[1].get("type") == "field":
        yield children[0]["value"], children[1]["value"]
    if kind == "expref":
        return  # evaluated against elements later (sort_by etc.)
    for position, child in enumerate(children):
        scoped = kind in _ELEMENT_SCOPED and position > 0
        yield from _root_references(child, at_root and not scoped)
