"""Tokens from an Azure managed identity (`auth: managed_identity`), through msal's
ManagedIdentityClient, for a plugin that runs on an Azure resource.

msal (1.39, msal/managed_identity.py) picks the token endpoint from the environment at each
request, in this order:
1. Service Fabric: IDENTITY_ENDPOINT + IDENTITY_HEADER + IDENTITY_SERVER_THUMBPRINT. msal
   needs a requests.Session as its http_client there; ours is the Transport, so this host
   fails with msal's own message (auth_failed).
2. App Service, Functions, Automation: IDENTITY_ENDPOINT + IDENTITY_HEADER.
3. Azure Machine Learning: MSI_ENDPOINT + MSI_SECRET.
4. Azure Arc: IDENTITY_ENDPOINT + IMDS_ENDPOINT, or the himds agent installed
   (http://localhost:40342).
5. Otherwise IMDS (VMs, AKS): $AZURE_POD_IDENTITY_AUTHORITY_HOST or http://169.254.169.254,
   path /metadata/identity/oauth2/token.

The config key `managed_identity_endpoint` replaces the IMDS origin of step 5 for one
configuration only: the environment variable would change it for the whole process.

The token goes through our Transport (TLS settings, timeouts, error mapping) and our retry
policy, and is kept in the shared msal cache like an app's token. msal itself is driven from
auth.py (its one home); this module holds what is particular to managed identities.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from integration.errors import AuthFailed, PluginError, UpstreamError, first_line

if TYPE_CHECKING:
    import requests

    from integration.config import Settings
    from integration.defender.transport import Transport

IMDS_PATH = "/metadata/identity/oauth2/token"
# msal files managed identity tokens under this realm, and the system-assigned identity
# under no client id at all (its "Id" is None).
CACHE_REALM = "managed_identity"
# IMDS's advice: retry 404 (IMDS is updating), 410 (still starting), 429 and 5xx.
TRANSIENT_STATUSES = frozenset({404, 410, 429})
_GUID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")


def resource(scope: str) -> str:
    """Managed identity endpoints take a resource, not a scope: the scope minus /.default."""
    return scope.removesuffix("/.default")


def cache_key(settings: Settings, scope: str) -> str:
    """The shared cache blob of this identity and resource. No credential to fingerprint; the
    endpoint that vouches for the identity is part of it instead."""
    return (f"managed-identity|{settings.tenant_id}|{settings.client_id}|"
            f"{settings.managed_identity_endpoint or ''}|{resource(scope)}")


def cache_entry(settings: Settings, scope: str) -> dict[str, Any]:
    """find_access_token()'s filter for the entry msal writes for this identity."""
    return {"client_id": settings.managed_identity_client_id
            or settings.managed_identity_resource_id,
            "tenant_id": CACHE_REALM, "scope": resource(scope)}


def describe(settings: Settings) -> str:
    """Which identity, for messages (ids of identities are not secrets)."""
    if settings.managed_identity_client_id:
        return f"the user-assigned managed identity {settings.managed_identity_client_id}"
    if settings.managed_identity_resource_id:
        return f"the user-assigned managed identity {settings.managed_identity_resource_id}"
    return "the system-assigned managed identity"


def msal_identity(settings: Settings) -> dict[str, str | None]:
    """msal's description of the identity, in the dict form it documents (no msal import)."""
    if settings.managed_identity_client_id:
        return {"ManagedIdentityIdType": "ClientId", "Id": settings.managed_identity_client_id}
    if settings.managed_identity_resource_id:
        return {"ManagedIdentityIdType": "ResourceId",
                "Id": settings.managed_identity_resource_id}
    return {"ManagedIdentityIdType": "SystemAssigned", "Id": None}


def refusal(settings: Settings, exc: Exception) -> AuthFailed:
    """msal could not even ask (Service Fabric with our http client, Arc's key file)."""
    reason = first_line(exc) if isinstance(exc, ValueError) else \
        f"cannot read the Azure Arc key file ({type(exc).__name__})"
    return AuthFailed(f"managed identity sign-in failed for {describe(settings)}: {reason}")


def failure(settings: Settings, result: dict[str, Any], status: int | None) -> PluginError:
    """The error for msal's answer without a token: retryable when the status says so
    (msal keeps only the body)."""
    message = (f"managed identity sign-in failed for {describe(settings)}: "
               f"{result.get('error', 'unknown_error')}: "
               f"{first_line(result.get('error_description', ''))}")
    if status is not None and (status in TRANSIENT_STATUSES or status >= 500):
        return UpstreamError(message, retryable=True)
    return AuthFailed(message)


def check_tenant(settings: Settings, claims: dict[str, Any]) -> None:
    """An identity of another tenant than the configured one: say so by name, rather than
    let the API answer 401 for a reason nobody can see."""
    tenant = str(claims.get("tid") or "")
    if tenant and _GUID.fullmatch(settings.tenant_id) and \
            tenant.lower() != settings.tenant_id.lower():
        raise AuthFailed(f"{describe(settings)} belongs to tenant {tenant}, not to the "
                         f"configured tenant_id {settings.tenant_id}")


class ManagedIdentityHttp:
    """msal's http_client for managed identity: the Transport, with the IMDS origin from
    `managed_identity_endpoint`, never through the proxy, and the last status remembered
    (msal returns only the body, and whether to retry depends on the status)."""

    def __init__(self, transport: Transport, imds_origin: str | None) -> None:
        self._transport = transport
        self._imds_origin = imds_origin.rstrip("/") if imds_origin else None
        self.last_status: int | None = None

    def get(self, url: str, params: Any = None, headers: Any = None,
            **kwargs: Any) -> requests.Response:
        if self._imds_origin and urlsplit(url).path == IMDS_PATH:
            url = self._imds_origin + IMDS_PATH
        # Every managed identity endpoint is on the host itself (IMDS is link-local, the
        # others listen on localhost): a configured proxy could not reach it.
        kwargs.setdefault("proxies", {"http": None, "https": None})
        response = self._transport.get(url, params=params, headers=headers, **kwargs)
        self.last_status = response.status_code
        return response

    def post(self, url: str, params: Any = None, data: Any = None, headers: Any = None,
             **kwargs: Any) -> requests.Response:
        kwargs.setdefault("proxies", {"http": None, "https": None})
        response = self._transport.post(url, params=params, data=data, headers=headers, **kwargs)
        self.last_status = response.status_code
        return response

    def close(self) -> None:
        """The Transport outlives msal's client."""
