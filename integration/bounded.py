"""Bounded readers: every JSON and YAML document from outside is read through here.

Anything a user, a platform or a feed hands over (config files, playbooks, alert-format
tables, alerts, `--params`) may be huge, nested 100,000 deep, or a YAML alias bomb. Read
through these functions it is refused with a clear error of the caller's choosing
(InvalidInput unless told otherwise), never a RecursionError or a MemoryError:

    read_json(path, limits=ALERT, what="alert.json")      # a file, or "-" for stdin
    parse_json(text, limits=ALERT, what="line 7")         # text or bytes already read
    read_yaml(path, limits=DOCUMENT, error=ConfigError)
    parse_yaml(text, limits=DOCUMENT, what="playbook.yaml")
    check_nesting(value, limits=ALERT, what="alert")      # a dict a platform passed in
    read_capped(path, max_bytes, what=...)                # the bytes, at most max_bytes

Error messages never quote the document: a YAML syntax error on a secret's line names the
line and column, not the line's text (PyYAML's own message shows it).
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from integration.errors import InvalidInput, PluginError, first_line

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

MiB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    max_bytes: int
    # Containers inside containers. Real alerts, configs and answers stay under 20; past ~300
    # Python's own recursion (copy.deepcopy, jsonschema, json.dumps) would fail on the data.
    max_depth: int = 64
    # YAML only: values after every alias is expanded (an alias bomb is small on disk).
    max_nodes: int = 100_000


DOCUMENT = Limits(max_bytes=1 * MiB)  # config files, playbooks, alert-format tables
ALERT = Limits(max_bytes=64 * MiB)  # one alert, a page of alerts, or an NDJSON batch
ANSWER = Limits(max_bytes=64 * MiB)  # a Defender, Graph or sign-in answer body

ErrorType = type[PluginError]


def read_capped(source: str | os.PathLike[str] | Traversable, max_bytes: int, *,
                what: str | None = None, error: ErrorType = InvalidInput) -> bytes:
    """The bytes of a file (or of standard input for "-"), refused past `max_bytes` without
    reading more than one byte beyond it."""
    label = what or ("<stdin>" if str(source) == "-" else str(source))
    try:
        if str(source) == "-":
            data = sys.stdin.buffer.read(max_bytes + 1)
        else:
            # A Traversable (a file inside an installed package) opens itself.
            file = Path(source) if isinstance(source, str | os.PathLike) else source
            with file.open("rb") as stream:
                data = stream.read(max_bytes + 1)
    except OSError as exc:
        raise error(f"{label}: cannot be read: {exc.strerror or exc}") from None
    if len(data) > max_bytes:
        raise error(f"{label}: larger than {_size(max_bytes)}, the limit for this input")
    return data


# --- JSON -------------------------------------------------------------------------------


def parse_json(text: str | bytes, *, limits: Limits = ALERT, what: str = "input",
               error: ErrorType = InvalidInput) -> Any:
    """Strict JSON (no NaN or Infinity), at most `limits.max_bytes` long and
    `limits.max_depth` deep."""
    import json

    if len(text) > limits.max_bytes:
        raise error(f"{what}: larger than {_size(limits.max_bytes)}, the limit for this input")
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except RecursionError:
        raise error(_too_deep(what, limits)) from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError: positions, never text
        raise error(f"{what}: not valid JSON: {exc}") from None
    if _json_deeper_than(text, limits.max_depth):
        raise error(_too_deep(what, limits))
    return value


def read_json(source: str | os.PathLike[str] | Traversable, *, limits: Limits = ALERT,
              what: str | None = None, error: ErrorType = InvalidInput) -> Any:
    label = what or ("<stdin>" if str(source) == "-" else str(source))
    return parse_json(read_capped(source, limits.max_bytes, what=label, error=error),
                      limits=limits, what=label, error=error)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_JSON_STRING_BYTES = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS = re.compile(r"[^\[\]{}]+")
_NOT_BRACKETS_BYTES = re.compile(rb"[^\[\]{}]+")


def _json_deeper_than(text: str | bytes, limit: int) -> bool:
    """For text that parsed as JSON: is it nested deeper than `limit`? In C-speed passes
    (strings removed, then only brackets kept, then innermost pairs stripped once per level),
    not a Python loop over every character."""
    opening = "[{" if isinstance(text, str) else b"[{"
    if text.count(opening[0]) + text.count(opening[1]) <= limit:  # type: ignore[arg-type]
        return False
    if isinstance(text, bytes):
        brackets = _NOT_BRACKETS_BYTES.sub(b"", _JSON_STRING_BYTES.sub(b"", text)).decode()
    else:
        brackets = _NOT_BRACKETS.sub("", _JSON_STRING.sub("", text))
    for _ in range(limit):
        if not brackets:
            return False
        brackets = brackets.replace("[]", "").replace("{}", "")
    return bool(brackets)


def check_nesting(value: Any, *, limits: Limits = ALERT, what: str = "input",
                  error: ErrorType = InvalidInput) -> None:
    """Data handed over already parsed (an entry point's params, a platform's alert dict):
    refused when nested deeper than `limits.max_depth`. Walks without recursion."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    seen: set[int] = set()
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list | tuple):
            children = node
        else:
            continue
        if depth > limits.max_depth:
            raise error(_too_deep(what, limits))
        if id(node) in seen:  # shared (or self-containing) containers are walked once
            continue
        seen.add(id(node))
        stack.extend((child, depth + 1) for child in children
                     if isinstance(child, dict | list | tuple))


# --- YAML -------------------------------------------------------------------------------


def parse_yaml(text: str | bytes, *, limits: Limits = DOCUMENT, what: str = "input",
               error: ErrorType = InvalidInput,
               locate: Callable[[int], str] | None = None) -> Any:
    """Safe YAML, at most `limits.max_bytes` long, `limits.max_depth` deep and
    `limits.max_nodes` values once aliases are expanded; an alias inside its own anchor is
    refused. A syntax error says `WHAT: line L, column C: not valid YAML: problem`, never
    the line's text; `locate(L)` may add where that is (" (in step 'x')")."""
    import yaml

    if len(text) > limits.max_bytes:
        raise error(f"{what}: larger than {_size(limits.max_bytes)}, the limit for this input")
    try:
        loader = _bounded_loader(yaml)(text, limits)  # the reader checks every character here
    except yaml.YAMLError as exc:
        raise error(f"{what}: not valid YAML: {_yaml_reader_problem(exc)}") from None
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expansion(node, limits, what, error)
        return loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        raise error(f"{what}: {_yaml_problem(exc, locate)}") from None
    except _TooDeep:
        raise error(_too_deep(what, limits)) from None
    except (ValueError, TypeError, OverflowError) as exc:  # e.g. a date like 2001-13-45
        # These messages are Python's ("month must be in 1..12"), never the value itself.
        raise error(f"{what}: a value cannot be read: {first_line(exc)}") from None
    finally:
        loader.dispose()


def read_yaml(source: str | os.PathLike[str] | Traversable, *, limits: Limits = DOCUMENT,
              what: str | None = None, error: ErrorType = InvalidInput,
              locate: Callable[[int], str] | None = None) -> Any:
    label = what or ("<stdin>" if str(source) == "-" else Path(str(source)).name)
    data = read_capped(source, limits.max_bytes, what=label, error=error)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{label}: not UTF-8 text (byte {exc.start})") from None
    return parse_yaml(text, limits=limits, what=label, error=error, locate=locate)


class _TooDeep(Exception):
    pass


_LOADERS: dict[str, Any] = {}


def _bounded_loader(yaml: Any) -> Any:
    """A SafeLoader whose composer counts its depth (PyYAML's composer recurses once per
    level: 5,000 levels would be a RecursionError)."""
    if "loader" not in _LOADERS:
        class BoundedLoader(yaml.SafeLoader):  # type: ignore[misc]  # PyYAML's loaders are untyped
            def __init__(self, stream: Any, limits: Limits) -> None:
                super().__init__(stream)
                self.limits = limits
                self.depth = 0

            def compose_node(self, parent: Any, index: Any) -> Any:
                self.depth += 1
                try:
                    if self.depth > self.limits.max_depth:
                        raise _TooDeep
                    return super().compose_node(parent, index)
                finally:
                    self.depth -= 1

        _LOADERS["loader"] = BoundedLoader
    return _LOADERS["loader"]


def _check_expansion(root: Any, limits: Limits, what: str, error: ErrorType) -> None:
    """The composed node graph measured as the data it becomes: values counted and depth
    taken with every alias expanded (each node measured once, so a bomb costs nothing)."""
    import yaml

    sizes: dict[int, tuple[int, int]] = {}  # id(node) -> (values, depth), aliases expanded
    on_path: set[int] = set()
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if isinstance(node, yaml.ScalarNode):
            sizes[key] = (1, 0)
            continue
        children = _children(node)
        if not children_done:
            if key in sizes:
                continue
            if key in on_path:
                raise error(f"{what}: an alias refers to a value that contains it "
                            "(a recursive structure cannot be read)")
            on_path.add(key)
            stack.append((node, True))
            stack.extend((child, False) for child in children if id(child) not in sizes)
            continue
        on_path.discard(key)
        count = 1 + sum(sizes[id(child)][0] for child in children)
        depth = 1 + max((sizes[id(child)][1] for child in children), default=0)
        if count > limits.max_nodes:
            raise error(f"{what}: its aliases expand to more than {limits.max_nodes:,} "
                        "values (an alias bomb?)")
        if depth > limits.max_depth:
            raise error(_too_deep(what, limits) + " once its aliases are expanded")
        sizes[key] = (count, depth)


def _children(node: Any) -> list[Any]:
    import yaml

    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _yaml_problem(exc: Any, locate: Callable[[int], str] | None) -> str:
    """PyYAML's message without its snippet: line, column, the context and the problem."""
    problem = ": ".join(part for part in (exc.context, exc.problem) if part) or "cannot be parsed"
    mark = exc.problem_mark or exc.context_mark
    if mark is None:
        return f"not valid YAML: {problem}"
    line = mark.line + 1
    where = locate(line) if locate else ""
    return f"line {line}, column {mark.column + 1}{where}: not valid YAML: {problem}"


def _yaml_reader_problem(exc: Any) -> str:
    position = getattr(exc, "position", None)
    reason = getattr(exc, "reason", None) or "cannot be read"
    return f"{reason} (character {position})" if position is not None else str(reason)


def _too_deep(what: str, limits: Limits) -> str:
    return f"{what}: nested deeper than {limits.max_depth} levels"


def _size(count: int) -> str:
    return f"{count // MiB} MiB" if count >= MiB and count % MiB == 0 else f"{count:,} bytes"
