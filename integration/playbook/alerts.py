"""Alert formats as data (integration/alert_formats.yaml): detect the format of an alert and
pull its indicators out, each normalized and labelled with the format and field it came from.

Indicators are parsed here with the same code the actions use, so `hxxps://Evil[.]example/x`
and `evil.example` are one indicator. What cannot be looked up (IPs, users, processes
without hashes, values that do not parse) is kept as a skipped observable with a reason.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from integration.errors import ConfigError, PluginError
from integration.lookup.indicators import parse_domain, parse_file_hash
from integration.playbook.errors import AlertError
from integration.playbook.expressions import Expression, ExpressionError, compile_expression, truthy
from integration.resources import ALERT_FORMATS, read_yaml

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

FORMATS_PATH = ALERT_FORMATS
RULE_TYPES = frozenset({"domain", "url", "file_hash", "sha1", "sha256", "md5", "file"})
HASH_PREFERENCE = ("sha1", "sha256", "md5")  # Defender's machines call takes a SHA-1
# A URL whose host is an IPv4 or bracketed IPv6 address: an IP, not a domain, to skip.
_IP_URL = re.compile(r"^(?:[a-z][a-z0-9+.\-]*:)?//(?:[^/@]*@)?"
                     r"(\[[0-9a-f:.]*\]|\d{1,3}(?:\.\d{1,3}){3})(?::\d*)?(?:[/?#]|$)",
                     re.IGNORECASE)
_ECHO_LIMIT = 200


@dataclass(frozen=True)
class Rule:
    type: str  # an extract type, or the skip reason
    field: str
    expression: Expression


@dataclass(frozen=True)
class AlertFormat:
    id: str
    title: str
    detect: Expression
    extract: tuple[Rule, ...]
    skip: tuple[Rule, ...]


@dataclass(frozen=True)
class AlertFormats:
    formats: tuple[AlertFormat, ...]

    def detect(self, alert: Any, source: str) -> AlertFormat:
        if not isinstance(alert, dict):
            raise AlertError(f"{source}: an alert is a JSON object, not {_json_type(alert)}")
        for known in self.formats:
            if truthy(known.detect.search(alert)):
                return known
        names = ", ".join(f.id for f in self.formats)
        raise AlertError(f"{source}: not in any known alert format (tried {names}); add a rule "
                         "to integration/alert_formats.yaml for a new source")

    def by_id(self, format_id: str) -> AlertFormat:
        for known in self.formats:
            if known.id == format_id:
                return known
        raise ConfigError(f"unknown alert format {format_id!r}; known: "
                          f"{', '.join(f.id for f in self.formats)}")

    def extract(self, alert: Any, source: str, format_id: str | None = None) -> dict[str, Any]:
        """{format: {id, title}, indicators: [...], skipped: [...]}, in the alert's order."""
        chosen = self.by_id(format_id) if format_id else self.detect(alert, source)
        indicators: list[dict[str, Any]] = []
        skipped: list[dict[str, Any]] = []
        origin = {"format": chosen.id}
        for rule in chosen.extract:
            for value in _values(rule.expression.search(alert)):
                found = _indicator(rule.type, value, {**origin, "field": rule.field})
                if found is not None:
                    (indicators if "kind" in found else skipped).append(found)
        for rule in chosen.skip:
            for value in _values(rule.expression.search(alert)):
                skipped.append({"reason": rule.type, "value": _echo(value),
                                "source": {**origin, "field": rule.field}})
        return {"format": {"id": chosen.id, "title": chosen.title}, "indicators": indicators,
                "skipped": skipped}


@cache
def alert_formats(path: Traversable | Path = FORMATS_PATH) -> AlertFormats:
    """The format table, loaded and compiled once; ConfigError names the file and the rule."""
    where = path.name
    data = read_yaml(path)
    if not isinstance(data, dict) or not isinstance(data.get("formats"), list):
        raise ConfigError(f"{where}: expected a mapping with a 'formats' list")
    formats, seen = [], set()
    for index, entry in enumerate(data["formats"]):
        at = f"{where}: formats[{index}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), str):
            raise ConfigError(f"{at}: each format is a mapping with an 'id'")
        at += f" ({entry['id']})"
        if entry["id"] in seen:
            raise ConfigError(f"{at}: duplicate format id")
        seen.add(entry["id"])
        formats.append(AlertFormat(
            id=entry["id"], title=str(entry.get("title", entry["id"])),
            detect=_compile(entry.get("detect"), f"{at}: detect"),
            extract=tuple(_rules(entry.get("extract") or [], "type", at + ": extract")),
            skip=tuple(_rules(entry.get("skip") or [], "reason", at + ": skip"))))
    return AlertFormats(tuple(formats))


def _rules(entries: Any, kind_key: str, at: str) -> Iterator[Rule]:
    if not isinstance(entries, list):
        raise ConfigError(f"{at}: expected a list of rules")
    for index, entry in enumerate(entries):
        here = f"{at}[{index}]"
        if not isinstance(entry, dict) or not isinstance(entry.get(kind_key), str) \
                or not isinstance(entry.get("field"), str):
            raise ConfigError(f"{here}: a rule is a mapping with '{kind_key}', 'field' and "
                              "'expression'")
        if kind_key == "type" and entry["type"] not in RULE_TYPES:
            raise ConfigError(f"{here}: type {entry['type']!r} is not one of "
                              f"{', '.join(sorted(RULE_TYPES))}")
        yield Rule(entry[kind_key], entry["field"], _compile(entry.get("expression"), here))


def _compile(source: Any, at: str) -> Expression:
    try:
        return compile_expression(source)
    except ExpressionError as exc:
        raise ConfigError(f"{at}: {exc}") from None


def _values(found: Any) -> Iterator[Any]:
    """An expression's answer as values: a list is its items, null and '' are nothing."""
    for value in found if isinstance(found, list) else [found]:
        if value is not None and value != "" and value != {} and value != []:
            yield value


# --- one value -> an indicator, or a skipped observable -----------------------------------


def _indicator(rule_type: str, value: Any, where: dict[str, str]) -> dict[str, Any] | None:
    if rule_type == "file":
        return _file_record(value, where)
    if not isinstance(value, str):
        return _skip("invalid_value", value, where, f"expected a string, got {_json_type(value)}")
    if rule_type in ("domain", "url"):
        if rule_type == "url" and _IP_URL.match(value.strip()):
            return _skip("ip_address", value, where)
        return _parsed("domain", value, where)
    return _parsed(rule_type, value, where)


def _parsed(rule_type: str, value: str, where: dict[str, str]) -> dict[str, Any]:
    try:
        indicator = parse_domain(value) if rule_type == "domain" else parse_file_hash(value)
    except PluginError as error:
        return _skip("invalid_value", value, where, error.message)
    if rule_type in HASH_PREFERENCE and indicator.type != rule_type:
        return _skip("invalid_value", value, where,
                     f"expected a {rule_type} hash, got a {indicator.type} (by its length)")
    found: dict[str, Any] = {
        "kind": "domain" if indicator.type == "domain" else "file",
        "type": indicator.type, "value": indicator.value, "original": value,
        "sources": [where]}
    if found["kind"] == "file":
        found["hashes"] = {indicator.type: indicator.value}
    return found


def _file_record(record: Any, where: dict[str, str]) -> dict[str, Any] | None:
    """Hashes of one file: one indicator, keyed by the best hash, knowing all of them.

    A record with no hash at all is nothing here: the format's skip rules say what it was.
    """
    if not isinstance(record, Mapping):
        return _skip("invalid_value", record, where, "expected an object of hashes")
    hashes: dict[str, str] = {}
    originals: dict[str, str] = {}
    rejected: dict[str, Any] | None = None
    for kind in HASH_PREFERENCE:
        value = record.get(kind)
        if value is None or value == "":
            continue
        parsed = _parsed(kind, value, where) if isinstance(value, str) \
            else _skip("invalid_value", value, where, f"expected a string, got {_json_type(value)}")
        if "kind" in parsed:
            hashes[kind], originals[kind] = parsed["value"], value
        else:
            rejected = rejected or parsed
    if not hashes:
        return rejected
    best = next(kind for kind in HASH_PREFERENCE if kind in hashes)
    return {"kind": "file", "type": best, "value": hashes[best], "original": originals[best],
            "sources": [where], "hashes": hashes}


def _skip(reason: str, value: Any, where: dict[str, str], why: str | None = None
          ) -> dict[str, Any]:
    skipped = {"reason": reason, "value": _echo(value), "source": where}
    if why:
        skipped["message"] = why
    return skipped


def _echo(value: Any) -> Any:
    """A skipped value as shown in the enrichment: strings bounded, other values as given."""
    if isinstance(value, str) and len(value) > _ECHO_LIMIT:
        return value[: _ECHO_LIMIT - 1] + "…"
    return value


def _json_type(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
            type(None): "null"}.get(type(value), "a number")

