"""Enricher: indicator in, envelope out. Result cache, client and token wiring live here,
so that actions, the CLI and playbooks all run the same code.
"""

from __future__ import annotations

import json
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Literal

from integration.envelope import ACTION_BY_KIND, error_envelope, lookup_envelope
from integration.errors import PluginError
from integration.indicators import Indicator, parse

if TYPE_CHECKING:
    from integration.client import DefenderClient, Lookup
    from integration.config import Settings
    from integration.state import StateStore

Kind = Literal["domain", "file"]
RESULT_NAMESPACE = "results"


class Enricher:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._parts_lock = threading.Lock()
        self._client: DefenderClient | None = None
        self._store: StateStore | None = None
        self._tokens: Any = None
        # Identical lookups in flight at once are made once: later askers share the first's answer.
        self._in_flight: dict[tuple[str, str, bool], Future[dict[str, Any]]] = {}
        self._in_flight_lock = threading.Lock()

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
                from integration.auth import TokenProvider
                from integration.client import DefenderClient
                from integration.http import build_session
                from integration.retry import RetryPolicy

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
        key = (kind, indicator.value, include_raw)
        with self._in_flight_lock:
            shared = self._in_flight.get(key)
            if shared is None:
                mine: Future[dict[str, Any]] = Future()
                self._in_flight[key] = mine
        if shared is not None:
            return _with_original(shared.result(), indicator)
        try:
            envelope = self._lookup(action, indicator, use_cache=use_cache,
                                    include_raw=include_raw)
            mine.set_result(envelope)
            return envelope
        except BaseException as exc:
            mine.set_exception(exc)
            raise
        finally:
            with self._in_flight_lock:
                del self._in_flight[key]

    def lookup_many(self, kind: Kind, values: list[Any], *, use_cache: bool = True,
                    include_raw: bool = False) -> list[dict[str, Any]]:
        """Envelopes in input order; distinct indicators looked up concurrently."""
        if len(values) <= 1:
            return [self.lookup(kind, value, use_cache=use_cache, include_raw=include_raw)
                    for value in values]
        workers = min(self.settings.max_concurrency, len(values))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="lookup") as pool:
            return list(pool.map(
                lambda value: self.lookup(kind, value, use_cache=use_cache,
                                          include_raw=include_raw), values))

    def _lookup(self, action: str, indicator: Indicator, *, use_cache: bool,
                include_raw: bool) -> dict[str, Any]:
        cache_key = f"{self.settings.endpoints.api_base}|{self.settings.tenant_id}|" \
                    f"{indicator.type}:{indicator.value}"
        cached = self._cached(cache_key) if use_cache and self.settings.cache_ttl_s else None
        if cached is not None:
            return self._envelope(action, indicator, cached, cached=True, include_raw=include_raw)
        try:
            client = self.client
            result = (client.machines_for_domain(indicator) if indicator.type == "domain"
                      else client.machines_for_file(indicator))
        except PluginError as error:
            return error_envelope(action, error, indicator=indicator, api_calls=error.api_calls)
        if self.settings.cache_ttl_s:
            self._remember(cache_key, result)
        return self._envelope(action, indicator, result, cached=False, include_raw=include_raw)

    def _envelope(self, action: str, indicator: Indicator, result: Lookup, *, cached: bool,
                  include_raw: bool) -> dict[str, Any]:
        from integration.normalize import normalize_machines

        machines = normalize_machines(result.machines, include_raw=include_raw,
                                      portal_base=self.settings.endpoints.portal_base)
        return lookup_envelope(action, indicator, machines,
                               api_calls=0 if cached else result.api_calls,
                               truncated=result.truncated, cached=cached, sha1=result.sha1)

    def _cached(self, key: str) -> Lookup | None:
        from integration.client import Lookup

        text = self.store.get(RESULT_NAMESPACE, key)
        if text is None:
            return None
        try:
            return Lookup(**json.loads(text))
        except (TypeError, ValueError):
            return None  # written by another version: look it up again

    def _remember(self, key: str, result: Lookup) -> None:
        from dataclasses import asdict

        self.store.put(RESULT_NAMESPACE, key, json.dumps(asdict(result), separators=(",", ":")),
                       ttl_s=self.settings.cache_ttl_s)


def _with_original(envelope: dict[str, Any], indicator: Indicator) -> dict[str, Any]:
    """A shared answer, told in the words this caller used."""
    copy = dict(envelope)
    if "indicator" in copy:
        copy["indicator"] = {**copy["indicator"], "original": indicator.original}
    return copy
