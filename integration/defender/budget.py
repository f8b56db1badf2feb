"""The shared rate budget of one application in one tenant, and the 429 pause it owns.

Defender's limits are per application and tenant, so every process using the same state
draws from one budget (the state store keeps the call log and the pause atomically). A 429's
Retry-After pauses every caller of the bucket until it ends.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from integration.errors import RateLimited

if TYPE_CHECKING:
    from integration.state import StateStore

log = logging.getLogger("mde_enrich")


class RateBudget:
    def __init__(self, store: StateStore, bucket: str, *, per_minute: int, per_hour: int,
                 max_wait_s: float, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self.bucket = bucket
        self._per_minute, self._per_hour = per_minute, per_hour
        self._limits = ((60.0, per_minute), (3600.0, per_hour))
        self._max_wait_s = max_wait_s
        self._sleep = sleep
        self._clock = clock

    def take(self) -> None:
        """Wait for a call from the shared budget, or give up without sending anything."""
        waited = 0.0
        while (wait := self._store.take_slot(self.bucket, self._limits)) > 0:
            if waited + wait > self._max_wait_s:
                raise RateLimited(self._why_no_call(), retryable=True)
            log.info("rate budget: waiting %.2f s for a free call", wait)
            self._sleep(wait)
            waited += wait

    def pause(self, seconds: float) -> None:
        """Defender said 429 with Retry-After: hold every caller of this bucket that long."""
        self._store.pause(self.bucket, seconds)

    def _why_no_call(self) -> str:
        limit = f"max_rate_wait_s ({self._max_wait_s:g} s)"
        paused = self._store.pause_remaining(self.bucket)
        if paused > 0:
            until = time.strftime("%H:%M:%S UTC", time.gmtime(self._clock() + paused))
            return (f"Defender throttled this application (429 with Retry-After): every "
                    f"caller sharing this state holds off until {until} (in {paused:.0f} s), "
                    f"longer than {limit}; nothing was sent")
        return (f"the rate budget ({self._per_minute} calls a minute, {self._per_hour} an "
                f"hour) has no free call within {limit}; nothing was sent")
