"""What an operator running the scheduled batch from cron sees: it paces itself to the budget
within --deadline, says each cause of failure once (stderr and the summary's errors), keeps
failed alerts apart from the enriched ones, quarantines a malformed alert once, and has an
exit status of its own for an overlapping run."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from integration.cli import main as cli_main
from integration.emulator.seed import EVIL_DOMAIN, PHISH_DOMAIN
from tests.test_pull import graph_alert


def write_config(tmp_path: Path, config: dict[str, Any], **changes: Any) -> Path:
    path = tmp_path / "scheduled.yaml"
    path.write_text(yaml.safe_dump({**config, **changes}), encoding="utf-8")
    return path


def alerts_folder(tmp_path: Path, alerts: dict[str, Any]) -> Path:
    folder = tmp_path / "alerts"
    folder.mkdir()
    for name, alert in alerts.items():
        (folder / name).write_text(alert if isinstance(alert, str) else json.dumps(alert),
                                   encoding="utf-8")
    return folder


def batch_argv(config_file: Path, alerts: Path, out: Path, *extra: str) -> list[str]:
    return ["playbook", "run", "scheduled-enrichment", "--alerts", str(alerts), "--out",
            str(out), "--config", str(config_file), "--format", "json", *extra]


def test_a_backlog_of_150_alerts_and_300_new_indicators_is_paced_to_the_deadline(
        emulator: Any, config: dict[str, Any], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    # 100 calls a minute, with the windows scaled down (1.5 s for the minute) on both sides:
    # the plugin's budget and the emulator's own throttling, which must never answer 429.
    emulator.admin.configure(rate_limit={"per_minute": 100, "per_hour": 1500,
                                         "window_scale": 1.5 / 60})
    config_file = write_config(tmp_path, config, rate_limit={"per_minute": 100, "per_hour": 1500,
                                                       "windows_s": [1.5, 90]},
                               max_rate_wait_s=0.05)  # without pacing, most would fail
    emulator.admin.add_alerts([graph_alert(n, "", domain=f"new-{n}-a.example")
                               | {"evidence": [
                                   {"@odata.type": "#microsoft.graph.security.urlEvidence",
                                    "verdict": "malicious", "url": f"https://new-{n}-{x}.example/"}
                                   for x in "ab"]} for n in range(150)])
    out = tmp_path / "out"
    status = cli_main(["playbook", "run", "scheduled-enrichment", "--pull", "alerts", "--out",
                       str(out), "--config", str(config_file), "--format", "json",
                       "--deadline", "120s"])
    summary = json.loads(capsys.readouterr().out)
    assert status == 0, summary["errors"]
    assert (summary["enriched"], summary["left"], summary["errors"]) == (150, 0, [])
    assert summary["lookups"] == 300
    machine_calls = [e for e in emulator.admin.api_calls() if "/machines" in e["path"]]
    assert len(machine_calls) == 300 and all(e["status"] == 404 for e in machine_calls)


def test_what_the_deadline_leaves_is_reported_not_failed_and_done_by_the_next_run(
        emulator: Any, config: dict[str, Any], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    config_file = write_config(tmp_path, config, rate_limit={"per_minute": 10, "per_hour": 600,
                                                       "windows_s": [3, 180]})
    folder = alerts_folder(tmp_path, {f"a{n:02d}.json": {"indicators": [
        {"type": "domain", "value": f"left-{n}.example"}]} for n in range(20)})
    out = tmp_path / "out"
    assert cli_main(batch_argv(config_file, folder, out, "--deadline", "2s")) == 0
    captured = capsys.readouterr()
    first = json.loads(captured.out)
    assert first["left"] > 0 and first["enriched"] + first["left"] == 20
    assert first["errors"] == [] and first["incomplete"] == 0
    assert re.search(rf"{first['left']} alert\(s\) left for the next run", captured.err)
    assert not (out / "failed").exists() or not list((out / "failed").iterdir())
    assert cli_main(batch_argv(config_file, folder, out, "--deadline", "60s")) == 0
    second = json.loads(capsys.readouterr().out)
    assert second["enriched"] == first["left"] and second["already_done"] == first["enriched"]


def test_a_wrong_secret_is_said_once_on_stderr_and_in_errors_and_nothing_looks_enriched(
        emulator: Any, config: dict[str, Any], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    config_file = write_config(tmp_path, config, client_secret="wrong-secret-value")
    folder = alerts_folder(tmp_path, {f"a{n}.json": {"indicators": [
        {"type": "domain", "value": EVIL_DOMAIN}, {"type": "domain", "value": PHISH_DOMAIN}]}
        for n in range(3)})
    out = tmp_path / "out"
    assert cli_main(batch_argv(config_file, folder, out)) == 3
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    [error] = summary["errors"]
    assert (error["code"], error["count"]) == ("auth_failed", 3)
    assert "AADSTS7000215" in error["message"]
    lines = [line for line in captured.err.splitlines() if "auth_failed" in line]
    assert len(lines) == 1 and "3 alert(s): auth_failed:" in lines[0]
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ mde-enrich: ", lines[0])
    assert "wrong-secret-value" not in captured.err + captured.out
    assert list(out.glob("*.json")) == []  # nothing among the enriched
    failed = sorted((out / "failed").glob("*.json"))
    assert [p.name for p in failed] == ["a0.json", "a1.json", "a2.json"]
    reason = json.loads(failed[0].read_text("utf-8"))["failure"]
    assert reason["errors"][0]["code"] == "auth_failed"


def test_a_wrong_secret_stops_a_pull_with_its_cause(
        emulator: Any, config: dict[str, Any], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    config_file = write_config(tmp_path, config, client_secret="wrong-secret-value")
    emulator.admin.add_alerts([graph_alert(1, "")])
    status = cli_main(["playbook", "run", "scheduled-enrichment", "--pull", "alerts", "--out",
                       str(tmp_path / "out"), "--config", str(config_file), "--format", "json"])
    captured = capsys.readouterr()
    assert status == 3
    [error] = json.loads(captured.out)["errors"]
    assert error["code"] == "auth_failed" and "AADSTS7000215" in captured.err


def test_a_failed_alert_that_later_succeeds_leaves_the_failed_folder(
        emulator: Any, config: dict[str, Any], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    folder = alerts_folder(tmp_path, {"a.json": {"indicators": [
        {"type": "domain", "value": EVIL_DOMAIN}]}})
    out = tmp_path / "out"
    config_file = write_config(tmp_path, config)
    emulator.admin.add_fault("/api/domains/", 500, repeat_last=True)
    assert cli_main(batch_argv(config_file, folder, out)) == 4
    assert (out / "failed" / "a.json").is_file() and not (out / "a.json").exists()
    emulator.admin.clear_faults()
    assert cli_main(batch_argv(config_file, folder, out)) == 0
    assert (out / "a.json").is_file() and not (out / "failed" / "a.json").exists()
    capsys.readouterr()


def test_a_malformed_alert_is_quarantined_once_and_later_runs_pass(
        emulator: Any, config: dict[str, Any], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    folder = alerts_folder(tmp_path, {"bad.json": "{not json", "good.json": {"indicators": [
        {"type": "domain", "value": EVIL_DOMAIN}]}})
    out = tmp_path / "out"
    config_file = write_config(tmp_path, config)
    assert cli_main(batch_argv(config_file, folder, out)) == 2
    first = json.loads(capsys.readouterr().out)
    assert (first["quarantined"], first["enriched"]) == (1, 1)
    assert not (out / "bad.json").exists()
    assert "not valid JSON" in (out / "quarantine" / "bad.json.reason.txt").read_text("utf-8")
    assert cli_main(batch_argv(config_file, folder, out)) == 0
    second = json.loads(capsys.readouterr().out)
    assert (second["quarantined"], second["errors"], second["already_done"]) == (0, [], 2)


def test_an_overlapping_run_exits_75(emulator: Any, config: dict[str, Any], tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    from integration.cli.batch import batch_identity
    from integration.compose import enricher_for
    from integration.playbook import Batch

    folder = alerts_folder(tmp_path, {"a.json": {"indicators": [
        {"type": "domain", "value": EVIL_DOMAIN}]}})
    out = tmp_path / "out"
    config_file = write_config(tmp_path, config)
    enricher = enricher_for(config)
    with Batch(enricher.store, source=folder, out_dir=out,
               identity=batch_identity("scheduled-enrichment", {}, enricher)):
        assert cli_main(batch_argv(config_file, folder, out, "--quiet")) == 75
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "run_in_progress" in captured.err and "another run" in captured.err


def test_quiet_prints_nothing_when_all_is_well_and_the_log_file_has_timestamps(
        emulator: Any, config: dict[str, Any], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    folder = alerts_folder(tmp_path, {"a.json": {"indicators": [
        {"type": "domain", "value": EVIL_DOMAIN}]}})
    log_file = tmp_path / "run.log"
    argv = batch_argv(write_config(tmp_path, config), folder, tmp_path / "out", "--quiet",
                      "--log-file", str(log_file))
    assert cli_main(argv) == 0
    assert capsys.readouterr() == ("", "")
    lines = log_file.read_text("utf-8").splitlines()
    assert lines and all(re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ mde-enrich: ", line)
                         for line in lines)
    assert any("1 alert(s): 1 enriched" in line for line in lines)


@pytest.mark.parametrize("out", ["a-file", "/proc/mde-enrich-out"])
def test_an_unusable_output_folder_is_one_line_and_exit_2(
        emulator: Any, config: dict[str, Any], tmp_path: Path, out: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a-file").write_text("x")
    target = tmp_path / out if not out.startswith("/") else Path(out)
    folder = alerts_folder(tmp_path, {"a.json": {"indicators": []}})
    assert cli_main(batch_argv(write_config(tmp_path, config), folder, target)) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "--out" in lines[0] and "Traceback" not in captured.err
