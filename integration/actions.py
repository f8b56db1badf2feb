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
from integration.lookup.service import Enricher, Kind
from integration.values.envelope import error_envelope


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
        return _connectivity(enricher, params or {})
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
                           contact=params.get("contact", enricher.settings.contact),
                           user_assertion=params.get("user_assertion")).to_dict()


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


def _connectivity(enricher: Enricher, params: Mapping[str, Any]) -> dict[str, Any]:
    from integration.connectivity import check_capabilities, missing_error
    from integration.defender.auth import token_claims

    settings = enricher.settings
    # Whoever the call runs as: the application, the signed-in user, or the user whose token
    # the platform passed. Their Defender token first: without it nothing else can be checked
    # (a wrong secret is auth_failed, as for a lookup). Other services' tokens come only when
    # a check needs them.
    caller = enricher.caller(params.get("user_assertion"))
    claims = token_claims(caller.tokens.access_token())
    principal = caller.tokens.principal()
    token_sources = {"defender": lambda: claims,
                     "graph": lambda: token_claims(caller.graph_tokens.access_token())}
    checks = check_capabilities(settings, params, lambda service: token_sources[service]())
    connectivity: dict[str, Any] = {
        "api_base": settings.endpoints.api_base,
        # A managed identity's token comes from the Azure host, not from an authority URL.
        "authority": settings.authority if settings.auth != "managed_identity" else
        f"managed identity ({settings.managed_identity_endpoint or 'endpoint from the host'})",
        "scope": settings.endpoints.scope,
        "principal": principal.to_dict(),
        "roles": sorted(claims.get("roles", [])),
        "capabilities": [check.to_dict() for check in checks],
        "warnings": [check.message for check in checks if check.status != "ok"],
    }
    if principal.is_user:
        connectivity["scopes"] = sorted(str(claims.get("scp", "")).split())
    if "exp" in claims:
        connectivity["token_expires_in_s"] = int(claims["exp"] - time.time())
    try:
        # The one live call: the Defender permission at work, not only read from the token.
        # A user's: which of the tenant's device groups their answers reach.
        if principal.is_user:
            groups, calls = caller.client.visible_device_groups()
            connectivity["device_groups"] = len(groups)
        else:
            calls = caller.client.first_machine().api_calls
    except PermissionDenied as error:
        # The token is fine; what it may do is not. Say which roles it has; for a user,
        # which delegated permission is missing when that is why (else: no Defender role).
        named = missing_error(checks) if principal.is_user else None
        return {"action": "test_connectivity", "status": "error", "connectivity": connectivity,
                "summary": {"api_calls": error.api_calls},
                "error": (named.replace(api_calls=error.api_calls) if named else error).to_dict()}
    missing = missing_error(checks)
    if missing is not None:
        return {"action": "test_connectivity", "status": "error", "connectivity": connectivity,
                "summary": {"api_calls": calls}, "error": missing.to_dict()}
    return {"action": "test_connectivity", "status": "success", "connectivity": connectivity,
            "summary": {"api_calls": calls}}
