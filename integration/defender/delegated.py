"""Tokens for a user, not the application: Defender then answers with the machines of that
user's device groups only.

- `auth: device_code`: the analyst signs in as themself (`mde-enrich login`, msal's device-code
  flow through a public client app); msal's token cache, with the user's refresh token,
  is kept in the owner-only state and renews the access token silently.
- on behalf of: a platform that holds the analyst's token (issued to our app) passes it as
  `user_assertion`; msal's on-behalf-of grant trades it, with the app's own credential, for a
  Defender token of that user. Each user's tokens are kept apart, keyed by a hash of the
  assertion (never the assertion itself).

Both are `TokenProvider`s: the shared-cache, lease and refusal rules are the application's.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from integration.config import DEVICE_CODE, ON_BEHALF_OF
from integration.defender.auth import (
    TOKEN_CACHE_NAMESPACE,
    TOKEN_CACHE_TTL_S,
    TRANSIENT_SIGN_IN_ERRORS,
    SignInHttp,
    TokenProvider,
    _token_and_expiry,
    credential_fingerprint,
    token_claims,
)
from integration.errors import AuthFailed, ConfigError, PluginError, UpstreamError, first_line
from integration.values.principal import Principal, principal_of

if TYPE_CHECKING:
    from integration.config import Settings
    from integration.defender.retry import RetryPolicy
    from integration.defender.transport import Transport
    from integration.state import StateStore

log = logging.getLogger("mde_enrich")

# A user's msal cache (refresh token included) outlives the access token: 90 days is
# Entra's refresh-token lifetime; logout deletes it sooner.
USER_CACHE_TTL_S = 90 * 24 * 3600
NOT_SIGNED_IN = "not signed in: run `mde-enrich login` to sign in as yourself (auth: device_code)"
# Device-code answers that mean the person did not finish signing in.
_DECLINED = frozenset({"authorization_declined", "access_denied"})
_EXPIRED = frozenset({"expired_token", "authorization_pending", "code_expired"})


def device_code_cache_key(settings: Settings) -> str:
    """One signed-in user per state and public client app, as `az login` keeps one."""
    return f"{settings.authority}|{settings.client_id}|{DEVICE_CODE}"


class DeviceCodeTokens(TokenProvider):
    """Access tokens of the user who ran `mde-enrich login`, renewed with their refresh
    token; AuthFailed (exit 3) saying to log in when there is no session or it ended."""

    def __init__(self, settings: Settings, transport: Transport, store: StateStore,
                 policy: RetryPolicy, scope: str | None = None) -> None:
        super().__init__(settings, transport, store, policy, scope)
        # One msal cache for the user, whatever the scope: its refresh token serves both
        # Defender and Graph (the lease on this key keeps two renewals from racing).
        self._cache_key = device_code_cache_key(settings)

    def _request_token(self, attempt: int) -> tuple[str, float]:
        import msal

        settings = self._settings
        blob = self._store.get(TOKEN_CACHE_NAMESPACE, self._cache_key)
        if not blob:
            raise AuthFailed(NOT_SIGNED_IN)
        cache = msal.SerializableTokenCache()
        cache.deserialize(blob)
        app = public_client(settings, self._transport, cache)
        accounts = app.get_accounts()
        if not accounts:
            raise AuthFailed(NOT_SIGNED_IN)
        account = accounts[0]
        result = app.acquire_token_silent_with_error([self._scope], account)
        if not result or "access_token" not in result:
            failure = _failure(result or {}, "renewing the sign-in of "
                               f"{account.get('username') or 'the signed-in user'}")
            if isinstance(failure, AuthFailed):
                failure = AuthFailed(f"{failure.message}; run `mde-enrich login` again")
            raise failure
        if result.get("token_source") != "cache":
            self.tokens_fetched += 1
            log.info("token request: renewed the signed-in user's token (attempt %d)", attempt)
        token = _token_and_expiry(result)  # checked before anything is shared
        if cache.has_state_changed:
            self._store.put(TOKEN_CACHE_NAMESPACE, self._cache_key, cache.serialize(),
                            ttl_s=USER_CACHE_TTL_S)
        return token


class OnBehalfOfTokens(TokenProvider):
    """Defender tokens for the user whose token the platform passed (`user_assertion`)."""

    def __init__(self, settings: Settings, transport: Transport, store: StateStore,
                 policy: RetryPolicy, user_assertion: str, scope: str | None = None) -> None:
        super().__init__(settings, transport, store, policy, scope)
        self._assertion = user_assertion
        self._cache_key = on_behalf_of_cache_key(settings, user_assertion)
        if scope and scope != settings.endpoints.scope:
            self._cache_key += f"|{scope}"  # another resource: its own msal cache

    def _request_token(self, attempt: int) -> tuple[str, float]:
        import msal

        settings = self._settings
        cache = msal.SerializableTokenCache()
        blob = self._store.get(TOKEN_CACHE_NAMESPACE, self._cache_key)
        if blob:
            cache.deserialize(blob)
        try:
            app = msal.ConfidentialClientApplication(
                settings.client_id, client_credential=self._credential(),
                authority=settings.authority, token_cache=cache,
                # The app's secret (or signed assertion) goes to the authority's origin only.
                http_client=SignInHttp(self._transport, settings.endpoints.authority_host),
                instance_discovery=None if settings.endpoints.is_microsoft_authority else False)
            result = app.acquire_token_on_behalf_of(self._assertion, [self._scope])
        except msal.exceptions.MsalServiceError as exc:
            raise UpstreamError(f"the sign-in service failed: {first_line(exc)}",
                                retryable=True) from None
        except ValueError as exc:
            raise AuthFailed(f"the sign-in service rejected the authority "
                             f"{settings.authority}: {first_line(exc)}") from None
        if "access_token" not in result:
            raise _failure(result, "signing in on behalf of the user (user_assertion)")
        self.tokens_fetched += 1
        log.info("token request: new token on behalf of a user (attempt %d)", attempt)
        token = _token_and_expiry(result)
        if cache.has_state_changed:
            self._store.put(TOKEN_CACHE_NAMESPACE, self._cache_key, cache.serialize(),
                            ttl_s=TOKEN_CACHE_TTL_S)
        return token


def on_behalf_of_cache_key(settings: Settings, user_assertion: str) -> str:
    # The app's credential fingerprint too: a wrong secret must not reach a user's token.
    digest = hashlib.sha256(user_assertion.encode()).hexdigest()[:32]
    return f"{settings.authority}|{settings.client_id}|{credential_fingerprint(settings)}|" \
           f"{ON_BEHALF_OF}|{digest}"


def check_user_assertion(settings: Settings, user_assertion: Any) -> str:
    """The assertion, if this configuration can trade it: on-behalf-of needs the app's own
    credential (a secret or certificate)."""
    if not isinstance(user_assertion, str) or user_assertion.count(".") != 2:
        from integration.errors import InvalidInput

        raise InvalidInput("user_assertion must be the user's access token (a JWT) issued to "
                           "this app")
    if settings.auth not in ("client_secret", "client_certificate", ON_BEHALF_OF):
        raise ConfigError(f"a user_assertion is traded on behalf of the user with the app's "
                          f"client_secret or client_certificate; auth: {settings.auth} has "
                          "neither")
    return user_assertion


def public_client(settings: Settings, transport: Any, cache: Any) -> Any:
    import msal

    # A refresh token is a credential too: sent to the authority's origin only.
    return msal.PublicClientApplication(
        settings.client_id, authority=settings.authority, token_cache=cache,
        http_client=SignInHttp(transport, settings.endpoints.authority_host),
        instance_discovery=None if settings.endpoints.is_microsoft_authority else False)


def login(settings: Settings, transport: Transport, store: StateStore,
          say: Callable[[str], None]) -> Principal:
    """msal's device-code flow: `say` shows the verification URL and code, then this waits
    while msal polls (honouring authorization_pending and slow_down) until the person signs
    in, declines or lets the code expire. The new session replaces any earlier one."""
    import msal

    if settings.auth != DEVICE_CODE:
        raise ConfigError(f"`mde-enrich login` signs an analyst in with auth: device_code "
                          f"(a public client app); this configuration has auth: "
                          f"{settings.auth}")
    cache = msal.SerializableTokenCache()
    http = transport.logging_answers()
    try:
        app = public_client(settings, http, cache)
        flow = app.initiate_device_flow(scopes=[settings.endpoints.scope])
    except ValueError as exc:
        raise AuthFailed(f"the sign-in service rejected the authority {settings.authority}: "
                         f"{first_line(exc)}") from None
    if "user_code" not in flow:
        raise _failure(flow, "starting the device-code sign-in")
    say(flow.get("message") or f"Open {flow.get('verification_uri')} and enter the code "
                               f"{flow['user_code']}.")
    result = app.acquire_token_by_device_flow(flow)
    if "access_token" not in result:
        error = result.get("error", "")
        if error in _DECLINED:
            raise AuthFailed("sign-in declined: the code was refused at the verification page")
        if error in _EXPIRED:
            raise AuthFailed("sign-in not completed: the code expired before anyone entered "
                             "it; run `mde-enrich login` again")
        raise _failure(result, "signing in with the device code")
    store.put(TOKEN_CACHE_NAMESPACE, device_code_cache_key(settings), cache.serialize(),
              ttl_s=USER_CACHE_TTL_S)
    return principal_of(token_claims(result["access_token"]), client_id=settings.client_id)


def logout(settings: Settings, store: StateStore) -> str | None:
    """Forget the signed-in user's tokens (refresh token included); their username, if any."""
    key = device_code_cache_key(settings)
    blob = store.get(TOKEN_CACHE_NAMESPACE, key)
    store.delete(TOKEN_CACHE_NAMESPACE, key)
    if not blob:
        return None
    try:
        accounts = json.loads(blob).get("Account", {}).values()
    except (ValueError, AttributeError):
        return "the signed-in user"
    return next((str(a.get("username")) for a in accounts if a.get("username")),
                "the signed-in user")


def _failure(result: dict[str, Any], doing: str) -> PluginError:
    """Entra's error answer as ours: transient ones retryable, the rest auth_failed (with a
    hint where Conditional Access is the likely cause)."""
    error = result.get("error", "unknown_error")
    description = first_line(result.get("error_description", ""))
    message = f"{doing} failed: {error}: {description}"
    if "AADSTS53003" in description or "AADSTS50097" in description:
        message += " (Conditional Access blocks this sign-in, often device code: ask your " \
                   "admin, or let the platform pass your token on your behalf)"
    elif "AADSTS500133" in description:
        message += " (the user's token has expired: pass a fresh one)"
    if error in TRANSIENT_SIGN_IN_ERRORS:
        return UpstreamError(message, retryable=True)
    return AuthFailed(message)
