"""The one retry policy, used by every request the plugin makes (sign-in and API).

Shaped after azure-core's: retry 408/429/500/502/503/504, connection errors and read
timeouts; always honour Retry-After; exponential backoff with jitter and a cap; at most
`max_attempts` within a total deadline. An operation reports a failure worth retrying by
raising `Retryable`; anything else ends the loop at once.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from email.utils import parsedate_to_datetime
from typing import NamedTuple, TypeVar

from integration.errors import PluginError, RateLimited

T = TypeVar("T")
log = logging.getLogger("mde_enrich")

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


class Retryable(Exception):
    """An attempt failed in a way that may pass if tried again."""

    def __init__(self, error: PluginError, retry_after_s: float | None = None,
                 immediate: bool = False) -> None:
        super().__init__(error.message)
        self.error = error
        self.retry_after_s = retry_after_s
        self.immediate = immediate  # e.g. a 401 answered by fetching a new token


class RetryPolicy(NamedTuple):
    max_attempts: int = 5
    deadline_s: float = 120.0
    backoff_base_s: float = 0.5
    backoff_cap_s: float = 10.0
    max_retry_after_s: float = 60.0
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic

    def backoff(self, attempt: int) -> float:
        """Equal jitter: half the exponential step for sure, the other half at random."""
        step = min(self.backoff_cap_s, self.backoff_base_s * 2 ** (attempt - 1))
        return step / 2 + random.uniform(0, step / 2)

    def run(self, operation: Callable[[int], T], *, what: str = "request") -> T:
        """Call operation(attempt) until it returns, raises a non-retryable error, or we give up."""
        started = self.clock()
        attempt = 1
        while True:
            try:
                return operation(attempt)
            except Retryable as failure:
                error = failure.error
                if attempt >= self.max_attempts:
                    raise _final(error, f"after {attempt} attempts") from None
                if failure.retry_after_s is not None and \
                        failure.retry_after_s > self.max_retry_after_s:
                    raise RateLimited(
                        f"{error.message}; Defender asked to wait {failure.retry_after_s:.0f} s, "
                        f"more than max_retry_after_s ({self.max_retry_after_s:.0f} s)",
                        status=error.status) from None
                if failure.immediate:
                    wait = 0.0
                elif failure.retry_after_s is not None:
                    wait = failure.retry_after_s
                else:
                    wait = self.backoff(attempt)
                elapsed = self.clock() - started
                if elapsed + wait > self.deadline_s:
                    raise _final(error, f"after {attempt} attempts; waiting {wait:.1f} s "
                                        f"more would pass the {self.deadline_s:.0f} s deadline"
                                 ) from None
                log.info("%s: attempt %d failed (%s); retrying in %.2f s",
                         what, attempt, error.message, wait)
                if wait:
                    self.sleep(wait)
                attempt += 1


def _final(error: PluginError, how: str) -> PluginError:
    error.message = f"{error.message} ({how})"
    error.retryable = True  # it was worth retrying; a later run may well succeed
    return error


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Retry-After in seconds, given as a number or as an HTTP date; None when absent or garbled."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment is None:
        return None
    return max(0.0, moment.timestamp() - (time.time() if now is None else now))
