"""JMESPath expressions and parameter templates.

Expressions select data; they never run code. Each one is compiled when the playbook (or the
alert-format table) is loaded, so a bad one is refused before anything runs. A parameter
value is a literal unless it is an object whose only key is `expr`: `{expr: "item.value"}`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache, lru_cache
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
            return _interpreter().visit(self.parsed.parsed, data)
        except JMESPathError as exc:
            raise ExpressionError(f"expression {self.source!r} failed: {_one_line(exc)}") from exc

    def root_references(self) -> Iterator[tuple[str, str]]:
        """(`steps`|`inputs`|..., name) pairs read from the root, for load-time typo checks."""
        yield from _root_references(self.parsed.parsed, at_root=True)


@cache
def _interpreter() -> Any:
    """One JMESPath interpreter for every search (ParsedResult.search builds a new one each
    time), with the alert formats' functions (_options) and a fast path for the comparison
    they make most: `field == 'text'`."""
    from jmespath.visitor import TreeInterpreter

    class Interpreter(TreeInterpreter):
        def visit_comparator(self, node: Any, value: Any) -> Any:
            op = node["value"]
            if op in ("eq", "ne"):
                left, right = node["children"]
                if left["type"] == "field" and right["type"] == "literal" \
                        and isinstance(right["value"], str):
                    # JMESPath's own equality, for a string: only an equal string is equal.
                    found = value.get(left["value"]) if isinstance(value, dict) else None
                    return (found == right["value"]) is (op == "eq")
            return super().visit_comparator(node, value)

    return Interpreter(_options())


def compile_expression(source: Any) -> Expression:
    import jmespath
    from jmespath.exceptions import JMESPathError

    if not isinstance(source, str) or not source.strip():
        raise ExpressionError(f"an expression must be a non-empty string, not {source!r}")
    depth = _nesting(source)
    if depth > MAX_EXPRESSION_DEPTH:
        raise ExpressionError(f"expression {_shown(source)!r}... is nested {depth} "
                              f"levels deep; at most {MAX_EXPRESSION_DEPTH} are allowed")
    try:
        parsed = jmespath.compile(source)
    except JMESPathError as exc:
        raise ExpressionError(f"invalid JMESPath expression {source!r}: {_one_line(exc)}") from exc
    except RecursionError:  # nesting the count above does not see
        raise ExpressionError(f"expression {_shown(source)!r}... is too deeply nested to "
                              "compile") from None
    # A chain (`a | b | b ...`, `a || b || ...`) parses flat but is evaluated recursively.
    if _tree_depth(parsed.parsed) > MAX_EXPRESSION_TREE_DEPTH:
        raise ExpressionError(f"expression {_shown(source)!r}... is nested more than "
                              f"{MAX_EXPRESSION_TREE_DEPTH} levels deep once parsed")
    # JMESPath looks a function up only when it runs: refused here, before anything runs.
    known = _options().custom_functions.FUNCTION_TABLE
    unknown = sorted({name for name in _function_names(parsed.parsed) if name not in known})
    if unknown:
        raise ExpressionError(f"expression {_shown(source)!r}: unknown function "
                              f"{', '.join(name + '()' for name in unknown)}; known: "
                              f"{', '.join(sorted(known))}")
    return Expression(source, parsed)


def _function_names(root: Any) -> Iterator[str]:
    """The names of the functions a parsed JMESPath tree calls, walked without recursion."""
    stack = [root]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if node.get("type") == "function_expression":
                yield str(node.get("value"))
            stack.extend(node.get("children") or [])


# JMESPath's parser recurses once per level of brackets and negations, its interpreter once
# per level of the parsed tree: thousands of levels are a RecursionError. Real expressions
# stay under ten and twenty.
MAX_EXPRESSION_DEPTH = 32
MAX_EXPRESSION_TREE_DEPTH = 100
# Quoted identifiers, raw strings and JSON literals: brackets inside them are text.
_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`(?:[^`\\]|\\.)*`')


def _shown(source: str) -> str:
    return " ".join(source.split())[:60]


def _tree_depth(root: Any) -> int:
    """The depth of a parsed JMESPath tree, walked without recursion."""
    deepest, stack = 0, [(root, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        if isinstance(node, dict):
            stack.extend((child, depth + 1) for child in node.get("children") or [])
    return deepest


def _nesting(source: str) -> int:
    """The deepest nesting of (), [], {} and runs of ! in an expression, quoted text left out."""
    bare = _QUOTED.sub("", source)
    depth = deepest = 0
    for char in bare:
        if char in "([{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in ")]}":
            depth = max(0, depth - 1)
    negations = max((len(run) for run in re.findall(r"!+", bare)), default=0)
    return max(deepest, negations)


def is_expression(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {EXPR_KEY}


def compile_template(value: Any, path: str = "") -> Any:
    """A parameter value with every `{expr: ...}` compiled; ExpressionError names the path."""
    if is_expression(value):
        try:
            return compile_expression(value[EXPR_KEY])
        except ExpressionError as exc:
            raise ExpressionError(f"{path}: {exc}") from None
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


# --- functions beyond JMESPath's own, for what alert formats carry inside strings ------------

_JSON_STRING_LIMIT = 1_000_000  # a JSON string field larger than this is left as text


@cache
def _options() -> Any:
    """JMESPath options with the functions alert-format rules use; built once."""
    import jmespath
    from jmespath import functions

    class AlertFunctions(functions.Functions):
        @functions.signature({"types": []})
        def _func_from_json(self, value: Any) -> Any:
            return from_json(value)

        # These take any value: over a projection (every attribute of an event, every
        # indicator of a bundle) one odd value must not fail the others; it gives nothing.
        @functions.signature({"types": []}, {"types": ["string"]})
        def _func_split(self, value: Any, separator: str) -> list[str]:
            """MISP's composite values (`filename|sha256`), split."""
            return value.split(separator) if isinstance(value, str) else []

        @functions.signature({"types": []})
        def _func_hash_list(self, value: Any) -> dict[str, str]:
            """Sysmon's `Hashes` (`SHA1=...,MD5=...,SHA256=...,IMPHASH=...`) as an object
            keyed by lowercase algorithm: {sha1, md5, sha256, imphash}."""
            found: dict[str, str] = {}
            for part in (value if isinstance(value, str) else "").split(","):
                name, equals, digest = part.partition("=")
                if equals and name.strip():
                    found[name.strip().lower().replace("-", "")] = digest.strip()
            return found

        @functions.signature({"types": []})
        def _func_stix_pattern(self, value: Any) -> list[dict[str, Any]]:
            """A STIX 2.1 pattern's comparisons (parsed by OASIS's grammar, see
            integration/lookup/stix_patterns.py): [{type: domain|sha1|sha256|md5, value}]
            for what Defender can look up, [{reason, value, message}] for the rest."""
            if value is None or value == "":
                return []
            if not isinstance(value, str):
                return [{"reason": "invalid_value", "value": value,
                         "message": "a STIX pattern is a string"}]
            return stix_pattern_items(value)

    return jmespath.Options(custom_functions=AlertFunctions())


def from_json(value: Any) -> Any:
    """A field that holds JSON as a string (Sentinel's Entities, Defender's AdditionalFields)
    as data; anything else as it is; null when it is empty or does not parse. Bounded like
    every JSON this plugin reads (integration/bounded.py)."""
    if not isinstance(value, str):
        return value
    if not value.strip() or len(value) > _JSON_STRING_LIMIT:
        return None
    from integration.bounded import ALERT, parse_json
    from integration.errors import PluginError

    try:
        return parse_json(value, limits=ALERT, what="a JSON string field")
    except (PluginError, ValueError):
        return None


@lru_cache(maxsize=1024)
def _stix_items(pattern: str) -> tuple[tuple[tuple[str, str], ...], ...]:
    from integration.errors import PluginError
    from integration.lookup.stix_patterns import indicators_from_pattern

    try:
        found = indicators_from_pattern(pattern)
    except PluginError as error:
        return ((("reason", "invalid_value"), ("value", pattern), ("message", error.message)),)
    items: list[tuple[tuple[str, str], ...]] = [
        (("type", indicator.type), ("value", indicator.value)) for indicator in found.indicators]
    for skip in found.skipped:
        reason = _STIX_SKIP_REASONS.get(skip.what.partition(":")[0], skip.reason)
        items.append((("reason", reason), ("value", skip.what), ("message", skip.message)))
    return tuple(items)


def stix_pattern_items(pattern: str) -> list[dict[str, str]]:
    return [dict(item) for item in _stix_items(pattern)]


# A STIX comparison on these objects is skipped under the reason alerts use for them.
_STIX_SKIP_REASONS = {"ipv4-addr": "ip_address", "ipv6-addr": "ip_address",
                      "email-addr": "user_account", "user-account": "user_account"}
