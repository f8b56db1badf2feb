"""SOURCE arguments of `mde-enrich sweep`: what each is, read into a `FeedRead`.

    https://host/api-root/collections/ID/   a TAXII 2.1 collection (only what is new is fetched)
    FOLDER with manifest.json                a MISP feed
    FILE.json                                a STIX 2.1 bundle, or a MISP event JSON
    any other FILE                           CSV or text, one indicator a line

A source that cannot be read is `InvalidInput` naming it, before any request is sent.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from integration.errors import InvalidInput
from integration.sweep import misp, stix, taxii, text
from integration.sweep.feed import FeedRead


def feed_id(source: str) -> str:
    """The feed's identity in the state: a collection's URL, a file's absolute path."""
    if taxii.is_collection_url(source):
        return source if source.endswith("/") else source + "/"
    return str(Path(source).expanduser().resolve())


def read_source(source: str, carry: Callable[[str], dict[str, Any] | None], *, now_ms: int,
                verify: str | bool = True, proxy: str | None = None,
                timeout_s: float = 30.0, internal_suffixes: tuple[str, ...] = ()) -> FeedRead:
    """One source's indicators; `carry(feed)` is what that feed kept from the last sweep;
    a name under one of `internal_suffixes` is a domain (MISP, CSV and text feeds)."""
    feed = feed_id(source)
    if taxii.is_collection_url(source):
        return taxii.read_collection(feed, carry(feed), now_ms=now_ms, verify=verify,
                                     proxy=proxy, timeout_s=timeout_s)
    path = Path(feed)
    if path.is_dir():
        if not (path / "manifest.json").is_file():
            raise InvalidInput(f"{source}: a folder source is a MISP feed, and this one has "
                               "no manifest.json")
        return misp.read_feed_folder(path, feed, internal_suffixes)
    try:
        content = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InvalidInput(f"{source}: no such file, folder or TAXII collection URL") from None
    except OSError as exc:
        raise InvalidInput(f"{source}: cannot be read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise InvalidInput(f"{source}: is not UTF-8 text") from None
    document = _json(content, source)
    if stix.is_bundle(document):
        return stix.read_objects(document.get("objects") or [], feed, now_ms=now_ms)
    if misp.is_event(document):
        return misp.read_events(document, feed, internal_suffixes)
    if document is not None:
        raise InvalidInput(f"{source}: JSON, but neither a STIX 2.1 bundle "
                           "(\"type\": \"bundle\") nor a MISP event (\"Event\")")
    return text.read_text(content, feed, internal_suffixes)


def _json(content: str, source: str) -> Any:
    stripped = content.lstrip()
    if not stripped.startswith(("{", "[")):
        return None
    try:
        return json.loads(stripped)
    except ValueError as exc:
        raise InvalidInput(f"{source}: not valid JSON: {exc}") from None
