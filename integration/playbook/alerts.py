"""Alert formats as data (integration/alert_formats.yaml): detect the format of an alert and
pull its indicators out, each normalized and labelled with the format and field it came from.

Indicators are parsed here with the same code the actions use, so `hxxps://Evil[.]example/x`
and `evil.example` are one indicator. What is not looked up (IPs, users, device names and
ids, files without a hash, trusted binaries, values that do not parse) is kept as a skipped
observable with a reason: nothing an alert names is dropped silently.

Three things rules cannot say are small code here: splitting a page, array or NDJSON into
alerts (`read_alerts`, over playbook/stream.py), linking Sentinel File entities to their
FileHash entities (a `prepare` step), and the device ids of an alert (never looked up as
file hashes).
"""

from __future__ import annotations

import json
import re
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from integration.errors import ConfigError, PluginError
from integration.playbook.errors import AlertError
from integration.playbook.expressions import Expression, ExpressionError, compile_expression, truthy
from integration.playbook.stream import read_stream
from integration.resources import ALERT_FORMATS, read_yaml
from integration.values.indicators import (
    NOT_FILE_HASHES,
    NotADomain,
    NotAFileHash,
    parse_domain,
    parse_file_hash,
)

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

FORMATS_PATH = ALERT_FORMATS
RULE_TYPES = frozenset({"domain", "url", "email", "file_hash", "sha1", "sha256", "md5", "file"})
HASH_PREFERENCE = ("sha1", "sha256", "md5")  # Defender's machines call takes a SHA-1
# What a `file` record may say about its file besides hashes; travels with the indicator.
FILE_CONTEXT = ("name", "path", "publisher", "signer", "issuer")
EVIDENCE_CONTEXT = ("verdict", "roles")
BAD_VERDICTS = frozenset({"suspicious", "malicious"})
DEFAULT_TRUSTED_PUBLISHERS = ("Microsoft Corporation", "Microsoft Windows",
                              "Microsoft Windows Publisher")
# Keys whose values are device ids in every format we read (compared case-insensitively).
DEVICE_ID_KEYS = frozenset({"machineid", "mdedeviceid", "mdatpdeviceid", "deviceid"})
NO_OBSERVABLES = "no_observables"
UNREADABLE_FIELD = "unreadable_field"
_NESTING_LIMIT = 3  # an alert inside an alert inside an alert is as deep as real feeds go
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
class WarningRule:
    code: str
    when: Expression
    message: str


@dataclass(frozen=True)
class AlertFormat:
    id: str
    title: str
    detect: Expression
    extract: tuple[Rule, ...]
    skip: tuple[Rule, ...]
    nested: tuple[Rule, ...] = ()  # alerts inside this one, each read by its own format
    warnings: tuple[WarningRule, ...] = ()
    prepare: str | None = None  # a PREPARE function run on the alert before the rules
    # Paths that must all be present (not null) for the format to match; how many there are is
    # its specificity: when several formats match, the most specific wins.
    keys: tuple[Expression, ...] = ()
    origin: str = "shipped"  # or the user's rule file (the `alert_formats` configuration)

    @property
    def specificity(self) -> int:
        return len(self.keys)

    def matches(self, alert: Any) -> bool:
        try:
            return all(key.search(alert) is not None for key in self.keys) \
                and truthy(self.detect.search(alert))
        except ExpressionError:  # data this format's test cannot read: not this format
            return False

    def describe(self) -> dict[str, str]:
        return {"id": self.id, "title": self.title, "origin": self.origin}


def _never(source: str) -> Expression:
    return compile_expression(source)


# What an alert no rule knows is read as (by field names only, with a warning).
GENERIC = AlertFormat(id="generic", title="Unknown format (read by field names)",
                      detect=_never("`false`"), extract=(), skip=(), origin="built-in")


@dataclass(frozen=True)
class ExtractPolicy:
    """What is worth a lookup: trusted binaries are not, unless `lookup_trusted`."""

    trusted_publishers: frozenset[str] = frozenset(p.casefold()
                                                   for p in DEFAULT_TRUSTED_PUBLISHERS)
    lookup_trusted: bool = False
    internal_suffixes: tuple[str, ...] = ()  # the `internal_domain_suffixes` configuration

    @classmethod
    def from_params(cls, trusted: Any = None, lookup_trusted: Any = None,
                    internal_suffixes: tuple[str, ...] = ()) -> ExtractPolicy:
        if trusted is None:
            return cls(lookup_trusted=bool(lookup_trusted), internal_suffixes=internal_suffixes)
        if not isinstance(trusted, list) or not all(isinstance(p, str) for p in trusted):
            raise ConfigError("trusted_publishers must be a list of names")
        return cls(frozenset(p.casefold() for p in trusted), bool(lookup_trusted),
                   internal_suffixes)

    def trusts(self, record: Mapping[str, Any]) -> bool:
        verdict = record.get("verdict")
        if self.lookup_trusted or (isinstance(verdict, str) and verdict in BAD_VERDICTS):
            return False
        return any(isinstance(record.get(key), str)
                   and record[key].strip().casefold() in self.trusted_publishers
                   for key in ("publisher", "signer"))


@dataclass
class _Found:
    indicators: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[dict[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class AlertBatch:
    """What `--alert` was given: one alert (`shape` None) or a batch of them."""

    shape: str | None  # page_of_alerts | array_of_alerts | ndjson | None
    alerts: list[Any]


@dataclass(frozen=True)
class AlertFormats:
    formats: tuple[AlertFormat, ...]

    def matching(self, alert: Any) -> list[AlertFormat]:
        """Every format whose keys and detect expression match, best first: the user's
        formats before the shipped ones, then the most specific, then in file order."""
        if not isinstance(alert, dict):
            return []
        found = [(index, known) for index, known in enumerate(self.formats)
                 if known.matches(alert)]
        found.sort(key=lambda pair: (pair[1].origin == "shipped", -pair[1].specificity,
                                     pair[0]))
        return [known for _, known in found]

    def match(self, alert: Any) -> AlertFormat | None:
        found = self.matching(alert)
        return found[0] if found else None

    def detect(self, alert: Any, source: str) -> AlertFormat:
        """The alert's format; GENERIC (read by field names) when no rule knows it."""
        if not isinstance(alert, dict):
            raise AlertError(f"{source}: an alert is a JSON object, not {_json_type(alert)}")
        return self.match(alert) or GENERIC

    def by_id(self, format_id: str) -> AlertFormat:
        for known in (*self.formats, GENERIC):
            if known.id == format_id:
                return known
        raise ConfigError(f"unknown alert format {format_id!r}; known: "
                          f"{', '.join(f.id for f in self.formats)}")

    def extract(self, alert: Any, source: str, format_id: str | None = None,
                policy: ExtractPolicy | None = None) -> dict[str, Any]:
        """{format, indicators, skipped, warnings}, in the alert's order."""
        # A null where an alert lists things (evidence, observables, entities, indicators)
        # is nothing: skipped, so rules written for objects never meet it.
        alert = _without_null_items(alert)
        chosen = self.by_id(format_id) if format_id else self.detect(alert, source)
        found = _Found()
        if chosen is GENERIC:
            _read_generic(alert, found, policy or ExtractPolicy())
        else:
            self._read(alert, chosen, found, policy or ExtractPolicy(), "", 0)
        _set_device_ids_aside(found, _device_ids(alert))
        _drop_names_that_travel_with_a_hash(found)
        skipped = _unique_skipped(found.skipped)
        # One warning each: the same code may say different things (two unreadable fields).
        warnings = _unique_by(found.warnings, lambda w: (w["code"], w["message"]))
        if not found.indicators and not skipped and not warnings:
            warnings = [{"code": NO_OBSERVABLES, "message": "the alert names no domain, URL, "
                         "file or other observable this format's rules know"}]
        return {"format": chosen.describe(),
                "indicators": found.indicators, "skipped": skipped, "warnings": warnings}

    def _read(self, alert: Any, chosen: AlertFormat, found: _Found, policy: ExtractPolicy,
              prefix: str, depth: int) -> None:
        data = PREPARE[chosen.prepare](alert) if chosen.prepare else alert
        for rule in chosen.extract:
            where = {"format": chosen.id, "field": prefix + rule.field}
            for value in _values(_search(rule.expression, data, where, found)):
                for item in _indicators(rule.type, value, where, policy):
                    (found.indicators if "kind" in item else found.skipped).append(item)
        for rule in chosen.skip:
            where = {"format": chosen.id, "field": prefix + rule.field}
            for value in _values(_search(rule.expression, data, where, found)):
                found.skipped.append(_skip(rule.type, value, where))
        for warning in chosen.warnings:  # said of the alert as given, not as prepared
            where = {"format": chosen.id, "field": prefix + warning.code}
            if truthy(_search(warning.when, alert, where, found)):
                found.warnings.append({"code": warning.code, "message": warning.message})
        if depth >= _NESTING_LIMIT:
            return
        inner: list[tuple[str, Any]] = []
        for rule in chosen.nested:
            where = {"format": chosen.id, "field": prefix + rule.field}
            inner += [(rule.field, value)
                      for value in _values(_search(rule.expression, alert, where, found))]
        # A Splunk artifact's `cef` and `data` often hold the same alert: read it once.
        for label, value in _unique_by(inner, lambda pair: _canonical(pair[1])):
            inner_format = self.match(value)
            if inner_format is not None:
                self._read(value, inner_format, found, policy, f"{prefix}{label} > ", depth + 1)


# --- the careful reader for what no rule knows: field names only ---------------------------

GENERIC_WARNING = {"code": "generic_format", "message": (
    "no alert format matched: read by field names only (hash, sha1, sha256, md5, domain, "
    "hostname, fqdn, url, query name); add a rule for this source with the `alert_formats` "
    "configuration (see `mde-enrich formats list`)")}
# Field names (lowercased, without '_', '-', '.' or spaces) whose values are indicators; ids
# and free text (message, description, command lines) never are.
# A field that names its algorithm is read as that algorithm (its length checked); a bare
# "hash" is read as a SHA-1 or SHA-256 only: 32 hex characters under it may as well be an
# IMPHASH as an MD5 (ECS's related.hash lists both), so that is skipped, never looked up.
_GENERIC_NAMED_HASH_KEYS = {"sha1": "sha1", "sha256": "sha256", "md5": "md5",
                            "hashsha1": "sha1", "hashsha256": "sha256", "hashmd5": "md5",
                            "sha1hash": "sha1", "sha256hash": "sha256", "md5hash": "md5",
                            "filehashsha1": "sha1", "filehashsha256": "sha256",
                            "filehashmd5": "md5"}
_GENERIC_BARE_HASH_KEYS = frozenset({"hash", "filehash", "hashes"})
_GENERIC_DOMAIN_KEYS = frozenset({"domain", "domainname", "hostname", "fqdn", "dnsname",
                                  "queryname", "dnsquery", "dnsqueryname", "questionname"})
_GENERIC_URL_KEYS = frozenset({"url", "uri", "requesturl", "remoteurl", "fullurl"})
_AMBIGUOUS_MD5 = ("32 hex characters under a field that does not say MD5: an IMPHASH is as "
                  "long, so it is not looked up")


def _generic_kind(key: str) -> str | None:
    name = "".join(ch for ch in key.lower() if ch.isalnum())
    if name in _GENERIC_NAMED_HASH_KEYS:
        return _GENERIC_NAMED_HASH_KEYS[name]
    if name in _GENERIC_BARE_HASH_KEYS:
        return "file_hash"
    if name in _GENERIC_DOMAIN_KEYS:
        return "domain"
    if name in _GENERIC_URL_KEYS:
        return "url"
    return None


def _read_generic(alert: Any, found: _Found, policy: ExtractPolicy) -> None:
    """Values under indicator-named keys, at any depth; each named by its path."""
    queue: deque[tuple[Any, str]] = deque([(alert, "")])  # breadth first: shallow fields first
    while queue:
        node, path = queue.popleft()
        items = node.items() if isinstance(node, dict) else \
            ((f"[{i}]", v) for i, v in enumerate(node)) if isinstance(node, list) else ()
        for key, value in items:
            here = f"{path}.{key}" if path and not key.startswith("[") else f"{path}{key}"
            kind = _generic_kind(key) if isinstance(node, dict) else None
            strings = [value] if isinstance(value, str) else \
                [v for v in value if isinstance(v, str)] if isinstance(value, list) else []
            if kind and strings:
                where = {"format": GENERIC.id, "field": here}
                for text in strings:
                    if text.strip():
                        item = _indicator(kind, text, where, policy.internal_suffixes)
                        if kind == "file_hash" and item.get("type") == "md5":
                            item = _skip("invalid_value", text, where, _AMBIGUOUS_MD5)
                        (found.indicators if "kind" in item else found.skipped).append(item)
            elif isinstance(value, dict | list):
                queue.append((value, here))
    found.warnings.append(dict(GENERIC_WARNING))


# --- what --alert was given: one alert, or a batch -----------------------------------------


def read_alerts(text: str, label: str) -> AlertBatch:
    """JSON (an alert, a `{"value": [...]}` page, an array) or NDJSON, split into alerts, all
    in memory (the stream reader, playbook/stream.py, is the one parser); AlertError for the
    first item that cannot be read."""
    import io

    shape, alerts = None, []
    for item in read_stream(io.BytesIO(text.encode("utf-8")), label):
        if item.problem is not None:
            where = f"{label}: line {item.line}" if item.shape == "ndjson" else item.label
            raise AlertError(f"{where}: {item.problem}")
        shape = item.shape
        if not item.empty:
            alerts.append(item.alert)
    if not alerts and shape is None:
        raise AlertError(f"{label}: holds no alert")
    return AlertBatch(shape, alerts)


# --- the table ---------------------------------------------------------------------------


SCHEMA = "alert_formats.schema.json"


@cache
def alert_formats(path: Traversable | Path = FORMATS_PATH, user_path: str | None = None
                  ) -> AlertFormats:
    """The shipped format table, and the user's (`alert_formats`) before it when given;
    loaded, validated against schemas/alert_formats.schema.json and compiled once.
    ConfigError names the file and the rule."""
    user = _load_formats(Path(user_path).expanduser(), origin=str(user_path)) \
        if user_path else ()
    shipped = _load_formats(path, origin="shipped")
    clash = {f.id for f in user} & {f.id for f in shipped}
    if clash:
        raise ConfigError(f"{user_path}: format id(s) {', '.join(sorted(clash))} are shipped "
                          "formats; give your format its own id")
    return AlertFormats((*user, *shipped))


def formats_for(user_path: str | None) -> AlertFormats:
    """The table a run uses: the shipped formats, with the configured user file first."""
    return alert_formats(FORMATS_PATH, user_path or None)  # type: ignore[arg-type]


def _load_formats(path: Traversable | Path, origin: str) -> tuple[AlertFormat, ...]:
    from integration.schemas import errors

    where = path.name if origin == "shipped" else str(path)
    if origin != "shipped" and not Path(str(path)).is_file():
        raise ConfigError(f"alert_formats: {where} is not a file")
    data = read_yaml(path)
    problems = errors(SCHEMA, data)
    if problems:
        raise ConfigError(f"{where}: not a valid alert format file ({SCHEMA}): {problems[0]}")
    formats, seen = [], set()
    for index, entry in enumerate(data["formats"]):
        at = f"{where}: formats[{index}] ({entry['id']})"
        if entry["id"] in seen:
            raise ConfigError(f"{at}: duplicate format id")
        seen.add(entry["id"])
        formats.append(_format(entry, at, origin))
    return tuple(formats)


def _format(entry: dict[str, Any], at: str, origin: str = "shipped") -> AlertFormat:
    prepare = entry.get("prepare")
    if prepare is not None and prepare not in PREPARE:
        raise ConfigError(f"{at}: prepare {prepare!r} is not one of {', '.join(PREPARE)}")
    return AlertFormat(
        id=entry["id"], title=str(entry.get("title", entry["id"])),
        detect=_compile(entry.get("detect"), f"{at}: detect"),
        extract=tuple(_rules(entry.get("extract") or [], "type", at + ": extract")),
        skip=tuple(_rules(entry.get("skip") or [], "reason", at + ": skip")),
        nested=tuple(_rules(entry.get("nested") or [], None, at + ": nested")),
        warnings=tuple(_warning_rules(entry.get("warnings") or [], at + ": warnings")),
        prepare=prepare,
        keys=tuple(_compile(key, f"{at}: keys[{index}]")
                   for index, key in enumerate(entry.get("keys") or [])),
        origin=origin)


def _rules(entries: Any, kind_key: str | None, at: str) -> Iterator[Rule]:
    if not isinstance(entries, list):
        raise ConfigError(f"{at}: expected a list of rules")
    for index, entry in enumerate(entries):
        here = f"{at}[{index}]"
        keys = [kind_key] if kind_key else []
        if not isinstance(entry, dict) or not isinstance(entry.get("field"), str) \
                or not all(isinstance(entry.get(key), str) for key in keys):
            named = "".join(f"'{key}', " for key in keys)
            raise ConfigError(f"{here}: a rule is a mapping with {named}'field' and "
                              "'expression'")
        if kind_key == "type" and entry["type"] not in RULE_TYPES:
            raise ConfigError(f"{here}: type {entry['type']!r} is not one of "
                              f"{', '.join(sorted(RULE_TYPES))}")
        kind = entry[kind_key] if kind_key else "alert"
        yield Rule(kind, entry["field"], _compile(entry.get("expression"), here))


def _warning_rules(entries: Any, at: str) -> Iterator[WarningRule]:
    if not isinstance(entries, list):
        raise ConfigError(f"{at}: expected a list of warnings")
    for index, entry in enumerate(entries):
        here = f"{at}[{index}]"
        if not isinstance(entry, dict) or not all(isinstance(entry.get(key), str)
                                                  for key in ("code", "when", "message")):
            raise ConfigError(f"{here}: a warning is a mapping with 'code', 'when' and "
                              "'message'")
        yield WarningRule(entry["code"], _compile(entry["when"], here), entry["message"])


def _compile(source: Any, at: str) -> Expression:
    try:
        return compile_expression(source)
    except ExpressionError as exc:
        raise ConfigError(f"{at}: {exc}") from None


def _search(expression: Expression, data: Any, where: dict[str, str], found: _Found) -> Any:
    """A rule's expression on the alert. Data the rule did not expect (a number where it
    compares strings, an object where it takes a list) is the alert's problem, not the
    playbook's: said as a warning naming the field, and the other rules go on."""
    try:
        return expression.search(data)
    except ExpressionError as exc:
        reason = " ".join(str(exc).split())
        found.warnings.append({
            "code": UNREADABLE_FIELD,
            "message": f"{where['format']}: {where['field']} could not be read, the alert's "
                       f"data there is not what the format expects: "
                       f"{_echo(reason[reason.find('failed:') + 8:] or reason)}"})
        return None


def _without_null_items(value: Any) -> Any:
    """The value with null items left out of every list; shares what has none (no copy of
    a clean alert). Depth is bounded by the readers (64 levels)."""
    if isinstance(value, list):
        items = [_without_null_items(item) for item in value if item is not None]
        unchanged = len(items) == len(value) \
            and all(a is b for a, b in zip(items, value, strict=True))
        return value if unchanged else items
    if isinstance(value, dict):
        members = {key: _without_null_items(item) for key, item in value.items()}
        return value if all(members[key] is value[key] for key in value) else members
    return value


def _values(found: Any) -> Iterator[Any]:
    """An expression's answer as values: a list is its items; null, false, '' are nothing."""
    for value in found if isinstance(found, list) else [found]:
        if value is not None and value is not False and value not in ("", {}, []):
            yield value


# --- one value -> indicators, or skipped observables --------------------------------------


def _indicators(rule_type: str, value: Any, where: dict[str, str], policy: ExtractPolicy
                ) -> Iterator[dict[str, Any]]:
    """A rule's value: a string, or an object `{value, verdict, roles}` (value may be a list)
    for the evidence's context, or for `file` an object of one file's hashes and context."""
    if rule_type == "file":
        found = _file_record(value, where, policy)
        if found is not None:
            yield found
        if isinstance(value, Mapping):  # an IMPHASH, ssdeep or TLSH names no file to look up
            for kind in sorted(NOT_FILE_HASHES & value.keys()):
                if isinstance(value[kind], str) and value[kind].strip():
                    yield _skip("not_a_file_hash", value[kind], where,
                                f"an {kind.upper()} is not a file hash Defender can look up")
        return
    context: dict[str, Any] = {}
    if isinstance(value, Mapping):
        context = _context(value, EVIDENCE_CONTEXT)
        value = value.get("value")
    for one in _values(value):
        found = _indicator(rule_type, one, where, policy.internal_suffixes)
        if context and "kind" in found:
            found["context"] = dict(context)
        yield found


def _indicator(rule_type: str, value: Any, where: dict[str, str],
               suffixes: tuple[str, ...] = ()) -> dict[str, Any]:
    if not isinstance(value, str):
        return _skip("invalid_value", value, where, f"expected a string, got {_json_type(value)}")
    if rule_type == "url" and _IP_URL.match(value.strip()):
        return _skip("ip_address", value, where)
    if rule_type == "email":
        _, at, domain = value.strip().rpartition("@")
        if not at:
            return _skip("invalid_value", value, where, "expected an e-mail address")
        return _parsed("domain", domain, where, original=value, suffixes=suffixes)
    return _parsed("domain" if rule_type == "url" else rule_type, value, where,
                   suffixes=suffixes)


def _parsed(rule_type: str, value: str, where: dict[str, str], original: str | None = None,
            suffixes: tuple[str, ...] = ()) -> dict[str, Any]:
    try:
        indicator = parse_domain(value, suffixes) if rule_type == "domain" \
            else parse_file_hash(value)
    except (NotADomain, NotAFileHash) as error:  # a file name, an IMPHASH: said as such
        return _skip(error.reason, original or value, where, error.message)
    except PluginError as error:
        return _skip("invalid_value", original or value, where, error.message)
    if rule_type in HASH_PREFERENCE and indicator.type != rule_type:
        return _skip("invalid_value", value, where,
                     f"expected a {rule_type} hash, got a {indicator.type} (by its length)")
    found: dict[str, Any] = {
        "kind": "domain" if indicator.type == "domain" else "file",
        "type": indicator.type, "value": indicator.value, "original": original or value,
        "sources": [where]}
    if found["kind"] == "file":
        found["hashes"] = {indicator.type: indicator.value}
    return found


def _file_record(record: Any, where: dict[str, str], policy: ExtractPolicy
                 ) -> dict[str, Any] | None:
    """Hashes of one file: one indicator, keyed by the best hash, knowing all of them and
    what the alert says about the file. No hash: skipped as no_hash, under its name; a
    trusted binary: skipped as trusted_publisher. A record naming nothing is nothing."""
    if not isinstance(record, Mapping):
        return _skip("invalid_value", record, where, "expected an object of hashes")
    context = _context(record, FILE_CONTEXT + EVIDENCE_CONTEXT)
    hashes: dict[str, str] = {}
    originals: dict[str, str] = {}
    rejected: dict[str, Any] | None = None
    for kind in HASH_PREFERENCE:
        value = record.get(kind)
        if value is None or value is False or value == "":
            continue
        parsed = _parsed(kind, value, where) if isinstance(value, str) \
            else _skip("invalid_value", value, where, f"expected a string, got {_json_type(value)}")
        if "kind" in parsed:
            hashes[kind], originals[kind] = parsed["value"], value
        else:
            rejected = rejected or parsed
    if not hashes:
        if rejected is not None:
            return rejected
        shown = record.get("display") or context.get("name") or context.get("path")
        return _skip("no_hash", shown, where, context=context) if shown else None
    best = next(kind for kind in HASH_PREFERENCE if kind in hashes)
    if policy.trusts(context):
        skipped = _skip("trusted_publisher", hashes[best], where, context=context)
        skipped["hashes"] = hashes
        return skipped
    found = {"kind": "file", "type": best, "value": hashes[best], "original": originals[best],
             "sources": [where], "hashes": hashes}
    if context:
        found["context"] = context
    return found


def _context(record: Mapping[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {key: record[key] for key in keys if record.get(key) not in (None, "", [], False)}


def _skip(reason: str, value: Any, where: dict[str, str], why: str | None = None, *,
          context: dict[str, Any] | None = None) -> dict[str, Any]:
    skipped: dict[str, Any] = {"reason": reason, "value": _echo(value), "source": where}
    if why:
        skipped["message"] = why
    if context:
        skipped["context"] = context
    return skipped


# --- whole-alert rules: device ids, names that travel with a hash, duplicates --------------


def _device_ids(alert: Any) -> dict[str, str]:
    """Every device id in the alert, lowercased, with the key it was under."""
    found: dict[str, str] = {}
    stack = [alert]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, dict):
            for key, value in node.items():
                if key.casefold() in DEVICE_ID_KEYS and isinstance(value, str) and value.strip():
                    found.setdefault(value.strip().casefold(), key)
                elif isinstance(value, dict | list):
                    stack.append(value)
    return found


def _set_device_ids_aside(found: _Found, device_ids: dict[str, str]) -> None:
    """A device id is context, never a file: even a 40-hex one that parses as a SHA-1."""
    if not device_ids:
        return
    found.indicators[:] = [item for item in found.indicators if not any(
        value.casefold() in device_ids for value in (item.get("hashes") or {}).values())]
    found.skipped[:] = [item for item in found.skipped if not (
        isinstance(item["value"], str) and item["value"].strip().casefold() in device_ids)]
    found.skipped.extend({"reason": "device_id", "value": value,
                          "source": {"format": "any", "field": key}}
                         for value, key in device_ids.items())


def _drop_names_that_travel_with_a_hash(found: _Found) -> None:
    """A file-name observable (OCSF, say) of a file looked up by hash is not separate."""
    # Names are compared as strings: an alert may give a list or an object as a "name".
    names = {item["context"]["name"] for item in found.indicators
             if isinstance(item.get("context", {}).get("name"), str)}
    found.skipped[:] = [item for item in found.skipped
                        if not (item["reason"] == "no_hash" and isinstance(item["value"], str)
                                and item["value"] in names)]


def _unique_skipped(skipped: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return _unique_by(skipped, lambda item: (item["reason"], _canonical(item["value"])))


def _unique_by(items: list[Any], key: Callable[[Any], Any]) -> list[Any]:
    seen: set[Any] = set()
    kept = []
    for item in items:
        identity = key(item)
        if identity not in seen:
            seen.add(identity)
            kept.append(item)
    return kept


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


# --- prepare: what a rule cannot express -------------------------------------------------


def _sentinel_entities(alert: Any) -> dict[str, Any]:
    """`{"entities": [...]}` from an incident's relatedEntities or an entities answer, each
    File entity given its FileHash entities inline (by id or `$ref`) so the file's name
    travels with its hashes; a FileHash entity so claimed is marked `linked`."""
    entities = _first_list(alert, ("object", "properties", "relatedEntities"),
                           ("properties", "relatedEntities"), ("entities",))
    by_id = {entity[key]: index for index, entity in enumerate(entities)
             if isinstance(entity, dict)
             for key in ("id", "$id", "name") if isinstance(entity.get(key), str)}
    out = [dict(entity) if isinstance(entity, dict) else entity for entity in entities]
    claimed: set[int] = set()
    for entity in out:
        if not isinstance(entity, dict) or entity.get("kind") != "File":
            continue
        given = entity.get("properties")
        properties = dict(given) if isinstance(given, dict) else {}
        refs = [ref for key in ("fileHashEntityIds", "fileHashes")
                if isinstance(properties.get(key), list) for ref in properties[key]]
        hashes = []
        for ref in refs:
            target = ref if isinstance(ref, dict) and "$ref" not in ref else None
            key = ref.get("$ref") if isinstance(ref, dict) else ref
            if target is None and isinstance(key, str) and key in by_id:
                claimed.add(by_id[key])
                target = entities[by_id[key]].get("properties")
            if isinstance(target, dict):
                hashes.append(target)
        properties["fileHashes"] = hashes
        entity["properties"] = properties
    for index in claimed:
        out[index]["linked"] = True
    return {"entities": out}


def _first_list(alert: Any, *paths: tuple[str, ...]) -> list[Any]:
    for path in paths:
        node = alert
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, list):
            return node
    return []


def _sentinel_alert_entities(alert: Any) -> dict[str, Any]:
    """`{"entities": [...]}` from a SecurityAlert row's `Entities` (JSON in a string, or
    already data): each `{"$ref": id}` replaced by the entity of that `$id` wherever it was
    defined (Sentinel defines a file once, inside its process, and refers to it after), each
    entity once; a filehash entity that belongs to a file entity is marked `linked`."""
    from integration.playbook.expressions import from_json

    raw = alert.get("Entities") if isinstance(alert, dict) else None
    entities = from_json(raw) if isinstance(raw, str) else raw
    if not isinstance(entities, list):
        return {"entities": []}
    by_id: dict[str, dict[str, Any]] = {}
    stack: list[Any] = list(entities)
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if isinstance(node.get("$id"), str) and "$ref" not in node:
                by_id.setdefault(node["$id"], node)
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)

    def resolved(node: Any) -> Any:  # a `$ref` that is no string refers to nothing
        ref = node.get("$ref") if isinstance(node, dict) else None
        return by_id.get(ref, node) if isinstance(ref, str) else node

    out: list[dict[str, Any]] = []
    seen: set[int] = set()
    for entity in map(resolved, entities):
        if isinstance(entity, dict) and id(entity) not in seen:
            seen.add(id(entity))
            out.append(dict(entity))
    linked = set()
    for entity in out:
        if entity.get("Type") == "file" and isinstance(entity.get("FileHashes"), list):
            hashes = [resolved(item) for item in entity["FileHashes"]]
            entity["FileHashes"] = [h for h in hashes if isinstance(h, dict)]
            linked |= {id(h) for h in hashes}
    for entity in out:
        if entity.get("Type") == "filehash" and id(by_id.get(str(entity.get("$id")))) in linked:
            entity["linked"] = True
    return {"entities": out}


def _misp_attributes(alert: Any) -> dict[str, Any]:
    """`{"attributes": [...]}`: an event's attributes and its objects' attributes, from an
    event (`{"Event": ...}`), an attribute search (`{"response": {"Attribute": [...]}}`) or a
    bare event body."""
    candidates = (alert.get("Event"), alert.get("response"), alert) \
        if isinstance(alert, dict) else ()
    body = next((c for c in candidates if isinstance(c, dict) and c), {})
    attributes = _objects(body.get("Attribute"))
    for item in _objects(body.get("Object")):
        attributes += _objects(item.get("Attribute"))
    return {"attributes": attributes}


def _objects(value: Any) -> list[dict[str, Any]]:
    """The objects of a list; anything else (a number, a string, one object) holds none."""
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _ecs_nested(alert: Any) -> Any:
    """An ECS document with its dotted keys (`"file.hash.sha1"`, as Kibana exports alerts)
    expanded into objects, so one rule reads both spellings; nested keys win a clash."""
    if not isinstance(alert, dict) or not any("." in key for key in alert):
        return alert
    nested: dict[str, Any] = {}
    for key, value in alert.items():
        if "." not in key:
            continue
        node = nested
        *parents, leaf = key.split(".")
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                break
            node = child
        else:
            node.setdefault(leaf, value)
    return _merged(nested, {key: value for key, value in alert.items() if "." not in key})


def _merged(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        out[key] = _merged(out[key], value) if isinstance(out.get(key), dict) \
            and isinstance(value, dict) else value
    return out


PREPARE: dict[str, Callable[[Any], Any]] = {"sentinel_entities": _sentinel_entities,
                                            "sentinel_alert_entities": _sentinel_alert_entities,
                                            "misp_attributes": _misp_attributes,
                                            "ecs_nested": _ecs_nested}


def _echo(value: Any) -> Any:
    """A skipped value as shown in the enrichment: strings bounded, other values as given."""
    if isinstance(value, str) and len(value) > _ECHO_LIMIT:
        return value[: _ECHO_LIMIT - 1] + "…"
    return value


def _json_type(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
            type(None): "null"}.get(type(value), "a number")
