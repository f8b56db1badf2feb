"""batch: 64 domains at 250 ms latency each, 8 at a time, vs the ideal ceil(64/8) x 0.25 s.

The bound is what perfect concurrency would achieve; the ratio shows how much the worker
pool, the shared SQLite budget and normalization add on top of waiting for Defender.
"""

from __future__ import annotations

import math
import time
from collections import Counter

from bench.common import DOMAIN, Bench, Result, median
from integration.compose import new_enricher
from integration.config import load_settings

GOAL = 1.2
DOMAINS = 64
CONCURRENCY = 8
LATENCY_S = 0.25
RUNS = 3


def _domains(bench: Bench) -> list[str]:
    known = list(bench.admin.dataset_summary()["domains"])[:DOMAINS]
    # Unknown names answer 404 after the same latency, so they cost a full call too.
    return known + [f"bench-{n}.example" for n in range(DOMAINS - len(known))]


def run(bench: Bench) -> Result:
    domains = _domains(bench)
    enricher = new_enricher(load_settings(bench.config(max_concurrency=CONCURRENCY)))
    enricher.lookup("domain", DOMAIN, use_cache=False)  # wiring and token, before the clock
    bound = math.ceil(DOMAINS / CONCURRENCY) * LATENCY_S
    walls: list[float] = []
    calls: list[int] = []
    statuses: Counter[str] = Counter()
    bench.admin.configure(latency_s=LATENCY_S)
    try:
        for _ in range(RUNS):
            bench.admin.clear_log()
            started = time.perf_counter()
            envelopes = enricher.lookup_many("domain", domains, use_cache=False)
            walls.append(time.perf_counter() - started)
            calls.append(len(bench.admin.api_calls()))
            statuses.update(e.status for e in envelopes)
    finally:
        bench.admin.configure(latency_s=0)
        enricher.store.close()

    wall = median(walls)
    ratio = wall / bound
    print(f"  {DOMAINS} domains, max_concurrency {CONCURRENCY}, {LATENCY_S * 1000:.0f} ms each: "
          f"wall median {wall:.3f} s over {RUNS} runs ({', '.join(f'{w:.3f}' for w in walls)})")
    print(f"  bound ceil({DOMAINS}/{CONCURRENCY}) x {LATENCY_S} s = {bound:.3f} s")
    print(f"  API calls per run: {calls} (expected exactly {DOMAINS} each: "
          f"{'OK' if all(c == DOMAINS for c in calls) else 'MISMATCH'})")
    print(f"  envelope statuses over all runs: {dict(statuses)}")
    result = Result(
        "batch", ratio, GOAL, f"{wall:.2f} s vs bound {bound:.2f} s, calls/run {calls}",
        {"wall_median_s": wall, "walls_s": walls, "bound_s": bound, "api_calls": calls,
         "statuses": dict(statuses)})
    print(f"  {result.verdict()}")
    return result
