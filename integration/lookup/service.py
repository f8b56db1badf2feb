"""Enricher: indicator in, envelope out. It parses the indicator, asks the cache or Defender,
normalizes the machines and builds the envelope. It is given its collaborators (state,
clients, tokens) as providers, called on first need, so a call refused for bad input builds
none of them; `integration.compose` is what wires them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal, Protocol

from integration.errors import PluginError
from integration.lookup.cache import LookupCache
from integration.values.envelope import ACTION_BY_KIND, Envelope, error_envelope, lookup_envelope
from integration.values.indicators import Indicator, parse, parse_file_hash
from integration.values.principal import Principal

if TYPE_CHECKING:
    from integration.config import Settings
    from integration.defender.alerts import SecurityClient
    from integration.defender.auth import TokenProvider
    from integration.defender.budget import Lane
    from integration.defender.client import DefenderClient
    from integration.defender.hunting import HuntingClient
    from integration.state import StateStore

Kind = Literal["domain", "file"]


class Caller(Protocol):
    """Whom a call runs as: that principal's tokens and the clients sending with them (the
    Graph ones built on first need)."""

    @property
    def tokens(self) -> TokenProvider: ...

    @property
    def client(self) -> DefenderClient: ...

    @property
    def graph_tokens(self) -> TokenProvider: ...

    @property
    def hunting(self) -> HuntingClient: ...


class Answer:
    """Defender's machines for one domain or SHA-1, normalized, with the raw record of each
    beside it (for `include_raw`, also when served from the cache), as cached."""

    __slots__ = ("api_calls", "machines", "raws", "truncated", "warnings")

    def __init__(self, machines: list[dict[str, Any]], raws: list[dict[str, Any]], *,
                 api_calls: int = 0, truncated: bool = False,
                 warnings: tuple[str, ...] = ()) -> None:
        self.machines, self.raws, self.api_calls = machines, raws, api_calls
        self.truncated, self.warnings = truncated, warnings

    def served(self, include_raw: bool) -> list[dict[str, Any]]:
        if not include_raw:
            return self.machines  # never mutated downstream: no copy on the common path
        return [{**machine, "mde": {**machine.get("mde", {}), "raw": raw}}
                for machine, raw in zip(self.machines, self.raws, strict=True)]

    def to_dict(self) -> dict[str, Any]:
        return {"machines": self.machines, "raws": self.raws, "truncated": self.truncated,
                "warnings": list(self.warnings)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Answer | None:
        """A cached answer, or None when the row is not one (another version wrote it, or it
        was corrupted): the lookup then asks Defender again and overwrites the row."""
        machines, raws = data.get("machines"), data.get("raws")
        warnings, truncated = data.get("warnings", []), data.get("truncated", False)
        if not isinstance(machines, list) or not isinstance(raws, list) \
                or len(raws) != len(machines) or not isinstance(truncated, bool) \
                or not isinstance(warnings, list) \
                or not all(isinstance(warning, str) for warning in warnings) \
                or not all(isinstance(raw, dict) for raw in raws) \
                or not all(_is_artifact(machine) for machine in machines):
            return None
        return cls(machines, raws, truncated=truncated, warnings=tuple(warnings))


def _as_sha1(value: str | None) -> Indicator | None:
    """A SHA-1 kept in the state, or None when the row holds none (or something else)."""
    if not value:
        return None
    try:
        parsed = parse_file_hash(value)
    except PluginError:
        return None
    return parsed if parsed.type == "sha1" else None


def _is_artifact(machine: Any) -> bool:
    """The shape every reader of a machine artifact relies on (uid, and mappings where the
    renderers and the merge step look inside)."""
    return isinstance(machine, dict) and isinstance(machine.get("uid"), str) \
        and all(isinstance(machine.get(key, {}), dict) for key in ("mde", "os")) \
        and isinstance(machine.get("groups", []), list)


class Enricher:
    def __init__(self, settings: Settings, *, store: Callable[[], StateStore],
                 client: Callable[[], DefenderClient], tokens: Callable[[], TokenProvider],
                 graph_tokens: Callable[[], TokenProvider],
                 hunting: Callable[[], HuntingClient],
                 caller: Callable[[str | None], Caller],
                 security: Callable[[], SecurityClient] | None = None) -> None:
        self.settings = settings
        self._store, self._client, self._tokens, self._hunting = store, client, tokens, hunting
        self._graph_tokens = graph_tokens
        self.caller = caller  # whom a call runs as, by its user_assertion (or none)
        self._security = security
        self.cache = LookupCache(store, f"{settings.endpoints.api_base}|{settings.tenant_id}",
                                 settings.cache_ttl_s)

    @property
    def store(self) -> StateStore:
        return self._store()

    @property
    def client(self) -> DefenderClient:
        return self._client()

    @property
    def tokens(self) -> TokenProvider:
        """Tokens for the Defender API."""
        return self._tokens()

    @property
    def hunting(self) -> HuntingClient:
        """Advanced hunting through Graph (the contact timeline, sweeps)."""
        return self._hunting()

    @property
    def graph_tokens(self) -> TokenProvider:
        """Tokens for Microsoft Graph (hunting, and test_connectivity's Graph checks)."""
        return self._graph_tokens()

    @property
    def security(self) -> SecurityClient:
        """Graph's security alerts and incidents, for a scheduled run's pull and write-back."""
        if self._security is None:
            from integration.errors import ConfigError

            raise ConfigError("this Enricher was built without Graph's security API")
        return self._security()

    # -- lookups -------------------------------------------------------------------------------

    def lookup(self, kind: Kind, value: Any, *, use_cache: bool = True,
               include_raw: bool = False, priority: Lane = "batch",
               contact: bool = False, user_assertion: str | None = None) -> Envelope:
        """One indicator, one envelope; expected failures become error envelopes (carrying
        the error). `priority` is the rate budget's lane: an analyst waiting is `interactive`.
        `contact` adds the contact timeline from advanced hunting (lookup/contact.py).
        `user_assertion` (the analyst's token a platform holds) runs it on their behalf."""
        if contact:
            return self.lookup_many(kind, [value], use_cache=use_cache, include_raw=include_raw,
                                    priority=priority, contact=True,
                                    user_assertion=user_assertion)[0]
        return self.lookup_envelope(kind, value, use_cache=use_cache, include_raw=include_raw,
                                    priority=priority, user_assertion=user_assertion)

    def lookup_many(self, kind: Kind, values: list[Any], *, use_cache: bool = True,
                    include_raw: bool = False, priority: Lane = "batch", contact: bool = False,
                    user_assertion: str | None = None) -> list[Envelope]:
        """Envelopes in input order; distinct indicators looked up concurrently. With
        `contact`, one hunting query for the whole batch once every lookup is done."""
        if contact:
            return self._with_contact(kind, self.lookup_many(
                kind, values, use_cache=use_cache, include_raw=include_raw, priority=priority,
                user_assertion=user_assertion), priority, user_assertion)
        if len(values) <= 1:
            return [self.lookup(kind, value, use_cache=use_cache, include_raw=include_raw,
                                priority=priority, user_assertion=user_assertion)
                    for value in values]
        from concurrent.futures import ThreadPoolExecutor  # only a many-value run pays for it

        workers = min(self.settings.max_concurrency, len(values))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="lookup") as pool:
            return list(pool.map(
                lambda value: self.lookup(kind, value, use_cache=use_cache,
                                          include_raw=include_raw, priority=priority,
                                          user_assertion=user_assertion),
                values))

    def principal(self, user_assertion: str | None = None) -> Principal:
        """Whom a call with this assertion (or none) runs as, from a token valid now."""
        return self.caller(user_assertion).tokens.principal()

    def _with_contact(self, kind: Kind, envelopes: list[Envelope], lane: Lane,
                      user_assertion: str | None) -> list[Envelope]:
        from integration.lookup.contact import with_contact

        # Hunted as the same principal as the lookups: a user's query sees only the devices
        # of their device groups, as their machines answers do.
        return with_contact(envelopes, kind, lambda: self.caller(user_assertion).hunting,
                            portal_base=self.settings.endpoints.portal_base, lane=lane)

    def lookup_envelope(self, kind: Kind, value: Any, *, use_cache: bool = True,
                        include_raw: bool = False, priority: Lane = "batch",
                        user_assertion: str | None = None) -> Envelope:
        action = ACTION_BY_KIND[kind]
        try:
            indicator = parse(kind, value, self.settings.internal_domain_suffixes)
        except PluginError as error:
            return error_envelope(action, error, original=value)
        return self._lookup(action, indicator, use_cache=use_cache, include_raw=include_raw,
                            lane=priority, user_assertion=user_assertion)

    def _lookup(self, action: str, indicator: Indicator, *, use_cache: bool,
                include_raw: bool, lane: Lane, user_assertion: str | None) -> Envelope:
        use_cache = use_cache and self.cache.ttl_s > 0
        resolve_calls = 0
        principal: Principal | None = None
        try:
            # Who is asking, from a token valid now: a credential that no longer signs in
            # is refused here, never served an answer cached earlier.
            caller = self.caller(user_assertion)
            principal = caller.tokens.principal()
            target: Indicator | None = indicator
            if indicator.type in ("sha256", "md5"):
                target, resolve_calls = self._resolve_sha1(indicator, use_cache, lane, caller)
            if target is None:
                answer, cached = Answer([], []), resolve_calls == 0
            else:
                answer, cached = self._machines(target, use_cache, lane, caller, principal)
        except PluginError as error:
            return error_envelope(action, error, indicator=indicator,
                                  api_calls=resolve_calls + error.api_calls,
                                  principal=principal)
        machines = answer.served(include_raw)
        return lookup_envelope(
            action, indicator, machines,
            api_calls=resolve_calls + (0 if cached else answer.api_calls),
            truncated=answer.truncated, cached=cached and resolve_calls == 0,
            sha1=target.value if target is not None and target is not indicator else None,
            warnings=answer.warnings, principal=principal)

    def _machines(self, indicator: Indicator, use_cache: bool, lane: Lane, caller: Caller,
                  principal: Principal) -> tuple[Answer, bool]:
        """Defender's machines for a domain or a SHA-1, from the cache when allowed: the
        principal's own answers only (a user's hold only their device groups)."""
        key = self.cache.key(indicator.type, indicator.value, principal)
        (answer, cached), shared = self.cache.single_flight.run(
            # Per lane: an analyst must not wait on a batch fetch queued for the budget.
            ("machines", key, use_cache, lane),
            lambda: self._machines_once(indicator, key, use_cache, lane, caller))
        # A fetch shared with another caller cost this one nothing, like a cache hit.
        return answer, cached or shared

    def _machines_once(self, indicator: Indicator, key: str, use_cache: bool,
                       lane: Lane, caller: Caller) -> tuple[Answer, bool]:
        if use_cache:
            kept = self.cache.answer(key)
            answer = Answer.from_dict(kept) if kept is not None else None
            if answer is not None:
                return answer, True
        client = caller.client
        result = (client.machines_for_domain(indicator, lane) if indicator.type == "domain"
                  else client.machines_for_file(indicator, lane))
        answer = self._normalized(result.machines, result.api_calls, result.truncated,
                                  result.warnings)
        # `use_cache: false` bypasses the cache both ways: no read, no write. An answer that
        # left records out is not kept: the fault may pass, and the next lookup should see.
        if use_cache and not answer.warnings:
            self.cache.keep_answer(key, answer.to_dict())
        return answer, False

    def _normalized(self, raws: list[dict[str, Any]], api_calls: int,
                    truncated: bool, warnings: tuple[str, ...] = ()) -> Answer:
        """Normalized before anything is cached; a record that cannot be read is left out
        with a warning rather than failing, or poisoning the cache for, the whole answer.
        `warnings` (the client's: a page cap reached) travel with it."""
        from integration.lookup.normalize import normalize_machine, normalize_machines

        portal_base = self.settings.endpoints.portal_base
        try:  # the common case: every record reads
            return Answer(normalize_machines(raws, portal_base=portal_base), raws,
                          api_calls=api_calls, truncated=truncated, warnings=warnings)
        except PluginError:
            pass
        machines, kept, dropped = [], [], []
        for position, raw in enumerate(raws):
            try:
                machines.append(normalize_machine(raw, portal_base=portal_base))
            except PluginError as error:
                dropped.append(f"record {position + 1}: {error.message}")
            else:
                kept.append(raw)
        if dropped:
            warnings += (
                f"left out {len(dropped)} machine record(s) Defender sent that cannot be "
                "read: " + "; ".join(dropped[:3]) + ("; ..." if len(dropped) > 3 else ""),)
        return Answer(machines, kept, api_calls=api_calls, truncated=truncated,
                      warnings=warnings)

    def _resolve_sha1(self, file_hash: Indicator, use_cache: bool, lane: Lane,
                      caller: Caller) -> tuple[Indicator | None, int]:
        """A SHA-256 or MD5 turned into its file's SHA-1; the answer is cached like a result,
        so a SHA-256 and its SHA-1 share one machines lookup. It describes the file, not
        devices, so every principal shares it."""
        key = self.cache.key(file_hash.type, file_hash.value)
        (sha1, calls), shared = self.cache.single_flight.run(
            ("sha1", key, use_cache, lane),
            lambda: self._resolve_sha1_once(file_hash, key, use_cache, lane, caller))
        return sha1, 0 if shared else calls

    def _resolve_sha1_once(self, file_hash: Indicator, key: str, use_cache: bool,
                           lane: Lane, caller: Caller) -> tuple[Indicator | None, int]:
        if use_cache:
            known = self.cache.sha1(key)
            if known == "":
                return None, 0  # Defender did not know the file
            cached = _as_sha1(known)
            if cached is not None:
                return cached, 0
            # None: not asked yet, or a row that is not a SHA-1 (asked again, overwritten)
        sha1, calls = caller.client.resolve_sha1(file_hash, lane)
        if use_cache:
            self.cache.keep_sha1(key, sha1.value if sha1 else "")
        return sha1, calls
