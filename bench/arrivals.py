"""arrivals: 8 processes sharing one budget against a server that limits at the same rate.

The emulator limits at 30 calls a window and counts calls when they arrive; eight plugin
processes share one SQLite budget of 30 a window and look up as fast as it lets them, for
several windows. A slot stamped when granted reaches the server some milliseconds later, so
without a margin a slot frees before the server has let the call it replaces age out, and
the server answers 429. Windows are shrunk to 6 s (window_scale 0.1: Defender's minute) so
the run takes seconds; the grant-to-arrival delay is the same as with a real minute.
The baseline is the same run with the arrival margin set to 0 (the budget as it was). The
figure is the 429 answers the server gave; the goal is none.
"""

from __future__ import annotations

import json
import subprocess
import time

from bench.common import Bench, Result, child_env, python

PROCESSES = 8
PER_WINDOW = 30
WINDOW_SCALE = 0.1  # the emulator's minute becomes 6 s
WINDOW_S = 60 * WINDOW_SCALE
DURATION_S = 4 * WINDOW_S

CHILD = """
import sys, time
from integration.defender import budget
budget.ARRIVAL_MARGIN_S = float(sys.argv[1])
from integration.compose import new_enricher
from integration.config import load_settings
import json
settings = load_settings(json.loads(open(sys.argv[2]).read()))
enricher = new_enricher(settings._replace(rate_windows_s=(float(sys.argv[3]), 3600.0)))
stop = time.monotonic() + float(sys.argv[4])
while time.monotonic() < stop:
    enricher.lookup("domain", "evil.example", use_cache=False, priority="interactive")
"""


def _run(bench: Bench, margin: float, name: str) -> tuple[int, int, int]:
    """(429 answers, calls the server admitted, the most admitted in one sliding window)."""
    bench.admin.reset()
    bench.admin.configure(rate_limit={"per_minute": PER_WINDOW, "per_hour": 1_000_000,
                                      "window_scale": WINDOW_SCALE})
    config = bench.config(state=name, max_rate_wait_s=3 * WINDOW_S, timeout_s=10,
                          rate_limit={"per_minute": PER_WINDOW, "per_hour": 1_000_000})
    path = bench.dir / f"{name}.json"
    path.write_text(json.dumps(config), "utf-8")
    from integration.compose import new_enricher
    from integration.config import load_settings

    new_enricher(load_settings(config)).tokens.access_token()  # one token, shared
    time.sleep(WINDOW_S)  # the server's window empty too
    bench.admin.clear_log()
    children = [subprocess.Popen([python(), "-c", CHILD, str(margin), str(path), str(WINDOW_S),
                                  str(DURATION_S)], env=child_env())
                for _ in range(PROCESSES)]
    for child in children:
        child.wait(timeout=DURATION_S + 120)
    calls = [call for call in bench.admin.requests_log() if call["path"].startswith("/api/")]
    throttled = sum(1 for call in calls if call["status"] == 429)
    admitted = sorted(call["time"] for call in calls if call["status"] == 200)
    busiest = max((sum(1 for t in admitted if start <= t < start + WINDOW_S)
                   for start in admitted), default=0)
    return throttled, len(admitted), busiest


def run(bench: Bench) -> Result:
    from integration.defender.budget import ARRIVAL_MARGIN_S

    base_429, base_calls, base_busiest = _run(bench, 0.0, "arrivals-no-margin")
    ours_429, ours_calls, ours_busiest = _run(bench, ARRIVAL_MARGIN_S, "arrivals-margin")
    for label, throttled, calls, busiest in (
            ("no margin", base_429, base_calls, base_busiest),
            (f"margin {ARRIVAL_MARGIN_S:g} s", ours_429, ours_calls, ours_busiest)):
        print(f"  {label:<12} {throttled} answers of 429, {calls} calls admitted, at most "
              f"{busiest} in one {WINDOW_S:g} s window (limit {PER_WINDOW})")
    return Result("arrivals", float(ours_429), 0.0,
                  f"{PROCESSES} processes, server limiting at {PER_WINDOW}/window: "
                  f"{ours_429} x 429 with the margin, {base_429} without",
                  {"throttled_with_margin": ours_429, "throttled_without": base_429,
                   "admitted_with_margin": ours_calls, "admitted_without": base_calls})
