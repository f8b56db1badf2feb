"""A scheduled run that pulls its alerts from Microsoft Graph (the emulator's alerts_v2 and
incidents), enriches each new one once, keeps its position in the state, and writes one
comment back per alert when asked to."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from integration.cli import main as cli_main
from integration.emulator.seed import EVIL_DOMAIN, KNOWN_FILE, PHISH_DOMAIN

_STAMP = "2026-01-0{day}T10:00:00.{fraction}Z"


def graph_alert(number: int, updated: str, domain: str = EVIL_DOMAIN,
                source: str = "microsoftDefenderForEndpoint", severity: str = "high",
                status: str = "new", incident: str | None = None) -> dict[str, Any]:
    """An alerts_v2 record as Graph sends it (shape of playbooks/samples); without `updated`
    the emulator stamps it as it arrives, as Graph does."""
    alert = {
        "@odata.type": "#microsoft.graph.security.alert",
        "id": f"da63851239911882{number:04d}_1166571183", "incidentId": incident or str(number),
        "status": status, "severity": severity, "serviceSource": source,
        "detectionSource": "microsoftDefenderForEndpoint", "title": f"alert {number}",
        "createdDateTime": updated, "lastUpdateDateTime": updated, "comments": [],
        "evidence": [
            {"@odata.type": "#microsoft.graph.security.urlEvidence", "verdict": "malicious",
             "roles": [], "url": f"https://{domain}/login.php"},
            {"@odata.type": "#microsoft.graph.security.fileEvidence", "verdict": "suspicious",
             "roles": [], "fileDetails": {"sha1": KNOWN_FILE["sha1"], "fileName": "x.exe"}},
        ],
    }
    if not updated:
        del alert["lastUpdateDateTime"], alert["createdDateTime"]
    return alert


def pull_run(config_file: Path, out: Path, *extra: str) -> int:
    return cli_main(["playbook", "run", "scheduled-enrichment", "--pull", "alerts",
                     "--out", str(out), "--config", str(config_file), "--format", "json",
                     "--since", "2026-01-01T00:00:00Z", *extra])


def enriched_ids(out: Path) -> list[str]:
    return sorted(json.loads(path.read_text("utf-8"))["id"] for path in out.glob("alert-*.json"))


def now_stamp() -> str:
    moment = dt.datetime.now(dt.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond:06d}1Z"


def test_three_scheduled_runs_enrich_every_new_alert_once_and_comment_once(
        emulator: Any, config_file: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    alerts = [graph_alert(n, "") for n in range(1, 6)]
    same = now_stamp()  # two alerts share this exact timestamp: one arrives a run later
    emulator.admin.add_alerts([alerts[0], {**alerts[1], "lastUpdateDateTime": same}])
    assert pull_run(config_file, out, "--write-back") == 0
    first = json.loads(capsys.readouterr().out)
    assert (first["enriched"], first["errors"]) == (2, [])

    emulator.admin.add_alerts([{**alerts[2], "lastUpdateDateTime": same}, alerts[3]])
    assert pull_run(config_file, out, "--write-back") == 0
    second = json.loads(capsys.readouterr().out)
    # 3 and 4 are new; 1 and 2 come back because our comments updated them, and are known.
    assert (second["enriched"], second["errors"]) == (2, [])

    emulator.admin.add_alerts([alerts[4]])
    assert pull_run(config_file, out, "--write-back") == 0
    third = json.loads(capsys.readouterr().out)
    assert (third["enriched"], third["errors"]) == (1, [])

    ids = sorted(alert["id"] for alert in alerts)
    assert enriched_ids(out) == ids
    by_id = {alert["id"]: alert for alert in emulator.admin.security_alerts()}
    for alert_id in ids:
        comments = [c["comment"] for c in by_id[alert_id]["comments"]]
        assert len(comments) == 1, (alert_id, comments)
        assert "[mde-enrich " in comments[0] and "related machine" in comments[0]


def test_a_pull_follows_next_links_and_selects_by_source_severity_and_status(
        emulator: Any, config_file: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    stamp = _STAMP.format(day=2, fraction="0")
    wanted = [graph_alert(n, stamp) for n in range(1, 206)]  # more than one page of 200
    others = [graph_alert(300, stamp, source="microsoftDefenderForOffice365"),
              graph_alert(301, stamp, severity="low"),
              graph_alert(302, stamp, status="resolved")]
    emulator.admin.add_alerts(wanted + others)
    emulator.admin.clear_log()
    out = tmp_path / "out"
    assert pull_run(config_file, out, "--service-source", "microsoftDefenderForEndpoint",
                    "--severity", "high,medium", "--status", "new") == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["enriched"] == 205
    assert enriched_ids(out) == sorted(alert["id"] for alert in wanted)
    pages = [e for e in emulator.admin.requests_log("/v1.0/security/alerts_v2")]
    assert len(pages) == 2 and "skip" in pages[1]["query"]
    assert "serviceSource" in pages[0]["query"]


def test_a_rerun_with_nothing_new_enriches_nothing_and_asks_defender_nothing(
        emulator: Any, config_file: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    emulator.admin.add_alerts([graph_alert(1, _STAMP.format(day=2, fraction="0"))])
    out = tmp_path / "out"
    assert pull_run(config_file, out) == 0
    capsys.readouterr()
    emulator.admin.clear_log()
    assert pull_run(config_file, out) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["total"], summary["enriched"]) == (0, 0)
    assert emulator.admin.api_calls() == []


def test_incidents_are_pulled_with_their_alerts_and_commented_on_once(
        emulator: Any, config_file: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    stamp = _STAMP.format(day=2, fraction="0")
    emulator.admin.add_alerts(
        [graph_alert(1, stamp, incident="77"), graph_alert(2, stamp, incident="77",
                                                            domain=PHISH_DOMAIN)],
        incidents=[{"@odata.type": "#microsoft.graph.security.incident", "id": "77",
                    "displayName": "two alerts", "severity": "high", "status": "active",
                    "incidentWebUrl": "https://security.microsoft.com/incidents/77",
                    "createdDateTime": stamp, "lastUpdateDateTime": stamp}])
    out = tmp_path / "out"
    argv = ["playbook", "run", "scheduled-enrichment", "--pull", "incidents", "--out", str(out),
            "--config", str(config_file), "--format", "json", "--since", "2026-01-01T00:00:00Z",
            "--write-back"]
    assert cli_main(argv) == 0
    assert cli_main(argv) == 0
    capsys.readouterr()
    [document] = [json.loads(p.read_text("utf-8")) for p in out.glob("incident-*.json")]
    assert {m["hostname"] for m in document["enrichment"]["machines"]}
    [incident] = emulator.admin.security_incidents()
    assert len(incident["comments"]) == 1


def test_write_back_without_the_permission_is_a_warning_not_a_failure(
        emulator: Any, state_url: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    config_file = tmp_path / "cert.yaml"  # the certificate app may read alerts, not comment
    config_file.write_text(yaml.safe_dump(emulator.cert_config(state=state_url)))
    emulator.admin.add_alerts([graph_alert(1, _STAMP.format(day=2, fraction="0")),
                               graph_alert(2, _STAMP.format(day=2, fraction="1"))])
    out = tmp_path / "out"
    assert pull_run(config_file, out, "--write-back") == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert summary["enriched"] == 2 and summary["errors"] == []
    assert len(summary["warnings"]) == 1 and "SecurityAlert.ReadWrite.All" in \
        summary["warnings"][0]
    assert captured.err.count("write-back is off") == 1
    assert all(alert["comments"] == [] for alert in emulator.admin.security_alerts())


def test_connectivity_checks_the_pull_and_write_back_permissions(emulator: Any,
                                                                 state_url: str) -> None:
    from integration import actions

    asked = {"pull": "alerts", "write_back": True}
    envelope = actions.test_connectivity(asked, emulator.config(state=state_url))
    assert envelope["status"] == "success"
    names = {check["name"]: check["status"] for check in envelope["connectivity"]["capabilities"]}
    assert names["graph_alerts_read"] == names["graph_alerts_write"] == "ok"
    # The certificate app may read alerts but not comment: the write check names the grant.
    envelope = actions.test_connectivity(asked, emulator.cert_config(state=state_url))
    assert envelope["error"]["code"] == "permission_denied"
    assert "SecurityAlert.ReadWrite.All" in envelope["error"]["message"]
    assert actions.test_connectivity({"pull": "incidents"},
                                     emulator.cert_config(state=state_url))["status"] == "success"
