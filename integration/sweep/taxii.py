"""A TAXII 2.1 collection as a sweep feed, through OASIS's client (`taxii2-client`).

A sweep asks only for what was added since the last one (`added_after`, paged): the
collection's objects seen before are kept in the state store (the feed's `carry`) and merged
with the new ones by version, so a later revocation or a new `valid_until` takes effect and
every live indicator is swept each time, not only the new ones.

The position is the newest `date_added` of the collection's manifest (TAXII 2.1 puts it in
the manifest, not in the objects), read before the objects: an object added in between is
fetched again next time, never missed. Credentials come from MDE_TAXII_USER and
MDE_TAXII_PASSWORD (never from the command line, where `ps` shows them).
"""

from __future__ import annotations

import os
from typing import Any

from integration.errors import (
    AuthFailed,
    InvalidInput,
    NetworkError,
    PluginError,
    Timeout,
    UpstreamError,
)
from integration.sweep.feed import FeedRead
from integration.sweep.stix import OBSERVABLE_TYPES, latest_versions, read_objects

PAGE_SIZE = 500
MAX_PAGES = 10_000  # 5,000,000 objects: a server saying `more` forever cannot hold a sweep
USER_VARIABLE, PASSWORD_VARIABLE = "MDE_TAXII_USER", "MDE_TAXII_PASSWORD"
# The objects worth keeping between sweeps: what names something to look up.
_KEPT_TYPES = OBSERVABLE_TYPES | {"indicator", "observed-data"}


def is_collection_url(source: str) -> bool:
    return source.startswith(("https://", "http://"))


def read_collection(url: str, carry: dict[str, Any] | None, *, now_ms: int,
                    verify: str | bool = True, proxy: str | None = None,
                    timeout_s: float = 30.0) -> FeedRead:
    """The collection's live indicators: those kept from earlier sweeps and those added since.
    The returned `carry` is the new position and objects, for the state once the sweep ends."""
    collection = _collection(url, verify, proxy, timeout_s)
    known = dict((carry or {}).get("objects") or {})
    since = (carry or {}).get("added_after")
    try:
        newest = _newest_date_added(collection, since)
        fetched = [obj for page in _pages(collection.get_objects, since)
                   for obj in page.get("objects") or []]
    except PluginError as error:
        raise UpstreamError(f"TAXII collection {url}: {error.message}",
                            retryable=error.retryable) from None
    except Exception as exc:  # the client raises requests' errors and its own
        raise _feed_error(url, exc) from None
    objects = latest_versions([*known.values(), *fetched])
    kept = {object_id: obj for object_id, obj in objects.items()
            if obj.get("type") in _KEPT_TYPES}
    read = read_objects(kept.values(), url, now_ms=now_ms)
    read.carry = {"added_after": newest or since, "objects": kept,
                  "fetched": len(fetched)}
    return read


def check_collection_url(url: str) -> None:
    """InvalidInput unless `url` can be a TAXII 2.1 collection: checked before any request."""
    if not url.startswith("https://"):
        # TAXII 2.1 requires HTTPS; over http:// the basic-auth password would travel in clear
        raise InvalidInput(f"{url}: a TAXII 2.1 collection is served over HTTPS only "
                           "(https://host/api-root/collections/ID/)")
    if "/collections/" not in url:
        raise InvalidInput(f"{url}: a TAXII 2.1 source is a collection URL "
                           "(https://host/api-root/collections/ID/)")


def _collection(url: str, verify: str | bool, proxy: str | None, timeout_s: float) -> Any:
    import functools

    from taxii2client.common import _HTTPConnection
    from taxii2client.v21 import Collection

    if not url.endswith("/"):
        url += "/"
    check_collection_url(url)
    user, password = os.environ.get(USER_VARIABLE), os.environ.get(PASSWORD_VARIABLE)
    connection = _HTTPConnection(user=user, password=password, verify=verify,
                                 proxies={"https": proxy, "http": proxy} if proxy else None,
                                 version="2.1")
    # A configured CA bundle must win over REQUESTS_CA_BUNDLE, as for every other request.
    connection.session.trust_env = False
    # taxii2-client sets no timeout: a server that never answers would hold the sweep (and
    # its lease) for ever. Each request gets the configured timeout_s, as every other does.
    connection.session.request = functools.partial(
        connection.session.request, timeout=timeout_s)
    return Collection(url, conn=connection)


def _newest_date_added(collection: Any, since: str | None) -> str | None:
    newest = since
    for page in _pages(collection.get_manifest, since):
        for entry in page.get("objects") or []:
            added = entry.get("date_added") if isinstance(entry, dict) else None
            if isinstance(added, str) and (newest is None or _later(added, newest)):
                newest = added
    return newest


def _pages(method: Any, since: str | None) -> Any:
    """The pages of one paged endpoint. taxii2-client follows `more` for as long as the
    server says it: a page that says `more` but brings nothing new (no objects, or a `next`
    already followed), or more than MAX_PAGES of them, ends the read as an upstream error."""
    from taxii2client.v21 import as_pages

    filters = {"added_after": since} if since else {}
    followed: set[Any] = set()
    for number, page in enumerate(as_pages(method, per_request=PAGE_SIZE, **filters), 1):
        yield page
        if not page.get("more"):
            return
        token = page.get("next")
        if not page.get("objects") or token in followed or number >= MAX_PAGES:
            raise UpstreamError(f"the server says there is more after page {number} but "
                                "the next page would bring nothing new (no objects, a "
                                "`next` already followed, or over "
                                f"{MAX_PAGES} pages): stopped", retryable=True)
        followed.add(token)


def _later(one: str, other: str) -> bool:
    from integration.values.times import parse_time

    a, b = parse_time(one), parse_time(other)
    if a is None or b is None:
        return one > other
    # Same millisecond: the longer fraction (microseconds) decides, as text.
    return a[0] > b[0] or (a[0] == b[0] and one > other)


def _feed_error(url: str, exc: Exception) -> PluginError:
    status = getattr(getattr(exc, "response", None), "status_code", None)
    # requests' exception classes by name: requests is the transport module's alone.
    kinds = {cls.__name__ for cls in type(exc).__mro__}
    if status in (401, 403):
        return AuthFailed(f"TAXII collection {url} refused us ({status}): set "
                          f"{USER_VARIABLE} and {PASSWORD_VARIABLE}", status=status)
    if "Timeout" in kinds:
        return Timeout(f"TAXII collection {url} timed out (timeout_s)")
    if "SSLError" in kinds:
        return NetworkError(f"TAXII collection {url}: certificate verify failed "
                            "(config key ca_bundle names the CA to trust)", retryable=False)
    if "ConnectionError" in kinds:
        return NetworkError(f"TAXII collection {url} cannot be reached: "
                            f"{type(exc).__name__}", retryable=True)
    if status == 404:
        return InvalidInput(f"TAXII collection {url} does not exist (404)")
    return UpstreamError(f"TAXII collection {url} failed: {type(exc).__name__}: "
                         f"{str(exc)[:200]}", status=status, retryable=True)
