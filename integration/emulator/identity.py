"""The managed identity token endpoints of the Azure resource the plugin runs on.

Two of the shapes msal speaks (msal/managed_identity.py), each answered as Azure does:
- IMDS (a VM, AKS): `GET /metadata/identity/oauth2/token?api-version=2018-02-01&resource=...`
  with `Metadata: true`, and `client_id`, `object_id` or `msi_res_id` for a user-assigned
  identity. msal finds it at http://169.254.169.254, or at $AZURE_POD_IDENTITY_AUTHORITY_HOST.
- App Service / Functions: `GET $IDENTITY_ENDPOINT?api-version=2019-08-01&resource=...` with
  the `X-IDENTITY-HEADER` secret from $IDENTITY_HEADER, and `client_id`, `object_id`,
  `principal_id` or `mi_res_id`.

Both issue the same signed JWT as the v2 token endpoint, so the Defender routes accept it.
Plain data in, status and JSON out: `server.py` does the HTTP.
"""

from __future__ import annotations

import hmac
import time
import uuid
from collections.abc import Mapping
from typing import Any

from integration.emulator.backend import MI_IDENTITY_HEADER, Backend, SignInError

IMDS_PATH = "/metadata/identity/oauth2/token"
APP_SERVICE_PATH = "/msi/token"
PATHS = frozenset({IMDS_PATH, APP_SERVICE_PATH})

# Query parameter -> the kind of id it selects, per endpoint (msal's own mapping).
_IMDS_SELECTORS = {"client_id": "client_id", "object_id": "object_id",
                   "msi_res_id": "resource_id", "mi_res_id": "resource_id"}
_APP_SERVICE_SELECTORS = {"client_id": "client_id", "object_id": "object_id",
                          "principal_id": "object_id", "mi_res_id": "resource_id"}


def managed_identity_token(backend: Backend, method: str, path: str, params: Mapping[str, str],
                           headers: Any) -> tuple[int, dict[str, Any]]:
    """(status, JSON body) for a request to one of `PATHS`."""
    if path == IMDS_PATH:
        return _imds(backend, method, params, headers)
    return _app_service(backend, method, params, headers)


def _imds(backend: Backend, method: str, params: Mapping[str, str],
          headers: Any) -> tuple[int, dict[str, Any]]:
    def refuse(status: int, error: str, description: str) -> tuple[int, dict[str, Any]]:
        return status, {"error": error, "error_description": description}

    if method != "GET":
        return refuse(405, "invalid_request", "Method not allowed")
    # IMDS's defence against server-side request forgery: only a deliberate caller sets it.
    if (headers.get("Metadata") or "").lower() != "true":
        return refuse(400, "invalid_request", "Required metadata header not specified")
    if not params.get("api-version"):
        return refuse(400, "invalid_request", "Required query variable 'api-version' is missing")
    selector = {kind: params[name] for name, kind in _IMDS_SELECTORS.items() if params.get(name)}
    if len(selector) > 1:
        return refuse(400, "invalid_request",
                      "Multiple values for a managed identity were specified")
    try:
        answer = backend.tokens.issue_for_managed_identity(
            params.get("resource"), selector, backend.settings.token_lifetime_s)
    except SignInError as exc:
        return refuse(exc.status, exc.error, exc.description)
    return 200, _wire(answer, params.get("resource", ""), expires_in=True)


def _app_service(backend: Backend, method: str, params: Mapping[str, str],
                 headers: Any) -> tuple[int, dict[str, Any]]:
    def refuse(status: int, message: str) -> tuple[int, dict[str, Any]]:
        return status, {"statusCode": status, "message": message,
                        "correlationId": str(uuid.uuid4())}

    if method != "GET":
        return refuse(405, "The HTTP method is not allowed.")
    presented = headers.get("X-IDENTITY-HEADER") or ""
    if not hmac.compare_digest(presented.encode(), MI_IDENTITY_HEADER.encode()):
        return refuse(401, "The X-IDENTITY-HEADER header is missing or invalid.")
    if not params.get("api-version"):
        return refuse(400, "The api-version parameter is required.")
    selector = {kind: params[name] for name, kind in _APP_SERVICE_SELECTORS.items()
                if params.get(name)}
    if len(selector) > 1:
        return refuse(400, "Only one of client_id, mi_res_id, object_id may be given.")
    try:
        answer = backend.tokens.issue_for_managed_identity(
            params.get("resource"), selector, backend.settings.token_lifetime_s)
    except SignInError as exc:
        if exc.description == "Identity not found":
            return refuse(400, "No User Assigned or Delegated Managed Identity found for "
                               "specified ClientId/ResourceId/PrincipalId.")
        return refuse(exc.status, exc.description)
    return 200, _wire(answer, params.get("resource", ""), expires_in=False)


def _wire(answer: Mapping[str, Any], resource: str, *, expires_in: bool) -> dict[str, Any]:
    """The token answer as these endpoints send it: numbers as strings, expiry as a time."""
    now = int(time.time())
    lifetime = int(answer["expires_in"])
    body = {"access_token": answer["access_token"], "expires_on": str(now + lifetime),
            "resource": resource, "token_type": "Bearer", "client_id": answer["client_id"]}
    if expires_in:  # IMDS sends both; App Service only expires_on
        body.update({"expires_in": str(lifetime), "ext_expires_in": str(lifetime),
                     "not_before": str(now)})
    return body
