"""Real published payloads (tests/corpus) read as tests/corpus/expected.yaml says.

Extraction needs no network; the end-to-end tests run the enrich-alert playbook against the
emulator and read its request log.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from integration.cli import main as cli_main
from integration.compose import new_enricher
from integration.config import load_settings
from integration.playbook import LookupService, PlaybookRunner, alert_formats, load_playbook
from integration.playbook.alerts import AlertBatch, read_alerts

ROOT = Path(__file__).resolve().parent.parent
CORPUS = Path(__file__).resolve().parent / "corpus"
ALERTS = CORPUS / "alerts"
EXPECTED: dict[str, dict[str, Any]] = yaml.safe_load(
    (CORPUS / "expected.yaml").read_text(encoding="utf-8"))
NAMES = sorted(EXPECTED)
ENRICH_ALERT = ROOT / "playbooks" / "enrich-alert.yaml"
# Observables a payload has in numbers (OCSF ports, geo names ...): listed as skipped, but
# expected.yaml need not name each one.
OPEN_ENDED_REASONS = frozenset({"unsupported_evidence_type"})
MSSENSE_SHA1 = "5f1e8acedc065031aad553b710838eb366cfee9a"


def read(name: str) -> AlertBatch:
    return read_alerts((ALERTS / name).read_text(encoding="utf-8"), name)


def extracted(name: str) -> list[dict[str, Any]]:
    return [alert_formats().extract(alert, name) for alert in read(name).alerts]


def skipped_pairs(name: str) -> set[tuple[str, str]]:
    return {(str(item["value"]), item["reason"])
            for result in extracted(name) for item in result["skipped"]}


def test_every_alert_file_has_its_expectations() -> None:
    assert sorted(path.name for path in ALERTS.glob("*.json")) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_the_payload_is_recognised_as_its_format(name: str) -> None:
    batch = read(name)
    shape = batch.shape or alert_formats().detect(batch.alerts[0], name).id
    assert shape == EXPECTED[name]["format"]
    if "item_formats" in EXPECTED[name]:
        assert [alert_formats().detect(a, name).id for a in batch.alerts] == \
            EXPECTED[name]["item_formats"]


@pytest.mark.parametrize("name", NAMES)
def test_a_page_or_array_is_split_into_its_alerts(name: str) -> None:
    assert len(read(name).alerts) == EXPECTED[name]["batch_items"]


@pytest.mark.parametrize("name", NAMES)
def test_exactly_the_expected_domains_are_extracted(name: str) -> None:
    domains = {i["value"] for result in extracted(name) for i in result["indicators"]
               if i["kind"] == "domain"}
    assert domains == set(EXPECTED[name]["domains"])


@pytest.mark.parametrize("name", NAMES)
def test_exactly_the_expected_files_are_extracted_with_their_names(name: str) -> None:
    files = {(i["value"], i.get("context", {}).get("name"))
             for result in extracted(name) for i in result["indicators"] if i["kind"] == "file"}
    assert files == {(f["hash"], f["name"]) for f in EXPECTED[name]["files"]}


@pytest.mark.parametrize("name", NAMES)
def test_every_observable_not_looked_up_is_skipped_with_its_reason(name: str) -> None:
    expected = {(str(s["value"]), s["reason"]) for s in EXPECTED[name]["skipped"]}
    actual = skipped_pairs(name)
    assert expected <= actual
    assert {pair for pair in actual - expected if pair[1] not in OPEN_ENDED_REASONS} == set()


@pytest.mark.parametrize("name", NAMES)
def test_a_trusted_binary_is_skipped_under_its_name(name: str) -> None:
    wanted = {(s["value"], s["name"]) for s in EXPECTED[name]["skipped"]
              if s["reason"] == "trusted_publisher"}
    actual = {(s["value"], s.get("context", {}).get("name"))
              for result in extracted(name) for s in result["skipped"]
              if s["reason"] == "trusted_publisher"}
    assert actual == wanted


@pytest.mark.parametrize("name", NAMES)
def test_an_alert_that_yields_nothing_says_why(name: str) -> None:
    codes = {w["code"] for result in extracted(name) for w in result["warnings"]}
    assert codes == set(EXPECTED[name]["warnings"])


@pytest.mark.parametrize("name", NAMES)
def test_no_device_id_is_ever_an_indicator(name: str) -> None:
    device_ids = {s["value"].casefold() for s in EXPECTED[name]["skipped"]
                  if s["reason"] == "device_id"}
    for result in extracted(name):
        for indicator in result["indicators"]:
            assert not device_ids & {h.casefold() for h in indicator.get("hashes", {}).values()}


def test_the_indicator_keeps_the_field_verdict_and_roles_it_came_with() -> None:
    alert = json.loads((ALERTS / "graph_alert_v2_docs_get.json").read_text(encoding="utf-8"))
    alert["evidence"][1]["verdict"] = "malicious"  # a Microsoft binary gone bad: looked up
    [file] = alert_formats().extract(alert, "a.json")["indicators"]
    assert file["value"] == MSSENSE_SHA1
    assert file["context"]["verdict"] == "malicious"
    assert file["context"]["publisher"] == "Microsoft Corporation"
    assert file["sources"][0] == {"format": "graph_security_alert_v2",
                                  "field": "evidence[fileEvidence].fileDetails"}


# --- end to end: the CLI and the emulator ---------------------------------------------------


def runner_for(config: dict[str, Any], **inputs: Any) -> PlaybookRunner:
    enricher = new_enricher(load_settings(config))
    return PlaybookRunner(load_playbook(ENRICH_ALERT), LookupService(lambda: enricher),
                          inputs=inputs)


def run_cli(name: str, config_file: Path, *extra: str) -> int:
    return cli_main(["playbook", "run", "enrich-alert", "--alert", str(ALERTS / name),
                     "--config", str(config_file), *extra])


def test_a_page_prints_one_enriched_alert_per_item_in_order(
        config_file: Path, emulator: Any, capsys: pytest.CaptureFixture[str]) -> None:
    name = "defender_alerts_xsoar_page_legacy_fields.json"
    status = run_cli(name, config_file, "--format", "json")
    printed = json.loads(capsys.readouterr().out)
    page = json.loads((ALERTS / name).read_text(encoding="utf-8"))["value"]
    assert status == 0
    assert [alert["id"] for alert in printed] == [alert["id"] for alert in page]
    assert all(alert["enrichment"]["format"]["id"] == "defender_alert" for alert in printed)


def test_an_array_enriches_each_item_on_its_own(
        config_file: Path, emulator: Any, capsys: pytest.CaptureFixture[str]) -> None:
    status = run_cli("ocsf_security_finding_ssc_array.json", config_file, "--format", "json")
    printed = json.loads(capsys.readouterr().out)
    assert status == 0
    assert [[i["value"] for i in alert["enrichment"]["indicators"]] for alert in printed] == [
        ["open-internet.nl"], [], ["open.kickasstracker.com"],  # the second's hostname is null
        ["x-eu.58dac16e7b2c86c19cfe48914a6e8fcdac9ae06fe5cf53369beaa45b.com"]]


def test_an_empty_page_prints_an_empty_array(
        config_file: Path, emulator: Any, capsys: pytest.CaptureFixture[str]) -> None:
    status = run_cli("defender_alerts_elastic_empty_page.json", config_file, "--format", "json")
    assert status == 0
    assert json.loads(capsys.readouterr().out) == []


def test_ndjson_given_to_alert_is_a_batch(config_file: Path, emulator: Any, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    lines = [json.loads((ALERTS / name).read_text(encoding="utf-8")) for name in (
        "defender_alert_elastic_file_no_hash.json", "graph_alert_v1_xsoar_wintapp.json")]
    feed = tmp_path / "alerts.ndjson"
    feed.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    status = cli_main(["playbook", "run", "enrich-alert", "--alert", str(feed),
                       "--config", str(config_file), "--format", "json"])
    printed = json.loads(capsys.readouterr().out)
    assert status == 0
    assert [alert["id"] for alert in printed] == [line["id"] for line in lines]


def test_an_alert_with_empty_evidence_exits_0_with_the_warning(
        config_file: Path, emulator: Any, capsys: pytest.CaptureFixture[str]) -> None:
    status = run_cli("defender_alert_docs_evidence_empty.json", config_file, "--format", "table")
    out = capsys.readouterr().out
    assert status == 0
    assert "warning: evidence was not expanded: fetch the alert with `$expand=evidence`" in out


def test_the_warning_is_in_the_enrichment_and_the_markdown_note(
        config_file: Path, emulator: Any, capsys: pytest.CaptureFixture[str]) -> None:
    name = "defender_alert_docs_evidence_empty.json"
    run_cli(name, config_file, "--format", "json")
    [warning] = json.loads(capsys.readouterr().out)["enrichment"]["warnings"]
    assert warning["code"] == "evidence_not_expanded"
    assert run_cli(name, config_file, "--format", "markdown") == 0
    assert "> warning: evidence was not expanded" in capsys.readouterr().out


def test_a_microsoft_signed_binary_is_skipped_and_costs_no_call(
        config: dict[str, Any], emulator: Any) -> None:
    alert = json.loads((ALERTS / "graph_alert_v2_docs_get.json").read_text(encoding="utf-8"))
    enrichment = runner_for(config).run(alert).enrichment
    assert not any(MSSENSE_SHA1 in call["path"] for call in emulator.admin.api_calls())
    assert enrichment["summary"]["skipped"]["trusted_publisher"] == 1
    assert enrichment["summary"]["total_machines"] == 0
    assert "recommended_severity" not in enrichment


def test_an_input_turns_lookups_of_trusted_binaries_back_on(
        config: dict[str, Any], emulator: Any) -> None:
    alert = json.loads((ALERTS / "graph_alert_v2_docs_get.json").read_text(encoding="utf-8"))
    enrichment = runner_for(config, lookup_trusted_files=True).run(alert).enrichment
    assert [e["indicator"]["value"] for e in enrichment["envelopes"]] == [MSSENSE_SHA1]
    assert "trusted_publisher" not in enrichment["summary"]["skipped"]


def test_an_input_overrides_the_trusted_publishers(config: dict[str, Any],
                                                   emulator: Any) -> None:
    alert = json.loads((ALERTS / "graph_alert_v2_docs_get.json").read_text(encoding="utf-8"))
    enrichment = runner_for(config, trusted_publishers=["Contoso"]).run(alert).enrichment
    assert [e["indicator"]["value"] for e in enrichment["envelopes"]] == [MSSENSE_SHA1]


def test_the_table_shows_the_file_name_beside_the_hash(
        config_file: Path, emulator: Any, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli("defender_alert_docs_expanded_evidence.json", config_file, "--format",
                   "table") == 0
    out = capsys.readouterr().out
    assert re.search(r"8563f95b2f8a284fc99da44500cd51a77c1ff36c.*\(suspicious\.dll\)", out)
    assert re.search(r"ff836cfb1af40252bd2a2ea843032e99a5b262ed.*\(rundll32\.exe\)", out)


def test_the_markdown_note_shows_the_file_name_beside_the_hash(
        config_file: Path, emulator: Any, capsys: pytest.CaptureFixture[str]) -> None:
    run_cli("defender_alert_docs_expanded_evidence.json", config_file, "--format", "markdown")
    assert "`8563f95b2f8a284fc99da44500cd51a77c1ff36c` (suspicious.dll)" in \
        capsys.readouterr().out


def test_no_device_id_is_ever_sent_as_a_file_hash(config: dict[str, Any], emulator: Any) -> None:
    device_ids = {s["value"].casefold() for entry in EXPECTED.values()
                  for s in entry["skipped"] if s["reason"] == "device_id"}
    runner = runner_for(config)
    for name in NAMES:
        for alert in read(name).alerts:
            runner.run(alert, source=name)
    paths = [call["path"].casefold() for call in emulator.admin.api_calls()]
    assert any(path.startswith("/api/files/") for path in paths)  # files were asked
    assert not [path for path in paths if any(device in path for device in device_ids)]


# --- detection by distinctive keys: each family pinned against every other -------------------


@pytest.mark.parametrize("name", NAMES)
def test_no_other_format_is_as_specific_as_the_payloads_own(name: str) -> None:
    """Every format that also matches the payload is strictly less specific than the one
    expected.yaml names: no family is taken for another because of one shared key."""
    for alert in read(name).alerts:
        found = alert_formats().matching(alert)
        if not found:
            continue
        own = found[0]
        rivals = [f.id for f in found[1:] if f.specificity >= own.specificity]
        assert rivals == [], f"{name}: {own.id} ties with {rivals}"


def test_the_corpus_holds_sixty_payloads_from_twenty_families() -> None:
    families = {EXPECTED[name]["format"] for name in NAMES} | {
        source["format"] for name in NAMES for result in extracted(name)
        for item in result["indicators"] + result["skipped"]
        for source in [item.get("source") or item["sources"][0]] if source["format"] != "any"}
    assert len(NAMES) >= 60
    assert len(families - {"page_of_alerts", "array_of_alerts", "ndjson"}) >= 20


def test_the_detected_format_is_named_in_every_extraction() -> None:
    for name in NAMES:
        for result in extracted(name):
            assert {"id", "title", "origin"} <= set(result["format"])


@pytest.mark.parametrize(("fmt", "said"), [
    ("table", "format: TheHive alert (thehive_alert)"),
    ("markdown", "- format: TheHive alert \\(thehive\\_alert\\)"),  # escaped as markdown
])
def test_table_and_markdown_name_the_detected_format(
        fmt: str, said: str, config_file: Path, emulator: Any,
        capsys: pytest.CaptureFixture[str]) -> None:
    status = run_cli("thehive3_alert_create_artifacts.json", config_file, "--format", fmt)
    assert status == 0
    assert said in capsys.readouterr().out


def test_a_file_name_in_an_alert_costs_no_lookup(
        config_file: Path, emulator: Any, capsys: pytest.CaptureFixture[str]) -> None:
    status = run_cli("thehive3_alert_create_artifacts.json", config_file, "--format", "json")
    enrichment = json.loads(capsys.readouterr().out)["enrichment"]
    assert status == 0
    looked_up = {e["indicator"]["value"] for e in enrichment.get("lookups", [])} | {
        i["value"] for i in enrichment["indicators"]}
    assert "logo.svg" not in looked_up and "thehive-project.org" in looked_up
