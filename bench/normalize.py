"""normalize: normalize_machines over 10,000 machines vs deep-copying the same list.

A deep copy is the floor for "touch every field and build a new structure", so the ratio says
what the mapping to OCSF costs beyond that. Informational: there is no goal.
"""

from __future__ import annotations

import copy
import json
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

from bench.common import Bench, Result, median
from integration.emulator.seed import build_dataset
from integration.lookup.normalize import normalize_machines

MACHINES = 10_000
RUNS = 5


def _machines() -> list[dict[str, Any]]:
    """The seed's machines cycled to 10,000, each an independent object with a unique id
    (shared sub-objects would let deepcopy's memo skip work)."""
    seed = build_dataset()["machines"]
    machines: list[dict[str, Any]] = []
    while len(machines) < MACHINES:
        machines.extend(json.loads(json.dumps(seed)))
    machines = machines[:MACHINES]
    for i, machine in enumerate(machines):
        machine["id"] = f"{i:040x}"
    return machines


def _peak(function: Callable[[], object]) -> int:
    """Peak traced bytes of one run, output included (tracing slows it: not timed)."""
    tracemalloc.start()
    try:
        kept = function()  # held until the peak is read: the output counts
        peak = tracemalloc.get_traced_memory()[1]
        del kept
    finally:
        tracemalloc.stop()
    return peak


def run(bench: Bench) -> Result:
    machines = _machines()
    figures: dict[str, Any] = {"machines": MACHINES, "runs": RUNS}
    sides: dict[str, Callable[[], object]] = {
        "normalize": lambda: normalize_machines(machines),
        "deepcopy": lambda: copy.deepcopy(machines),
        "json": lambda: json.loads(json.dumps(machines)),
    }
    times: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(RUNS):  # round-robin, so background load drifting hits every side alike
        for name, function in sides.items():
            started = time.perf_counter()
            function()
            times[name].append(time.perf_counter() - started)
    for name, function in sides.items():
        seconds, peak = median(times[name]), _peak(function)
        figures[f"{name}_us_per_machine"] = seconds / MACHINES * 1e6
        figures[f"{name}_peak_mib"] = peak / 2**20
        print(f"  {name:<10} {seconds / MACHINES * 1e6:7.1f} us/machine "
              f"(median of {RUNS}), peak {peak / 2**20:6.1f} MiB")
    ratio = figures["normalize_us_per_machine"] / figures["deepcopy_us_per_machine"]
    figures["memory_ratio"] = figures["normalize_peak_mib"] / figures["deepcopy_peak_mib"]
    figures["json_ratio"] = (figures["normalize_us_per_machine"]
                             / figures["json_us_per_machine"])
    print(f"  vs deepcopy: time {ratio:.2f}x, peak memory {figures['memory_ratio']:.2f}x; "
          f"vs json round-trip: time {figures['json_ratio']:.2f}x")
    result = Result(
        "normalize", ratio, None,
        f"{figures['normalize_us_per_machine']:.1f} us/machine vs deepcopy "
        f"{figures['deepcopy_us_per_machine']:.1f}; memory {figures['memory_ratio']:.2f}x",
        figures)
    print(f"  {result.verdict()}")
    return result
