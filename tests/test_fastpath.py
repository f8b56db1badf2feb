"""The fast path reads and edits msal's serialized token cache without importing msal (a
cold action run stays cheap). msal owns that layout, so these tests round-trip through
msal's own SerializableTokenCache: a token msal wrote is found, and what we write msal
reads. An msal upgrade that changes the layout fails here, not in a tenant."""

from __future__ import annotations

import json
import time

import msal
import pytest

from integration.fastpath import drop_access_token, find_access_token

TENANT = "3ec7f4a2-5e3c-4da3-a4e2-00243972199d"
CLIENT = "eb246f8a-6ba4-4c84-9004-d08e9f51215d"
SCOPE = "https://api.securitycenter.microsoft.com/.default"
GRAPH_SCOPE = "https://graph.microsoft.com/.default"


def msal_cache(*tokens: tuple[str, str, int]) -> msal.SerializableTokenCache:
    """A cache as msal fills it after client-credential sign-ins: (token, scope, lifetime)."""
    cache = msal.SerializableTokenCache()
    for token, scope, lifetime in tokens:
        cache.add({"client_id": CLIENT, "scope": [scope], "grant_type": "client_credentials",
                   "token_endpoint": f"https://login.microsoftonline.com/{TENANT}/oauth2/v2.0/token",
                   "response": {"access_token": token, "expires_in": lifetime,
                                "token_type": "Bearer"}})
    return cache


def access_tokens(blob: str) -> set[str]:
    """The access tokens msal itself reads out of a serialized cache."""
    cache = msal.SerializableTokenCache()
    cache.deserialize(blob)
    return {entry["secret"] for entry in
            cache.search(msal.TokenCache.CredentialType.ACCESS_TOKEN)}


def test_a_token_msal_wrote_is_found_for_its_client_tenant_and_scope() -> None:
    blob = msal_cache(("defender-token", SCOPE, 3600), ("graph-token", GRAPH_SCOPE, 3600)
                      ).serialize()
    found = find_access_token(blob, client_id=CLIENT, tenant_id=TENANT, scope=SCOPE)
    assert found is not None and found[0] == "defender-token"
    assert time.time() + 3500 < found[1] <= time.time() + 3600
    assert find_access_token(blob, client_id=CLIENT, tenant_id=TENANT,
                             scope=GRAPH_SCOPE)[0] == "graph-token"  # type: ignore[index]


@pytest.mark.parametrize(("client_id", "tenant_id"), [
    ("another-client", TENANT), (CLIENT, "another-tenant")])
def test_a_token_msal_wrote_for_another_app_or_tenant_is_not_found(
        client_id: str, tenant_id: str) -> None:
    blob = msal_cache(("defender-token", SCOPE, 3600)).serialize()
    assert find_access_token(blob, client_id=client_id, tenant_id=tenant_id,
                             scope=SCOPE) is None


def test_a_token_msal_wrote_that_expires_within_the_refresh_margin_is_not_found() -> None:
    blob = msal_cache(("nearly-gone", SCOPE, 120)).serialize()
    assert find_access_token(blob, client_id=CLIENT, tenant_id=TENANT, scope=SCOPE) is None


def test_a_dropped_token_is_gone_for_msal_and_the_rest_of_its_cache_stays() -> None:
    blob = msal_cache(("refused-token", SCOPE, 3600), ("graph-token", GRAPH_SCOPE, 3600)
                      ).serialize()
    kept = drop_access_token(blob, "refused-token")
    assert kept is not None
    assert access_tokens(kept) == {"graph-token"}
    assert json.loads(kept).keys() == json.loads(blob).keys()  # msal's other sections kept


def test_dropping_a_token_the_cache_does_not_hold_changes_nothing() -> None:
    blob = msal_cache(("defender-token", SCOPE, 3600)).serialize()
    assert drop_access_token(blob, "some-other-token") is None
    assert drop_access_token("not json {", "some-other-token") is None
