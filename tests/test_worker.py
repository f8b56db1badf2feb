"""`mde-enrich worker`: a fleet sharing one alert stream through a real redis-server. Each
alert is enriched and written once, also when workers are killed -9 mid-run, also when it
is delivered or enqueued twice; the fleet stays inside one rate budget."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from integration.emulator import Emulator
from integration.emulator.seed import EVIL_DOMAIN, build_dataset
from integration.playbook.outcome import alert_digest
from integration.playbook.worker import OUTPUT_STREAM, STREAM

ALERTS = 1000
BUDGET = {"per_minute": 60, "per_hour": 1500}
RUN_TIMEOUT_S = 150


def worker_command(config: Path, *argv: str) -> list[str]:
    return [sys.executable, "-m", "integration.cli", "worker", "--config", str(config),
            "--format", "json", *argv]


def fleet_config(emulator: Emulator, redis_state_url: str, tmp_path: Path,
                 **overrides: Any) -> Path:
    config = emulator.config(state=redis_state_url, rate_limit=dict(BUDGET),
                             max_rate_wait_s=2, backoff_base_s=0.02, backoff_cap_s=0.1,
                             **overrides)
    path = tmp_path / "fleet.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def make_alerts(path: Path) -> list[dict[str, Any]]:
    """1,000 alerts over 12 domains and 4 files: the shared cache keeps the calls at about
    one per distinct indicator, inside the budget."""
    dataset = build_dataset()
    domains, files = list(dataset["domains"])[:12], dataset["files"][:4]
    alerts = [{"id": f"alert-{i:04d}", "indicators": [
        {"type": "domain", "value": domains[i % 12]},
        {"type": "domain", "value": domains[(i * 5 + 1) % 12]},
        {"type": "sha1", "value": files[i % 4]["sha1"]}]} for i in range(ALERTS)]
    path.write_text("".join(json.dumps(a) + "\n" for a in alerts), encoding="utf-8")
    return alerts


def enqueue(config: Path, source: Path) -> dict[str, Any]:
    done = subprocess.run(worker_command(config, "--enqueue", str(source)), capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def output_entries(redis_url: str) -> list[dict[str, str]]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        return [fields for _, fields in client.xrange(OUTPUT_STREAM)]
    finally:
        client.close()


def pending_of(redis_url: str, consumers: list[str]) -> int:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        return sum(len(client.xpending_range(STREAM, "mde-enrich", "-", "+", 10_000,
                                             consumername=name)) for name in consumers)
    finally:
        client.close()


@pytest.mark.slow
def test_four_workers_two_killed_mid_run_write_every_alert_once_inside_the_budget(
        emulator: Emulator, redis_state_url: str, tmp_path: Path) -> None:
    emulator.admin.configure(rate_limit=dict(BUDGET))  # Defender would 429 past the budget
    config = fleet_config(emulator, redis_state_url, tmp_path)
    alerts = make_alerts(tmp_path / "alerts.ndjson")
    assert enqueue(config, tmp_path / "alerts.ndjson")["added"] == ALERTS
    out = tmp_path / "out"
    argv = ["--out", str(out), "--claim-idle", "1", "--exit-when-idle", "3"]
    workers = [subprocess.Popen(worker_command(config, *argv, "--name", f"w{n}"),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for n in range(4)]
    try:
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while len(list(out.glob("*.json"))) < ALERTS // 4:  # mid-run
            assert time.monotonic() < deadline, "the fleet wrote too little"
            assert all(w.poll() is None for w in workers), "a worker stopped early"
            time.sleep(0.02)
        for victim in workers[:2]:
            os.kill(victim.pid, signal.SIGKILL)
        for victim in workers[:2]:
            victim.wait(timeout=10)
        in_hand = pending_of(redis_state_url, ["w0", "w1"])
        results = [w.communicate(timeout=RUN_TIMEOUT_S) for w in workers[2:]]
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    for worker, (_stdout, stderr) in zip(workers[2:], results, strict=True):
        assert worker.returncode == 0, stderr
    assert workers[0].returncode == workers[1].returncode == -signal.SIGKILL
    claimed = sum(json.loads(stdout)["claimed"] for stdout, _ in results)

    expected = {alert_digest(alert) for alert in alerts}
    entries = output_entries(redis_state_url)
    digests = [entry["digest"] for entry in entries]
    assert len(digests) == ALERTS and set(digests) == expected  # none twice, none lost
    files = sorted(path.stem for path in out.glob("*.json"))
    assert files == sorted(expected)
    for entry in entries[:50] + entries[-50:]:
        document = json.loads(entry["enriched"])
        assert document["enrichment"]["summary"]["failed"] is False
    assert claimed >= in_hand  # the survivors took over what the killed ones had in hand

    calls = emulator.admin.api_calls()
    assert [c for c in calls if c["status"] == 429] == []
    times = sorted(c["time"] for c in calls)
    busiest = max(sum(1 for t in times if start <= t < start + 60) for start in times)
    assert busiest <= BUDGET["per_minute"]


def test_an_alert_enqueued_twice_is_enriched_and_written_once(
        emulator: Emulator, redis_state_url: str, tmp_path: Path) -> None:
    config = fleet_config(emulator, redis_state_url, tmp_path)
    alert = {"id": "twice", "indicators": [{"type": "domain", "value": EVIL_DOMAIN}]}
    source = tmp_path / "twice.ndjson"
    source.write_text((json.dumps(alert) + "\n") * 2 + "not json\n", encoding="utf-8")
    done = subprocess.run(worker_command(config, "--enqueue", str(source)),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2  # the unreadable line is said, and not added
    assert json.loads(done.stdout)["added"] == 2
    assert f"{source} line 3: not valid JSON" in done.stderr
    out = tmp_path / "out"
    done = subprocess.run(worker_command(config, "--out", str(out), "--exit-when-idle", "0.5"),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert (summary["enriched"], summary["duplicates"]) == (1, 1)
    assert [entry["digest"] for entry in output_entries(redis_state_url)] == \
        [alert_digest(alert)]
    assert [p.name for p in out.iterdir()] == [f"{alert_digest(alert)}.json"]
    assert len(emulator.admin.api_calls()) == 1


def test_an_entry_that_is_not_an_alert_is_quarantined_with_its_reason(
        emulator: Emulator, redis_state_url: str, tmp_path: Path) -> None:
    config = fleet_config(emulator, redis_state_url, tmp_path)
    client = redis.Redis.from_url(redis_state_url, decode_responses=True)
    try:
        client.xadd(STREAM, {"alert": "[" * 100_000})
        client.xadd(STREAM, {"alert": "null"})
        done = subprocess.run(worker_command(config, "--exit-when-idle", "0.5"),
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["quarantined"] == 2
        reasons = [fields["reason"] for _, fields in client.xrange(f"{STREAM}:quarantine")]
        assert "nested deeper than 64 levels" in reasons[0]
        assert "an alert is a JSON object, not nothing" in reasons[1]
        assert client.xpending(STREAM, "mde-enrich")["pending"] == 0  # acknowledged
    finally:
        client.close()


def test_a_worker_needs_the_shared_redis_state(emulator: Emulator, state_url: str,
                                               tmp_path: Path) -> None:
    path = tmp_path / "sqlite.yaml"
    path.write_text(yaml.safe_dump(emulator.config(state=state_url)), encoding="utf-8")
    done = subprocess.run(worker_command(path, "--exit-when-idle", "0"), capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2
    assert "a worker needs the Redis state every worker shares" in done.stderr
