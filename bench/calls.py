"""calls: API calls per distinct indicator over a realistic alert stream (cache on).

Alerts repeat indicators (Zipf-like) and spell them differently: a file by SHA-256, SHA-1
or MD5, a domain plain, upper-case, defanged, as a URL, with a trailing dot or in Unicode.
Ideally each distinct domain and each distinct file costs exactly one machines call.
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

from bench.common import Bench, Result
from integration.compose import new_enricher
from integration.config import load_settings
from integration.emulator.seed import IDN_DOMAIN, IDN_DOMAIN_UNICODE, UNKNOWN_DOMAIN
from integration.lookup.service import Kind

GOAL = 1.0
ALERTS = 200
SEED = 7  # fixed: every run sees the same stream
KINDS: tuple[Kind, ...] = ("domain", "file")
ZIPF_S = 1.1


def _domain_spelling(rng: random.Random, name: str) -> str:
    defanged = name.replace(".", "[.]")
    spellings = [name, name, name.upper(), name.title(), defanged, f"{name}.",
                 f"hxxps://{defanged}/login", f"https://{name}/invoice?id=4711"]
    if name == IDN_DOMAIN:
        spellings.append(IDN_DOMAIN_UNICODE)
    return rng.choice(spellings)


def _file_spelling(rng: random.Random, info: dict[str, Any]) -> tuple[str, str]:
    kind = rng.choices(["sha256", "sha1", "md5"], weights=[5, 3, 2])[0]
    value = info[kind]
    return kind, value.upper() if rng.random() < 0.2 else value


def _zipf(rng: random.Random, items: list[Any], k: int) -> list[Any]:
    weights = [1 / (rank + 1) ** ZIPF_S for rank in range(len(items))]
    return rng.choices(items, weights=weights, k=k)


def build_alerts(summary: dict[str, Any]) -> tuple[list[dict[str, list[str]]], dict[str, Any]]:
    """The alerts, and the ground truth the generator knows: which domain and which file
    (by SHA-1) each spelling stands for."""
    rng = random.Random(SEED)
    domains = [*sorted(summary["domains"]), UNKNOWN_DOMAIN]
    files = [f for f in summary["files"] if f["sha256"] and f["md5"]]
    rng.shuffle(domains)  # popularity rank independent of the name
    rng.shuffle(files)
    alerts = []
    seen_domains: set[str] = set()
    seen_files: set[str] = set()
    resolve_spellings: set[str] = set()  # distinct SHA-256/MD5 values: one resolve each
    for _ in range(ALERTS):
        alert: dict[str, list[str]] = {"domain": [], "file": []}
        for name in _zipf(rng, domains, rng.choice([1, 1, 1, 2, 2, 3])):
            alert["domain"].append(_domain_spelling(rng, name))
            seen_domains.add(name)
        for info in _zipf(rng, files, rng.choice([0, 0, 1, 1, 2])):
            kind, value = _file_spelling(rng, info)
            alert["file"].append(value)
            seen_files.add(info["sha1"])
            if kind != "sha1":
                resolve_spellings.add(value.lower())
        alerts.append(alert)
    truth = {"domains": len(seen_domains), "files": len(seen_files),
             "resolves": len(resolve_spellings)}
    return alerts, truth


def run(bench: Bench) -> Result:
    alerts, truth = build_alerts(bench.admin.dataset_summary())
    # A state of its own: the result cache starts empty (the token request is not an API call).
    enricher = new_enricher(load_settings(bench.config(state="calls")))
    statuses: Counter[str] = Counter()
    bench.admin.clear_log()
    try:
        for alert in alerts:  # one alert after another, as a playbook would see them
            for kind in KINDS:
                if alert[kind]:
                    envelopes = enricher.lookup_many(kind, alert[kind])
                    statuses.update(e.status for e in envelopes)
    finally:
        enricher.store.close()
    paths = [entry["path"] for entry in bench.admin.api_calls()]
    machines_calls = sum(path.endswith("/machines") for path in paths)
    resolve_calls = len(paths) - machines_calls
    distinct = truth["domains"] + truth["files"]
    indicators = sum(len(a["domain"]) + len(a["file"]) for a in alerts)
    ratio = machines_calls / distinct

    print(f"  {ALERTS} alerts, {indicators} indicators: {truth['domains']} distinct domains + "
          f"{truth['files']} distinct files = {distinct} distinct (a file counts once "
          "whatever hash names it, a domain once whatever spelling)")
    print(f"  envelope statuses: {dict(statuses)}")
    print(f"  machines calls (paths ending /machines): {machines_calls}")
    print(f"  resolve calls (GET /api/files/{{hash}}): {resolve_calls}, vs {truth['resolves']} "
          "distinct SHA-256/MD5 spellings -- the machines call takes only a SHA-1, so each new "
          "SHA-256/MD5 needs one resolve first; not counted in the ratio")
    print(f"  all API calls / distinct: {len(paths) / distinct:.2f} (informational)")
    result = Result(
        "calls", ratio, GOAL,
        f"{machines_calls} machines calls / {distinct} distinct; {resolve_calls} resolves "
        f"(min {truth['resolves']})",
        {"alerts": ALERTS, "indicators": indicators, "distinct_domains": truth["domains"],
         "distinct_files": truth["files"], "machines_calls": machines_calls,
         "resolve_calls": resolve_calls, "resolve_calls_min": truth["resolves"],
         "statuses": dict(statuses)})
    print(f"  {result.verdict()}")
    return result
