"""lanes: an analyst's lookups while a batch saturates the rate budget, two lanes vs one.

Four batch workers loop over lookups for the whole run, so every window of the budget is
full; every 0.4 s an analyst asks one interactive lookup. The budget's windows are shrunk
to 2 s (Defender's are a minute and an hour) so the run takes seconds; the shape is the same.
With two lanes batch work leaves the last 20 % of each window free; with one
(`interactive_reserve: 0`) the analyst queues with the batch. The figure is the p95 of the
analyst's wall time; the ratio is two lanes over one (lower is better).
"""

from __future__ import annotations

import threading
import time

from bench.common import DOMAIN, Bench, Result, median
from integration.compose import new_enricher
from integration.config import load_settings

GOAL = 1.0  # two lanes must not be worse; the absolute goal is p95 < 1 s
WINDOW_S = 2.0
PER_WINDOW = 40
BATCH_WORKERS = 4
DURATION_S = 8.0
ANALYST_EVERY_S = 0.4


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]


def _run(bench: Bench, reserve: float, state: str) -> tuple[list[float], int]:
    settings = load_settings(bench.config(
        state=state, max_rate_wait_s=30, max_concurrency=BATCH_WORKERS + 1,
        rate_limit={"per_minute": PER_WINDOW, "per_hour": 1_000_000,
                    "interactive_reserve": reserve}))
    enricher = new_enricher(settings._replace(rate_windows_s=(WINDOW_S, 3600.0)))
    enricher.lookup("domain", DOMAIN, use_cache=False, priority="interactive")  # token, wiring
    time.sleep(WINDOW_S)  # start from an empty window
    stop = threading.Event()
    batch_calls = [0]

    def batch_worker() -> None:
        while not stop.is_set():
            enricher.lookup("domain", DOMAIN, use_cache=False, priority="batch")
            batch_calls[0] += 1

    workers = [threading.Thread(target=batch_worker) for _ in range(BATCH_WORKERS)]
    for worker in workers:
        worker.start()
    time.sleep(WINDOW_S)  # let the batch fill the budget first
    waits: list[float] = []
    deadline = time.monotonic() + DURATION_S
    while time.monotonic() < deadline:
        started = time.perf_counter()
        envelope = enricher.lookup("domain", DOMAIN, use_cache=False, priority="interactive")
        waits.append(time.perf_counter() - started)
        if envelope.status != "success":
            raise RuntimeError(f"analyst lookup failed: {envelope.error}")
        time.sleep(ANALYST_EVERY_S)
    stop.set()
    for worker in workers:
        worker.join()
    enricher.store.close()
    return waits, batch_calls[0]


def run(bench: Bench) -> Result:
    two, two_batch = _run(bench, 0.2, "lanes-two")
    one, one_batch = _run(bench, 0.0, "lanes-one")
    ratio = p95(two) / p95(one)
    for label, waits, batch in (("two lanes", two, two_batch), ("one lane", one, one_batch)):
        print(f"  {label:<10} analyst p95 {p95(waits):.3f} s, median {median(waits):.3f} s "
              f"({len(waits)} lookups); batch lookups done {batch}")
    print(f"  budget {PER_WINDOW} calls per {WINDOW_S:g} s window, {BATCH_WORKERS} batch "
          f"workers, analyst every {ANALYST_EVERY_S} s for {DURATION_S:g} s")
    result = Result("lanes", ratio, GOAL,
                    f"analyst p95 {p95(two):.3f} s with lanes vs {p95(one):.3f} s without "
                    f"(goal p95 < 1 s: {'met' if p95(two) < 1 else 'missed'})",
                    {"p95_two_lanes_s": p95(two), "p95_one_lane_s": p95(one),
                     "median_two_lanes_s": median(two), "median_one_lane_s": median(one),
                     "batch_lookups": {"two": two_batch, "one": one_batch}})
    print(f"  {result.verdict()}")
    return result
