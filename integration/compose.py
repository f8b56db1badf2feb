"""The composition root: the one place that builds the lookup service from configuration.

Actions, the CLI, the demo, playbooks and benchmarks all get their Enricher here. Parts are
built on first use, so a call refused for bad input costs no state file, session or token;
and one Enricher serves each distinct configuration per process, so its token, connections
and single-flight are shared by every call made with that configuration.
"""

from __future__ import annotations

import copy
import hashlib
import json
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal

from integration.config import DEVICE_CODE, ON_BEHALF_OF
from integration.errors import InvalidInput
from integration.lookup.service import Caller, Enricher

if TYPE_CHECKING:
    import os

    from integration.config import Settings
    from integration.defender.alerts import SecurityClient
    from integration.defender.auth import TokenProvider
    from integration.defender.budget import Budgets, RateBudget
    from integration.defender.client import DefenderClient
    from integration.defender.hunting import HuntingClient
    from integration.defender.pipeline import Api, TokenSource
    from integration.defender.retry import RetryPolicy
    from integration.defender.transport import Transport
    from integration.state import StateStore
    from integration.values.principal import Principal

_enrichers: dict[str, Enricher] = {}
_last_config: dict[int, tuple[Any, Enricher]] = {}  # id -> (a copy to compare, its Enricher)
_lock = threading.Lock()


def enricher_for(config: Mapping[str, Any] | None = None, *,
                 path: str | os.PathLike[str] | None = None) -> Enricher:
    """The Enricher for a platform's config dict, or for a config file (`path`, else
    $MDE_CONFIG), with MDE_<KEY> variables over either. ConfigError when it is unusable."""
    # A platform usually passes the same dict each time: recognize it without serializing.
    seen = _last_config.get(id(config)) if config is not None else None
    if seen is not None and seen[0] == config:
        return seen[1]
    from integration.config import load_settings

    settings = load_settings(config, path=path)
    fingerprint = hashlib.sha256(repr(settings).encode()
                                 + _secret_fingerprint(settings).encode()).hexdigest()
    with _lock:
        enricher = _enrichers.get(fingerprint)
        if enricher is None:
            enricher = _enrichers[fingerprint] = new_enricher(settings)
        if config is not None:
            _last_config.clear()
            _last_config[id(config)] = (copy.deepcopy(config), enricher)
        return enricher


def new_enricher(settings: Settings) -> Enricher:
    """An Enricher of its own (tests and benchmarks that want separate state)."""
    parts = Parts(settings)
    return Enricher(settings, store=lambda: parts.store, client=lambda: parts.client,
                    tokens=lambda: parts.tokens, graph_tokens=lambda: parts.graph_tokens,
                    hunting=lambda: parts.hunting, caller=parts.caller,
                    security=lambda: parts.security)


def sign_in(path: str | os.PathLike[str] | None, say: Callable[[str], None]) -> Principal:
    """`mde-enrich login`: the device-code flow for the configuration at `path`."""
    from integration.config import load_settings
    from integration.defender.delegated import login

    parts = Parts(load_settings(path=path))
    return login(parts.settings, parts.transport, parts.store, say)


def sign_out(path: str | os.PathLike[str] | None) -> str | None:
    """`mde-enrich logout`: the signed-in user's tokens deleted; who that was, if anyone."""
    from integration.config import load_settings
    from integration.defender.delegated import logout

    parts = Parts(load_settings(path=path))
    return logout(parts.settings, parts.store)


def who_am_i(path: str | os.PathLike[str] | None) -> dict[str, Any]:
    """`mde-enrich whoami`: whom lookups run as, from a token valid now (renewed silently
    when due), with its permissions and expiry."""
    import time

    from integration.defender.auth import token_claims

    enricher = enricher_for(path=path)
    tokens = enricher.caller(None).tokens
    claims = token_claims(tokens.access_token())
    return {"principal": tokens.principal().to_dict(), "auth": enricher.settings.auth,
            "scopes": sorted(str(claims.get("scp", "")).split()),
            "roles": sorted(claims.get("roles", [])),
            "token_expires_in_s": int(float(claims.get("exp", time.time())) - time.time())}


def _secret_fingerprint(settings: Settings) -> str:
    # repr(Settings) masks secrets; two configs differing only in the secret are different.
    # (proxy and state too: repr() masks the passwords their URLs may carry; and the user
    # assertion: two users' configs must never share an Enricher, nor its default caller)
    secret = json.dumps([settings.client_secret, settings.certificate_password, settings.proxy,
                         settings.state, settings.user_assertion])
    return hashlib.sha256(secret.encode()).hexdigest()


# Users whose callers (token provider, client) one Enricher keeps at once.
MAX_CALLERS = 256


class Parts:
    """The wiring of one Enricher: state, transport, retry policy, budget, tokens, client."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._store: StateStore | None = None
        self._client: DefenderClient | None = None
        self._tokens: TokenProvider | None = None
        self._wiring: tuple[Transport, RetryPolicy] | None = None
        self._budgets: dict[str, Budgets] = {}
        self._hunting: HuntingClient | None = None
        self._callers: dict[bytes, _UserCaller] = {}  # by the assertion's hash, oldest first
        self._user_caller: _UserCaller | None = None  # the signed-in user (auth: device_code)
        self._graph_tokens: TokenProvider | None = None
        self._security: SecurityClient | None = None

    @property
    def store(self) -> StateStore:
        with self._lock:
            if self._store is None:
                from integration.state import open_store

                self._store = open_store(self.settings.state)
            return self._store

    @property
    def tokens(self) -> TokenProvider:
        self._build_client()
        assert self._tokens is not None
        return self._tokens

    @property
    def transport(self) -> Transport:
        self._build_client()
        assert self._wiring is not None
        return self._wiring[0]

    @property
    def client(self) -> DefenderClient:
        return self._build_client()

    def _build_client(self) -> DefenderClient:
        store = self.store
        with self._lock:
            if self._client is None:
                from integration.defender.auth import TokenProvider
                from integration.defender.budget import Budgets
                from integration.defender.client import DefenderClient
                from integration.defender.retry import RetryPolicy
                from integration.defender.transport import build_transport

                settings = self.settings
                transport = build_transport(settings)
                policy = RetryPolicy(max_attempts=settings.max_attempts,
                                     deadline_s=settings.deadline_s,
                                     backoff_base_s=settings.backoff_base_s,
                                     backoff_cap_s=settings.backoff_cap_s,
                                     max_retry_after_s=settings.max_retry_after_s)
                self._budgets = {
                    "Defender": Budgets(lambda name: _budget(settings, store, name),
                                        shared=settings.rate_buckets == "shared"),
                    # Graph's limits are not Defender's: its own buckets, whatever
                    # `rate_limit.buckets` says.
                    "Graph": Budgets(lambda name: _budget(settings, store, name),
                                     shared=False)}
                if settings.auth == DEVICE_CODE:  # the analyst who ran `mde-enrich login`
                    from integration.defender.delegated import DeviceCodeTokens

                    self._tokens = DeviceCodeTokens(settings, transport, store, policy)
                else:
                    self._tokens = TokenProvider(settings, transport, store, policy)
                self._wiring = (transport, policy)  # shared by every client
                self._client = DefenderClient(self._api("Defender", self._tokens))
            return self._client

    def caller(self, user_assertion: str | None = None) -> Caller:
        """The tokens and clients of whoever a call runs as: the configured principal, or
        the user whose token the platform passed (on behalf of them). Each user's caller is
        kept (a bounded few), so their token is reused like the application's."""
        client = self._build_client()
        assertion = user_assertion or self.settings.user_assertion
        if assertion is None:
            if self.settings.auth == ON_BEHALF_OF:
                raise InvalidInput("auth: on_behalf_of: this call carries no user_assertion "
                                   "(the analyst's token); lookups here never run as the "
                                   "application")
            if self.settings.auth != DEVICE_CODE:
                return _AppCaller(self)
            with self._lock:
                if self._user_caller is None:
                    assert self._tokens is not None
                    self._user_caller = self._user_caller_for(self._tokens, client, None)
                return self._user_caller
        from integration.defender.delegated import OnBehalfOfTokens, check_user_assertion

        check_user_assertion(self.settings, assertion)
        key = hashlib.sha256(assertion.encode()).digest()
        with self._lock:
            known = self._callers.pop(key, None)
            if known is None:
                from integration.defender.client import DefenderClient

                assert self._wiring is not None and self._store is not None
                transport, policy = self._wiring
                tokens = OnBehalfOfTokens(self.settings, transport, self._store, policy,
                                          assertion)
                known = self._user_caller_for(tokens, DefenderClient(
                    self._api("Defender", tokens)), assertion)
            self._callers[key] = known  # most recently used last
            while len(self._callers) > MAX_CALLERS:
                del self._callers[next(iter(self._callers))]
            return known

    def _user_caller_for(self, tokens: TokenProvider, client: DefenderClient,
                         assertion: str | None) -> _UserCaller:
        """A user's caller; their Graph token (for hunting) comes the way their Defender
        token did: the signed-in user's refresh token, or on behalf of them again."""
        from integration.defender.delegated import DeviceCodeTokens, OnBehalfOfTokens

        assert self._wiring is not None and self._store is not None
        transport, policy = self._wiring
        settings, store, scope = self.settings, self._store, self.settings.endpoints.graph_scope

        def graph_tokens() -> TokenProvider:
            if assertion is None:
                return DeviceCodeTokens(settings, transport, store, policy, scope=scope)
            return OnBehalfOfTokens(settings, transport, store, policy, assertion, scope=scope)

        return _UserCaller(tokens, client, graph_tokens, lambda t: self._api("Graph", t))

    def defender_api(self, tokens: TokenSource | None = None) -> Api:
        """The Defender API as the request pipeline sends to it: as the application, or as
        the principal whose `tokens` are given (a signed-in user)."""
        return self._api("Defender", tokens or self.tokens)

    def graph_api(self, tokens: TokenSource | None = None) -> Api:
        """Microsoft Graph as the request pipeline sends to it, for any Graph client: as the
        application (Graph's scope), or as the principal whose `tokens` are given."""
        return self._api("Graph", tokens or self.graph_tokens)

    def _api(self, service: Literal["Defender", "Graph"], tokens: TokenSource) -> Api:
        from integration.defender.pipeline import Api

        if self._wiring is None:
            self._build_client()
        assert self._wiring is not None
        transport, policy = self._wiring
        base = self.settings.endpoints.api_base if service == "Defender" \
            else self.settings.endpoints.graph_base
        return Api(service, base, transport, policy, tokens, self._budgets[service].for_call)

    @property
    def graph_tokens(self) -> TokenProvider:
        """Tokens for Microsoft Graph (the cloud's Graph scope), shared by every Graph client
        and by test_connectivity's Graph checks."""
        self._build_client()
        with self._lock:
            if self._graph_tokens is None:
                from integration.defender.auth import TokenProvider

                assert self._wiring is not None and self._store is not None
                transport, policy = self._wiring
                self._graph_tokens = TokenProvider(self.settings, transport, self._store, policy,
                                                   scope=self.settings.endpoints.graph_scope)
            return self._graph_tokens

    @property
    def hunting(self) -> HuntingClient:
        """Advanced hunting through Graph (the contact timeline), built on first use."""
        api = self.graph_api()
        with self._lock:
            if self._hunting is None:
                from integration.defender.hunting import HuntingClient

                self._hunting = HuntingClient(api)
            return self._hunting

    @property
    def security(self) -> SecurityClient:
        """Graph's security alerts and incidents (a scheduled run's pull and write-back),
        built on first use; its calls draw from the `security` bucket."""
        api = self.graph_api()
        with self._lock:
            if self._security is None:
                from integration.defender.alerts import SecurityClient

                self._security = SecurityClient(api)
            return self._security


class _AppCaller:
    """The application, as configured: the Parts' own tokens and clients."""

    def __init__(self, parts: Parts) -> None:
        self._parts = parts

    @property
    def tokens(self) -> TokenProvider:
        return self._parts.tokens

    @property
    def client(self) -> DefenderClient:
        return self._parts.client

    @property
    def graph_tokens(self) -> TokenProvider:
        return self._parts.graph_tokens

    @property
    def hunting(self) -> HuntingClient:
        return self._parts.hunting


class _UserCaller:
    """One user: their Defender tokens and client; their Graph tokens and hunting client
    built on first need."""

    def __init__(self, tokens: TokenProvider, client: DefenderClient,
                 graph_tokens: Callable[[], TokenProvider],
                 graph_api: Callable[[TokenProvider], Api]) -> None:
        self.tokens, self.client = tokens, client
        self._make_graph_tokens, self._graph_api = graph_tokens, graph_api
        self._graph: tuple[TokenProvider, HuntingClient] | None = None
        self._lock = threading.Lock()

    def _graph_parts(self) -> tuple[TokenProvider, HuntingClient]:
        with self._lock:
            if self._graph is None:
                from integration.defender.hunting import HuntingClient

                tokens = self._make_graph_tokens()
                self._graph = (tokens, HuntingClient(self._graph_api(tokens)))
            return self._graph

    @property
    def graph_tokens(self) -> TokenProvider:
        return self._graph_parts()[0]

    @property
    def hunting(self) -> HuntingClient:
        return self._graph_parts()[1]


# Advanced hunting through Graph allows 45 calls a minute per tenant (and CPU time, which
# the answer's own 429s enforce); Microsoft documents no hourly count.
HUNTING_LIMITS = (45, 45 * 60)
# Graph's security API throttles per app and tenant too; its documented ceilings are far
# above what one scheduled run asks (a few list pages and one comment per alert).
SECURITY_LIMITS = (150, 150 * 60)


def _budget(settings: Settings, store: StateStore, name: str) -> RateBudget:
    """The budget of one call type (or of all, `shared`). Defender's limits are per
    application and tenant, so that is the bucket's key."""
    from integration.defender.budget import RateBudget

    per_minute, per_hour = HUNTING_LIMITS if name == "hunting" else \
        SECURITY_LIMITS if name == "security" else (settings.per_minute, settings.per_hour)
    return RateBudget(store, f"{settings.tenant_id}|{settings.client_id}|{name}",
                      per_minute=per_minute, per_hour=per_hour,
                      max_wait_s=settings.max_rate_wait_s,
                      interactive_reserve=settings.interactive_reserve,
                      windows_s=settings.rate_windows_s)
