"""STIX 2.1 objects (a bundle file, or a TAXII collection's objects) as sweep indicators.

* `indicator` objects: the pattern read by OASIS's grammar (lookup/stix_patterns.py);
  revoked ones and those past `valid_until` are skipped with that reason, as are patterns in
  another language (`pattern_type: sigma`, `yara`, ...);
* `domain-name`, `url` and `file` cyber-observables, at the top of a bundle or inside an
  `observed-data` object's `objects` (STIX 2.0 style);
* several versions of one object: the latest `modified` wins (a later revocation too).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from integration.errors import PluginError
from integration.lookup.stix_patterns import (
    PatternIndicators,
    indicator_from_observable,
    indicators_from_pattern,
)
from integration.sweep.feed import FeedIndicator, FeedRead, Skipped

OBSERVABLE_TYPES = frozenset({"domain-name", "url", "file"})


def is_bundle(document: Any) -> bool:
    return isinstance(document, dict) and document.get("type") == "bundle"


def latest_versions(objects: Iterable[Any]) -> dict[str, dict[str, Any]]:
    """Each object id's latest version (by `modified`, the spec's version order)."""
    latest: dict[str, dict[str, Any]] = {}
    for obj in objects:
        if not isinstance(obj, dict) or not isinstance(obj.get("id"), str):
            continue
        kept = latest.get(obj["id"])
        if kept is None or _moment(obj.get("modified")) >= _moment(kept.get("modified")):
            latest[obj["id"]] = obj
    return latest


def read_objects(objects: Iterable[Any], feed: str, *, now_ms: int) -> FeedRead:
    """The indicators and skips of STIX objects (any order, any versions)."""
    read = FeedRead(feed)
    for obj in latest_versions(objects).values():
        read_object(obj, read, now_ms=now_ms)
    return read


def read_object(obj: dict[str, Any], read: FeedRead, *, now_ms: int) -> None:
    object_id, object_type = obj["id"], obj.get("type")
    if object_type == "indicator":
        _indicator(obj, read, now_ms)
    elif object_type in OBSERVABLE_TYPES:
        _add(read, object_id, obj.get("name"), indicator_from_observable(obj))
    elif object_type == "observed-data" and isinstance(obj.get("objects"), dict):
        # What Defender cannot answer (an address, a process) is said, as in a pattern.
        for observable in obj["objects"].values():
            if isinstance(observable, dict) and isinstance(observable.get("type"), str):
                _add(read, object_id, None, indicator_from_observable(observable))
    # Everything else (identities, reports, relationships, malware...) names no observable.


def _indicator(obj: dict[str, Any], read: FeedRead, now_ms: int) -> None:
    object_id, name = obj["id"], obj.get("name")
    what = f"indicator {name!r}" if isinstance(name, str) else "indicator"
    if obj.get("revoked") is True:
        read.skipped.append(Skipped(read.feed, object_id, what, "revoked",
                                    f"{what} is revoked by its producer"))
        return
    valid_until = obj.get("valid_until")
    if 0 < _moment(valid_until) <= now_ms:  # an unreadable time expires nothing
        read.skipped.append(Skipped(read.feed, object_id, what, "expired",
                                    f"{what} was valid until {valid_until}"))
        return
    pattern_type = obj.get("pattern_type", "stix")  # STIX 2.0 has only STIX patterns
    if pattern_type != "stix":
        read.skipped.append(Skipped(read.feed, object_id, what, "unsupported_pattern_type",
                                    f"{what} has a {pattern_type} pattern; only STIX patterns "
                                    "name values to look up"))
        return
    try:
        found = indicators_from_pattern(obj.get("pattern", ""))
    except PluginError as error:
        read.skipped.append(Skipped(read.feed, object_id, what, "invalid_value",
                                    f"{what}: {error.message}"))
        return
    _add(read, object_id, name if isinstance(name, str) else None, found)


def _add(read: FeedRead, ref: str, name: str | None, found: PatternIndicators) -> None:
    read.indicators += [FeedIndicator(indicator, read.feed, ref, name)
                        for indicator in found.indicators]
    read.skipped += [Skipped(read.feed, ref, skip.what, skip.reason, skip.message)
                     for skip in found.skipped]


def _moment(value: Any) -> int:
    """A STIX timestamp as epoch ms (0 when missing or unreadable: the oldest)."""
    from integration.values.times import parse_time

    parsed = parse_time(value)
    return parsed[0] if parsed else 0
