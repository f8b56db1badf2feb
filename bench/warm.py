"""warm: one action call in a long-lived process vs a raw keep-alive `requests.Session` GET.

Both sides reuse their connection and token, so the ratio is the plugin's per-call overhead:
parameter validation, the rate-budget slot in SQLite, retry wrapping, normalization.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import requests

from bench.common import DOMAIN, Bench, Result, median, ms, p90, timing_details
from integration.actions import get_machines_for_domain

GOAL = 1.1
WARMUP = 20
CALLS = 300


def run(bench: Bench) -> Result:
    config = bench.config()
    params = {"domain": DOMAIN, "use_cache": False}  # every call must reach the API
    url, token = bench.domain_url(), bench.token()
    session = requests.Session()  # keep-alive: one TLS connection for every call
    headers = {"Authorization": f"Bearer {token}"}

    def plugin() -> None:
        envelope = get_machines_for_domain(params, config)
        if envelope["status"] != "success":
            raise RuntimeError(f"plugin call failed: {envelope.get('error')}")

    def baseline() -> None:
        # verify per call: a session's own verify loses to $REQUESTS_CA_BUNDLE.
        response = session.get(url, headers=headers, verify=bench.ca_path, timeout=30)
        response.raise_for_status()
        response.json()  # anyone using the answer parses it

    sides: dict[str, Callable[[], None]] = {"plugin": plugin, "baseline": baseline}
    times: dict[str, list[float]] = {"plugin": [], "baseline": []}
    try:
        for i in range(WARMUP + CALLS):
            # Interleaved, order alternating, so drifting load is shared evenly.
            order = ("plugin", "baseline") if i % 2 == 0 else ("baseline", "plugin")
            for side in order:
                started = time.perf_counter()
                sides[side]()
                if i >= WARMUP:
                    times[side].append(time.perf_counter() - started)
    finally:
        session.close()
    calls = len(bench.admin.api_calls())

    ratio = median(times["plugin"]) / median(times["baseline"])
    for side in ("plugin", "baseline"):
        print(f"  {side:<9} median {ms(median(times[side]))}, p90 {ms(p90(times[side]))}"
              f"  ({CALLS} calls after {WARMUP} warm-up)")
    print(f"  API calls seen: {calls} (expected {2 * (WARMUP + CALLS)})")
    result = Result(
        "warm", ratio, GOAL,
        f"action call {ms(median(times['plugin']))} vs Session GET "
        f"{ms(median(times['baseline']))}",
        {**timing_details(times), "calls": CALLS, "api_calls": calls})
    print(f"  {result.verdict()}")
    return result
