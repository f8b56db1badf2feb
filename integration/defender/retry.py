"""The one retry policy, used by every request the plugin makes (sign-in and API).

Shaped after azure-core's RetryPolicy, and like it the policy classifies what came back
itself: it retries 408/429/500/502/503/504, a 200 whose body is not JSON (a proxy's HTML
page, a cut-off answer), timeouts and connection failures; it always honours Retry-After;
it backs off exponentially with jitter and a cap; it makes at most `max_attempts` within a
total deadline. What it does not retry is returned (an answer) or raised (an error) at once.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from integration.errors import NetworkError, PluginError, Timeout, UpstreamError

if TYPE_CHECKING:
    import requests

T = TypeVar("T")
log = logging.getLogger("mde_enrich")

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


class Outcome(NamedTuple):
    """The answer a request ended with, after any retries."""

    response: requests.Response
    body: Any  # the parsed JSON body; None when the body is not JSON
    attempts: int
    gave_up: str = ""  # why a retryable answer was not tried again ("" when it was final)

    @property
    def status(self) -> int:
        return self.response.status_code


class _TransientAnswer(Exception):
    """Inside the loop only: an answer worth asking again for."""

    def __init__(self, outcome: Outcome, retry_after_s: float | None) -> None:
        super().__init__(outcome.status)
        self.outcome = outcome
        self.retry_after_s = retry_after_s


def is_transient(error: PluginError) -> bool:
    """Failures that a second attempt may cure: the wire, or a service saying 'try again'."""
    return isinstance(error, (Timeout, NetworkError)) or \
        (isinstance(error, UpstreamError) and error.retryable)


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
        return float(step / 2 + random.uniform(0, step / 2))

    def send(self, request: Callable[[int], requests.Response], *, what: str,
             on_throttled: Callable[[float], None] | None = None) -> Outcome:
        """request(attempt) until its answer is final; `on_throttled` hears each 429's
        Retry-After (the rate budget shares the pause with every process)."""

        def attempt(number: int) -> Outcome:
            response = request(number)
            outcome = Outcome(response, _json_or_none(response.content), number)
            status = response.status_code
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            if status == 429 and retry_after is not None and on_throttled is not None:
                # Everyone sharing the budget holds off as long as Defender asked, but never
                # longer than max_retry_after_s: one absurd header (999999) must not stop
                # every process for days. This caller gives up past that bound anyway.
                on_throttled(min(retry_after, self.max_retry_after_s))
            if status in RETRY_STATUSES or (status == 200 and outcome.body is None):
                raise _TransientAnswer(outcome, retry_after)
            return outcome

        return self.run(attempt, what=what)

    def run(self, operation: Callable[[int], T], *, what: str = "request") -> T:
        """operation(attempt) until it returns, fails for good, or we give up. Each
        request the operation sends ends by the deadline too, its body included."""
        from integration.defender.transport import deadline_within

        with deadline_within(self.deadline_s):
            return self._run(operation, what)

    def _run(self, operation: Callable[[int], T], what: str) -> T:
        started = self.clock()
        number = 1
        while True:
            try:
                return operation(number)
            except _TransientAnswer as answer:
                retry_after, failure = answer.retry_after_s, f"answered {answer.outcome.status}"
                if retry_after is not None and retry_after > self.max_retry_after_s:
                    return answer.outcome._replace(  # type: ignore[return-value]
                        gave_up=f"asked to wait {retry_after:.0f} s, more than "
                                f"max_retry_after_s ({self.max_retry_after_s:.0f} s)")
                # Drawn once per failure: the deadline check and the sleep must agree, and
                # each caller draws its own jitter so retries do not march in step.
                wait = retry_after if retry_after is not None else self.backoff(number)
                stop = self._stop(number, started, wait)
                if stop:
                    return answer.outcome._replace(gave_up=stop)  # type: ignore[return-value]
            except PluginError as error:
                if not is_transient(error):
                    raise
                failure = error.message
                wait = self.backoff(number)
                stop = self._stop(number, started, wait)
                if stop:
                    raise error.replace(message=f"{error.message} ({stop})",
                                        retryable=True) from error.__cause__
            log.info("%s: attempt %d failed (%s); retrying in %.2f s", what, number, failure,
                     wait)
            if wait:
                self.sleep(wait)
            number += 1

    def _stop(self, number: int, started: float, wait: float) -> str:
        """Why not to try again ("" to go on)."""
        if number >= self.max_attempts:
            return f"after {number} attempts"
        if self.clock() - started + wait > self.deadline_s:
            return (f"after {number} attempts; waiting {wait:.1f} s more would pass the "
                    f"{self.deadline_s:.0f} s deadline")
        return ""


def _json_or_none(content: bytes) -> Any:
    """The body as JSON, read bounded (strict, at most 64 levels deep: a 100,000-deep answer
    would be a RecursionError); None when it is not JSON we accept."""
    # Bytes, not `.text`: with no charset in the answer, requests would guess one over the
    # whole body.
    if not content:
        return None
    from integration.bounded import ANSWER, parse_json

    try:
        return parse_json(content, limits=ANSWER, what="the answer")
    except PluginError:
        return None


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Retry-After in seconds, given as a number or as an HTTP date; None when absent or garbled."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:  # inf, nan and 1e400 are not a time to wait: a garbled header
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment is None:
        return None
    return max(0.0, moment.timestamp() - (time.time() if now is None else now))
