"""What a sweep keeps: across sweeps (each indicator's machines, each feed's position), and
within one run (its plan and every answer, so a killed run resumes without asking twice).

Across sweeps the key is tenant, principal (`Principal.key`: the application, or one signed-in
user) and feed: a feed swept for another tenant or by another principal (a user who sees
fewer device groups) starts from nothing, and never reads or moves this one's position.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from integration.config import Settings
    from integration.state import StateStore

STATE_TTL_S = 400 * 86400  # refreshed by every sweep; a feed swept yearly still remembers
RUN_TTL_S = 7 * 86400  # a killed run can be resumed for a week
CARRY_KEY = "_carry"  # a feed's own carry-over (TAXII position and objects), beside its keys


def _digest(*parts: str) -> str:
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:24]


class FeedState:
    """One feed's remembered machines per indicator, for one tenant and principal."""

    def __init__(self, store: StateStore, settings: Settings, principal: str,
                 feed: str) -> None:
        self.store = store
        self.namespace = "sweep-state:" + _digest(settings.identity, principal, feed)
        self._known: set[str] | None = None

    def machines(self, key: str) -> set[str]:
        if self._known is None:  # one listing, then only the keys that exist are read
            self._known = set(self.store.keys(self.namespace))
        if key not in self._known:
            return set()
        text = self.store.get(self.namespace, key)
        return set(json.loads(text)["machines"]) if text else set()

    def carry(self) -> dict[str, Any] | None:
        text = self.store.get(self.namespace, CARRY_KEY)
        return json.loads(text) if text else None

    def save(self, key: str, machines: list[str]) -> None:
        if machines:
            self.store.put(self.namespace, key, json.dumps({"machines": machines}),
                           ttl_s=STATE_TTL_S)
        else:
            self.store.delete(self.namespace, key)

    def save_carry(self, carry: dict[str, Any]) -> None:
        self.store.put(self.namespace, CARRY_KEY, json.dumps(carry, separators=(",", ":")),
                       ttl_s=STATE_TTL_S)


class RunRecord:
    """One sweep run's plan, answers and outcome, kept until the run has been committed."""

    def __init__(self, store: StateStore, run_id: str) -> None:
        self.store, self.namespace = store, f"sweep-run:{run_id}"

    def get(self, key: str) -> Any:
        text = self.store.get(self.namespace, key)
        return json.loads(text) if text else None

    def put(self, key: str, value: Any) -> None:
        self.store.put(self.namespace, key, json.dumps(value, separators=(",", ":")),
                       ttl_s=RUN_TTL_S)

    def clear(self) -> None:
        for key in self.store.keys(self.namespace):
            self.store.delete(self.namespace, key)


def run_id(settings: Settings, principal: str, feeds: list[str], lookback: str) -> str:
    """One sweep's identity: who sweeps which feeds over which lookback."""
    return _digest(settings.identity, principal, lookback, *sorted(set(feeds)))
