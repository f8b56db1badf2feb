"""inflight: 100 alerts with two new indicators each, 250 ms of emulator latency a call,
max_concurrency 8, through the batch: against the bound ceil(200 / 8) x 0.25 s, and
against one alert at a time (what a batch did before: 100 x 2 x 0.25 s at best when each
alert's two lookups go together, 100 x 0.25 s).
"""

from __future__ import annotations

import json
import math
import time

from bench.common import Bench, Result
from integration.compose import new_enricher
from integration.config import load_settings
from integration.playbook import Batch, LookupService, PlaybookRunner, load_playbook

GOAL = 1.3
ALERTS = 100
CONCURRENCY = 8
LATENCY_S = 0.25


def run(bench: Bench) -> Result:
    settings = load_settings(bench.config(state="inflight", max_concurrency=CONCURRENCY))
    enricher = new_enricher(settings)
    enricher.lookup("domain", "warm-up.example", use_cache=False)  # token, before the clock
    source = bench.dir / "inflight.ndjson"
    # Unknown names answer 404 after the same latency: each is a new call.
    source.write_text("".join(json.dumps({"id": f"a-{n}", "indicators": [
        {"type": "domain", "value": f"new-{n}-a.example"},
        {"type": "domain", "value": f"new-{n}-b.example"}]}) + "\n" for n in range(ALERTS)),
        encoding="utf-8")
    bound = math.ceil(2 * ALERTS / CONCURRENCY) * LATENCY_S
    bench.admin.configure(latency_s=LATENCY_S)
    bench.admin.clear_log()
    try:
        with Batch(enricher.store, source=source, out_dir=bench.dir / "inflight-out",
                   identity={"bench": "inflight"}) as batch:
            runner = PlaybookRunner(load_playbook("scheduled-enrichment"),
                                    LookupService(lambda: enricher, memo=batch.memo))
            started = time.perf_counter()
            summary = batch.run(runner)
            wall = time.perf_counter() - started
            runner.lookups.close()
    finally:
        bench.admin.configure(latency_s=0)
        enricher.store.close()
    calls = len(bench.admin.api_calls())
    one_at_a_time = ALERTS * LATENCY_S  # each alert's two lookups together, alerts in turn
    print(f"  {ALERTS} alerts x 2 new indicators, {LATENCY_S * 1000:.0f} ms a call, "
          f"max_concurrency {CONCURRENCY}: {wall:.2f} s, {calls} calls, "
          f"{summary.enriched} enriched")
    print(f"  bound ceil({2 * ALERTS}/{CONCURRENCY}) x {LATENCY_S} s = {bound:.2f} s; one alert "
          f"at a time would take >= {one_at_a_time:.1f} s ({one_at_a_time / wall:.1f}x longer)")
    result = Result("inflight", wall / bound, GOAL,
                    f"{wall:.2f} s vs bound {bound:.2f} s ({calls} calls)",
                    {"wall_s": wall, "bound_s": bound, "api_calls": calls,
                     "one_alert_at_a_time_s": one_at_a_time})
    print(f"  {result.verdict()}")
    return result
