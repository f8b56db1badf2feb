"""One sweep: which machines touched any indicator of these feeds, and what changed since
the last sweep, at a small fraction of one call per indicator.

1. Every source is read first (a source that cannot be read stops the sweep before any
   request). An indicator named twice, or by two feeds, is one indicator: it costs once.
2. Advanced hunting, one Graph query per MAX_PER_QUERY indicators of a kind (domains in
   network and DNS events, hashes in file, process and image-load events), in hunting's own
   rate-budget bucket. Without the hunting permission every indicator gets an entity lookup
   instead, and the report says so.
3. Entity lookups (the Enricher, batch lane) only for the indicators hunting saw, so the
   machine artifacts are the machines API's; an MD5 or SHA-256 is looked up by the SHA-1
   hunting saw beside it (Defender's file API refuses MD5).
4. Each indicator's machines are compared with what the state holds for each feed naming
   it: `new_machines`, and `gone` (held before, not seen within the lookback now).

Durable like the batch: the plan, every hunting chunk's answer and every lookup's envelope
are kept in a run record in the state store as they arrive; a run killed at any moment is
finished by the next one over the same feeds, asking nothing twice. The report is kept too,
then the state is updated, then the record dropped: a kill in between repeats only the
(idempotent) update.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from integration.errors import EXIT_OK, InvalidInput, PermissionDenied
from integration.state.lease import Lease
from integration.sweep.feed import FeedIndicator, FeedRead
from integration.sweep.state import FeedState, RunRecord, run_id
from integration.values.envelope import Envelope
from integration.values.indicators import Indicator

if TYPE_CHECKING:
    from integration.defender.hunting import Contact
    from integration.lookup.service import Enricher
    from integration.values.principal import Principal

DEFAULT_LOOKBACK = "P30D"
MAX_LOOKBACK_S = 365 * 86400
_DURATION = re.compile(r"P(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?")
EXIT_NEW_MACHINES = 1  # --fail-on-new: new machines are what cron should alert on


def lookback_seconds(text: str) -> int:
    """An ISO 8601 duration (P30D, P2W, PT12H, P1DT6H) in seconds; InvalidInput otherwise."""
    match = _DURATION.fullmatch(text.strip().upper()) if isinstance(text, str) else None
    if match is None or not any(match.groups()) or text.strip().upper().endswith("T"):
        raise InvalidInput(f"--lookback {text!r}: expected an ISO 8601 duration such as "
                           "P30D, P2W or PT12H")
    weeks, days, hours, minutes, seconds = (int(part or 0) for part in match.groups())
    total = (((weeks * 7 + days) * 24 + hours) * 60 + minutes) * 60 + seconds
    if not 60 <= total <= MAX_LOOKBACK_S:
        raise InvalidInput(f"--lookback {text!r}: must be between one minute and 365 days")
    return total


def graph_timespan(seconds: int) -> str:
    """A lookback as Graph's `Timespan`: ISO 8601 in days, hours, minutes and seconds only
    (xs:duration, which .NET parses, has no weeks: P2W goes out as P14D)."""
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    clock = "".join(f"{n}{unit}" for n, unit in ((hours, "H"), (minutes, "M"), (secs, "S"))
                    if n)
    return "P" + (f"{days}D" if days else "") + (f"T{clock}" if clock else "")


@dataclass
class _Plan:
    feeds: list[FeedRead]
    started_ms: int
    # distinct indicators in first-seen order: key -> (indicator, the feeds' entries)
    distinct: dict[str, tuple[Indicator, list[FeedIndicator]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for feed in self.feeds:
            for entry in feed.indicators:
                found = self.distinct.setdefault(entry.key, (entry.indicator, []))
                found[1].append(entry)

    def to_dict(self) -> dict[str, Any]:
        return {"feeds": [f.to_dict() for f in self.feeds], "started_ms": self.started_ms}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> _Plan:
        return cls([FeedRead.from_dict(f) for f in data["feeds"]], data["started_ms"])


class Sweep:
    def __init__(self, enricher: Enricher, sources: list[str], *,
                 lookback: str = DEFAULT_LOOKBACK,
                 report: Callable[[str], None] = lambda message: None) -> None:
        from integration.sweep.sources import feed_id

        if not sources:
            raise InvalidInput("give at least one SOURCE (a STIX bundle, TAXII collection "
                               "URL, MISP event or feed folder, CSV or text file)")
        # One feed under two spellings (`a.json`, `./a.json`; a collection URL with and
        # without its last `/`) is read, fetched and reported once.
        by_feed: dict[str, str] = {}
        for source in sources:
            by_feed.setdefault(feed_id(source), source)
        self.enricher, self.sources = enricher, list(by_feed.values())
        self.lookback, self.lookback_s = lookback.strip().upper(), lookback_seconds(lookback)
        self.feeds = list(by_feed)
        self.settings = enricher.settings
        self.store = enricher.store
        self.say = report
        self._principal: Principal | None = None

    @property
    def principal(self) -> Principal:
        """Whom the sweep runs as, from a token valid now (a credential that no longer signs
        in is auth_failed here, before any answer kept for it is used)."""
        if self._principal is None:
            self._principal = self.enricher.principal()
        return self._principal

    @property
    def id(self) -> str:
        return run_id(self.settings, self.principal.key, self.feeds, self.lookback)

    def run(self) -> dict[str, Any]:
        """The report (see README); a PluginError when the sweep could not finish (its
        progress is kept: run it again)."""
        # Local feeds first: one that cannot be read stops the sweep before any request.
        local = self._read_local()
        with Lease(self.store, f"sweep:{self.id}", "another sweep of these feeds"):
            record = RunRecord(self.store, self.id)
            outcome = record.get("outcome")
            if outcome is None:
                saved = record.get("plan")
                plan = _Plan.from_dict(saved) if saved else self._read(record, local)
                outcome = self._sweep(plan, record, resumed=saved is not None)
                record.put("outcome", outcome)
            self._commit(outcome["commit"])
            record.clear()
            return dict(outcome["report"])

    # -- 1. the feeds ---------------------------------------------------------------------

    def _read_local(self) -> dict[str, FeedRead]:
        from integration.sweep.sources import feed_id, read_source
        from integration.sweep.taxii import check_collection_url, is_collection_url

        now_ms = time.time_ns() // 1_000_000
        for source in filter(is_collection_url, self.sources):
            check_collection_url(feed_id(source))  # a URL that cannot be one: nothing sent
        suffixes = self.settings.internal_domain_suffixes
        return {source: read_source(source, lambda feed: None, now_ms=now_ms,
                                    internal_suffixes=suffixes)
                for source in self.sources if not is_collection_url(source)}

    def _read(self, record: RunRecord, local: dict[str, FeedRead]) -> _Plan:
        """The feeds as this run sweeps them (TAXII collections fetched now), kept."""
        from integration.sweep.sources import read_source

        now_ms = time.time_ns() // 1_000_000
        verify: str | bool = self.settings.ca_bundle or True
        feeds = [local.get(source) or read_source(
                     source, lambda feed: self._state(feed).carry(), now_ms=now_ms,
                     verify=verify, proxy=self.settings.proxy,
                     timeout_s=self.settings.timeout_s,
                     internal_suffixes=self.settings.internal_domain_suffixes)
                 for source in self.sources]
        plan = _Plan(feeds, now_ms)
        record.put("plan", plan.to_dict())
        return plan

    def _state(self, feed: str) -> FeedState:
        return FeedState(self.store, self.settings, self.principal.key, feed)

    # -- 2.-4. hunting, lookups, changes --------------------------------------------------

    def _sweep(self, plan: _Plan, record: RunRecord, *, resumed: bool) -> dict[str, Any]:
        indicators = [indicator for indicator, _ in plan.distinct.values()]
        # A scheduled sweep of a feed that names nothing (a vendor's changed export, a CSV
        # with its header only) would report "nothing touched" for ever: say so.
        warnings = [f"{feed.feed}: the feed names no indicator (nothing read, nothing "
                    "skipped): check its format" for feed in plan.feeds
                    if not feed.indicators and not feed.skipped]
        hunted = self._hunt(indicators, record, warnings)
        if hunted is None:  # no hunting: every indicator is looked up
            targets = {f"{i.type}:{i.value}": i for i in indicators}
            contacts: dict[str, list[Contact]] = {}
        else:
            contacts, sha1s, _ = hunted
            targets = {}
            for indicator in indicators:
                key = f"{indicator.type}:{indicator.value}"
                if key in contacts:
                    sha1 = indicator.value if indicator.type in ("domain", "sha1") \
                        else sha1s.get(key)
                    targets[key] = indicator if sha1 is None else \
                        indicator._replace(type="domain" if indicator.type == "domain"
                                           else "sha1", value=sha1)
        envelopes = self._lookups(targets, record)
        return self._outcome(plan, hunted is not None, contacts, envelopes, warnings,
                             resumed=resumed, hunting_calls=hunted[2] if hunted else 0)

    def _hunt(self, indicators: list[Indicator], record: RunRecord, warnings: list[str]
              ) -> tuple[dict[str, list[Contact]], dict[str, str], int] | None:
        """Contacts and SHA-1s per indicator key, and the hunting calls, chunk by chunk (each
        chunk's answer kept as it arrives); None without the hunting permission."""
        from integration.defender.hunting import MAX_PER_QUERY, Contact

        if self.principal.is_user:
            # Advanced hunting answers as the application: its rows would name machines of
            # device groups this user may not see. The machines API answers as the user.
            warnings.append(f"advanced hunting not used: it runs as the application and "
                            f"would show machines outside the device groups of "
                            f"{self.principal.name or self.principal.id}; every indicator "
                            "was looked up through the machines API instead")
            return None
        denied = record.get("hunting-denied")
        if denied:
            warnings.append(denied)
            return None
        contacts: dict[str, list[Contact]] = {}
        sha1s: dict[str, str] = {}
        calls = 0
        for kind in ("domain", "file"):
            chosen = sorted((i for i in indicators if (i.type == "domain") == (kind == "domain")),
                            key=lambda i: (i.type, i.value))
            for number, start in enumerate(range(0, len(chosen), MAX_PER_QUERY)):
                chunk = chosen[start:start + MAX_PER_QUERY]
                key = f"hunt:{kind}:{number}"
                kept = record.get(key)
                if kept is None:
                    try:
                        found = self.enricher.hunting.sightings(
                            kind, chunk, lookback_s=self.lookback_s,
                            timespan=graph_timespan(self.lookback_s),
                            lane="batch")
                    except PermissionDenied as error:
                        message = (f"advanced hunting unavailable ({error.message}); every "
                                   "indicator was looked up through the machines API instead")
                        record.put("hunting-denied", message)
                        warnings.append(message)
                        self.say(f"warning: {message}")
                        return None
                    kept = {"contacts": {k: [list(c) for c in v]
                                         for k, v in found.contacts.items()},
                            "sha1s": found.sha1s, "calls": found.calls}
                    record.put(key, kept)
                calls += kept["calls"]
                prefix = "domain" if kind == "domain" else None
                for value, found_contacts in kept["contacts"].items():
                    indicator_key = _key_of(value, chunk, prefix)
                    contacts[indicator_key] = [Contact(*c) for c in found_contacts]
                for value, sha1 in kept["sha1s"].items():
                    sha1s[_key_of(value, chunk, prefix)] = sha1
        return contacts, sha1s, calls

    def _lookups(self, targets: dict[str, Indicator],
                 record: RunRecord) -> dict[str, Envelope]:
        """The machines API's envelope per indicator key; each kept as it arrives, so a
        resumed run asks only what the killed one had not."""
        from concurrent.futures import ThreadPoolExecutor, as_completed

        envelopes: dict[str, Envelope] = {}
        todo: list[tuple[str, Indicator]] = []
        for key, target in targets.items():
            kept = record.get(f"entity:{key}")
            if kept is not None:
                envelopes[key] = Envelope.from_dict(kept)
            else:
                todo.append((key, target))
        if not todo:
            return envelopes
        workers = max(1, min(self.settings.max_concurrency, len(todo)))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sweep") as pool:
            asked = {pool.submit(self.enricher.lookup,
                                 "domain" if target.type == "domain" else "file",
                                 target.value, priority="batch"): key for key, target in todo}
            for done in as_completed(asked):  # each kept the moment it arrives
                key, envelope = asked[done], done.result()
                envelopes[key] = envelope
                if envelope.status != "error":
                    record.put(f"entity:{key}", envelope.to_dict())  # the run's storage
        return envelopes

    def _outcome(self, plan: _Plan, hunted: bool, contacts: dict[str, list[Contact]],
                 envelopes: dict[str, Envelope], warnings: list[str], *,
                 resumed: bool, hunting_calls: int) -> dict[str, Any]:
        from integration.lookup.contact import merge_contacts

        portal = self.settings.endpoints.portal_base
        states = {feed.feed: self._state(feed.feed) for feed in plan.feeds}
        hits: list[dict[str, Any]] = []
        gone: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        commit: list[dict[str, Any]] = []
        for key, (indicator, entries) in plan.distinct.items():
            envelope = envelopes.get(key)
            if envelope is not None and envelope.error is not None:
                errors.append({"indicator": indicator.to_dict(),
                               "error": envelope.error.to_dict()})
                continue  # its state stays as it was: the next sweep asks again
            machines = merge_contacts(envelope.machines if envelope else [],
                                      contacts.get(key, []), portal)
            seen = sorted({c.device_id for c in contacts.get(key, [])} if hunted else
                          {str(m["uid"]).lower() for m in machines if m.get("uid")})
            new: set[str] = set()
            lost: set[str] = set()
            for feed in dict.fromkeys(entry.feed for entry in entries):
                before = states[feed].machines(key)
                new |= set(seen) - before
                lost |= before - set(seen)
                if before != set(seen):
                    commit.append({"feed": feed, "key": key, "machines": seen})
            described = _described(indicator, entries, envelope)
            if machines:
                hits.append({"indicator": described, "machines": machines,
                             "new_machines": sorted(new)})
            if lost:
                gone.append({"indicator": described, "machines": sorted(lost)})
        skipped = [s.to_dict() for feed in plan.feeds for s in feed.skipped]
        report = {
            "iocs": len(plan.distinct),
            "lookback": self.lookback,
            "principal": self.principal.to_dict(),
            "feeds": [{"feed": f.feed, "indicators": len(f.indicators),
                       "skipped": len(f.skipped),
                       **({"fetched": f.carry.get("fetched", 0)} if f.carry else {})}
                      for f in plan.feeds],
            "skipped": skipped,
            "hits": hits,
            "gone": gone,
            "errors": errors,
            "warnings": warnings,
            "summary": {
                "api_calls": sum(e.summary.api_calls for e in envelopes.values()),
                "hunting_calls": hunting_calls,
                "hits": len(hits),
                "new_machines": len({uid for hit in hits for uid in hit["new_machines"]}),
                "gone_machines": len({uid for entry in gone for uid in entry["machines"]}),
                "skipped": len(skipped),
                "errors": len(errors),
                "hunting": hunted,
                "resumed": resumed,
                "started_time": plan.started_ms,
            },
        }
        carries = [{"feed": f.feed, "carry": f.carry} for f in plan.feeds if f.carry]
        return {"report": report, "commit": {"machines": commit, "carries": carries}}

    def _commit(self, commit: dict[str, Any]) -> None:
        """The new state, once the report is kept: idempotent, so a kill here is harmless."""
        for change in commit["machines"]:
            self._state(change["feed"]).save(change["key"], change["machines"])
        for entry in commit["carries"]:
            carry = {k: v for k, v in entry["carry"].items() if k != "fetched"}
            self._state(entry["feed"]).save_carry(carry)


def exit_status(report: dict[str, Any], *, fail_on_new: bool) -> int:
    """0 when the sweep ran (new hits are data); the error's status when some lookups failed;
    with `fail_on_new`, 1 when there are new machines (and nothing failed)."""
    from integration.errors import EXIT_STATUS_BY_CODE, EXIT_UPSTREAM

    status = max((EXIT_STATUS_BY_CODE.get(e["error"]["code"], EXIT_UPSTREAM)
                  for e in report["errors"]), default=EXIT_OK)
    if status == EXIT_OK and fail_on_new and report["summary"]["new_machines"]:
        return EXIT_NEW_MACHINES
    return status


def _key_of(value: str, chunk: list[Indicator], prefix: str | None) -> str:
    if prefix:
        return f"{prefix}:{value}"
    kind = next((i.type for i in chunk if i.value == value), "sha1")
    return f"{kind}:{value}"


def _described(indicator: Indicator, entries: list[FeedIndicator],
               envelope: Envelope | None) -> dict[str, Any]:
    described: dict[str, Any] = indicator.to_dict()
    said = (envelope.indicator if envelope else None) or {}
    sha1 = said.get("sha1") or (said.get("value") if indicator.type in ("sha256", "md5")
                                else None)
    if sha1 and sha1 != indicator.value:
        described["sha1"] = sha1
    described["sources"] = [{"feed": e.feed, **({"ref": e.ref} if e.ref else {}),
                             **({"name": e.name} if e.name else {})} for e in entries]
    return described
