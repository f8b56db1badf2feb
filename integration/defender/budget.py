"""The shared rate budget of one application in one tenant, its lanes, and the 429 pause.

Defender's limits are per application and tenant, and Microsoft documents them per API
(100 calls a minute and 1,500 an hour for each call), so each call type has its own bucket
(`rate_limit.buckets: per_api`, the default) or all share one (`shared`, stricter than
needed and never over). Every process using the same state draws from the same buckets: the
state store keeps the call log and the pause atomically.

Two lanes share each bucket. Interactive work (an analyst's lookup) may take every call of a
window; batch work (scheduled enrichment, automated playbooks) never takes the last
`interactive_reserve` of it (20 % by default), so an analyst's lookup during a saturating
batch goes out at once. Both lanes count in one log, so the lanes never add up to more
than the limit.

A 429's Retry-After pauses every caller of the bucket until it ends.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Literal

from integration.errors import RateLimited

if TYPE_CHECKING:
    from integration.state import StateStore

log = logging.getLogger("mde_enrich")

Lane = Literal["interactive", "batch"]
CallType = Literal["domain_machines", "file_machines", "file_info", "machines_list", "hunting",
                   "security"]
WINDOWS_S = (60.0, 3600.0)  # Defender counts a minute and an hour
# A call is stamped when its slot is granted and reaches Defender up to a few hundred ms
# later (the state's commit, TLS, the network): Defender counts arrivals. Each window is
# kept this much longer than Defender's, so a slot frees only once the server too has let
# the call it replaces age out.
ARRIVAL_MARGIN_S = 1.0
# A scheduled run's --deadline (time.monotonic()): while set, a call waits for the budget up
# to it instead of max_rate_wait_s, so a backlog is paced, not failed. One run per process.
_run_deadline: float | None = None


@contextlib.contextmanager
def paced_until(deadline: float | None) -> Iterator[None]:
    """Within this block every budget waits for a free call until `deadline` (monotonic)."""
    global _run_deadline
    before, _run_deadline = _run_deadline, deadline
    try:
        yield
    finally:
        _run_deadline = before


class RateBudget:
    def __init__(self, store: StateStore, bucket: str, *, per_minute: int, per_hour: int,
                 max_wait_s: float, interactive_reserve: float = 0.2,
                 windows_s: tuple[float, float] = WINDOWS_S,
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self.bucket = bucket
        self._per_minute, self._per_hour = per_minute, per_hour
        windows_s = (windows_s[0] + ARRIVAL_MARGIN_S, windows_s[1] + ARRIVAL_MARGIN_S)
        self._limits: dict[Lane, tuple[tuple[float, int], ...]] = {
            "interactive": ((windows_s[0], per_minute), (windows_s[1], per_hour)),
            # At least one call a window stays for batch work, however small the limit.
            "batch": ((windows_s[0], _batch_share(per_minute, interactive_reserve)),
                      (windows_s[1], _batch_share(per_hour, interactive_reserve))),
        }
        self._max_wait_s = max_wait_s
        self._sleep = sleep
        self._clock = clock

    def take(self, lane: Lane = "batch") -> float:
        """Wait for a call from the shared budget, or give up without sending anything.
        Returns the seconds waited."""
        waited = 0.0
        deadline = _run_deadline
        max_wait = self._max_wait_s if deadline is None else \
            max(0.0, deadline - time.monotonic())
        while (wait := self._store.take_slot(self.bucket, self._limits[lane])) > 0:
            if waited + wait > max_wait:
                raise RateLimited(self._why_no_call(lane, deadline is not None), retryable=True)
            log.info("rate budget %s (%s lane): waiting %.2f s for a free call", self.bucket,
                     lane, wait)
            self._sleep(wait)
            waited += wait
        return waited

    def pause(self, seconds: float) -> None:
        """Defender said 429 with Retry-After: hold every caller of this bucket that long."""
        self._store.pause(self.bucket, seconds)

    def _why_no_call(self, lane: Lane, paced: bool = False) -> str:
        limit = "the run's --deadline" if paced else f"max_rate_wait_s ({self._max_wait_s:g} s)"
        paused = self._store.pause_remaining(self.bucket)
        if paused > 0:
            until = time.strftime("%H:%M:%S UTC", time.gmtime(self._clock() + paused))
            return (f"Defender throttled this application (429 with Retry-After): every "
                    f"caller sharing this state holds off until {until} (in {paused:.0f} s), "
                    f"beyond what {limit} allows; nothing was sent")
        share = "" if lane == "interactive" else \
            " (batch work leaves the last part of each window to interactive lookups)"
        return (f"the rate budget ({self._per_minute} calls a minute, {self._per_hour} an "
                f"hour){share} has no free call within {limit}; nothing was sent")


class Budgets:
    """One RateBudget per call type, or one for all (`shared`)."""

    def __init__(self, make: Callable[[str], RateBudget], *, shared: bool) -> None:
        self._make = make
        self._shared = shared
        self._budgets: dict[str, RateBudget] = {}

    def for_call(self, call_type: CallType | str) -> RateBudget:
        name = "all" if self._shared else call_type
        budget = self._budgets.get(name)
        if budget is None:
            budget = self._budgets[name] = self._make(name)
        return budget


def _batch_share(allowed: int, reserve: float) -> int:
    return max(1, math.floor(allowed * (1.0 - reserve)))
