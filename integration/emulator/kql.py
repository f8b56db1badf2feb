"""The small subset of KQL (Kusto Query Language) that the plugin's hunting queries use, so
the emulator can answer `runHuntingQuery` from the event tables it holds.

Accepted, and nothing else (anything else is a `KqlError`, which Graph answers with 400):

    Table | union Table, Table            the source
    | where Column > ago(30d)             also >=, <, <=; units d, h, m, s
    | where Column in ("a", "b")          also in~ (case-insensitive) and has_any
    | where Column == "a"                 also !=
    | extend Name = tostring(parse_json(C).Field)   a field of a JSON (dynamic) column
    | summarize [Name =] count() | min(C) | max(C) | arg_max(C, C...) , ... by C, ...

Conditions may be joined with `and` and `or` (`and` binds tighter, as in KQL) and grouped
in parentheses. A column one table of a `union` lacks is null in its rows. Strings are
"double" or 'single' quoted with backslash escapes, as in KQL.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

# The columns the emulator's tables hold, with Graph's type names for the answer's schema.
# Every table starts with the event's device and ends with its initiating process.
_EVENT = {"Timestamp": "DateTime", "DeviceId": "String", "DeviceName": "String",
          "ActionType": "String"}
_INITIATING = {"InitiatingProcessFileName": "String", "InitiatingProcessSHA1": "String",
               "InitiatingProcessCommandLine": "String"}
_FILE = {"FileName": "String", "FolderPath": "String", "SHA1": "String", "SHA256": "String",
         "MD5": "String"}
TABLES: dict[str, dict[str, str]] = {
    "DeviceNetworkEvents": {**_EVENT, "RemoteUrl": "String", "RemoteIP": "String",
                            "RemotePort": "Int32", **_INITIATING},
    "DeviceFileEvents": {**_EVENT, **_FILE, **_INITIATING},
    "DeviceEvents": {**_EVENT, "RemoteUrl": "String", "AdditionalFields": "String",
                     **_INITIATING},
    "DeviceImageLoadEvents": {**_EVENT, **_FILE, **_INITIATING},
    "DeviceProcessEvents": {**_EVENT, **_FILE, "ProcessCommandLine": "String", **_INITIATING},
}
_UNITS = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}
_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
  | (?P<timespan>\d+(?:\.\d+)?[dhms]\b)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*~?)
  | (?P<op>==|!=|>=|<=|[|,()=<>.])
""", re.VERBOSE)
_ESCAPES = {"\\": "\\", '"': '"', "'": "'", "n": "\n", "t": "\t", "r": "\r"}
_COMPARE: dict[str, Callable[[float, float], bool]] = {
    ">": lambda a, b: a > b, ">=": lambda a, b: a >= b,
    "<": lambda a, b: a < b, "<=": lambda a, b: a <= b,
}


class KqlError(ValueError):
    """A query outside the subset, or wrong within it; the message is Graph's 400 message."""


class Result(NamedTuple):
    columns: list[tuple[str, str]]  # (name, Graph type)
    rows: list[dict[str, Any]]


class _Token(NamedTuple):
    kind: str
    text: str
    value: Any


def run(query: str, tables: Mapping[str, list[dict[str, Any]]], now: dt.datetime) -> Result:
    """The query's answer over `tables` (rows keyed by column), `ago()` counted from `now`."""
    parser = _Parser(_tokens(query))
    source = parser.source()
    unknown = [name for name in source if name not in TABLES]
    if unknown:
        raise KqlError(f"Failed to resolve table or column expression named '{unknown[0]}'")
    columns = {name: kind for table in source for name, kind in TABLES[table].items()}
    rows: list[dict[str, Any]] = [row for table in source for row in tables.get(table, [])]
    while parser.more():
        parser.expect("op", "|")
        keyword = parser.take("name").text
        if keyword == "where":
            test = parser.condition(columns, now)
            rows = [row for row in rows if test(row)]
        elif keyword == "summarize":
            columns, rows = parser.summarize(columns, rows)
        elif keyword == "extend":
            columns, rows = parser.extend(columns, rows)
        else:
            raise KqlError(f"Query could not be parsed: '{keyword}' is not supported here")
    return Result(list(columns.items()), rows)


def _tokens(query: str) -> list[_Token]:
    tokens, position = [], 0
    while position < len(query):
        match = _TOKEN.match(query, position)
        if match is None:
            raise KqlError(f"Query could not be parsed at '{query[position:position + 20]}'")
        position = match.end()
        kind = match.lastgroup or ""
        text = match.group()
        if kind == "space":
            continue
        if kind == "string":
            tokens.append(_Token(kind, text, _unescape(text[1:-1])))
        elif kind == "timespan":
            tokens.append(_Token(kind, text, float(text[:-1]) * _UNITS[text[-1]]))
        else:
            tokens.append(_Token(kind, text, text))
    return tokens


def _unescape(body: str) -> str:
    def one(match: re.Match[str]) -> str:
        char = match.group(1)
        if char not in _ESCAPES:
            raise KqlError(f"Query could not be parsed: unknown escape '\\{char}'")
        return _ESCAPES[char]

    return re.sub(r"\\(.)", one, body)


def _moment(value: Any) -> float | None:
    if isinstance(value, dt.datetime):
        return value.timestamp()
    if not isinstance(value, str):
        return None
    match = re.fullmatch(r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d+))?Z", value)
    if match is None:
        return None
    whole = dt.datetime.fromisoformat(match.group(1)).replace(tzinfo=dt.timezone.utc)
    return whole.timestamp() + float(f"0.{match.group(2) or 0}")


class _Parser:
    def __init__(self, tokens: list[_Token]) -> None:
        self._tokens = tokens
        self._at = 0

    def more(self) -> bool:
        return self._at < len(self._tokens)

    def peek(self, text: str) -> bool:
        return self.more() and self._tokens[self._at].text == text

    def take(self, kind: str) -> _Token:
        if not self.more():
            raise KqlError("Query could not be parsed: it ends too early")
        token = self._tokens[self._at]
        if token.kind != kind:
            raise KqlError(f"Query could not be parsed at '{token.text}'")
        self._at += 1
        return token

    def expect(self, kind: str, text: str) -> None:
        token = self.take(kind)
        if token.text != text:
            raise KqlError(f"Query could not be parsed at '{token.text}': expected '{text}'")

    def names(self) -> list[str]:
        names = [self.take("name").text]
        while self.peek(","):
            self._at += 1
            names.append(self.take("name").text)
        return names

    def source(self) -> list[str]:
        if self.peek("union"):
            self._at += 1
            return self.names()
        return [self.take("name").text]

    def condition(self, columns: Mapping[str, str],
                  now: dt.datetime) -> Callable[[dict[str, Any]], bool]:
        """`a and b or c and (d or e)`: a disjunction of conjunctions, as KQL binds them."""
        return self._joined("or", any, lambda: self._joined(
            "and", all, lambda: self._primary(columns, now)))

    def _joined(self, word: str, combine: Callable[[Iterable[bool]], bool],
                operand: Callable[[], Callable[[dict[str, Any]], bool]]
                ) -> Callable[[dict[str, Any]], bool]:
        """Operands joined by `word` (and/or), combined by `combine` (all/any)."""
        tests = [operand()]
        while self.peek(word):
            self._at += 1
            tests.append(operand())
        if len(tests) == 1:
            return tests[0]
        return lambda row: combine(test(row) for test in tests)

    def _primary(self, columns: Mapping[str, str],
                 now: dt.datetime) -> Callable[[dict[str, Any]], bool]:
        if self.peek("("):
            self._at += 1
            inner = self.condition(columns, now)
            self.expect("op", ")")
            return inner
        return self._one_condition(columns, now)

    def _one_condition(self, columns: Mapping[str, str],
                       now: dt.datetime) -> Callable[[dict[str, Any]], bool]:
        column = self._column(columns)
        operator = self._tokens[self._at].text if self.more() else ""
        self._at += 1
        if operator in _COMPARE:
            self.expect("name", "ago")
            self.expect("op", "(")
            limit = now.timestamp() - self.take("timespan").value
            self.expect("op", ")")
            compare = _COMPARE[operator]

            def in_time(row: dict[str, Any]) -> bool:
                moment = _moment(row.get(column))
                return moment is not None and compare(moment, limit)
            return in_time
        if operator in ("==", "!="):
            wanted = self.take("string").value
            if operator == "==":
                return lambda row: row.get(column) == wanted
            return lambda row: row.get(column) != wanted
        if operator in ("in", "in~", "has_any"):
            values = self._string_list()
            if operator == "in":
                exact = set(values)
                return lambda row: row.get(column) in exact
            if operator == "in~":
                folded = {value.lower() for value in values}
                return lambda row: str(row.get(column, "")).lower() in folded
            has = _has_any(values)
            return lambda row: has(str(row.get(column) or ""))
        raise KqlError(f"Query could not be parsed: operator '{operator}' is not supported here")

    def _string_list(self) -> list[str]:
        self.expect("op", "(")
        values = [self.take("string").value]
        while self.peek(","):
            self._at += 1
            values.append(self.take("string").value)
        self.expect("op", ")")
        return values

    def _column(self, columns: Mapping[str, str]) -> str:
        name = self.take("name").text
        if name not in columns:
            raise KqlError(f"Failed to resolve scalar expression named '{name}'")
        return name

    def extend(self, columns: Mapping[str, str],
               rows: list[dict[str, Any]]) -> tuple[dict[str, str], list[dict[str, Any]]]:
        """`extend Name = tostring(parse_json(Column).Field)`: the field as a string, "" when
        the column holds no JSON object with it (KQL's tostring of null)."""
        name = self.take("name").text
        self.expect("op", "=")
        self.expect("name", "tostring")
        self.expect("op", "(")
        self.expect("name", "parse_json")
        self.expect("op", "(")
        column = self._column(columns)
        self.expect("op", ")")
        self.expect("op", ".")
        field_name = self.take("name").text
        self.expect("op", ")")

        def value(row: dict[str, Any]) -> str:
            data = row.get(column)
            if isinstance(data, str):
                try:
                    data = json.loads(data)
                except ValueError:
                    return ""
            found = data.get(field_name) if isinstance(data, dict) else None
            return "" if found is None else found if isinstance(found, str) else json.dumps(found)
        return {**columns, name: "String"}, [{**row, name: value(row)} for row in rows]

    def summarize(self, columns: Mapping[str, str],
                  rows: list[dict[str, Any]]) -> tuple[dict[str, str], list[dict[str, Any]]]:
        aggregates = [self._aggregate(columns)]
        while self.peek(","):
            self._at += 1
            aggregates.append(self._aggregate(columns))
        keys: list[str] = []
        if self.peek("by"):
            self._at += 1
            keys = [self._column_name(columns, name) for name in self.names()]
        groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
        for row in rows:
            groups.setdefault(tuple(row.get(key) for key in keys), []).append(row)
        out_columns = {key: columns[key] for key in keys}
        for aggregate in aggregates:
            out_columns.update(aggregate.columns)
        out_rows = []
        for key_values, members in groups.items():
            row = dict(zip(keys, key_values, strict=True))
            for aggregate in aggregates:
                row.update(aggregate.apply(members))
            out_rows.append(row)
        return out_columns, out_rows

    @staticmethod
    def _column_name(columns: Mapping[str, str], name: str) -> str:
        if name not in columns:
            raise KqlError(f"Failed to resolve scalar expression named '{name}'")
        return name

    def _aggregate(self, columns: Mapping[str, str]) -> _Aggregate:
        alias = None
        if self.more() and self._at + 1 < len(self._tokens) \
                and self._tokens[self._at + 1].text == "=":
            alias = self.take("name").text
            self._at += 1
        function = self.take("name").text
        self.expect("op", "(")
        arguments = [] if self.peek(")") else \
            [self._column_name(columns, name) for name in self.names()]
        self.expect("op", ")")
        return _Aggregate.make(function, arguments, alias, columns)


class _Aggregate(NamedTuple):
    columns: dict[str, str]
    apply: Callable[[list[dict[str, Any]]], dict[str, Any]]

    @classmethod
    def make(cls, function: str, arguments: list[str], alias: str | None,
             columns: Mapping[str, str]) -> _Aggregate:
        if function == "count" and not arguments:
            name = alias or "count_"
            return cls({name: "Int64"}, lambda rows: {name: len(rows)})
        if function in ("min", "max") and len(arguments) == 1:
            (column,) = arguments
            name = alias or f"{function}_{column}"
            pick = min if function == "min" else max
            return cls({name: columns[column]},
                       lambda rows: {name: pick(_values(rows, column), key=_order, default=None)})
        if function == "arg_max" and arguments and alias is None:
            by, *kept = arguments

            def latest(rows: list[dict[str, Any]]) -> dict[str, Any]:
                row = max(rows, key=lambda r: _order(r.get(by)))
                return {column: row.get(column) for column in (by, *kept)}
            return cls({column: columns[column] for column in (by, *kept)}, latest)
        raise KqlError(f"Query could not be parsed: aggregation '{function}' with "
                       f"{len(arguments)} argument(s) is not supported here")


def _values(rows: Iterable[dict[str, Any]], column: str) -> list[Any]:
    return [row[column] for row in rows if row.get(column) is not None]


def _order(value: Any) -> tuple[int, Any]:
    moment = _moment(value)
    if moment is not None:
        return (1, moment)
    return (0, value) if isinstance(value, (int, float)) else (0, 0)


def _has_any(terms: list[str]) -> Callable[[str], bool]:
    """KQL's `has_any`, near enough: any term as a whole run of word characters, any case.
    One compiled alternation: a sweep asks for hundreds of terms over thousands of rows."""
    alternatives = "|".join(re.escape(term) for term in sorted(set(terms), key=len,
                                                                 reverse=True))
    pattern = re.compile(r"(?<![A-Za-z0-9_])(?:" + alternatives + r")(?![A-Za-z0-9_])",
                         re.IGNORECASE)
    return lambda text: pattern.search(text) is not None
