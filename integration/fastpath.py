"""The start-up fast path: what a fresh process (a SOAR platform starts one per action run)
does without importing the heavy libraries it would otherwise need.

msal's serialized token cache is read, and a refused token dropped from it, without
importing msal (~0.1 s of start-up): a process whose shared cache holds a valid token never
imports msal at all. msal owns this layout (sections of entries; an access token's
`client_id`, `realm`, `target`, `expires_on`, `secret`), so it is read and written here
only, and tests/test_fastpath.py round-trips it through msal's own SerializableTokenCache:
an msal release that changes the layout fails the suite, not a tenant.
"""

from __future__ import annotations

import json
import time
from typing import Any

# msal itself renews a token within five minutes of its expiry; so do we.
REFRESH_MARGIN_S = 300


def find_access_token(blob: str, *, client_id: str | None, tenant_id: str, scope: str,
                      now: float | None = None) -> tuple[str, float] | None:
    """A still-valid access token from msal's serialized cache, read without msal."""
    now = time.time() if now is None else now
    data = token_cache_data(blob)
    if data is None:
        return None
    wanted = scope.lower()
    for entry in data.get("AccessToken", {}).values():
        if entry.get("client_id") != client_id or entry.get("realm") != tenant_id:
            continue
        if not isinstance(entry.get("target"), str) or \
                wanted not in entry["target"].lower().split():
            continue
        try:
            expires_on = float(entry["expires_on"])
        except (KeyError, ValueError):
            continue
        if expires_on - now > REFRESH_MARGIN_S and isinstance(entry.get("secret"), str) \
                and entry["secret"]:
            return entry["secret"], expires_on
    return None


def drop_access_token(blob: str | None, token: str) -> str | None:
    """msal's serialized cache without `token` (one the API refused), or None when the cache
    does not hold it (nothing to write back)."""
    data = token_cache_data(blob)
    if data is None:
        return None
    entries = data.get("AccessToken", {})
    kept = {key: entry for key, entry in entries.items() if entry.get("secret") != token}
    if len(kept) == len(entries):
        return None
    data["AccessToken"] = kept
    return json.dumps(data)


def token_cache_data(blob: str | None) -> dict[str, Any] | None:
    """msal's serialized cache as stored, or None when there is none or the stored row is not
    one (corrupted, or written by something else): such a row is ignored, never a crash, and
    the next token fetched overwrites it. msal writes sections of entries whose fields are
    all strings (or null); anything else would fail inside msal."""
    if not blob:
        return None
    try:
        data = json.loads(blob)
    except (ValueError, RecursionError):
        return None
    if not isinstance(data, dict):
        return None
    for section in data.values():
        if not isinstance(section, dict):
            return None
        for entry in section.values():
            if not isinstance(entry, dict) or not all(
                    value is None or isinstance(value, str) for value in entry.values()):
                return None
    return data
