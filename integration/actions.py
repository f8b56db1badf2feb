"""The entry points named in plugin.yaml: `fn(params, config=None) -> envelope`.

Thin on purpose: validate the parameters, find the Enricher for this configuration, ask it.
An expected failure is returned as an error envelope, never raised.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from integration import schemas
from integration.compose import enricher_for
from integration.errors import InvalidInput, PermissionDenied, PluginError
from integration.lookup.envelope import error_envelope
from integration.lookup.service import Enricher, Kind

MACHINE_ROLES = frozenset({"Machine.Read.All", "Machine.ReadWrite.All"})
MACHINE_SCOPES = frozenset({"Machine.Read", "Machine.ReadWrite"})  # delegated


def get_machines_for_domain(params: Mapping[str, Any],
                            config: Mapping[str, Any] | None = None) -> dict[str, Any]:
    return _lookup("domain", "get_machines_for_domain", "domain.input.schema.json", "domain",
                   params, config)


def get_machines_for_file_hash(params: Mapping[str, Any],
                               config: Mapping[str, Any] | None = None) -> dict[str, Any]:
    return _lookup("file", "get_machines_for_file_hash", "file_hash.input.schema.json",
                   "file_hash", params, config)


def test_connectivity(params: Mapping[str, Any] | None = None,
                      config: Mapping[str, Any] | None = None) -> dict[str, Any]:
    action = "test_connectivity"
    try:
        validate_params("connectivity.input.schema.json", params or {})
        enricher = enricher_for(config)
        return _connectivity(enricher, (params or {}).get("user_assertion"))
    except PluginError as error:
        return {"action": action, "status": "error", "summary": {"api_calls": error.api_calls},
                "error": error.to_dict()}


test_connectivity.__test__ = False  # type: ignore[attr-defined]  # not a pytest test


def _lookup(kind: Kind, action: str, schema: str, key: str, params: Mapping[str, Any],
            config: Mapping[str, Any] | None) -> dict[str, Any]:
    original = params.get(key) if isinstance(params, Mapping) else None
    try:
        validate_params(schema, params)
        enricher = enricher_for(config)
    except PluginError as error:
        return error_envelope(action, error, original=original).to_dict()
    return enricher.lookup(kind, params[key], use_cache=params.get("use_cache", True),
                           include_raw=params.get("include_raw", False),
                           priority=params.get("priority", "batch"),
                           contact=params.get("contact", False),
                           user_assertion=params.get("user_assertion"))


def validate_params(schema: str, params: Any) -> None:
    """An action's parameters against its input schema; InvalidInput saying what is wrong."""
    if not isinstance(params, Mapping):
        raise InvalidInput(f"parameters must be an object, not {type(params).__name__}")
    problems = schemas.check(schema, dict(params))
    if problems:
        # A misspelled key also makes a required one missing: name the cause.
        unknown = schemas.unknown_names(params, schemas.schema(schema).get("properties", {}),
                                        "parameter")
        if unknown:
            raise InvalidInput(f"invalid parameters: {unknown}")
        raise InvalidInput(f"invalid parameters: {problems[0]}")


def _connectivity(enricher: Enricher, user_assertion: str | None) -> dict[str, Any]:
    from integration.defender.auth import token_claims

    settings = enricher.settings
    caller = enricher.parts.caller(user_assertion)
    claims = token_claims(caller.tokens.access_token())
    principal = caller.tokens.principal()
    roles = sorted(claims.get("roles", []))
    scopes = sorted(str(claims.get("scp", "")).split())
    warnings: list[str] = []
    connectivity: dict[str, Any] = {
        "api_base": settings.endpoints.api_base,
        # A managed identity's token comes from the Azure host, not from an authority URL.
        "authority": settings.authority if settings.auth != "managed_identity" else
        f"managed identity ({settings.managed_identity_endpoint or 'endpoint from the host'})",
        "scope": settings.endpoints.scope,
        "principal": principal.to_dict(),
        "roles": roles,
        "warnings": warnings,
    }
    if "exp" in claims:
        connectivity["token_expires_in_s"] = int(claims["exp"] - time.time())
    if principal.is_user:
        connectivity["scopes"] = scopes
        if not MACHINE_SCOPES & set(scopes):
            # Said before any call: Defender would refuse it, and the fix is the app's consent.
            error = PermissionDenied(
                f"the token of {principal.name or principal.id} lacks the delegated permission "
                f"Machine.Read or Machine.ReadWrite (it has: {', '.join(scopes) or 'none'}); "
                "grant one of them to the app and consent, then sign in again")
            return {"action": "test_connectivity", "status": "error",
                    "connectivity": connectivity, "summary": {"api_calls": 0},
                    "error": error.to_dict()}
    elif not MACHINE_ROLES & set(roles):
        warnings.append("the token carries neither Machine.Read.All nor Machine.ReadWrite.All; "
                        "the machine lookups will be denied")
    try:
        if principal.is_user:  # which of the tenant's device groups this user's answers reach
            groups, calls = caller.client.visible_device_groups()
            connectivity["device_groups"] = len(groups)
        else:
            calls = caller.client.first_machine().api_calls
    except PermissionDenied as error:
        # The token is fine; what it may do is not. Say which roles it has.
        return {"action": "test_connectivity", "status": "error", "connectivity": connectivity,
                "summary": {"api_calls": error.api_calls}, "error": error.to_dict()}
    return {"action": "test_connectivity", "status": "success", "connectivity": connectivity,
            "summary": {"api_calls": calls}}
