"""Advanced hunting through Microsoft Graph (`POST /v1.0/security/runHuntingQuery`): the one
place that builds hunting queries, and the client that sends them.

Queries are built from validated `Indicator`s only. Each value is checked once more against
its type's shape and written as a KQL string literal with quotes and backslashes escaped, so
nothing a user typed can become query syntax, even if a caller skipped validation.

One query covers a whole batch of indicators (Graph allows 45 hunting calls a minute per
tenant); rows are summarized per device in KQL and told apart per indicator here.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import urlsplit

from integration.defender import urls
from integration.defender.pipeline import Api, Calls, Request, fetch
from integration.errors import UpstreamError
from integration.values.times import parse_time

if TYPE_CHECKING:
    from integration.defender.budget import Lane
    from integration.values.indicators import Indicator

LOOKBACK = "30d"  # in the query: the emulator and Graph both filter on it
TIMESPAN = "P30D"  # in the body: Graph's own window, which the query must not exceed
# Indicators per query: a long `in`/`has_any` list stays far below Graph's query size limit.
MAX_PER_QUERY = 200
PROCESS_COLUMNS = ("InitiatingProcessFileName", "InitiatingProcessSHA1",
                   "InitiatingProcessCommandLine")
# What a validated indicator can hold (indicators.py); anything else never reaches a query.
_SHAPES = {"domain": re.compile(r"[a-z0-9_-]+(?:\.[a-z0-9_-]+)*"),
           "sha1": re.compile(r"[0-9a-f]{40}"), "sha256": re.compile(r"[0-9a-f]{64}"),
           "md5": re.compile(r"[0-9a-f]{32}")}
# Where a sweep looks: each hash type's column in the file, process and image-load events.
HASH_COLUMNS = (("sha1", "SHA1"), ("sha256", "SHA256"), ("md5", "MD5"))
DNS_ACTION = "DnsQueryResponse"  # DeviceEvents' DNS answers; the name is in AdditionalFields
DNS_COLUMN = "DnsQuery"  # the sweep query's own column for that name


class Contact(NamedTuple):
    """One device's contact with one indicator in the hunting window."""

    device_id: str
    device_name: str | None
    first_ms: int
    last_ms: int
    events: int
    process_name: str | None = None
    process_sha1: str | None = None
    command_line: str | None = None


# --- query building -------------------------------------------------------------------------


def kql_string(value: str) -> str:
    """A KQL string literal holding exactly `value`."""
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        raise ValueError("a control character has no place in a hunting query value")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _literals(indicators: Sequence[Indicator], kind: str) -> str:
    if not indicators:
        raise ValueError("a hunting query needs at least one indicator")
    for indicator in indicators:
        if indicator.type != kind or not _SHAPES[kind].fullmatch(indicator.value):
            raise ValueError(f"not a validated {kind} indicator: {indicator.value!r}")
    return ", ".join(kql_string(value) for value in
                     dict.fromkeys(indicator.value for indicator in indicators))


def _summarize(key: str) -> str:
    # arg_max keeps the latest row's process; its Timestamp column is the last contact.
    return (f"| summarize FirstSeen = min(Timestamp), Count = count(), "
            f"arg_max(Timestamp, {', '.join(PROCESS_COLUMNS)}) by DeviceId, DeviceName, {key}")


def domain_query(domains: Sequence[Indicator]) -> str:
    """Network events to these domains (and their subdomains), per device and URL."""
    values = _literals(domains, "domain")
    # `has_any` matches a domain inside a URL too; rows are matched to domains exactly here.
    return "\n".join(("DeviceNetworkEvents", f"| where Timestamp > ago({LOOKBACK})",
                      f"| where RemoteUrl has_any ({values})", _summarize("RemoteUrl")))


def file_query(sha1s: Sequence[Indicator]) -> str:
    """File and process events of these files, per device and SHA-1."""
    values = _literals(sha1s, "sha1")
    return "\n".join(("union DeviceFileEvents, DeviceProcessEvents",
                      f"| where Timestamp > ago({LOOKBACK})", f"| where SHA1 in ({values})",
                      _summarize("SHA1")))


def kql_timespan(seconds: int) -> str:
    """A lookback in KQL's timespan literal (`ago(30d)`), in the largest whole unit."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def sweep_domain_query(domains: Sequence[Indicator], lookback_s: int) -> str:
    """A sweep's domains: network events by RemoteUrl, and DNS answers by the name asked,
    per device and URL or name."""
    values = _literals(domains, "domain")
    return "\n".join((
        "union DeviceNetworkEvents, DeviceEvents",
        f"| where Timestamp > ago({kql_timespan(lookback_s)})",
        f"| where RemoteUrl has_any ({values}) or (ActionType == {kql_string(DNS_ACTION)} "
        f"and AdditionalFields has_any ({values}))",
        # A dynamic column cannot be a group key: the name asked, as a string, can.
        f"| extend {DNS_COLUMN} = tostring(parse_json(AdditionalFields).DnsQueryString)",
        _summarize(f"RemoteUrl, {DNS_COLUMN}")))


def sweep_file_query(hashes: Sequence[Indicator], lookback_s: int) -> str:
    """A sweep's file hashes, each by its own column (so an MD5 finds its file's SHA-1), in
    file, process and image-load events, per device and file."""
    tests = [f"{column} in ({_literals(chosen, kind)})" for kind, column in HASH_COLUMNS
             if (chosen := [i for i in hashes if i.type == kind])]
    if not tests:
        raise ValueError("a hunting query needs at least one indicator")
    return "\n".join((
        "union DeviceFileEvents, DeviceProcessEvents, DeviceImageLoadEvents",
        f"| where Timestamp > ago({kql_timespan(lookback_s)})",
        f"| where {' or '.join(tests)}",
        _summarize("SHA1, SHA256, MD5")))


# --- answers --------------------------------------------------------------------------------


def contacts_by_indicator(kind: str, indicators: Sequence[Indicator],
                          rows: list[dict[str, Any]]) -> dict[str, list[Contact]]:
    """Rows of `domain_query`/`file_query` as contacts per indicator value and device
    (several URLs of one domain on one device make one contact)."""
    wanted = {indicator.value for indicator in indicators}

    def matched(row: dict[str, Any]) -> list[str]:
        if kind == "domain":
            return _domains_of(row.get("RemoteUrl"), wanted)
        value = row.get("SHA1")
        return [value.lower()] if isinstance(value, str) and value.lower() in wanted else []
    return _contacts(rows, matched)


class Sightings(NamedTuple):
    """A sweep query's answer: contacts per indicator value, the SHA-1 of each file hash seen
    (the file's identity for the machines API), and the calls it took."""

    contacts: dict[str, list[Contact]]
    sha1s: dict[str, str]
    calls: int


def sweep_sightings(kind: str, indicators: Sequence[Indicator],
                    rows: list[dict[str, Any]]) -> tuple[dict[str, list[Contact]],
                                                         dict[str, str]]:
    """Rows of `sweep_domain_query`/`sweep_file_query` as contacts per indicator value, and
    each file hash's SHA-1."""
    sha1s: dict[str, str] = {}
    if kind == "domain":
        wanted = {i.value for i in indicators}

        def matched(row: dict[str, Any]) -> list[str]:
            return list(dict.fromkeys(_domains_of(row.get("RemoteUrl"), wanted)
                                      + _domains_of(_dns_name(row), wanted)))
    else:
        by_column = {column: {i.value for i in indicators if i.type == kind}
                     for kind, column in HASH_COLUMNS}

        def matched(row: dict[str, Any]) -> list[str]:
            found = []
            sha1 = row.get("SHA1")
            for column, wanted in by_column.items():
                value = row.get(column)
                if isinstance(value, str) and value.lower() in wanted:
                    found.append(value.lower())
                    if isinstance(sha1, str) and _SHAPES["sha1"].fullmatch(sha1.lower()):
                        sha1s[value.lower()] = sha1.lower()
            return found
    return _contacts(rows, matched), sha1s


def _dns_name(row: dict[str, Any]) -> str | None:
    """The name a DNS answer row asked for (the query extends each row with it)."""
    name = row.get(DNS_COLUMN)
    return name if isinstance(name, str) and name else None


def _contacts(rows: list[dict[str, Any]],
              matched: Callable[[dict[str, Any]], list[str]]) -> dict[str, list[Contact]]:
    merged: dict[tuple[str, str], Contact] = {}
    for row in rows:
        device_id = row.get("DeviceId")
        first, last = _epoch_ms(row.get("FirstSeen")), _epoch_ms(row.get("Timestamp"))
        if not isinstance(device_id, str) or not device_id or first is None or last is None:
            continue  # a row we cannot place in time or on a device tells nothing
        contact = Contact(device_id.lower(), _text(row.get("DeviceName")), first, last,
                          _count(row.get("Count")), *(_text(row.get(c)) for c in PROCESS_COLUMNS))
        for value in matched(row):
            key = (value.lower(), contact.device_id)
            merged[key] = _merge(merged[key], contact) if key in merged else contact
    result: dict[str, list[Contact]] = {}
    for (value, _), contact in merged.items():
        result.setdefault(value, []).append(contact)
    return result


def _merge(one: Contact, other: Contact) -> Contact:
    latest = other if other.last_ms > one.last_ms else one
    return latest._replace(first_ms=min(one.first_ms, other.first_ms),
                           events=one.events + other.events,
                           device_name=latest.device_name or one.device_name)


def _domains_of(remote_url: Any, wanted: set[str]) -> list[str]:
    """The asked domains that a RemoteUrl's host is, or is a subdomain of."""
    if not isinstance(remote_url, str) or not remote_url:
        return []
    text = remote_url.strip().lower()
    host = urlsplit(text if "//" in text else "//" + text).hostname or ""
    host = host.rstrip(".")
    return [domain for domain in wanted if host == domain or host.endswith("." + domain)]


def _epoch_ms(value: Any) -> int | None:
    """A hunting row's time as epoch ms, read by the one timestamp parser the machine
    records use (offsets, 7-digit fractions and impossible dates included)."""
    parsed = parse_time(value)
    return parsed[0] if parsed else None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 1


# --- the client -----------------------------------------------------------------------------


class HuntingClient:
    """Sends hunting queries to Graph through the one pipeline: Graph's own token (its
    scope) and its own budget bucket, the same transport and retry policy as every request."""

    def __init__(self, api: Api) -> None:
        self._api = api

    def contacts(self, kind: str, indicators: Sequence[Indicator],
                 lane: Lane = "batch") -> tuple[dict[str, list[Contact]], int]:
        """Contacts per indicator value (one query for every MAX_PER_QUERY indicators), and
        the hunting calls that took (retries included)."""
        build = domain_query if kind == "domain" else file_query
        found: dict[str, list[Contact]] = {}
        calls = Calls(lane)  # this batch's own count: other threads share the client
        for start in range(0, len(indicators), MAX_PER_QUERY):
            chunk = indicators[start:start + MAX_PER_QUERY]
            found.update(contacts_by_indicator(kind, chunk, self.run(build(chunk), calls)))
        return found, calls.count

    def sightings(self, kind: str, indicators: Sequence[Indicator], *, lookback_s: int,
                  timespan: str, lane: Lane = "batch") -> Sightings:
        """One sweep query (at most MAX_PER_QUERY indicators; the caller keeps each answer
        before asking the next): contacts and SHA-1s per indicator value."""
        if len(indicators) > MAX_PER_QUERY:
            raise ValueError(f"at most {MAX_PER_QUERY} indicators a query")
        query = sweep_domain_query(indicators, lookback_s) if kind == "domain" else \
            sweep_file_query(indicators, lookback_s)
        calls = Calls(lane)
        contacts, sha1s = sweep_sightings(kind, indicators,
                                          self.run(query, calls, timespan=timespan))
        return Sightings(contacts, sha1s, calls.count)

    def run(self, query: str, calls: Calls | None = None, *,
            timespan: str = TIMESPAN) -> list[dict[str, Any]]:
        """The result rows of one query; an error when Graph refuses or fails. A 400 is a
        query Graph would not run: ours to fix, not the user's input. `timespan` (ISO 8601)
        is Graph's own window, which the query's `ago()` must not exceed."""
        body = fetch(self._api, Request(
            "POST", urls.HUNTING_QUERY, "hunting", body={"Query": query, "Timespan": timespan},
            what="advanced hunting", permission="ThreatHunting.Read.All"), calls or Calls())
        rows = body.get("results") if isinstance(body, dict) else None
        if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
            raise UpstreamError("Graph's hunting answer has no list of rows under 'results'",
                                status=200, service="Graph", path=urls.HUNTING_QUERY)
        return rows
