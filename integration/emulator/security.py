"""Microsoft Graph's security alerts and incidents, emulated.

    GET  /v1.0/security/alerts_v2                  $filter, $top, $skip; @odata.nextLink
    GET  /v1.0/security/alerts_v2/{id}
    POST /v1.0/security/alerts_v2/{id}/comments    {"comment": "..."} -> the alert's comments
    GET  /v1.0/security/incidents                  the same, and $expand=alerts
    POST /v1.0/security/incidents/{id}/comments

Reading wants SecurityAlert.Read.All (incidents: SecurityIncident.Read.All) or the ReadWrite
role; a comment wants the ReadWrite role, else Graph's 403. A comment updates the alert's
`lastUpdateDateTime`, as an analyst's comment does in the portal: a poller that keeps its
position on that field sees its own comment come back, and must not enrich twice for it.

`$filter` is the subset a poller uses: `eq`, `ne`, `ge`, `gt`, `le`, `lt` and `in (...)` on
the alert's own scalar fields, joined by `and`/`or`, with parentheses. Anything else is
Graph's 400 BadRequest. Alerts are added through `POST /_admin/alerts` (tests, the demo).
"""

from __future__ import annotations

import copy
import datetime as dt
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from integration.emulator.errors import ApiError

ALERTS = "/v1.0/security/alerts_v2"
INCIDENTS = "/v1.0/security/incidents"
ALERT_READ = frozenset({"SecurityAlert.Read.All", "SecurityAlert.ReadWrite.All"})
ALERT_WRITE = frozenset({"SecurityAlert.ReadWrite.All"})
INCIDENT_READ = frozenset({"SecurityIncident.Read.All", "SecurityIncident.ReadWrite.All"})
INCIDENT_WRITE = frozenset({"SecurityIncident.ReadWrite.All"})
MAX_TOP = 2000  # Graph's documented maximum page for alerts_v2
DEFAULT_TOP = 2000
COMMENTER = "mde-enrich emulator app"


def is_security(path: str) -> bool:
    return path.startswith((ALERTS, INCIDENTS))


def now_text() -> str:
    """Graph's own timestamp shape: seven fractional digits, Z."""
    moment = dt.datetime.now(dt.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond:06d}0Z"


class SecurityStore:
    """The tenant's alerts and incidents: added by the admin API, changed by comments."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._alerts: dict[str, dict[str, Any]] = {}
        self._incidents: dict[str, dict[str, Any]] = {}

    def clear(self) -> None:
        with self._lock:
            self._alerts.clear()
            self._incidents.clear()

    def add(self, payload: Mapping[str, Any]) -> dict[str, int]:
        """Add or replace alerts and incidents ({"alerts": [...], "incidents": [...]}). An
        alert without lastUpdateDateTime gets the present moment."""
        alerts, incidents = payload.get("alerts") or [], payload.get("incidents") or []
        if not isinstance(alerts, list) or not isinstance(incidents, list):
            raise ValueError("alerts and incidents must be lists of objects")
        with self._lock:
            for kind, items, store in (("alert", alerts, self._alerts),
                                       ("incident", incidents, self._incidents)):
                for item in items:
                    if not isinstance(item, dict) or not isinstance(item.get("id"), str):
                        raise ValueError(f"each {kind} must be an object with a string id")
                    record = copy.deepcopy(item)
                    record.setdefault("lastUpdateDateTime", now_text())
                    record.setdefault("comments", [])
                    store[record["id"]] = record
            return {"alerts": len(self._alerts), "incidents": len(self._incidents)}

    def alerts(self) -> list[dict[str, Any]]:
        with self._lock:
            return [copy.deepcopy(alert) for alert in self._alerts.values()]

    def incidents(self, expand_alerts: bool) -> list[dict[str, Any]]:
        with self._lock:
            result = []
            for incident in self._incidents.values():
                record = copy.deepcopy(incident)
                if expand_alerts:
                    record["alerts"] = [copy.deepcopy(alert) for alert in self._alerts.values()
                                        if alert.get("incidentId") == incident["id"]]
                result.append(record)
            return result

    def alert(self, alert_id: str) -> dict[str, Any] | None:
        with self._lock:
            found = self._alerts.get(alert_id)
            return copy.deepcopy(found) if found else None

    def comment(self, kind: str, item_id: str, text: str) -> list[dict[str, Any]]:
        store = self._alerts if kind == "alerts_v2" else self._incidents
        with self._lock:
            item = store.get(item_id)
            if item is None:
                raise _not_found(item_id)
            stamp = now_text()
            item["comments"].append({"@odata.type": "microsoft.graph.security.alertComment",
                                     "comment": text, "createdByDisplayName": COMMENTER,
                                     "createdDateTime": stamp})
            item["lastUpdateDateTime"] = stamp
            return copy.deepcopy(item["comments"])


def answer(store: SecurityStore, method: str, path: str, params: Mapping[str, str],
           roles: Iterable[str], body: Any, origin: str) -> dict[str, Any]:
    """Graph's answer to one security request; ApiError for every refusal."""
    held = set(roles)
    kind, _, rest = path.removeprefix("/v1.0/security/").partition("/")
    read, write = (ALERT_READ, ALERT_WRITE) if kind == "alerts_v2" else \
        (INCIDENT_READ, INCIDENT_WRITE)
    item_id, _, tail = rest.partition("/")
    if tail == "comments":
        if method != "POST":
            raise _method(method)
        _require(held, write)
        text = body.get("comment") if isinstance(body, dict) else None
        if not isinstance(text, str) or not text.strip():
            raise ApiError(400, "BadRequest", "The 'comment' property is required.")
        comments = store.comment(kind, item_id, text)
        return {"@odata.context": f"{origin}/v1.0/$metadata#Collection("
                                  "microsoft.graph.security.alertComment)", "value": comments}
    if tail or kind not in ("alerts_v2", "incidents"):
        raise ApiError(404, "UnknownError", f"Resource not found for the segment "
                                            f"'{path.rsplit('/', 1)[-1]}'.")
    if method != "GET":
        raise _method(method)
    _require(held, read)
    if item_id:
        found = store.alert(item_id) if kind == "alerts_v2" else \
            next((i for i in store.incidents(params.get("$expand") == "alerts")
                  if i["id"] == item_id), None)
        if found is None:
            raise _not_found(item_id)
        return {"@odata.context": f"{origin}/v1.0/$metadata#security/{kind}/$entity", **found}
    expand = params.get("$expand")
    if expand not in (None, "alerts") or (expand and kind != "incidents"):
        raise ApiError(400, "BadRequest", f"Could not find a property named '{expand}'.")
    items = store.alerts() if kind == "alerts_v2" else store.incidents(expand == "alerts")
    keep = parse_filter(params["$filter"]) if params.get("$filter") else (lambda item: True)
    # Graph lists the newest first; a poller must not rely on any order within a page.
    items = sorted((item for item in items if keep(item)),
                   key=lambda item: str(item.get("createdDateTime", "")), reverse=True)
    top = _number(params, "$top", DEFAULT_TOP)
    if top < 1 or top > MAX_TOP:
        raise ApiError(400, "BadRequest", f"Invalid page size specified: '{top}'. Must be "
                                          f"between 1 and {MAX_TOP} inclusive.")
    skip = _number(params, "$skip", 0)
    page: dict[str, Any] = {"@odata.context": f"{origin}/v1.0/$metadata#security/{kind}",
                            "value": items[skip:skip + top]}
    if skip + top < len(items):
        kept = {k: v for k, v in params.items() if k not in ("$skip", "$top")}
        query = "&".join(f"{k}={_quote(v)}" for k, v in
                         {**kept, "$top": str(top), "$skip": str(skip + top)}.items())
        page["@odata.nextLink"] = f"{origin}/v1.0/security/{kind}?{query}"
    return page


def _quote(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="")


def _require(held: set[str], wanted: frozenset[str]) -> None:
    if not held & wanted:
        raise ApiError(403, "Forbidden", "Missing role permissions on the request. API "
                                         f"requires one of '{', '.join(sorted(wanted))}'.")


def _method(method: str) -> ApiError:
    return ApiError(405, "Request_BadRequest",
                    f"The HTTP method '{method}' is not allowed for this resource.")


def _not_found(item_id: str) -> ApiError:
    return ApiError(404, "NotFound", f"No entity with id '{item_id}' was found.")


def _number(params: Mapping[str, str], name: str, default: int) -> int:
    text = params.get(name)
    if text is None:
        return default
    if not text.isdigit():
        raise ApiError(400, "BadRequest", f"Invalid value '{text}' for query option {name}.")
    return int(text)


# --- $filter ---------------------------------------------------------------------------------

_TOKEN = re.compile(r"\s*(?:(?P<open>\()|(?P<close>\))|(?P<comma>,)|'(?P<string>(?:[^']|'')*)'"
                    r"|(?P<word>[A-Za-z_][A-Za-z0-9_.]*|[0-9][0-9TZ:.+-]*))")
_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "eq": lambda a, b: a == b, "ne": lambda a, b: a != b, "ge": lambda a, b: a >= b,
    "gt": lambda a, b: a > b, "le": lambda a, b: a <= b, "lt": lambda a, b: a < b}
_DATETIME = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,7}))?(Z|[+-]\d\d:\d\d)")
Predicate = Callable[[Mapping[str, Any]], bool]


def parse_filter(text: str) -> Predicate:
    """The predicate an OData `$filter` means; ApiError 400 for anything outside the subset."""
    tokens = _tokens(text)
    predicate, position = _or(tokens, 0)
    if position != len(tokens):
        raise _bad_filter(text)
    return predicate


def comparable_time(text: str) -> str | None:
    """A DateTimeOffset as a string that sorts as the moment does (UTC, 7 digits)."""
    match = _DATETIME.fullmatch(text)
    if not match:
        return None
    base, fraction, zone = match.groups()
    moment = dt.datetime.fromisoformat(base + ("+00:00" if zone == "Z" else zone))
    utc = moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{utc}.{(fraction or '').ljust(7, '0')}Z"


def _tokens(text: str) -> list[tuple[str, str]]:
    tokens, position = [], 0
    while position < len(text):
        if text[position:].isspace():
            break
        match = _TOKEN.match(text, position)
        if match is None:
            raise _bad_filter(text)
        kind = match.lastgroup or ""
        value = match.group(kind)
        tokens.append((kind, value.replace("''", "'") if kind == "string" else value))
        position = match.end()
    return tokens


def _or(tokens: list[tuple[str, str]], at: int) -> tuple[Predicate, int]:
    return _joined(tokens, at, "or", _and, lambda a, b: lambda item: a(item) or b(item))


def _and(tokens: list[tuple[str, str]], at: int) -> tuple[Predicate, int]:
    return _joined(tokens, at, "and", _term, lambda a, b: lambda item: a(item) and b(item))


def _joined(tokens: list[tuple[str, str]], at: int, word: str,
            operand: Callable[[list[tuple[str, str]], int], tuple[Predicate, int]],
            join: Callable[[Predicate, Predicate], Predicate]) -> tuple[Predicate, int]:
    """operand (word operand)*: `and` binds tighter than `or`, as in OData."""
    left, at = operand(tokens, at)
    while at < len(tokens) and tokens[at] == ("word", word):
        right, at = operand(tokens, at + 1)
        left = join(left, right)
    return left, at


def _term(tokens: list[tuple[str, str]], at: int) -> tuple[Predicate, int]:
    if at < len(tokens) and tokens[at][0] == "open":
        inner, at = _or(tokens, at + 1)
        if at >= len(tokens) or tokens[at][0] != "close":
            raise _bad_filter("unbalanced parentheses")
        return inner, at + 1
    if at + 2 >= len(tokens):
        raise _bad_filter("an incomplete comparison")
    (kind, field), (_, operator) = tokens[at], tokens[at + 1]
    if kind != "word" or operator not in (*_COMPARE, "in"):
        raise _bad_filter(f"'{field} {operator}'")
    if operator == "in":
        if tokens[at + 2][0] != "open":
            raise _bad_filter("'in' wants a parenthesized list")
        values, at = [], at + 3
        while at < len(tokens) and tokens[at][0] != "close":
            if tokens[at][0] == "comma":
                at += 1
                continue
            values.append(_literal(tokens[at]))
            at += 1
        if at >= len(tokens):
            raise _bad_filter("an unclosed 'in' list")
        return (lambda name, wanted: lambda item: _value(item, name) in wanted)(
            field, set(values)), at + 1
    literal = _literal(tokens[at + 2])
    compare = _COMPARE[operator]

    def predicate(item: Mapping[str, Any]) -> bool:
        value = _value(item, field)
        if value is None or literal is None:
            return compare(value, literal) if operator in ("eq", "ne") else False
        try:
            return compare(value, literal)
        except TypeError:
            return False

    return predicate, at + 3


def _literal(token: tuple[str, str]) -> Any:
    kind, text = token
    if kind == "string":
        return text
    if kind != "word":
        raise _bad_filter(f"'{text}'")
    if text == "null":
        return None
    if text in ("true", "false"):
        return text == "true"
    moment = comparable_time(text)
    if moment is not None:
        return moment
    try:
        return int(text)
    except ValueError:
        raise _bad_filter(f"'{text}' is not a literal") from None


def _value(item: Mapping[str, Any], name: str) -> Any:
    value = item.get(name)
    if isinstance(value, str):
        moment = comparable_time(value)
        return moment if moment is not None else value
    return value


def _bad_filter(what: str) -> ApiError:
    return ApiError(400, "BadRequest", f"Invalid filter clause: {what}.")
