"""A scheduled run's alerts pulled from Microsoft Graph, and the comment written back.

* **Position.** The run asks for what was updated at or after its position
  (`lastUpdateDateTime ge T`), sorts the answer by (time, id) and skips what it finished at
  exactly T (ids are kept with the position), so alerts sharing a timestamp are neither lost
  nor done twice. The position moves only after the run, over the leading alerts that are
  finished (enriched and written, or quarantined), so a failed or left-over alert, and every
  alert after it, is asked for again next time (those already done are skipped by the batch).
* **Same work.** An alert comes back after our own comment (Graph updates
  `lastUpdateDateTime`) or an analyst's status change; its work digest leaves those fields out,
  so it is not enriched twice, and it is enriched again when its evidence changes.
* **Write-back** (opt-in): one comment per enriched alert or incident, ending with a marker
  holding the work digest; an item whose comments hold the marker (or that the state says was
  commented) is never commented again. A missing permission is a warning, not a failure.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from integration.defender.alerts import (
    SERVICE_SOURCES,
    SEVERITIES,
    STATUSES,
    Kind,
    build_filter,
    choices,
    time_key,
)
from integration.errors import InvalidInput, PermissionDenied, PluginError
from integration.playbook.batch import STATE_TTL_S, BatchItem
from integration.playbook.outcome import Enriched, Left, Outcome, Quarantined

if TYPE_CHECKING:
    from integration.defender.alerts import SecurityClient
    from integration.state import StateStore

# Fields that change without new work for the enrichment.
_VOLATILE = frozenset({"lastUpdateDateTime", "comments", "status", "assignedTo",
                       "classification", "determination", "resolvedDateTime", "feedback",
                       "@odata.context", "@odata.etag"})
MARKER = "[mde-enrich {digest}]"
_POSITION_KEY = "pull-position"
# Graph may show an alert a little after the time it stamps it with (ingestion lag): each
# pull also asks for this much before its position; what is already done there is skipped.
LATE_ARRIVAL_S = 600


@dataclass(frozen=True)
class PullSpec:
    """What a scheduled run pulls: alerts (alerts_v2) or incidents with their alerts."""

    kind: Kind = "alerts"
    service_sources: tuple[str, ...] = ()
    severities: tuple[str, ...] = ()
    statuses: tuple[str, ...] = ()
    first_since: str = ""  # the first run's start (a Graph timestamp)
    write_back: bool = False

    @classmethod
    def from_options(cls, kind: Kind, *, service_sources: Sequence[str] = (),
                     severities: Sequence[str] = (), statuses: Sequence[str] = (),
                     since: str = "24h", write_back: bool = False) -> PullSpec:
        """From the command line's words: each filter one of Graph's names (any case, also
        comma-separated), `since` an age (24h, 7d, 90m) or a time; InvalidInput otherwise."""
        return cls(kind, choices("--service-source", service_sources, SERVICE_SOURCES),
                   choices("--severity", severities, SEVERITIES),
                   choices("--status", statuses, STATUSES), first_since(since), write_back)

    @property
    def source(self) -> str:
        """Names the pull in the batch's identity: another filter is another batch."""
        return "graph:" + json.dumps([self.kind, self.service_sources, self.severities,
                                      self.statuses])


@dataclass(frozen=True)
class Position:
    time: str | None = None  # the lastUpdateDateTime every earlier item is finished up to
    ids: frozenset[str] = frozenset()  # items finished at exactly `time`

    @classmethod
    def load(cls, store: StateStore, namespace: str) -> Position:
        text = store.get(namespace, _POSITION_KEY)
        if not text:
            return cls()
        data = json.loads(text)
        return cls(data.get("time"), frozenset(data.get("ids") or ()))

    def save(self, store: StateStore, namespace: str) -> None:
        store.put(namespace, _POSITION_KEY,
                  json.dumps({"time": self.time, "ids": sorted(self.ids)}), ttl_s=STATE_TTL_S)


@dataclass(frozen=True)
class Pulled:
    """One pulled alert or incident, as the batch sees it."""

    item: BatchItem
    id: str
    time: str
    record: dict[str, Any]


def first_since(text: str) -> str:
    """--since as a Graph timestamp: an age (24h, 7d, 90m) back from now, or a time."""
    match = re.fullmatch(r"(\d+)([mhd])", text.strip())
    if match:
        amount, unit = int(match.group(1)), match.group(2)
        delta = dt.timedelta(**{{"m": "minutes", "h": "hours", "d": "days"}[unit]: amount})
        moment = dt.datetime.now(dt.timezone.utc) - delta
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond:06d}0Z"
    key = time_key(text.strip())
    if key is None:
        raise InvalidInput(f"--since {text!r}: an age (24h, 7d) or a time "
                           "(2025-06-01T00:00:00Z)")
    return key


def work_digest(record: dict[str, Any]) -> str:
    """The digest of what the enrichment reads: the record without its volatile fields (and
    an incident's alerts likewise)."""
    def stable(value: dict[str, Any]) -> dict[str, Any]:
        kept = {k: v for k, v in value.items() if k not in _VOLATILE}
        if isinstance(kept.get("alerts"), list):
            kept["alerts"] = [stable(a) if isinstance(a, dict) else a for a in kept["alerts"]]
        return kept

    text = json.dumps(stable(record), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def pull(client: SecurityClient, spec: PullSpec, position: Position) -> list[Pulled]:
    """The items updated since the position (and LATE_ARRIVAL_S before it), oldest first,
    minus those finished at exactly the position."""
    since = position.time or spec.first_since or None
    records = client.list(spec.kind, build_filter(
        spec.kind, since=_earlier(since, LATE_ARRIVAL_S) if position.time else since,
        service_sources=spec.service_sources,
        severities=spec.severities, statuses=spec.statuses))
    found: dict[str, Pulled] = {}
    for record in records:
        item_id, moment = record.get("id"), time_key(record.get("lastUpdateDateTime"))
        if not isinstance(item_id, str) or not item_id or moment is None:
            continue  # nothing to name it or place it by: Graph does not send such items
        if spec.kind == "incidents" and spec.service_sources:
            record = _only_sources(record, spec.service_sources)
            if not record["alerts"]:
                continue
        if moment == position.time and item_id in position.ids:
            continue
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", item_id)[:120]
        item = BatchItem(f"{spec.kind[:-1]}-{safe}.json", f"Graph {spec.kind[:-1]} {item_id}",
                         record, digest=work_digest(record))
        found[item_id] = Pulled(item, item_id, moment, record)  # a repeat across pages: once
    return sorted(found.values(), key=lambda pulled: (pulled.time, pulled.id))


def _only_sources(incident: dict[str, Any], sources: Sequence[str]) -> dict[str, Any]:
    alerts = incident.get("alerts")
    return {**incident, "alerts": [a for a in alerts or [] if isinstance(a, dict)
                                   and a.get("serviceSource") in sources]}


def finished(outcome: Outcome | Left | None) -> bool:
    """Done for good: enriched completely (now or by an earlier run: None), or quarantined."""
    return outcome is None or isinstance(outcome, Quarantined) or \
        (isinstance(outcome, Enriched) and outcome.complete)


def advance(position: Position, pulled: Sequence[Pulled],
            done: set[str]) -> Position:
    """The position after a run: past the leading finished items (ids in `done`), oldest
    first; back to an unfinished late arrival older than the position, to be asked again."""
    unfinished = [entry.time for entry in pulled if entry.id not in done]
    stop = min(unfinished) if unfinished else None
    time, ids = position.time, set(position.ids)
    for entry in pulled:  # oldest first
        if stop is not None and entry.time >= stop:
            break
        if time is not None and entry.time < time:
            continue  # a late arrival behind the position, now done
        if entry.time != time:
            time, ids = entry.time, set()
        ids.add(entry.id)
    if stop is not None and time is not None and stop < time:
        time, ids = stop, set()
    return Position(time, frozenset(ids))


def _earlier(stamp: str | None, seconds: float) -> str | None:
    if stamp is None:
        return None
    moment = dt.datetime.fromisoformat(stamp[:19] + "+00:00") - dt.timedelta(seconds=seconds)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + stamp[20:]


@dataclass
class WriteBack:
    """Comments each enriched item once; `warn` hears what could not be written."""

    client: SecurityClient
    kind: Kind
    store: StateStore
    namespace: str
    out_dir: Path
    warn: Callable[[str], None]
    written: int = 0
    disabled: str = ""  # why write-back stopped for this run (a missing permission)
    problems: list[str] = field(default_factory=list)

    def __call__(self, pulled: Pulled, outcome: Outcome | Left | None) -> None:
        """After the item's output is durable: comment once, if it was enriched."""
        complete = isinstance(outcome, Enriched) and outcome.complete
        if not (complete or outcome is None) or self.disabled:
            return
        document = outcome.result.document if isinstance(outcome, Enriched) else None
        digest = (pulled.item.digest or "")[:16]
        marker = MARKER.format(digest=digest)
        comments = pulled.record.get("comments")
        if any(isinstance(c, dict) and marker in str(c.get("comment", ""))
               for c in comments or []):
            return
        key = f"commented:{pulled.id}"
        if self.store.get(self.namespace, key) == digest:
            return
        if document is None:  # done by an earlier run that could not comment
            try:
                document = json.loads((self.out_dir / pulled.item.name).read_text("utf-8"))
            except (OSError, ValueError):
                return
        enrichment = document.get("enrichment") if isinstance(document, dict) else None
        try:
            self.client.comment(self.kind, pulled.id,
                                comment_text(enrichment or {}, marker))
        except PermissionDenied as error:
            self.disabled = error.message
            self.warn(f"write-back is off for this run: {error.message}")
            return
        except PluginError as error:
            self.problems.append(f"{pulled.id}: {error.code}: {error.message}")
            self.warn(f"no comment on {self.kind[:-1]} {pulled.id}: {error.code}: "
                      f"{error.message}")
            return
        self.store.put(self.namespace, key, digest, ttl_s=STATE_TTL_S)
        self.written += 1


def comment_text(enrichment: dict[str, Any], marker: str) -> str:
    """The comment: what Defender says about the alert's machines, in a few lines."""
    summary = enrichment.get("summary")
    summary = summary if isinstance(summary, dict) else {}
    count = summary.get("total_machines", 0)
    lines = [f"mde-enrich: {count} related machine{'s' if count != 1 else ''} in Defender"
             + (f", highest risk {summary['highest_risk']}" if summary.get("highest_risk")
                else "") + "."]
    machines = enrichment.get("machines")
    machines = machines if isinstance(machines, list) else []
    names = [str(m.get("hostname") or m.get("name") or m.get("uid")) for m in machines[:10]
             if isinstance(m, dict)]
    if names:
        more = f" and {len(machines) - len(names)} more" if len(machines) > len(names) else ""
        lines.append("Machines: " + ", ".join(names) + more + ".")
    severity = enrichment.get("recommended_severity")
    if isinstance(severity, dict):
        lines.append(f"Recommended severity: {severity.get('severity')} "
                     f"({severity.get('reason')}).")
    indicators = enrichment.get("indicators")
    if isinstance(indicators, list):
        lines.append(f"Indicators looked up: {len(indicators)}.")
    lines.append(marker)
    return "\n".join(lines)
