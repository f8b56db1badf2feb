"""fleet: throughput of 1, 2 and 4 `mde-enrich worker` processes sharing one alert stream
through a real redis-server, when the budget is not the limit (a warm cache: every lookup a
cache hit), against one worker. Each run: 2,000 copies of the shipped Graph alert (16
machines) enqueued, the workers started, the clock stopped when the output stream holds
all 2,000. On a 2-core machine more than two workers cannot add CPU.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from bench.common import ROOT, Bench, Result, child_env, python
from integration.resources import playbook_file

ALERTS = 2_000
WORKERS = (1, 2, 4)
TIMEOUT_S = 300


def _worker(config: Path, *argv: str) -> list[str]:
    return [python(), "-m", "integration.cli", "worker", "--config", str(config), "--format",
            "json", *argv]


def _alerts(path: Path, count: int) -> None:
    sample = playbook_file("enrich-alert").parent / "samples" / "graph_security_alert_v2.json"
    alert: dict[str, Any] = json.loads(sample.read_text(encoding="utf-8"))
    path.write_text("".join(json.dumps({**alert, "id": f"{alert['id']}-{n}"}) + "\n"
                            for n in range(count)), encoding="utf-8")


def _config(bench: Bench, url: str) -> Path:
    config = bench.dir / "fleet.yaml"
    config.write_text(yaml.safe_dump(bench.config(state="fleet") | {"state": url}),
                      encoding="utf-8")
    return config


def _one_run(bench: Bench, url: str, config: Path, workers: int) -> float:
    """Seconds until `workers` workers have written ALERTS outputs; a stream of its own."""
    import redis

    names = ["--stream", f"bench-{workers}", "--output-stream", f"bench-{workers}:out"]
    stream = bench.dir / f"fleet-{workers}.ndjson"
    _alerts(stream, ALERTS if workers else 1)
    subprocess.run(_worker(config, "--enqueue", str(stream), *names[:2]), check=True,
                   capture_output=True, env=child_env(), timeout=TIMEOUT_S)
    client = redis.Redis.from_url(url)
    started = time.perf_counter()
    fleet = [subprocess.Popen(_worker(config, *names, "--exit-when-idle", "1", "--name",
                                      f"w{n}"), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, env=child_env())
             for n in range(max(1, workers))]
    try:
        while client.xlen(f"bench-{workers}:out") < (ALERTS if workers else 1):
            if time.perf_counter() - started > TIMEOUT_S:
                raise RuntimeError("the fleet did not finish in time")
            time.sleep(0.02)
        wall = time.perf_counter() - started
    finally:
        for worker in fleet:
            worker.wait(timeout=TIMEOUT_S)
        client.close()
    return wall


def run(bench: Bench) -> Result:
    sys.path.insert(0, str(ROOT / "tests"))
    from redis_server import running_redis

    walls: dict[int, float] = {}
    with running_redis() as url:
        config = _config(bench, url)
        _one_run(bench, url, config, 0)  # one alert, one worker: the token and a warm cache
        for workers in WORKERS:
            walls[workers] = _one_run(bench, url, config, workers)
            print(f"  {workers} worker(s): {ALERTS} alerts in {walls[workers]:.2f} s, "
                  f"{ALERTS / walls[workers]:.0f} alerts/s, x{walls[1] / walls[workers]:.2f} "
                  f"of one worker")
    best = max(WORKERS)
    ratio = walls[1] / walls[best]
    result = Result("fleet", ratio, None,
                    f"{ALERTS / walls[best]:.0f} alerts/s with {best} workers, x{ratio:.2f} of "
                    f"one ({ALERTS / walls[1]:.0f}/s)",
                    {f"wall_s_{n}": w for n, w in walls.items()}
                    | {f"alerts_per_s_{n}": ALERTS / w for n, w in walls.items()})
    print(f"  {result.verdict()}")
    return result
