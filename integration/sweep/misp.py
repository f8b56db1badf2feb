"""MISP events (an event JSON, or a feed folder: `manifest.json` + `<uuid>.json` events) as
sweep indicators.

Attributes of the event and of its objects are read alike. `to_ids: false` means "context,
not for detection" in MISP: such an attribute is skipped as `not_to_ids`. Composite types
are split and the part Defender can answer kept (`filename|sha256` -> the SHA-256,
`domain|ip` -> the domain); deleted attributes are left out.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from integration.errors import InvalidInput, PluginError
from integration.sweep.feed import FeedIndicator, FeedRead, Skipped
from integration.values.indicators import parse_domain, parse_file_hash

DOMAIN_TYPES = frozenset({"domain", "hostname", "url", "uri"})
HASH_TYPES = frozenset({"md5", "sha1", "sha256"})
# Composite types: which part holds what Defender can answer.
COMPOSITE_PARTS = {"filename|md5": 1, "filename|sha1": 1, "filename|sha256": 1,
                   "malware-sample": 1, "domain|ip": 0, "hostname|port": 0}


def is_event(document: Any) -> bool:
    return isinstance(document, dict) and (
        isinstance(document.get("Event"), dict)
        or isinstance(document.get("response"), list))


def read_events(document: Any, feed: str, internal_suffixes: tuple[str, ...] = ()) -> FeedRead:
    """An event JSON as MISP exports it: `{"Event": {...}}`, or a search answer
    `{"response": [{"Event": {...}}, ...]}`."""
    read = FeedRead(feed, internal_suffixes=internal_suffixes)
    events = [document["Event"]] if isinstance(document.get("Event"), dict) else [
        item["Event"] for item in document.get("response", [])
        if isinstance(item, dict) and isinstance(item.get("Event"), dict)]
    for event in events:
        read_event(event, read)
    return read


def read_feed_folder(folder: Path, feed: str, internal_suffixes: tuple[str, ...] = ()
                     ) -> FeedRead:
    """A MISP feed: the events its manifest lists, each in `<uuid>.json` beside it."""
    manifest_path = folder / "manifest.json"
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"{manifest_path}: not a readable MISP feed manifest: {exc}") from None
    if not isinstance(manifest, dict):
        raise InvalidInput(f"{manifest_path}: a MISP feed manifest maps event uuids to events")
    read = FeedRead(feed, internal_suffixes=internal_suffixes)
    for uuid in sorted(manifest):
        path = folder / f"{uuid}.json"
        if "/" in uuid or "\\" in uuid or not path.is_file():
            read.skipped.append(Skipped(feed, uuid, f"event {uuid}", "invalid_value",
                                        f"{path.name}: listed in the manifest, not in the feed"))
            continue
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InvalidInput(f"{path}: not a readable MISP event: {exc}") from None
        if not isinstance(document, dict) or not isinstance(document.get("Event"), dict):
            raise InvalidInput(f"{path}: not a MISP event (no 'Event' object)")
        read_event(document["Event"], read)
    return read


def read_event(event: dict[str, Any], read: FeedRead) -> None:
    info = event.get("info") if isinstance(event.get("info"), str) else None
    attributes = list(_attributes(event.get("Attribute")))
    for obj in event.get("Object") or []:
        if isinstance(obj, dict):
            attributes += _attributes(obj.get("Attribute"))
    for attribute in attributes:
        _attribute(attribute, info, read)


def _attributes(value: Any) -> list[dict[str, Any]]:
    return [a for a in value if isinstance(a, dict)] if isinstance(value, list) else []


def _attribute(attribute: dict[str, Any], info: str | None, read: FeedRead) -> None:
    kind, value = str(attribute.get("type", "")), attribute.get("value")
    ref = attribute.get("uuid") if isinstance(attribute.get("uuid"), str) else None
    if _truthy(attribute.get("deleted")) or not isinstance(value, str):
        return
    what = f"{kind} {value[:80]!r}"
    base = kind if kind not in COMPOSITE_PARTS else None
    if base is None:
        parts = value.split("|")
        wanted = COMPOSITE_PARTS[kind]
        if len(parts) != 2:
            read.skipped.append(Skipped(read.feed, ref, what, "invalid_value",
                                        f"{what}: a {kind} value has two parts split by '|'"))
            return
        base = kind.split("|")[wanted] if "|" in kind else "md5"  # malware-sample: name|md5
        value = parts[wanted]
    if base not in DOMAIN_TYPES and base not in HASH_TYPES:
        read.skipped.append(Skipped(read.feed, ref, what, "unsupported_type",
                                    f"{what}: Defender's machines calls answer domains and "
                                    "file hashes only"))
        return
    if not _truthy(attribute.get("to_ids", True)):
        read.skipped.append(Skipped(read.feed, ref, what, "not_to_ids",
                                    f"{what}: to_ids is off (context, not for detection)"))
        return
    try:
        indicator = parse_domain(value, read.internal_suffixes) if base in DOMAIN_TYPES \
            else parse_file_hash(value)
    except PluginError as error:
        read.skipped.append(Skipped(read.feed, ref, what, "invalid_value",
                                    f"{what}: {error.message}"))
        return
    if base in HASH_TYPES and indicator.type != base:
        read.skipped.append(Skipped(read.feed, ref, what, "invalid_value",
                                    f"{what}: the value has the length of "
                                    f"{indicator.type.upper()}, not {base.upper()}"))
        return
    read.indicators.append(FeedIndicator(indicator, read.feed, ref, info))


def _truthy(value: Any) -> bool:
    """MISP writes booleans as true/false, "1"/"0" or "True"/"False", by version."""
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes")
    return bool(value)
