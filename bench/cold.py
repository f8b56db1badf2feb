"""cold: one lookup in a new process (token cached in the state) vs a bare `requests` script.

A SOAR platform may start a fresh interpreter per action run, so start-up is most of the cost
users see. Runs are paired (plugin and baseline back to back, order alternating) so that load
drifting during the run hits both sides of each ratio alike.
"""

from __future__ import annotations

import json
import subprocess
import time

from bench.common import (
    DOMAIN,
    ROOT,
    Bench,
    Result,
    child_env,
    median,
    ms,
    p90,
    python,
    timing_details,
)

GOAL = 1.5
WARMUP_PAIRS = 2
PAIRS = 25

# What a platform does: import the entry point, load its config, call, check the status.
PLUGIN = (
    "import json, sys\n"
    "from integration.actions import get_machines_for_domain\n"
    "with open(sys.argv[1], encoding='utf-8') as f:\n"
    "    config = json.load(f)\n"
    "envelope = get_machines_for_domain({'domain': sys.argv[2]}, config)\n"
    "sys.exit(0 if envelope['status'] == 'success' else 1)\n"
)
# The least a hand-written integration could do: the same GET with a token it already has.
BASELINE = (
    "import os, sys\n"
    "import requests\n"
    "r = requests.get(sys.argv[1], verify=sys.argv[2], timeout=30,\n"
    "                 headers={'Authorization': 'Bearer ' + os.environ['BENCH_TOKEN']})\n"
    "sys.exit(0 if r.status_code == 200 else 1)\n"
)


def _timed(argv: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{argv[1:3]} exited {done.returncode}: "
                           f"{done.stderr.decode(errors='replace')[-500:]}")
    return elapsed


def run(bench: Bench) -> Result:
    # cache_ttl_s 0: the result cache is off, so every run really calls the API.
    config_path = bench.dir / "cold-config.json"
    config_path.write_text(json.dumps(bench.config(cache_ttl_s=0)), encoding="utf-8")
    env = child_env()
    base_env = {**env, "BENCH_TOKEN": bench.token()}  # read beforehand, as the brief says
    bench.admin.clear_log()  # from here on, only the timed processes talk to the emulator
    plugin = [python(), "-c", PLUGIN, str(config_path), DOMAIN]
    baseline = [python(), "-c", BASELINE, bench.domain_url(), bench.ca_path]
    cli = [python(), "-m", "integration.cli", "domain", DOMAIN, "--config", str(config_path)]

    times: dict[str, list[float]] = {"plugin": [], "baseline": [], "cli": []}
    for i in range(WARMUP_PAIRS + PAIRS):
        pair: dict[str, float] = {}
        # Alternate who goes first: neither side always inherits the other's warm caches.
        order = ("plugin", "baseline") if i % 2 == 0 else ("baseline", "plugin")
        for side in order:
            pair[side] = _timed(plugin if side == "plugin" else baseline,
                                env if side == "plugin" else base_env)
        pair["cli"] = _timed(cli, env)
        if i >= WARMUP_PAIRS:
            for side, seconds in pair.items():
                times[side].append(seconds)
    calls = len(bench.admin.api_calls())
    token_calls = len(bench.admin.token_calls())
    expected_calls = 3 * (WARMUP_PAIRS + PAIRS)

    ratios = [p / b for p, b in zip(times["plugin"], times["baseline"], strict=True)]
    cli_ratios = [c / b for c, b in zip(times["cli"], times["baseline"], strict=True)]
    ratio, cli_ratio = median(ratios), median(cli_ratios)
    for side in ("plugin", "baseline", "cli"):
        print(f"  {side:<9} median {ms(median(times[side]))}, p90 {ms(p90(times[side]))}"
              f"  ({PAIRS} runs after {WARMUP_PAIRS} warm-up)")
    print(f"  API calls seen: {calls} (expected {expected_calls}: none served from a cache)")
    print(f"  token requests seen: {token_calls} (expected 0: the token comes from the state)")
    print(f"  cli/baseline ratio {cli_ratio:.2f} (informational)")
    result = Result(
        "cold", ratio, GOAL,
        f"new process {ms(median(times['plugin']))} vs bare requests "
        f"{ms(median(times['baseline']))}; CLI {cli_ratio:.2f}x",
        {**timing_details(times), "cli_ratio": cli_ratio, "pairs": PAIRS, "api_calls": calls,
         "api_calls_expected": expected_calls, "token_calls": token_calls})
    print(f"  {result.verdict()}")
    return result
