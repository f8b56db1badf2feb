"""Enricher: indicator in, envelope out. Result cache, client and token wiring live here,
so that actions, the CLI and playbooks all run the same code.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from integration.defender.client import Lookup
from integration.errors import PluginError
from integration.lookup.envelope import ACTION_BY_KIND, error_envelope, lookup_envelope
from integration.lookup.indicators import Indicator, parse, parse_file_hash

if TYPE_CHECKING:
    from integration.config import Settings
    from integration.defender.client import DefenderClient
    from integration.state import StateStore

Kind = Literal["domain", "file"]
T = TypeVar("T")
RESULT_NAMESPACE = "results"
SHA1_NAMESPACE = "file-sha1"


class Enricher:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._parts_lock = threading.Lock()
        self._client: DefenderClient | None = None
        self._store: StateStore | None = None
        self._tokens: Any = None
        # Identical fetches in flight at once are made once: later askers share the answer.
        self._single_flight = SingleFlight()

    # -- wiring, built on first use so that invalid input costs nothing ----------------------

    @property
    def store(self) -> StateStore:
        with self._parts_lock:
            if self._store is None:
                from integration.state import open_store

                self._store = open_store(self.settings.state)
            return self._store

    @property
    def client(self) -> DefenderClient:
        store = self.store
        with self._parts_lock:
            if self._client is None:
                from integration.defender.auth import TokenProvider
                from integration.defender.client import DefenderClient
                from integration.defender.retry import RetryPolicy
                from integration.defender.transport import build_session

                settings = self.settings
                session = build_session(settings)
                policy = RetryPolicy(max_attempts=settings.max_attempts,
                                     deadline_s=settings.deadline_s,
                                     backoff_base_s=settings.backoff_base_s,
                                     backoff_cap_s=settings.backoff_cap_s,
                                     max_retry_after_s=settings.max_retry_after_s)
                self._tokens = TokenProvider(settings, session, store, policy)
                self._client = DefenderClient(settings, session=session, tokens=self._tokens,
                                              store=store, policy=policy)
            return self._client

    @property
    def tokens(self) -> Any:
        _ = self.client
        return self._tokens

    # -- lookups -------------------------------------------------------------------------------

    def lookup(self, kind: Kind, value: Any, *, use_cache: bool = True,
               include_raw: bool = False) -> dict[str, Any]:
        """One indicator, one envelope; expected failures become error envelopes."""
        action = ACTION_BY_KIND[kind]
        try:
            indicator = parse(kind, value)
        except PluginError as error:
            return error_envelope(action, error, original=value)
        return self._lookup(action, indicator, use_cache=use_cache, include_raw=include_raw)

    def lookup_many(self, kind: Kind, values: list[Any], *, use_cache: bool = True,
                    include_raw: bool = False) -> list[dict[str, Any]]:
        """Envelopes in input order; distinct indicators looked up concurrently."""
        if len(values) <= 1:
            return [self.lookup(kind, value, use_cache=use_cache, include_raw=include_raw)
                    for value in values]
        from concurrent.futures import ThreadPoolExecutor  # only a many-value run pays for it

        workers = min(self.settings.max_concurrency, len(values))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="lookup") as pool:
            return list(pool.map(
                lambda value: self.lookup(kind, value, use_cache=use_cache,
                                          include_raw=include_raw), values))

    def _lookup(self, action: str, indicator: Indicator, *, use_cache: bool,
                include_raw: bool) -> dict[str, Any]:
        use_cache = use_cache and self.settings.cache_ttl_s > 0
        resolve_calls = 0
        try:
            target: Indicator | None = indicator
            if indicator.type in ("sha256", "md5"):
                target, resolve_calls = self._resolve_sha1(indicator, use_cache)
            if target is None:
                result, cached = Lookup(found=False), resolve_calls == 0
            else:
                result, cached = self._machines(target, use_cache)
        except PluginError as error:
            return error_envelope(action, error, indicator=indicator,
                                  api_calls=resolve_calls + error.api_calls)
        from integration.lookup.normalize import normalize_machines

        machines = normalize_machines(result.machines, include_raw=include_raw,
                                      portal_base=self.settings.endpoints.portal_base)
        return lookup_envelope(
            action, indicator, machines,
            api_calls=resolve_calls + (0 if cached else result.api_calls),
            truncated=result.truncated, cached=cached and resolve_calls == 0,
            sha1=target.value if target is not None and target is not indicator else None)

    def _machines(self, indicator: Indicator, use_cache: bool) -> tuple[Lookup, bool]:
        """Defender's machines for a domain or a SHA-1, from the result cache when allowed."""
        key = self._cache_key(indicator)
        (result, cached), shared = self._single_flight.run(
            ("machines", key, use_cache), lambda: self._machines_once(indicator, key, use_cache))
        # A fetch shared with another caller cost this one nothing, like a cache hit.
        return result, cached or shared

    def _machines_once(self, indicator: Indicator, key: str,
                       use_cache: bool) -> tuple[Lookup, bool]:
        if use_cache:
            text = self.store.get(RESULT_NAMESPACE, key)
            if text is not None:
                try:
                    return Lookup(**json.loads(text)), True
                except (TypeError, ValueError):
                    pass  # written by another version: ask again
        client = self.client
        result = (client.machines_for_domain(indicator) if indicator.type == "domain"
                  else client.machines_for_file(indicator))
        if use_cache:  # `use_cache: false` bypasses the cache both ways: no read, no write
            compact = json.dumps(result._asdict(), separators=(",", ":"))
            self.store.put(RESULT_NAMESPACE, key, compact, ttl_s=self.settings.cache_ttl_s)
        return result, False

    def _resolve_sha1(self, file_hash: Indicator, use_cache: bool) -> tuple[Indicator | None, int]:
        """A SHA-256 or MD5 turned into its file's SHA-1; the answer is cached like a result,
        so a SHA-256 and its SHA-1 share one machines lookup."""
        key = self._cache_key(file_hash)
        (sha1, calls), shared = self._single_flight.run(
            ("sha1", key, use_cache), lambda: self._resolve_sha1_once(file_hash, key, use_cache))
        return sha1, 0 if shared else calls

    def _resolve_sha1_once(self, file_hash: Indicator, key: str,
                           use_cache: bool) -> tuple[Indicator | None, int]:
        if use_cache:
            known = self.store.get(SHA1_NAMESPACE, key)
            if known is not None:
                return (parse_file_hash(known) if known else None), 0
        sha1, calls = self.client.resolve_sha1(file_hash)
        if use_cache:
            self.store.put(SHA1_NAMESPACE, key, sha1.value if sha1 else "",
                           ttl_s=self.settings.cache_ttl_s)
        return sha1, calls

    def _cache_key(self, indicator: Indicator) -> str:
        return f"{self.settings.endpoints.api_base}|{self.settings.tenant_id}|" \
               f"{indicator.type}:{indicator.value}"


class SingleFlight:
    """Runs a function once per key among the threads asking for it at the same moment."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: dict[Hashable, _Call] = {}

    def run(self, key: Hashable, function: Callable[[], T]) -> tuple[T, bool]:
        """The function's result, and whether it was another caller's run."""
        with self._lock:
            call = self._calls.get(key)
            leader = call is None
            if call is None:
                call = self._calls[key] = _Call()
        if not leader:
            call.done.wait()
            if call.error is not None:
                raise call.error
            return call.result, True
        try:
            call.result = function()
            return call.result, False
        except BaseException as exc:
            call.error = exc
            raise
        finally:
            with self._lock:
                del self._calls[key]
            call.done.set()


class _Call:
    """One run in flight (not concurrent.futures.Future: its import costs start-up time)."""

    __slots__ = ("done", "error", "result")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None
