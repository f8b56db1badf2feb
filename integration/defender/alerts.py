"""Microsoft Graph's security alerts and incidents: what a scheduled run pulls, and the one
comment it writes back.

    GET  /v1.0/security/alerts_v2?$filter=...&$top=N         (SecurityAlert.Read.All)
    GET  /v1.0/security/incidents?$expand=alerts&$filter=... (SecurityIncident.Read.All)
    POST /v1.0/security/{alerts_v2|incidents}/{id}/comments   (the ReadWrite role)

The client only builds requests and reads answers: sending (budget -> token -> retry ->
transport) and mapping a refusal to our error is the one pipeline's (`pipeline.fetch`), in
the `security` budget bucket. Filters are built here from validated values only
(enumerations and timestamps), so nothing a user typed becomes OData syntax.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote

from integration.defender.pipeline import Calls, Request, fetch
from integration.errors import InvalidInput, UpstreamError

if TYPE_CHECKING:
    from integration.defender.pipeline import Api

Kind = Literal["alerts", "incidents"]

PATHS: dict[Kind, str] = {"alerts": "/v1.0/security/alerts_v2",
                          "incidents": "/v1.0/security/incidents"}
PAGE_SIZE = 200
MAX_PAGES = 500  # a bound on a looping nextLink: 100,000 alerts a run

# Graph's enumerations (microsoft.graph.security.alert): the only values a filter may hold.
SERVICE_SOURCES = ("microsoftDefenderForEndpoint", "microsoftDefenderForIdentity",
                   "microsoftDefenderForCloudApps", "microsoftDefenderForOffice365",
                   "microsoft365Defender", "azureAdIdentityProtection", "microsoftAppGovernance",
                   "dataLossPrevention", "microsoftDefenderForCloud", "microsoftSentinel",
                   "microsoftInsiderRiskManagement")
SEVERITIES = ("informational", "low", "medium", "high", "unknown")
STATUSES = ("new", "inProgress", "resolved", "unknown")
_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,7})?Z")


def time_key(value: Any) -> str | None:
    """A Graph DateTimeOffset as a string that sorts as the moment does: UTC, seven
    fractional digits (Graph's own precision, finer than Python's datetime)."""
    if not isinstance(value, str):
        return None
    match = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,7}))?(Z|[+-]\d\d:\d\d)",
                         value.strip())
    if not match:
        return None
    base, fraction, zone = match.groups()
    try:
        moment = dt.datetime.fromisoformat(base + ("+00:00" if zone == "Z" else zone))
    except ValueError:
        return None
    utc = moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{utc}.{(fraction or '').ljust(7, '0')}Z"


def choices(kind: str, given: Iterable[str], allowed: Sequence[str]) -> tuple[str, ...]:
    """Values of one filter, each one of Graph's (case as Graph spells it), or InvalidInput."""
    by_lower = {value.lower(): value for value in allowed}
    result = []
    for value in given:
        for part in (p.strip() for p in value.split(",")):
            if not part:
                continue
            if part.lower() not in by_lower:
                raise InvalidInput(f"{kind} {part!r} is not one of Graph's: "
                                   f"{', '.join(allowed)}")
            result.append(by_lower[part.lower()])
    return tuple(dict.fromkeys(result))


def build_filter(kind: Kind, *, since: str | None, service_sources: Sequence[str] = (),
                 severities: Sequence[str] = (), statuses: Sequence[str] = ()) -> str:
    """The `$filter` of a pull: updated at or after `since` (inclusive: alerts sharing that
    timestamp are told apart by id), and each filter an `or` of its values."""
    clauses = []
    if since is not None:
        if not _TIME.fullmatch(since):
            raise ValueError(f"not a Graph timestamp: {since!r}")
        clauses.append(f"lastUpdateDateTime ge {since}")
    for field, values, allowed in (("serviceSource", service_sources, SERVICE_SOURCES),
                                   ("severity", severities, SEVERITIES),
                                   ("status", statuses, STATUSES)):
        if kind == "incidents" and field == "serviceSource":
            continue  # an incident has no service source; its alerts are filtered after
        if not values:
            continue
        if any(value not in allowed for value in values):
            raise ValueError(f"{field} outside Graph's enumeration: {values}")
        clauses.append("(" + " or ".join(f"{field} eq '{value}'" for value in values) + ")")
    return " and ".join(clauses)


_PERMISSIONS = {("alerts", "read"): "SecurityAlert.Read.All",
                ("alerts", "write"): "SecurityAlert.ReadWrite.All",
                ("incidents", "read"): "SecurityIncident.Read.All",
                ("incidents", "write"): "SecurityIncident.ReadWrite.All"}


class SecurityClient:
    """Lists alerts or incidents and comments on them, through the one pipeline."""

    def __init__(self, api: Api) -> None:
        self._api = api

    def list(self, kind: Kind, query_filter: str,
             page_size: int = PAGE_SIZE) -> list[dict[str, Any]]:
        """Every item the filter selects, following @odata.nextLink."""
        params = [("$filter", query_filter)] if query_filter else []
        if kind == "incidents":
            params.append(("$expand", "alerts"))
        params.append(("$top", str(page_size)))
        # Spaces as %20, as Graph's own examples send them (requests' params would use +).
        url = PATHS[kind] + "?" + "&".join(f"{name}={quote(value, safe='')}"
                                           for name, value in params)
        calls = Calls("batch")
        items: list[dict[str, Any]] = []
        seen: set[str] = set()
        for _ in range(MAX_PAGES):
            body = fetch(self._api, Request("GET", url, "security", what=f"listing {kind}",
                                            permission=_PERMISSIONS[(kind, "read")]), calls)
            values = body.get("value") if isinstance(body, dict) else None
            if not isinstance(values, list) or not all(isinstance(v, dict) for v in values):
                raise UpstreamError(f"Graph's {kind} answer has no list under 'value'",
                                    status=200)
            items.extend(values)
            link = body.get("@odata.nextLink")
            if not isinstance(link, str) or not link:
                return items
            if link in seen:  # one leaving Graph's origin is refused by the pipeline
                raise UpstreamError(f"Graph's @odata.nextLink for {kind} repeats itself")
            seen.add(link)
            url = link
        raise UpstreamError(f"Graph's {kind} list goes on past {MAX_PAGES} pages")

    def comment(self, kind: Kind, item_id: str, text: str) -> None:
        """One comment on an alert or incident (PermissionDenied without the write role)."""
        if not re.fullmatch(r"[A-Za-z0-9_.:-]{1,200}", item_id):
            raise InvalidInput(f"not a Graph {kind[:-1]} id: {item_id[:60]!r}")
        path = f"{PATHS[kind]}/{quote(item_id, safe='')}/comments"
        body = {"@odata.type": "microsoft.graph.security.alertComment", "comment": text}
        fetch(self._api, Request("POST", path, "security", body=body,
                                 what=f"a comment on {kind[:-1]} {item_id}",
                                 permission=_PERMISSIONS[(kind, "write")]), Calls("batch"))
