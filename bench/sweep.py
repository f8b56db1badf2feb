"""sweep: calls per indicator of an IOC sweep (`mde-enrich sweep`), against the same sweep
with entity calls only.

A STIX 2.1 bundle of 2,000 domain indicators, 10 of which machines of the emulator's tenant
touched. The sweep asks advanced hunting first (one query per 200 indicators) and the
machines API only for the 10 hits; the baseline is the same sweep when hunting is refused
(403), which looks every indicator up through the machines API. Both run in this process
against the same emulator, each on a fresh state (cold result cache); calls are counted in
the emulator's request log.
"""

from __future__ import annotations

import json
import time

from bench.common import Bench, Result
from integration.compose import new_enricher
from integration.config import load_settings
from integration.sweep.run import Sweep

GOAL = 0.05  # entity + hunting calls per indicator
INDICATORS = 2000
TOUCHED = 10


def _bundle(bench: Bench, touched: list[str]) -> str:
    domains = touched + [f"never-seen-{n}.example" for n in range(INDICATORS - len(touched))]
    objects = [{"type": "indicator", "spec_version": "2.1",
                "id": f"indicator--{n:08x}-0000-4000-8000-000000000000",
                "created": "2025-01-01T00:00:00.000Z", "modified": "2025-01-01T00:00:00.000Z",
                "pattern": f"[domain-name:value = '{d}']", "pattern_type": "stix",
                "valid_from": "2025-01-01T00:00:00Z"} for n, d in enumerate(domains)]
    path = bench.dir / "sweep-bundle.json"
    path.write_text(json.dumps({"type": "bundle", "id": "bundle--1", "objects": objects}))
    return str(path)


def _sweep(bench: Bench, state: str, source: str) -> tuple[dict, int, int, float]:
    enricher = new_enricher(load_settings(bench.config(state=state)))
    bench.admin.clear_log()
    started = time.perf_counter()
    try:
        report = Sweep(enricher, [source]).run()
    finally:
        enricher.store.close()
    elapsed = time.perf_counter() - started
    log = bench.admin.requests_log()
    api = sum(e["path"].startswith("/api/") for e in log)
    hunting = sum(e["path"].endswith("/runHuntingQuery") for e in log)
    return report, api, hunting, elapsed


def run(bench: Bench) -> Result:
    domains = bench.admin.dataset_summary()["domains"]
    touched = sorted(name for name, count in domains.items() if 0 < count < 100)[:TOUCHED]
    source = _bundle(bench, touched)

    report, api, hunting, elapsed = _sweep(bench, "sweep", source)
    found = sorted(hit["indicator"]["value"] for hit in report["hits"])
    again, api_again, hunting_again, _ = _sweep(bench, "sweep", source)

    bench.admin.add_fault(r"/runHuntingQuery$", {"status": 403}, repeat_last=True)
    baseline, api_only, hunting_denied, elapsed_only = _sweep(bench, "sweep-entity-only",
                                                              source)
    bench.admin.clear_faults()

    per_indicator = (api + hunting) / INDICATORS
    per_indicator_only = (api_only + hunting_denied) / INDICATORS
    print(f"  {INDICATORS} domain indicators, {TOUCHED} touched; named: {len(found)}, "
          f"exactly the touched ones: {found == touched}")
    print(f"  sweep: {hunting} hunting + {api} machines API calls = {per_indicator:.4f} per "
          f"indicator, {elapsed:.2f} s")
    print(f"  second sweep right after: {hunting_again} hunting + {api_again} API calls, "
          f"{again['summary']['new_machines']} new machines")
    print(f"  entity calls only (hunting refused): {api_only} machines API calls "
          f"(+{hunting_denied} refused hunting call) = {per_indicator_only:.4f} per indicator, "
          f"{elapsed_only:.2f} s; same hits: "
          f"{sorted(h['indicator']['value'] for h in baseline['hits']) == touched}")
    print(f"  cost against entity-only: {(api + hunting) / (api_only + hunting_denied):.4f}")
    result = Result(
        "sweep", per_indicator, GOAL,
        f"{api + hunting} calls / {INDICATORS} indicators ({hunting} hunting + {api} API); "
        f"entity-only {api_only + hunting_denied}",
        {"indicators": INDICATORS, "touched": TOUCHED, "named_exactly": found == touched,
         "hunting_calls": hunting, "api_calls": api, "elapsed_s": elapsed,
         "entity_only_api_calls": api_only, "entity_only_elapsed_s": elapsed_only,
         "second_run_new_machines": again["summary"]["new_machines"],
         "cost_vs_entity_only": (api + hunting) / (api_only + hunting_denied)})
    print(f"  {result.verdict()}")
    return result
