"""Action steps: each distinct indicator looked up once, concurrently, within the rate budget.

Lookups go through Enricher.lookup_many (its pool is bounded by max_concurrency and its client
takes every call from the shared rate budget). Two things are added here:

* a memo of envelopes (per run, or per batch in the state store) so an indicator seen again,
  by a later step, a later alert or a restarted batch, is not asked again;
* an order for file hashes: SHA-1s first, then SHA-256s, then MD5s. Within one round no two
  hashes can belong to the same file, and a later round's SHA-256 resolves to its SHA-1 and
  finds that SHA-1's machines in the result cache: one machines call per file.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from integration.errors import InvalidInput, PluginError
from integration.values.envelope import (
    ACTION_BY_KIND,
    KIND_BY_ACTION,
    Envelope,
    as_dicts,
    error_envelope,
)
from integration.values.indicators import parse

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

    from integration.defender.budget import Lane
    from integration.lookup.service import Enricher
    from integration.state import StateStore

PARAM_BY_KIND = {"domain": "domain", "file": "file_hash"}
ROUNDS = (("domain", "sha1"), ("sha256",), ("md5",))
RAW_SUFFIX = "+raw"
CONTACT_SUFFIX = "+contact"
MEMO_STATUSES = frozenset({"success", "not_found"})  # errors are asked again, never kept


def principal_part(key: str) -> str:
    """`application:<id>|` of a memo key `application:<id>|domain:evil.example`."""
    return key.partition("|")[0] + "|"


class Memo(Protocol):
    def get(self, key: str) -> Envelope | None: ...

    def put(self, key: str, envelope: Envelope) -> None: ...

    def by_sha1(self, sha1: str) -> Envelope | None:
        """An envelope of another hash of the file whose SHA-1 this is (`sha1` led by the
        principal's part of the key)."""


class LocalMemo:
    """The memo of one process: a dict, and an index of resolved SHA-1s."""

    def __init__(self) -> None:
        self._envelopes: dict[str, Envelope] = {}
        self._sha1: dict[str, str] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> Envelope | None:
        with self._lock:
            return self._envelopes.get(key)

    def put(self, key: str, envelope: Envelope) -> None:
        with self._lock:
            self._remember(key, envelope)

    def by_sha1(self, sha1: str) -> Envelope | None:
        with self._lock:
            key = self._sha1.get(sha1)
            return self._envelopes.get(key) if key else None

    def _remember(self, key: str, envelope: Envelope) -> None:
        self._envelopes[key] = envelope
        sha1 = (envelope.indicator or {}).get("sha1")
        # A raw (or contact) envelope answers raw (or contact) asks only; and only the
        # principal it was fetched for (its key's first part).
        if sha1 and not key.endswith((RAW_SUFFIX, CONTACT_SUFFIX)):
            self._sha1.setdefault(principal_part(key) + sha1, key)


class StoreMemo(LocalMemo):
    """A batch's memo, kept in the state store so that it outlives a killed run."""

    def __init__(self, store: StateStore, namespace: str, ttl_s: float) -> None:
        super().__init__()
        self._store, self._namespace, self._ttl_s = store, namespace, ttl_s
        for key in store.keys(namespace):
            text = store.get(namespace, key)
            if text:  # the batch's storage: JSON in the state store
                self._remember(key, Envelope.from_dict(json.loads(text)))

    def clear(self) -> None:
        """Forget every answer, here and in the store (the run it served has ended)."""
        for key in self._store.keys(self._namespace):
            self._store.delete(self._namespace, key)
        with self._lock:
            self._envelopes.clear()
            self._sha1.clear()

    def put(self, key: str, envelope: Envelope) -> None:
        # Written before the alert's output: a kill after this costs no second call.
        self._store.put(self._namespace, key,
                        json.dumps(envelope.to_dict(), separators=(",", ":")), ttl_s=self._ttl_s)
        super().put(key, envelope)


class LookupService:
    """Runs action steps. `enricher` is built on first need, so that a playbook whose steps
    never reach an action (or a bad alert) needs no configuration."""

    def __init__(self, enricher: Callable[[], Enricher], memo: Memo | None = None,
                 config: Mapping[str, Any] | None = None, priority: Lane = "batch") -> None:
        self._enricher_factory = enricher
        self._enricher: Enricher | None = None
        self.memo: Memo = memo if memo is not None else LocalMemo()
        self.config = config
        self.priority = priority  # the rate budget's lane for every lookup it makes
        self.looked_up = 0  # indicators sent to Defender (by this service)
        self.memo_hits = 0
        self._counting = threading.Lock()  # alerts run on several threads at once
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    @property
    def in_flight(self) -> int:
        """The most lookups in flight at once (max_concurrency), across every alert."""
        return max(1, self.enricher.settings.max_concurrency)

    def _lookups_pool(self) -> ThreadPoolExecutor:
        # One pool for every alert of the run: its size is the bound on lookups in flight,
        # however many alerts are running (Enricher.lookup_many would make a pool per call).
        from concurrent.futures import ThreadPoolExecutor

        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=self.in_flight,
                                                thread_name_prefix="lookup")
            return self._pool

    def close(self) -> None:
        with self._pool_lock:
            if self._pool is not None:
                self._pool.shutdown(wait=True, cancel_futures=True)
                self._pool = None

    @property
    def enricher(self) -> Enricher:
        if self._enricher is None:
            self._enricher = self._enricher_factory()
        return self._enricher

    def run_action(self, action_id: str, params_list: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """One result per params, in order: the action's JSON, as a platform gets it (the
        playbook's documents are JSON, read by its expressions)."""
        kind = KIND_BY_ACTION.get(action_id)
        if kind is None:  # an action the Enricher does not serve: through the manifest
            from integration.manifest import manifest

            return [manifest().run(action_id, params, self.config) for params in params_list]
        from integration.actions import validate_params
        from integration.manifest import manifest

        action = ACTION_BY_KIND[kind]
        schema = manifest().action(action_id).input_schema
        results: list[Envelope | None] = [None] * len(params_list)
        wanted: dict[tuple[bool, bool, bool, str | None], list[int]] = {}
        for position, params in enumerate(params_list):
            try:
                validate_params(schema, params)  # the entry points' own check
            except InvalidInput as error:
                original = params.get(PARAM_BY_KIND[kind]) if isinstance(params, dict) else None
                results[position] = error_envelope(action, error, original=original)
                continue
            options = (params.get("use_cache", True), params.get("include_raw", False),
                       params.get("contact", False), params.get("user_assertion"))
            wanted.setdefault(options, []).append(position)
        for (use_cache, include_raw, contact, user_assertion), positions in wanted.items():
            values = [params_list[p][PARAM_BY_KIND[kind]] for p in positions]
            for position, envelope in zip(positions, self.lookup(
                    kind, values, use_cache=use_cache, include_raw=include_raw,
                    contact=contact, user_assertion=user_assertion), strict=True):
                results[position] = envelope
        return as_dicts(envelope for envelope in results if envelope is not None)

    def lookup(self, kind: str, values: list[Any], *, use_cache: bool = True,
               include_raw: bool = False, contact: bool = False,
               user_assertion: str | None = None) -> list[Envelope]:
        """Envelopes in input order; each distinct indicator asked at most once, per
        principal: the memo holds answers by whom they were fetched for."""
        parsed: list[tuple[str, str] | None] = []  # (indicator type, memo key) or None
        for value in values:
            try:
                indicator = parse(kind, value)  # type: ignore[arg-type]
            except (PluginError, TypeError):
                parsed.append(None)
            else:
                # An answer with the contact timeline is another answer than one without.
                suffix = (RAW_SUFFIX if include_raw else "") + (CONTACT_SUFFIX if contact else "")
                parsed.append((indicator.type, f"{kind}:{indicator.value}{suffix}"))
        # Keyed by whom they run as (from a token valid now; invalid values need none).
        # Without one, nothing is recalled or kept: the lookups themselves say why.
        who = self._principal_key(user_assertion) if any(parsed) else None
        parsed = [(found[0], f"{who}|{found[1]}") if found else None for found in parsed]
        recall = use_cache and who is not None
        answers: dict[str, Envelope] = {}
        invalid = [v for v, p in zip(values, parsed, strict=True) if p is None]
        for round_types in ROUNDS:
            todo: dict[str, Any] = {}
            for value, found in zip(values, parsed, strict=True):
                if found is None or found[0] not in round_types or found[1] in answers:
                    continue
                known = self._recall(found, include_raw or contact) if recall else None
                if known is not None:
                    answers[found[1]] = known
                    with self._counting:
                        self.memo_hits += 1
                else:
                    todo.setdefault(found[1], value)
            if todo:
                with self._counting:
                    self.looked_up += len(todo)
                envelopes = self._ask(kind, list(todo.values()), use_cache=use_cache,
                                      include_raw=include_raw, contact=contact,
                                      user_assertion=user_assertion)
                for key, envelope in zip(todo, envelopes, strict=True):
                    answers[key] = envelope
                    if envelope.status in MEMO_STATUSES and who is not None:
                        self.memo.put(key, envelope)
        # Invalid values cost nothing: the Enricher answers them without a call.
        bad = iter(self.enricher.lookup_many(kind, invalid) if invalid else [])  # type: ignore[arg-type]
        return [next(bad) if found is None else answers[found[1]].as_asked(value)
                for value, found in zip(values, parsed, strict=True)]

    def _principal_key(self, user_assertion: str | None) -> str | None:
        """Whom these lookups run as (from a token valid now), or None when that cannot be
        had."""
        try:
            return self.enricher.principal(user_assertion).key
        except PluginError:
            return None

    def _ask(self, kind: str, values: list[Any], *, use_cache: bool, include_raw: bool,
             contact: bool, user_assertion: str | None) -> list[Envelope]:
        """Envelopes from the Enricher, each lookup on the shared pool."""
        enricher = self.enricher
        if contact:  # one hunting query for all of them: the Enricher's own batch call
            return enricher.lookup_many(kind, values, use_cache=use_cache,  # type: ignore[arg-type]
                                        include_raw=include_raw, priority=self.priority,
                                        contact=True, user_assertion=user_assertion)
        pool = self._lookups_pool()
        futures = [pool.submit(enricher.lookup, kind, value,  # type: ignore[arg-type]
                               use_cache=use_cache, include_raw=include_raw,
                               priority=self.priority, user_assertion=user_assertion)
                   for value in values]
        return [future.result() for future in futures]

    def _recall(self, found: tuple[str, str], include_raw: bool) -> Envelope | None:
        indicator_type, key = found
        known = self.memo.get(key)
        if known is None and indicator_type == "sha1" and not include_raw:
            sha1 = key.rpartition(":")[2]
            other = self.memo.by_sha1(principal_part(key) + sha1)
            if other is not None:  # the same file, asked before by its SHA-256 or MD5
                known = other._replace(indicator={"type": "sha1", "value": sha1,
                                                  "original": sha1})
        return known.from_cache() if known is not None else None
