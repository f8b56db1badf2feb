"""xsoar: the exported XSOAR command over a list of 8 domains at 250 ms latency each, vs the
ideal ceil(8/8) x 0.25 s, and the same command taking the list one value at a time.

The generated integration (`mde-enrich export xsoar`) runs as XSOAR runs it, `main()` under
stand-ins for `demistomock` and `CommonServerPython` (only what the code calls), so what is
timed is its own list handling, context building and table on top of the lookups.
"""

from __future__ import annotations

import math
import runpy
import sys
import tempfile
import time
import types
from pathlib import Path
from typing import Any

from bench.common import Bench, Result, median
from integration.platforms import xsoar

GOAL = 1.5
VALUES = 8
LATENCY_S = 0.25
RUNS = 3


class _Results:
    def __init__(self, outputs: Any = None, readable_output: str = "",
                 raw_response: Any = None) -> None:
        self.outputs, self.readable_output = outputs, readable_output


def _run(script: Path, params: dict[str, Any], args: dict[str, Any]) -> Any:
    """One command run; the context it returned."""
    returned: list[Any] = []
    demisto = types.ModuleType("demistomock")
    demisto.command = lambda: "mde-get-machines-for-domain"  # type: ignore[attr-defined]
    demisto.params = lambda: params  # type: ignore[attr-defined]
    demisto.args = lambda: args  # type: ignore[attr-defined]
    demisto.callingContext = {"context": {}}  # type: ignore[attr-defined]
    common = types.ModuleType("CommonServerPython")
    common.CommandResults = _Results  # type: ignore[attr-defined]
    common.return_results = returned.append  # type: ignore[attr-defined]
    common.return_error = lambda message, *rest: returned.append(message)  # type: ignore[attr-defined]
    common.tableToMarkdown = lambda name, rows, headers, removeNull=False: name  # type: ignore[attr-defined]
    saved = {name: sys.modules.get(name) for name in ("demistomock", "CommonServerPython")}
    sys.modules.update(demistomock=demisto, CommonServerPython=common)
    try:
        runpy.run_path(str(script), run_name="__main__")
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
    [result] = returned
    if not isinstance(result, _Results):
        raise RuntimeError(f"the command failed: {result}")
    return result.outputs


def _timed(script: Path, params: dict[str, Any], domains: list[str], one_by_one: bool) -> float:
    started = time.perf_counter()
    batches = [[domain] for domain in domains] if one_by_one else [domains]
    for batch in batches:
        outputs = _run(script, params, {"domain": ",".join(batch), "use_cache": "false"})
        if len(outputs[xsoar.LOOKUP_KEY]) != len(batch):
            raise RuntimeError("a lookup is missing from the context")
    return time.perf_counter() - started


def run(bench: Bench) -> Result:
    domains = list(bench.admin.dataset_summary()["domains"])[:VALUES]
    folder = Path(tempfile.mkdtemp(dir=bench.dir))
    script = next(path for path in xsoar.write_xsoar_integration(folder)
                  if path.name == "MDEEnrich.py")
    config = bench.config()
    params = {"tenant_id": config["tenant_id"], "client_id": config["client_id"],
              "credentials": {"password": config["client_secret"]},
              "api_base_url": config["api_base_url"], "authority_host": config["authority_host"],
              "graph_base_url": config["graph_base_url"], "state": config["state"],
              "ca_bundle": Path(config["ca_bundle"]).read_text(encoding="utf-8")}
    _run(script, params, {"domain": domains[0]})  # wiring and token, before the clock
    bound = math.ceil(VALUES / xsoar_parallel(script)) * LATENCY_S
    bench.admin.configure(latency_s=LATENCY_S)
    try:
        lists = [_timed(script, params, domains, one_by_one=False) for _ in range(RUNS)]
        singles = [_timed(script, params, domains, one_by_one=True) for _ in range(RUNS)]
    finally:
        bench.admin.configure(latency_s=0)
    wall, sequential = median(lists), median(singles)
    print(f"  {VALUES} domains in one command, {LATENCY_S * 1000:.0f} ms each: wall median "
          f"{wall:.3f} s ({', '.join(f'{w:.3f}' for w in lists)}); bound {bound:.3f} s")
    print(f"  the same {VALUES} as {VALUES} commands of one value: median {sequential:.3f} s "
          f"({sequential / wall:.1f}x the list)")
    result = Result("xsoar", wall / bound, GOAL,
                    f"list of {VALUES}: {wall:.2f} s vs bound {bound:.2f} s; one by one "
                    f"{sequential:.2f} s",
                    {"wall_median_s": wall, "walls_s": lists, "bound_s": bound,
                     "one_by_one_median_s": sequential, "one_by_one_s": singles})
    print(f"  {result.verdict()}")
    return result


def xsoar_parallel(script: Path) -> int:
    """MAX_PARALLEL as written into the generated code."""
    for line in script.read_text(encoding="utf-8").splitlines():
        if line.startswith("MAX_PARALLEL = "):
            return int(line.split("=", 1)[1])
    raise RuntimeError("the generated code names no MAX_PARALLEL")
