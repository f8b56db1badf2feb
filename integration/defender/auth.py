"""Access tokens for the Defender API: msal confidential client, tokens shared through state.

The serialized msal token cache lives in the state store, keyed by authority, tenant and
client, so a new process reuses a valid token. Reading that cache needs no msal: a process
with a valid cached token never imports msal (it costs ~0.1 s of start-up), which matters
to SOAR platforms that start a fresh process per action run.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import threading
import time
from typing import TYPE_CHECKING, Any, cast

from integration.config import MANAGED_IDENTITY
from integration.defender import managed_identity
from integration.errors import AuthFailed, ConfigError, PluginError, UpstreamError, first_line
from integration.fastpath import (
    REFRESH_MARGIN_S,
    drop_access_token,
    find_access_token,
    token_cache_data,
)
from integration.values.principal import Principal, principal_of

if TYPE_CHECKING:
    from integration.config import Settings
    from integration.defender.retry import RetryPolicy
    from integration.defender.transport import Transport
    from integration.state import StateStore

log = logging.getLogger("mde_enrich")

TOKEN_CACHE_NAMESPACE = "msal-token-cache"
TOKEN_CACHE_TTL_S = 24 * 3600
# While one process fetches a token, the others wait this long for it before fetching too.
TOKEN_LEASE_S = 15.0
# Entra's answers that a second try may cure; everything else is a configuration problem.
TRANSIENT_SIGN_IN_ERRORS = frozenset({"temporarily_unavailable", "server_error"})
# A sign-in refused for good (wrong secret, unknown client...) is remembered this long, so a
# batch does not send the same doomed token request once per lookup.
REFUSAL_MEMORY_S = 60.0


class TokenProvider:
    def __init__(self, settings: Settings, transport: Transport, store: StateStore,
                 policy: RetryPolicy, scope: str | None = None) -> None:
        self._settings = settings
        # Another resource than Defender's (Graph, for hunting) is another token.
        self._scope = scope or settings.endpoints.scope
        self._transport = transport.logging_answers()  # msal's requests, for --verbose
        self._store = store
        self._policy = policy
        # Tokens are shared under a one-way fingerprint of the credential too: a rotated or
        # wrong secret must not be served the token that the old one earned.
        self._cache_key = f"{settings.authority}|{settings.client_id}|" \
                          f"{credential_fingerprint(settings)}"
        if scope and scope != settings.endpoints.scope:
            # Its own msal cache blob: two providers must not overwrite each other's tokens.
            self._cache_key += f"|{scope}"
        if settings.auth == MANAGED_IDENTITY:
            self._cache_key = managed_identity.cache_key(settings, self._scope)
        from integration.log_scrub import remember_secret

        remember_secret(settings.client_secret)  # masked if it ever reaches --verbose
        remember_secret(settings.certificate_password)
        self._token: str | None = None
        self._expires_on = 0.0
        self._refused: tuple[PluginError, float] | None = None
        self._principal: tuple[str, Principal] | None = None  # (the token it was read from, it)
        self._lock = threading.Lock()
        self.tokens_fetched = 0  # from the sign-in service, by this process

    def access_token(self) -> str:
        with self._lock:
            if self._token and self._expires_on - time.time() > REFRESH_MARGIN_S:
                return self._token
            if self._refused and time.monotonic() < self._refused[1]:
                raise self._refused[0]
            try:
                found = self._from_shared_cache() or self._fetch()
            except AuthFailed as refusal:
                self._refused = (refusal, time.monotonic() + REFUSAL_MEMORY_S)
                raise
            self._token, self._expires_on = found
            return self._token

    def principal(self) -> Principal:
        """Whom this provider's token speaks for, read from a token valid now: a credential
        that no longer signs in gets AuthFailed here, before any cached answer is served."""
        token = self.access_token()
        known = self._principal
        if known is None or known[0] != token:
            known = self._principal = (token, principal_of(
                token_claims(token), client_id=self._settings.client_id))
        return known[1]

    def invalidate(self, token: str) -> None:
        """Drop a token the API refused (401), here and in the shared cache."""
        with self._lock:
            if self._token == token:
                self._token, self._expires_on = None, 0.0
            kept = drop_access_token(self._store.get(TOKEN_CACHE_NAMESPACE, self._cache_key),
                                     token)
            if kept is not None:
                self._store.put(TOKEN_CACHE_NAMESPACE, self._cache_key, kept,
                                ttl_s=TOKEN_CACHE_TTL_S)

    def _from_shared_cache(self) -> tuple[str, float] | None:
        blob = self._store.get(TOKEN_CACHE_NAMESPACE, self._cache_key)
        if blob and self._settings.auth == MANAGED_IDENTITY:  # msal files these apart
            return find_access_token(blob, **managed_identity.cache_entry(self._settings,
                                                                          self._scope))
        return find_access_token(blob, client_id=self._settings.client_id,
                                 tenant_id=self._settings.tenant_id,
                                 scope=self._scope) if blob else None

    def _fetch(self) -> tuple[str, float]:
        lease = f"token:{self._cache_key}"
        owner = os.urandom(8).hex()  # not uuid: its import costs start-up time
        deadline = time.monotonic() + TOKEN_LEASE_S
        # Another process fetching the same token right now: wait for its answer instead.
        while not self._store.try_lease(lease, owner, TOKEN_LEASE_S):
            time.sleep(0.05)
            found = self._from_shared_cache()
            if found:
                return found
            if time.monotonic() > deadline:
                break
        try:
            found = self._from_shared_cache()
            return found or self._policy.run(self._request_token, what="token request")
        finally:
            self._store.release_lease(lease, owner)

    def _request_token(self, attempt: int) -> tuple[str, float]:
        import msal

        from integration.log_scrub import quiet_libraries

        quiet_libraries()  # msal logs a non-JSON token answer whole, even unconfigured

        settings = self._settings
        cache = msal.SerializableTokenCache()
        blob = self._store.get(TOKEN_CACHE_NAMESPACE, self._cache_key)
        readable = token_cache_data(blob) is not None
        if readable:
            cache.deserialize(blob)
        # else: no cache yet, or a row that is not msal's cache: ignored, and rewritten below
        if settings.auth == MANAGED_IDENTITY:
            result = self._managed_identity_token(cache)
        else:
            result = self._app_token(cache)
        if result.get("token_source") != "cache":
            self.tokens_fetched += 1
            log.info("token request: new token for client %s (attempt %d)",
                     settings.client_id, attempt)
        token = _token_and_expiry(result)  # checked before anything is shared
        if cache.has_state_changed or (blob and not readable):
            self._store.put(TOKEN_CACHE_NAMESPACE, self._cache_key, cache.serialize(),
                            ttl_s=TOKEN_CACHE_TTL_S)
        return token

    def _app_token(self, cache: Any) -> dict[str, Any]:
        """The confidential client's answer with an access token, or our error."""
        import msal

        settings = self._settings
        try:
            # A new app per attempt: msal replays a throttled (5xx/429) answer for a while
            # from the app's own memory, which would turn our retry into no retry at all.
            app = msal.ConfidentialClientApplication(
                settings.client_id,
                client_credential=self._credential(),
                authority=settings.authority,
                token_cache=cache,
                http_client=SignInHttp(self._transport, settings.endpoints.authority_host),
                instance_discovery=None if settings.endpoints.is_microsoft_authority else False,
            )
        except msal.exceptions.MsalServiceError as exc:  # msal's form of a 5xx answer
            raise UpstreamError(f"the sign-in service failed: {first_line(exc)}",
                                retryable=True) from exc
        except json.JSONDecodeError as exc:
            raise UpstreamError("the sign-in service answered with a body that is not JSON",
                                retryable=True) from exc
        except ValueError as exc:
            # msal's answer to an authority it cannot use (unknown tenant, not a sign-in host).
            raise AuthFailed(f"the sign-in service rejected the authority "
                             f"{settings.authority}: {first_line(exc)}") from exc
        try:
            return self._checked_answer(app.acquire_token_for_client(scopes=[self._scope]))
        except msal.exceptions.MsalServiceError as exc:
            raise UpstreamError(f"the sign-in service failed: {first_line(exc)}",
                                retryable=True) from exc
        except json.JSONDecodeError as exc:
            raise UpstreamError("the sign-in service answered with a body that is not JSON",
                                retryable=True) from exc
        except (ValueError, AttributeError, TypeError, KeyError) as exc:
            # msal reads the token answer as an object of strings and numbers: an array, a
            # scalar or an expires_in of "soon" fails inside it.
            raise UpstreamError("the sign-in service answered with JSON that is not a token "
                                "answer (an object with access_token and expires_in)",
                                retryable=True) from exc

    def _checked_answer(self, result: dict[str, Any]) -> dict[str, Any]:
        """msal's result: a token, or the sign-in service's refusal as our error."""
        if "access_token" not in result:
            error = result.get("error", "unknown_error")
            description = first_line(result.get("error_description", ""))
            failure = AuthFailed(f"sign-in failed: {error}: {description}")
            if error in TRANSIENT_SIGN_IN_ERRORS:
                raise UpstreamError(failure.message, retryable=True)
            raise failure
        return result

    def _managed_identity_token(self, cache: Any) -> dict[str, Any]:
        """The managed identity's answer with an access token (from the endpoint of the Azure
        host msal finds, see managed_identity.py), or our error."""
        import msal

        settings = self._settings
        http = managed_identity.ManagedIdentityHttp(self._transport,
                                                    settings.managed_identity_endpoint)
        try:
            # A new client per attempt, as for apps: msal replays 429/5xx answers from memory.
            client = msal.ManagedIdentityClient(managed_identity.msal_identity(settings),
                                                http_client=http, token_cache=cache)
            result = client.acquire_token_for_client(
                resource=managed_identity.resource(self._scope))
        except json.JSONDecodeError as exc:
            raise UpstreamError(f"the managed identity endpoint answered {http.last_status} "
                                "with a body that is not JSON", retryable=True) from exc
        except (msal.ManagedIdentityError, OSError) as exc:
            raise managed_identity.refusal(settings, exc) from exc
        if "access_token" not in result:
            raise managed_identity.failure(settings, result, http.last_status)
        managed_identity.check_tenant(settings, token_claims(result["access_token"]))
        return cast(dict[str, Any], result)

    def _credential(self) -> str | dict[str, str]:
        settings = self._settings
        if settings.client_secret:
            return settings.client_secret
        return certificate_credential(settings.certificate_path or "",
                                      settings.certificate_password)


def credential_fingerprint(settings: Settings) -> str:
    """A one-way fingerprint of the credential: the secret, or the certificate file's bytes
    and its password. Never the credential itself."""
    digest = hashlib.sha256()
    if settings.client_secret:
        digest.update(b"secret\0" + settings.client_secret.encode())
    elif settings.certificate_path:
        try:
            with open(settings.certificate_path, "rb") as file:
                digest.update(b"certificate\0" + file.read())
        except OSError:
            digest.update(b"certificate\0" + settings.certificate_path.encode())
        digest.update(b"\0" + (settings.certificate_password or "").encode())
    return digest.hexdigest()[:16]


def certificate_credential(path: str, password: str | None) -> dict[str, str]:
    """msal's credential dict from one PEM file that holds the certificate and its private key."""
    try:
        with open(path, encoding="ascii") as file:
            pem = file.read()
    except UnicodeDecodeError:
        raise ConfigError(f"config key 'client_certificate.path': {path!r} is not a PEM file "
                          "(a PKCS#12 .pfx is not read: convert it with `openssl pkcs12 -in "
                          "cert.pfx -out cert.pem -nodes`)") from None
    except OSError as exc:
        raise ConfigError(f"config key 'client_certificate.path': cannot read {path!r}: "
                          f"{type(exc).__name__}") from exc
    certificate = _pem_block(pem, "CERTIFICATE")
    key = _pem_block(pem, "PRIVATE KEY") or _pem_block(pem, "RSA PRIVATE KEY") \
        or _pem_block(pem, "ENCRYPTED PRIVATE KEY")
    if not certificate or not key:
        raise ConfigError(f"config key 'client_certificate.path': {path!r} must hold a PEM "
                          "certificate and its private key")
    _check_key_opens(key, password)
    # With public_certificate and no thumbprint, msal (>= 1.35) computes the SHA-256
    # thumbprint itself and signs the client assertion accordingly.
    credential = {"private_key": key, "public_certificate": certificate}
    if password:
        credential["passphrase"] = password
    return credential


def _check_key_opens(key: str, password: str | None) -> None:
    """The private key opens with the configured password: a local configuration problem,
    said as one (msal would raise TypeError, or blame the sign-in authority)."""
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        load_pem_private_key(key.encode(), password.encode() if password else None)
    except TypeError as exc:  # encrypted without a password, or a password for a plain key
        needs = "is encrypted: set config key 'client_certificate.password'" if not password \
            else "is not encrypted: remove config key 'client_certificate.password'"
        raise ConfigError(f"the client certificate's private key {needs}") from exc
    except ValueError as exc:
        raise ConfigError("config key 'client_certificate.password' does not open the client "
                          "certificate's private key (wrong password, or not a key)") from exc


def _token_and_expiry(result: dict[str, Any]) -> tuple[str, float]:
    """The token msal handed over, checked: a sign-in answer of the wrong shape (a token that
    is not a string, an expiry that is not a number) is the service's fault, not a crash."""
    token, lifetime = result.get("access_token"), result.get("expires_in", 0)
    try:
        seconds = float(lifetime)
    except (TypeError, ValueError, OverflowError):
        seconds = float("nan")
    if not isinstance(token, str) or not token or not 0 <= seconds < 10 * 86400:
        raise UpstreamError("the sign-in service answered with a token answer of the wrong "
                            "shape (access_token or expires_in)", retryable=True)
    return token, time.time() + seconds


class SignInHttp:
    """msal's http_client for an application's sign-in: the Transport, sending POSTs only to
    the authority's own origin. msal takes the token endpoint from the OpenID discovery
    document; one naming another host would be sent the client secret (or the certificate's
    signed assertion). GETs carry no credential and pass as they are."""

    def __init__(self, transport: Transport, authority_host: str) -> None:
        self._transport = transport
        self._origin = _origin(authority_host)

    def get(self, url: str, params: Any = None, headers: Any = None, **kwargs: Any) -> Any:
        return self._transport.get(url, params=params, headers=headers, **kwargs)

    def post(self, url: str, params: Any = None, data: Any = None, headers: Any = None,
             **kwargs: Any) -> Any:
        if _origin(url) != self._origin:
            from urllib.parse import urlsplit

            raise AuthFailed(f"the sign-in service's discovery document names a token "
                             f"endpoint on {urlsplit(url).netloc or url!r}, not on the "
                             f"authority {self._origin}: refused, the credential was not sent")
        return self._transport.post(url, params=params, data=data, headers=headers, **kwargs)

    def close(self) -> None:
        """msal calls this; the transport outlives it."""


def _origin(url: str) -> str:
    """scheme://host:port, lowercase, the port always given."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    try:
        port = parts.port or {"https": 443, "http": 80}.get(parts.scheme.lower(), 0)
    except ValueError:
        port = -1  # a garbled port matches nothing
    return f"{parts.scheme.lower()}://{(parts.hostname or '').lower()}:{port}"


def _pem_block(pem: str, label: str) -> str | None:
    begin, end = f"-----BEGIN {label}-----", f"-----END {label}-----"
    start = pem.find(begin)
    stop = pem.find(end, start)
    return pem[start:stop + len(end)] if start >= 0 and stop >= 0 else None


def token_claims(token: str) -> dict[str, Any]:
    """The claims of a JWT, unverified: only to report what the token says (roles, expiry)."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return claims if isinstance(claims, dict) else {}
    except (IndexError, ValueError):
        return {}
