"""Run the benchmarks named on the command line (default: all), print a summary table and
write bench/out/results.json. Missing a goal is reported, not failed: exit status 0.
Exit status 1 only when a benchmark itself broke (an exception), which is a bug to fix.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
import time
import traceback
from typing import Any

from bench import BENCHMARKS
from bench.common import OUT_DIR, Bench, Result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help=f"any of {', '.join(BENCHMARKS)} (default: all)")
    args = parser.parse_args(argv)
    # Checked here: argparse's `choices` rejects the empty default of nargs="*" on 3.10.
    unknown = sorted(set(args.names) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    names = [name for name in BENCHMARKS if name in args.names] or list(BENCHMARKS)

    results: dict[str, Result] = {}
    broken: list[str] = []
    started = time.perf_counter()
    with Bench() as bench:
        for name in names:
            print(f"== {name}", flush=True)
            module = importlib.import_module(f"bench.{name}")
            bench.fresh()
            begun = time.perf_counter()
            try:
                results[name] = module.run(bench)
            except Exception:
                traceback.print_exc()
                broken.append(name)
            print(f"  ({time.perf_counter() - begun:.1f} s)", flush=True)
    total = time.perf_counter() - started

    print(f"\n{'benchmark':<10} {'ratio':>6} {'goal':>6}  {'status':<6} measured")
    for name in names:
        if name in broken:
            print(f"{name:<10} {'-':>6} {'-':>6}  ERROR  see the traceback above")
            continue
        r = results[name]
        goal = "-" if r.goal is None else f"<={r.goal:g}"
        print(f"{name:<10} {r.ratio:>6.2f} {goal:>6}  {r.status:<6} {r.summary}")
    print(f"total {total:.1f} s")

    OUT_DIR.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "python": sys.version.split()[0],
        "platform": platform.platform(), "cpus": os.cpu_count(), "total_s": total,
        "results": {name: r.to_dict() for name, r in results.items()}, "errors": broken,
    }
    (OUT_DIR / "results.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"results: {OUT_DIR / 'results.json'}")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
