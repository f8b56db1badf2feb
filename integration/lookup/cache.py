"""The one cache of lookups: Defender's answers by indicator, the SHA-1 a SHA-256 or MD5
resolved to, and single-flight, so identical fetches in flight at once are made once.

Answers are kept in the state store (shared by every process using it) for `cache_ttl_s`.
Only answers that normalized cleanly are kept: a record the plugin cannot read is never
cached, so a passing fault upstream is not served again for the cache's lifetime.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any, TypeVar

from integration.errors import PluginError

if TYPE_CHECKING:
    from integration.state import StateStore
    from integration.values.principal import Principal

T = TypeVar("T")
RESULT_NAMESPACE = "results"
SHA1_NAMESPACE = "file-sha1"


class LookupCache:
    """Cached answers of one API base and tenant; `ttl_s` 0 turns caching off."""

    def __init__(self, store: Callable[[], StateStore], scope: str, ttl_s: float) -> None:
        self._store = store  # built on first use: invalid input never opens the state
        self._scope = scope
        self.ttl_s = ttl_s
        self.single_flight = SingleFlight()

    def key(self, indicator_type: str, value: str, principal: Principal | None = None) -> str:
        """An answer's key: per principal (a user's answer holds only their device groups);
        without one, a fact shared by all (the SHA-1 a hash resolves to)."""
        if principal is None:
            return f"{self._scope}|{indicator_type}:{value}"
        return f"{self._scope}|{principal.key}|{indicator_type}:{value}"

    def answer(self, key: str) -> dict[str, Any] | None:
        text = self._store().get(RESULT_NAMESPACE, key)
        if text is None:
            return None
        try:
            answer = json.loads(text)
        except ValueError:
            return None  # written by another version: ask again
        return answer if isinstance(answer, dict) else None

    def keep_answer(self, key: str, answer: dict[str, Any]) -> None:
        self._store().put(RESULT_NAMESPACE, key, json.dumps(answer, separators=(",", ":")),
                          ttl_s=self.ttl_s)

    def sha1(self, key: str) -> str | None:
        """The SHA-1 a hash resolved to; "" when Defender did not know it; None if not asked."""
        return self._store().get(SHA1_NAMESPACE, key)

    def keep_sha1(self, key: str, sha1: str) -> None:
        self._store().put(SHA1_NAMESPACE, key, sha1, ttl_s=self.ttl_s)


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
            with call.done:  # held by the leader until its run ends
                pass
            if call.error is not None:
                # The leader's failure, but not its cost: this caller sent nothing.
                error = call.error
                raise error.replace(api_calls=0) if isinstance(error, PluginError) else error
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
            call.done.release()


class _Call:
    """One run in flight (not concurrent.futures.Future: its import costs start-up time).
    `done` is a lock the leader holds while it runs: cheaper than an Event on every call,
    and the common case has no one waiting."""

    __slots__ = ("done", "error", "result")

    def __init__(self) -> None:
        self.done = threading.Lock()
        self.done.acquire()
        self.result: Any = None
        self.error: BaseException | None = None
