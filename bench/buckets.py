"""buckets: a mixed batch (domains and file hashes) under per-API buckets vs one shared.

Microsoft documents 100 calls a minute per API; one bucket for every call type is safe but
halves a mixed batch's throughput. The windows are shrunk to 2 s so the run takes seconds.
The ratio is the shared bucket's wall time over the per-API one (how many times faster
per-API buckets are; informational: it depends on the mix).
"""

from __future__ import annotations

import hashlib
import threading
import time

from bench.common import Bench, Result
from integration.compose import new_enricher
from integration.config import load_settings

WINDOW_S = 2.0
PER_WINDOW = 20
LOOKUPS_PER_KIND = 30


def _wall(bench: Bench, buckets: str) -> tuple[float, int]:
    settings = load_settings(bench.config(
        state=f"buckets-{buckets}", max_rate_wait_s=60, max_concurrency=8,
        rate_limit={"per_minute": PER_WINDOW, "per_hour": 1_000_000, "buckets": buckets,
                    "interactive_reserve": 0}))
    enricher = new_enricher(settings._replace(rate_windows_s=(WINDOW_S, 3600.0)))
    enricher.tokens.access_token()
    time.sleep(WINDOW_S)
    # Distinct values (unknown ones answer 404 but cost a call all the same): identical
    # lookups in flight at once would be made once.
    domains = [f"bench-{n}.example" for n in range(LOOKUPS_PER_KIND)]
    files = [hashlib.sha1(str(n).encode()).hexdigest() for n in range(LOOKUPS_PER_KIND)]
    bench.admin.clear_log()
    started = time.perf_counter()
    results: dict[str, list[dict]] = {}
    threads = [threading.Thread(target=lambda k=kind, v=values: results.__setitem__(
        k, enricher.lookup_many(k, v, use_cache=False)))  # type: ignore[misc]
        for kind, values in (("domain", domains), ("file", files))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    failed = sum(e.status == "error" for envelopes in results.values() for e in envelopes)
    enricher.store.close()
    return wall, failed


def run(bench: Bench) -> Result:
    per_api, per_api_failed = _wall(bench, "per_api")
    shared, shared_failed = _wall(bench, "shared")
    ratio = shared / per_api
    total = 2 * LOOKUPS_PER_KIND
    print(f"  {total} lookups ({LOOKUPS_PER_KIND} domains + {LOOKUPS_PER_KIND} SHA-1s), "
          f"{PER_WINDOW} calls per {WINDOW_S:g} s window per bucket")
    print(f"  per-API buckets {per_api:.2f} s ({total / per_api:.1f} lookups/s, "
          f"{per_api_failed} failed); one shared bucket {shared:.2f} s "
          f"({total / shared:.1f} lookups/s, {shared_failed} failed)")
    result = Result("buckets", ratio, None,
                    f"mixed batch {per_api:.2f} s per-API vs {shared:.2f} s shared "
                    f"({ratio:.2f}x throughput)",
                    {"per_api_s": per_api, "shared_s": shared,
                     "failed": {"per_api": per_api_failed, "shared": shared_failed}})
    print(f"  {result.verdict()}")
    return result
