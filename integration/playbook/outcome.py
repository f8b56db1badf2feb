"""What became of one alert of a batch, a stream or a worker: a typed value a caller routes.

    Enriched      the enriched alert (its `result`); `complete` False when a lookup failed,
                  so the alert is done again by the next run
    Failed        not enriched this time, for a reason that may pass (a step failed, the
                  output could not be written): tried again by the next run
    Quarantined   never enrichable as it is (not JSON, nested too deep, not an alert, in no
                  known format): set aside with its reason, the batch goes on
    Left          not reached before the run's --deadline: the next run does it

`in_order` runs alerts concurrently (a bounded window) and gives their outcomes in input order.
"""

from __future__ import annotations

import hashlib
import json
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from integration.errors import EXIT_INPUT, PluginError

if TYPE_CHECKING:
    from concurrent.futures import Future

    from integration.playbook.engine import RunResult

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class Enriched:
    label: str
    result: RunResult
    digest: str = ""

    @property
    def complete(self) -> bool:
        return self.result.exit_status == 0

    @property
    def exit_status(self) -> int:
        return self.result.exit_status


@dataclass(frozen=True)
class Failed:
    label: str
    error: PluginError
    digest: str = ""

    @property
    def reason(self) -> str:
        return f"{self.error.code}: {self.error.message}"

    @property
    def exit_status(self) -> int:
        return self.error.exit_status or EXIT_INPUT


@dataclass(frozen=True)
class Quarantined:
    label: str
    reason: str  # says what is wrong with the item, names where it came from
    alert: Any = None  # the alert when it could be read (not an alert, unknown format)

    @property
    def exit_status(self) -> int:
        return EXIT_INPUT


@dataclass(frozen=True)
class Left:
    """Not enriched this run: the run's --deadline came first (the budget had no call for it
    in time). The next run's work, not a failure."""

    label: str

    @property
    def exit_status(self) -> int:
        return 0


Outcome = Enriched | Failed | Quarantined


def alert_digest(alert: Any) -> str:
    """The alert's identity for "done already?": its JSON, as read, hashed."""
    text = json.dumps(alert, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def in_order(items: Iterable[T], work: Callable[[T], R], in_flight: int) -> Iterator[R]:
    """work(item) for every item, up to `in_flight` at once, results in input order. Only
    the window is held in memory, whatever the number of items."""
    if in_flight <= 1:
        yield from map(work, items)
        return
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(max_workers=in_flight, thread_name_prefix="alert")
    window: deque[Future[R]] = deque()
    try:
        for item in items:
            window.append(pool.submit(work, item))
            if len(window) >= in_flight:
                yield window.popleft().result()
        while window:
            yield window.popleft().result()
    finally:
        for future in window:
            future.cancel()
        pool.shutdown(wait=True, cancel_futures=True)


def enrich_item(runner: Any, label: str, alert: Any, problem: str | None = None,
                digest: str = "") -> Outcome:
    """One alert through the playbook (a PlaybookRunner), as an outcome; never raises for
    an expected failure."""
    from integration.playbook.errors import AlertError

    if problem is not None:
        return Quarantined(label, f"{label}: {problem}")
    try:
        return Enriched(label, runner.run(alert, source=label), digest)
    except AlertError as error:
        return Quarantined(label, error.message, alert)
    except PluginError as error:
        return Failed(label, error, digest)
