"""The scheduled batch: durable across a SIGKILL, no output lost or torn, no indicator asked
of Defender twice. The batch runs as a real `mde-enrich playbook run` subprocess."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from integration import schemas
from integration.cli import main as cli_main
from integration.emulator.seed import CAPPED_DOMAIN, build_dataset

ROOT = Path(__file__).resolve().parent.parent
SCHEDULED = ROOT / "playbooks" / "scheduled-enrichment.yaml"
ALERTS = 60
PAUSE_AT = 30  # the alert whose first lookup the emulator holds while the batch is killed
HASH_KINDS = ("sha1", "sha256", "md5")


def mde_enrich_playbook() -> list[str]:
    return [sys.executable, "-m", "integration.cli", "playbook"]


def make_alerts(directory: Path) -> dict[str, Any]:
    """60 alerts with overlapping domains and files (by SHA-1, SHA-256 and MD5 in turn).
    The first 30 use 20 domains and 10 files; alert 30 brings one new domain and nothing
    else new; the rest bring new domains and files and repeat old ones."""
    dataset = build_dataset()
    domains = [d for d in dataset["domains"] if d != CAPPED_DOMAIN][:30]
    files = dataset["files"][:15]
    directory.mkdir()
    alerts = {}
    for i in range(ALERTS):
        if i < PAUSE_AT:
            names, hashed = [domains[i % 20], domains[(i + 7) % 20]], [files[i % 10]]
        elif i == PAUSE_AT:
            names, hashed = [domains[29], domains[0]], [files[0]]
        else:
            names = [domains[20 + i % 10], domains[i % 20]]
            hashed = [files[10 + i % 5], files[i % 10]]
        kind = HASH_KINDS[i % 3]
        alert = {"id": f"alert-{i}", "indicators": (
            [{"type": "url" if i % 2 else "domain",
              "value": f"https://{name}/x" if i % 2 else name} for name in names]
            + [{"type": kind, "value": entry[kind]} for entry in hashed])}
        name = f"alert-{i:03d}.json"
        (directory / name).write_text(json.dumps(alert), encoding="utf-8")
        alerts[name] = alert
    return {"alerts": alerts, "pause_domain": domains[29]}


def outputs(directory: Path) -> list[Path]:
    return sorted(directory.glob("alert-*.json")) if directory.exists() else []


@pytest.fixture(params=["sqlite", "redis"])
def batch_config(request: pytest.FixtureRequest, config: dict[str, Any], tmp_path: Path) -> Path:
    """The batch's progress and memo live in the state: the same tests on both backends."""
    state = config["state"] if request.param == "sqlite" \
        else request.getfixturevalue("redis_state_url")
    path = tmp_path / "batch-config.yaml"
    # The default budget (100 calls a minute) would make this test wait on purpose.
    path.write_text(yaml.safe_dump({**config, "state": state,
                                    "rate_limit": {"per_minute": 10000, "per_hour": 100000}}))
    return path


def test_a_batch_killed_mid_run_resumes_without_losing_or_repeating_work(
        emulator: Any, batch_config: Path, tmp_path: Path) -> None:
    made = make_alerts(tmp_path / "alerts")
    out = tmp_path / "out"
    emulator.admin.configure(latency_s=0.02)
    # Hold the one new lookup of alert 30, then drop it: the batch is killed while it waits.
    emulator.admin.add_fault(f"/api/domains/{made['pause_domain']}/machines$",
                             {"delay_s": 2.0, "drop": True})
    command = [*mde_enrich_playbook(), "run", str(SCHEDULED), "--alerts",
               str(tmp_path / "alerts"), "--out", str(out), "--config", str(batch_config)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    first = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
    deadline = time.monotonic() + 15
    while len(outputs(out)) < PAUSE_AT and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.3)  # alert 29's progress mark follows its output; alert 30 is held for 2 s
    first.send_signal(signal.SIGKILL)
    _, stderr = first.communicate()
    assert first.returncode == -signal.SIGKILL, f"the batch ended on its own: {stderr!r}"
    assert len(outputs(out)) == PAUSE_AT

    second = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=30)
    assert second.returncode == 0, second.stderr
    summary = json.loads(second.stdout)
    assert (summary["already_done"], summary["enriched"]) == (PAUSE_AT, ALERTS - PAUSE_AT)

    written = outputs(out)
    assert [p.name for p in written] == sorted(made["alerts"])
    for path in written:
        document = json.loads(path.read_text(encoding="utf-8"))  # whole, valid JSON
        assert {k: v for k, v in document.items() if k != "enrichment"} == \
            made["alerts"][path.name]
        assert document["enrichment"]["summary"]["failed"] is False
        # memo answers included
        assert schemas.errors("enrichment.schema.json", document["enrichment"]) == []
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")], "temp files left"

    deadline = time.monotonic() + 5  # the held request is logged once its delay is over
    while not any(c["fault"] == "drop" for c in emulator.admin.api_calls()):
        assert time.monotonic() < deadline, "the held request never reached the log"
        time.sleep(0.05)
    calls = emulator.admin.api_calls()
    answered = Counter(c["path"] for c in calls if c["status"] is not None)
    assert [path for path, count in answered.items() if count > 1] == []
    dropped = [c["path"] for c in calls if c["status"] is None]
    assert dropped == [f"/api/domains/{made['pause_domain']}/machines"]


def test_an_ndjson_batch_writes_one_line_numbered_file_per_alert(
        emulator: Any, batch_config: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    feed = tmp_path / "feed.ndjson"
    feed.write_text('{"indicators": [{"type": "domain", "value": "evil.example"}]}\n\n'
                    '{"indicators": [{"type": "domain", "value": "phish.example"}]}\n',
                    encoding="utf-8")
    out = tmp_path / "out"
    status = cli_main(["playbook", "run", str(SCHEDULED), "--alerts", str(feed), "--out",
                       str(out), "--config", str(batch_config), "--format", "json"])
    assert status == 0
    assert sorted(p.name for p in out.iterdir()) == ["feed-000001.json", "feed-000003.json"]
    assert json.loads(capsys.readouterr().out)["enriched"] == 2


def test_a_page_of_alerts_in_a_batch_is_split_into_one_output_per_alert(
        emulator: Any, batch_config: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    alerts = tmp_path / "alerts"
    alerts.mkdir()
    page = {"value": [{"indicators": [{"type": "domain", "value": "evil.example"}]},
                      {"indicators": [{"type": "domain", "value": "phish.example"}]}]}
    (alerts / "page.json").write_text(json.dumps(page), encoding="utf-8")
    out = tmp_path / "out"
    argv = ["playbook", "run", str(SCHEDULED), "--alerts", str(alerts), "--out", str(out),
            "--config", str(batch_config), "--format", "json"]
    assert cli_main(argv) == 0
    assert sorted(p.name for p in out.iterdir()) == ["page-0001.json", "page-0002.json"]
    assert json.loads(capsys.readouterr().out)["enriched"] == 2
    assert cli_main(argv) == 0  # run again: both are already done
    assert json.loads(capsys.readouterr().out)["already_done"] == 2


def test_a_malformed_alert_in_a_batch_is_reported_and_the_others_are_enriched(
        emulator: Any, batch_config: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    alerts = tmp_path / "alerts"
    alerts.mkdir()
    (alerts / "good.json").write_text('{"indicators": [{"type": "domain", '
                                      '"value": "evil.example"}]}', encoding="utf-8")
    (alerts / "odd.json").write_text('"not an alert"', encoding="utf-8")
    out = tmp_path / "out"
    status = cli_main(["playbook", "run", str(SCHEDULED), "--alerts", str(alerts),
                       "--out", str(out), "--config", str(batch_config), "--format", "json"])
    assert status == 2
    assert sorted(p.name for p in out.iterdir()) == ["good.json", "quarantine"]
    assert sorted(p.name for p in (out / "quarantine").iterdir()) == ["odd.json",
                                                                      "odd.json.reason.txt"]
    assert f"{alerts / 'odd.json'}: an alert is a JSON object" in capsys.readouterr().err


def test_a_batch_run_again_asks_nothing_and_rewrites_nothing(
        emulator: Any, batch_config: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    alerts = tmp_path / "alerts"
    alerts.mkdir()
    (alerts / "a.json").write_text('{"indicators": [{"type": "domain", '
                                   '"value": "evil.example"}]}', encoding="utf-8")
    out = tmp_path / "out"
    argv = ["run", str(SCHEDULED), "--alerts", str(alerts), "--out", str(out),
            "--config", str(batch_config), "--format", "json"]
    assert cli_main(["playbook", *argv]) == 0
    written = (out / "a.json").stat().st_mtime_ns
    emulator.admin.clear_log()
    capsys.readouterr()
    assert cli_main(["playbook", *argv]) == 0
    assert json.loads(capsys.readouterr().out)["already_done"] == 1
    assert emulator.admin.api_calls() == []
    assert (out / "a.json").stat().st_mtime_ns == written


def test_a_crash_after_the_lookups_but_before_the_output_asks_nothing_again(
        emulator: Any, batch_config: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from integration.playbook import batch

    # No result cache: what the second run does not ask again, the batch memo answered.
    uncached = tmp_path / "uncached.yaml"
    uncached.write_text(yaml.safe_dump({**yaml.safe_load(batch_config.read_text()),
                                        "cache_ttl_s": 0}))

    alerts = tmp_path / "alerts"
    alerts.mkdir()
    sha256 = build_dataset()["files"][0]["sha256"]
    (alerts / "a.json").write_text(json.dumps({"indicators": [
        {"type": "domain", "value": "evil.example"}, {"type": "sha256", "value": sha256}]}),
        encoding="utf-8")
    out = tmp_path / "out"
    argv = ["run", str(SCHEDULED), "--alerts", str(alerts), "--out", str(out),
            "--config", str(uncached), "--format", "json"]

    def crash(*_: Any) -> None:
        raise KeyboardInterrupt  # as good as a kill between the memo and os.replace

    monkeypatch.setattr(batch.os, "replace", crash)
    assert cli_main(["playbook", *argv]) == 130  # interrupted: no traceback, exit 130
    monkeypatch.undo()
    asked = len(emulator.admin.api_calls())
    assert asked == 3  # the domain, the SHA-256 resolved, its SHA-1's machines
    assert list(out.iterdir()) == []  # no output, and no temp file either
    assert cli_main(["playbook", *argv]) == 0
    assert len(emulator.admin.api_calls()) == asked
    assert json.loads((out / "a.json").read_text(encoding="utf-8"))["enrichment"]["machines"]


def test_a_second_run_of_a_batch_in_progress_is_refused(state_url: str, tmp_path: Path) -> None:
    from integration.errors import RunInProgress
    from integration.playbook import Batch
    from integration.state import open_store

    store = open_store(state_url)
    where = {"source": tmp_path / "alerts", "out_dir": tmp_path / "out", "identity": {"p": "1"}}
    with Batch(store, **where), pytest.raises(RunInProgress, match="another run of this batch"):
        Batch(store, **where).__enter__()


def test_the_lease_of_a_killed_run_is_taken_over_at_once(state_url: str, tmp_path: Path) -> None:
    import socket

    from integration.playbook import Batch
    from integration.state import open_store

    store = open_store(state_url)
    where = {"source": tmp_path / "alerts", "out_dir": tmp_path / "out", "identity": {"p": "1"}}
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    killed = Batch(store, **where)
    holder = f"{socket.gethostname()}:{dead}:0"
    assert store.try_lease(killed.namespace, holder, 600)
    store.put(killed.namespace, "holder", holder)
    started = time.monotonic()
    with Batch(store, **where):
        assert time.monotonic() - started < 1


def _one_domain_alert(directory: Path, name: str) -> None:
    (directory / name).write_text(json.dumps(
        {"indicators": [{"type": "domain", "value": "evil.example"}]}), encoding="utf-8")


def test_a_shipped_batch_playbook_runs_by_name(emulator: Any, config: dict[str, Any],
                                               tmp_path: Path) -> None:
    alerts = tmp_path / "alerts"
    alerts.mkdir()
    _one_domain_alert(alerts, "a.json")
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    assert cli_main(["playbook", "run", "scheduled-enrichment", "--alerts", str(alerts),
                     "--out", str(tmp_path / "out"), "--config", str(path)]) == 0
    assert (tmp_path / "out" / "a.json").exists()


def test_a_finished_batch_run_again_asks_afresh_for_its_new_alerts(
        emulator: Any, config: dict[str, Any], tmp_path: Path) -> None:
    alerts, out = tmp_path / "alerts", tmp_path / "out"
    alerts.mkdir()
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({**config, "cache_ttl_s": 0}), encoding="utf-8")
    argv = ["playbook", "run", str(SCHEDULED), "--alerts", str(alerts), "--out", str(out),
            "--config", str(path)]
    _one_domain_alert(alerts, "a.json")
    assert cli_main(argv) == 0
    _one_domain_alert(alerts, "b.json")  # the next day's run: same batch, a new alert
    assert cli_main(argv) == 0
    asked = [call for call in emulator.admin.api_calls() if "/api/domains/" in call["path"]]
    assert len(asked) == 2  # the memo ended with the first run; caching is off
