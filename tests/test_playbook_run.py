"""Running playbooks on alerts against the emulator: the alert comes back intact with one
`enrichment` key; each distinct indicator is looked up once; machines are merged by uid."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from integration.cli import main as cli_main
from integration.compose import new_enricher
from integration.config import load_settings
from integration.emulator.seed import (
    EMPTY_DOMAIN,
    EVIL_DOMAIN,
    IDN_DOMAIN,
    KNOWN_FILE,
    PHISH_DOMAIN,
)
from integration.playbook import LookupService, PlaybookRunner, StepFailed, load_playbook

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "playbooks" / "samples"
ENRICH_ALERT = ROOT / "playbooks" / "enrich-alert.yaml"
ANALYST_LOOKUP = ROOT / "playbooks" / "analyst-lookup.yaml"
ROTTEN_SHA1 = "ff836cfb1af40252bd2a2ea843032e99a5b262ed"
EDGE_SHA1 = "a8ad1ca2fb3304890971d4b58c8af496ee60a5ee"

# fixture -> the distinct domains and files (their best hash) the playbook must look up
LOOKED_UP: dict[str, tuple[set[str], set[str]]] = {
    "defender_alert.json": ({EVIL_DOMAIN}, {KNOWN_FILE["sha1"], ROTTEN_SHA1}),
    "graph_security_alert_v2.json": ({PHISH_DOMAIN}, {KNOWN_FILE["sha1"], EDGE_SHA1}),
    "ocsf_detection_finding.json": ({IDN_DOMAIN, EVIL_DOMAIN}, {KNOWN_FILE["sha1"]}),
    "splunk_soar_container.json": ({PHISH_DOMAIN, EMPTY_DOMAIN},
                                   {KNOWN_FILE["sha256"]}),
    # its File entity ties the SHA-1 and SHA-256 FileHash entities: one file, one lookup
    "sentinel_incident.json": ({EVIL_DOMAIN, EMPTY_DOMAIN}, {KNOWN_FILE["sha1"]}),
    "plain_indicators.json": ({PHISH_DOMAIN, EVIL_DOMAIN},
                              {KNOWN_FILE["sha1"], KNOWN_FILE["sha256"]}),
}


def runner_for(config: dict[str, Any], playbook: Path = ENRICH_ALERT,
               **inputs: Any) -> PlaybookRunner:
    enricher = new_enricher(load_settings(config))
    return PlaybookRunner(load_playbook(playbook), LookupService(lambda: enricher),
                          inputs=inputs)


def machine_paths(emulator: Any) -> list[str]:
    return [call["path"] for call in emulator.admin.api_calls() if call["path"].endswith(
        "/machines")]


def expected_uids(config: dict[str, Any], domains: set[str], files: set[str]) -> set[str]:
    """The machines each indicator has on its own, asked through the plain Enricher."""
    enricher = new_enricher(load_settings({**config, "cache_ttl_s": 0}))
    envelopes = enricher.lookup_many("domain", sorted(domains)) + \
        enricher.lookup_many("file", sorted(files))
    assert all(e.status in ("success", "not_found") for e in envelopes)
    return {m["uid"] for e in envelopes for m in e.machines}


@pytest.mark.parametrize("fixture", sorted(LOOKED_UP))
def test_each_format_gives_its_machines_deduplicated_with_the_alert_intact(
        fixture: str, config: dict[str, Any], emulator: Any) -> None:
    alert = json.loads((FIXTURES / fixture).read_text(encoding="utf-8"))
    pristine = json.loads((FIXTURES / fixture).read_text(encoding="utf-8"))
    result = runner_for(config).run(alert, source=fixture)
    document = result.document
    assert set(document) - set(pristine) == {"enrichment"}
    assert {k: v for k, v in document.items() if k != "enrichment"} == pristine
    assert alert == pristine  # the caller's object is untouched too
    domains, files = LOOKED_UP[fixture]
    envelopes = document["enrichment"]["envelopes"]
    assert sorted(e["indicator"]["value"] for e in envelopes) == sorted(domains | files)
    machines = document["enrichment"]["machines"]
    uids = [m["uid"] for m in machines]
    assert len(uids) == len(set(uids))
    emulator.admin.clear_log()
    assert set(uids) == expected_uids(config, domains, files)
    assert all(m["related_indicators"] for m in machines)
    assert document["enrichment"]["summary"]["total_machines"] == len(machines)


def test_a_sha256_and_its_sha1_in_one_alert_cost_one_machines_lookup(
        config: dict[str, Any], emulator: Any) -> None:
    alert = {"indicators": [{"type": "sha256", "value": KNOWN_FILE["sha256"]},
                            {"type": "sha1", "value": KNOWN_FILE["sha1"]}]}
    result = runner_for(config).run(alert)
    assert machine_paths(emulator) == [f"/api/files/{KNOWN_FILE['sha1']}/machines"]
    [entry] = result.enrichment["indicators"]  # one file, known by both hashes
    assert entry["hashes"] == {"sha1": KNOWN_FILE["sha1"], "sha256": KNOWN_FILE["sha256"]}


def test_a_sha256_and_an_md5_of_one_file_cost_one_machines_lookup(
        config: dict[str, Any], emulator: Any) -> None:
    alert = {"indicators": [{"type": "md5", "value": KNOWN_FILE["md5"]},
                            {"type": "sha256", "value": KNOWN_FILE["sha256"]}]}
    runner_for(config).run(alert)
    assert machine_paths(emulator) == [f"/api/files/{KNOWN_FILE['sha1']}/machines"]


def test_an_indicator_named_twice_in_an_alert_is_looked_up_once(
        config: dict[str, Any], emulator: Any) -> None:
    alert = {"indicators": [{"type": "domain", "value": EVIL_DOMAIN},
                            {"type": "url", "value": "hxxps://EVIL[.]example/a"},
                            {"type": "url", "value": "http://evil.example:8080/b"}]}
    result = runner_for(config).run(alert)
    assert machine_paths(emulator) == [f"/api/domains/{EVIL_DOMAIN}/machines"]
    [entry] = result.enrichment["indicators"]
    assert len(entry["sources"]) == 2  # the domain rule and the url rule


def test_a_high_risk_machine_recommends_a_high_severity(config: dict[str, Any],
                                                        emulator: Any) -> None:
    result = runner_for(config).run({"indicators": [{"type": "domain", "value": EVIL_DOMAIN}]})
    assert result.enrichment["recommended_severity"]["severity"] == "High"


def test_many_machines_recommend_a_high_severity_from_the_threshold_input(
        config: dict[str, Any], emulator: Any) -> None:
    alert = {"indicators": [{"type": "sha1", "value": KNOWN_FILE["sha1"]}]}  # 4, none High
    assert "recommended_severity" not in runner_for(config).run(alert).enrichment
    result = runner_for(config, many_machines_threshold=4).run(alert)
    assert result.enrichment["recommended_severity"] == {
        "severity": "High", "reason": "4 machines are involved"}


def test_skipped_observables_are_counted_by_reason(config: dict[str, Any],
                                                   emulator: Any) -> None:
    alert = json.loads((FIXTURES / "defender_alert.json").read_text(encoding="utf-8"))
    summary = runner_for(config).run(alert).enrichment["summary"]
    assert summary["skipped"] == {"ip_address": 1, "user_account": 1, "no_hash": 1,
                                  "reporting_device": 1, "device_id": 1}


def test_a_failed_lookup_is_reported_and_the_rest_still_enriched(
        config: dict[str, Any], emulator: Any) -> None:
    emulator.admin.add_fault(f"/api/domains/{PHISH_DOMAIN}/", {"status": 403}, repeat_last=True)
    alert = {"indicators": [{"type": "domain", "value": PHISH_DOMAIN},
                            {"type": "domain", "value": EVIL_DOMAIN}]}
    result = runner_for(config).run(alert)
    summary = result.enrichment["summary"]
    assert summary["failed"] is True and summary["total_machines"] == 3
    assert result.exit_status == 3  # permission denied


def test_a_step_that_must_not_fail_stops_the_playbook_with_its_exit_status(
        config: dict[str, Any], emulator: Any, tmp_path: Path) -> None:
    strict = tmp_path / "strict.yaml"
    strict.write_text(ENRICH_ALERT.read_text(encoding="utf-8").replace(
        "on_error: continue   #", "on_error: fail   #"), encoding="utf-8")
    emulator.admin.add_fault("/api/domains/", {"status": 403}, repeat_last=True)
    with pytest.raises(StepFailed, match=r"strict\.yaml: steps\[2\] \(domains\): 1 lookup") \
            as caught:
        runner_for(config, strict).run({"indicators": [{"type": "domain", "value": EVIL_DOMAIN}]})
    assert caught.value.exit_status == 3


def test_an_object_in_no_known_format_is_read_by_field_names_and_exits_0(
        config_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    odd = tmp_path / "odd.json"
    odd.write_text('{"hello": "world"}', encoding="utf-8")
    status = cli_main(["playbook", "run", str(ENRICH_ALERT), "--alert", str(odd),
                       "--config", str(config_file), "--format", "json"])
    assert status == 0
    enrichment = json.loads(capsys.readouterr().out)["enrichment"]
    assert enrichment["format"]["id"] == "generic"
    assert [w["code"] for w in enrichment["warnings"]] == ["generic_format"]


@pytest.mark.parametrize(("text", "said"), [
    ('"just a string"', "an alert is a JSON object"),
    ('{"indicators": [', "not valid JSON"),
], ids=["not an object", "not JSON"])
def test_an_alert_that_is_not_a_json_object_exits_2_naming_the_file(
        text: str, said: str, config_file: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    odd = tmp_path / "odd.json"
    odd.write_text(text, encoding="utf-8")
    status = cli_main(["playbook", "run", str(ENRICH_ALERT), "--alert", str(odd),
                       "--config", str(config_file)])
    assert status == 2
    assert f"{odd}: {said}" in capsys.readouterr().err


def test_run_prints_the_enriched_alert_as_json(config_file: Path, emulator: Any,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    fixture = FIXTURES / "sentinel_incident.json"
    status = cli_main(["playbook", "run", str(ENRICH_ALERT), "--alert", str(fixture),
                               "--config", str(config_file), "--format", "json"])
    document = json.loads(capsys.readouterr().out)
    assert status == 0
    assert document["enrichment"]["format"]["id"] == "sentinel_incident"


def test_analyst_lookup_renders_markdown_naming_the_indicator(
        config_file: Path, emulator: Any, capsys: pytest.CaptureFixture[str]) -> None:
    status = cli_main(["playbook", "run", str(ANALYST_LOOKUP), "--indicator",
                               "hxxps://evil[.]example/login", "--type", "domain",
                               "--config", str(config_file), "--format", "markdown"])
    note = capsys.readouterr().out
    assert status == 0
    assert "#### Defender machines for domain `evil[.]example`" in note
    assert "**3 machines**" in note
    assert "evil.example" not in note.replace("evil.example/", "")  # defanged, not a live link


def test_analyst_lookup_takes_a_file_hash_through_input_options(
        config_file: Path, emulator: Any, capsys: pytest.CaptureFixture[str]) -> None:
    status = cli_main(["playbook", "run", str(ANALYST_LOOKUP), "--input",
                               f"indicator={KNOWN_FILE['md5']}", "--input", "type=file",
                               "--config", str(config_file), "--format", "json"])
    document = json.loads(capsys.readouterr().out)
    assert status == 0
    assert document["enrichment"]["summary"]["total_machines"] == 4
    assert KNOWN_FILE["md5"] in document["enrichment"]["note"]


def test_an_expression_failing_on_the_alert_stops_the_run_naming_the_step() -> None:
    from integration.playbook import parse_playbook

    playbook = parse_playbook({"name": "count", "trigger": "alert", "steps": [
        {"id": "count", "builtin": "set_field",
         "params": {"path": "enrichment.count", "value": {"expr": "length(alert.id)"}}}]},
        "count.yaml")
    runner = PlaybookRunner(playbook, LookupService(lambda: None))  # type: ignore[arg-type, return-value]
    with pytest.raises(StepFailed, match=r"^count\.yaml: steps\[0\] \(count\): expression") \
            as caught:
        runner.run({"id": 42})
    assert caught.value.exit_status == 2


def _machine(uid: str, risk: str, risk_id: int, **mde: Any) -> dict[str, Any]:
    return {"uid": uid, "risk_level": risk, "risk_level_id": risk_id, "mde": mde}


def test_merged_and_potential_duplicate_records_are_shown_but_not_counted() -> None:
    from integration.playbook.steps import merge_machines

    envelope = {"action": "get_machines_for_domain", "status": "success",
                "indicator": {"type": "domain", "value": "evil.example", "original": "x"},
                "machines": [_machine("a", "Low", 1),
                             _machine("b", "High", 3, merged_into_machine_id="a"),
                             _machine("c", "High", 3, is_potential_duplicate=True)],
                "summary": {"total_machines": 3, "truncated": False, "api_calls": 1,
                            "cached": False}}
    merged = merge_machines(None, {"envelopes": [envelope]})  # type: ignore[arg-type]
    assert [machine["uid"] for machine in merged["machines"]] == ["a", "b", "c"]
    assert merged["summary"]["total_machines"] == 1
    assert merged["summary"]["duplicate_records_not_counted"] == 2
    assert merged["summary"]["highest_risk"] == "Low"  # the duplicates' High drives nothing


@pytest.mark.parametrize("fmt", ["table", "markdown"])
def test_a_file_given_by_sha1_and_sha256_is_shown_once_naming_both(
        fmt: str, config_file: Path, emulator: Any, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["playbook", "run", str(ENRICH_ALERT), "--alert",
                     str(FIXTURES / "plain_indicators.json"), "--config", str(config_file),
                     "--format", fmt]) == 0
    shown = capsys.readouterr().out
    assert shown.count(f"sha1 {KNOWN_FILE['sha1']}") == 1 or \
        shown.count(f"sha1 `{KNOWN_FILE['sha1']}`") == 1
    assert f"(also given as sha256 {KNOWN_FILE['sha256']})" in shown
    assert f"sha256 {KNOWN_FILE['sha256']} (SHA-1" not in shown
