"""Alert formats (integration/alert_formats.yaml): detection and extraction, no network."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from integration.emulator.seed import (
    EMPTY_DOMAIN,
    EVIL_DOMAIN,
    IDN_DOMAIN,
    KNOWN_FILE,
    PHISH_DOMAIN,
)
from integration.playbook import AlertError, alert_formats

FIXTURES = Path(__file__).resolve().parent.parent / "playbooks" / "samples"
CORPUS_EXPECTED = Path(__file__).resolve().parent / "corpus" / "expected.yaml"
ROTTEN_SHA1 = "ff836cfb1af40252bd2a2ea843032e99a5b262ed"  # rundll32 from Microsoft's docs
EDGE_SHA1 = "a8ad1ca2fb3304890971d4b58c8af496ee60a5ee"

# fixture -> (format id, {(type, value)} after deduplication is left to the playbook,
#             skipped reasons with counts)
EXPECTED: dict[str, tuple[str, set[tuple[str, str]], dict[str, int]]] = {
    "defender_alert.json": (
        "defender_alert",
        {("domain", EVIL_DOMAIN), ("sha1", KNOWN_FILE["sha1"]), ("sha1", ROTTEN_SHA1)},
        {"ip_address": 1, "user_account": 1, "no_hash": 1, "reporting_device": 1,
         "device_id": 1}),
    "graph_security_alert_v2.json": (
        "graph_security_alert_v2",
        {("domain", PHISH_DOMAIN), ("sha1", KNOWN_FILE["sha1"]), ("sha1", EDGE_SHA1)},
        {"ip_address": 3, "user_account": 2, "reporting_device": 1, "no_hash": 1,
         "device_id": 1}),
    "ocsf_detection_finding.json": (
        "ocsf_detection_finding",
        {("domain", IDN_DOMAIN), ("domain", EVIL_DOMAIN), ("sha1", KNOWN_FILE["sha1"]),
         ("sha256", KNOWN_FILE["sha256"])},
        {"ip_address": 2, "user_account": 1, "reporting_device": 1}),
    "splunk_soar_container.json": (
        "splunk_soar_container",
        # sourceDnsDomain names the host the event was seen on: context, not an indicator
        {("domain", PHISH_DOMAIN), ("domain", EMPTY_DOMAIN),
         ("sha256", KNOWN_FILE["sha256"]), ("md5", KNOWN_FILE["md5"])},
        {"ip_address": 2, "user_account": 1, "reporting_device": 1}),
    "sentinel_incident.json": (
        "sentinel_incident",
        {("domain", EVIL_DOMAIN), ("domain", EMPTY_DOMAIN), ("sha1", KNOWN_FILE["sha1"])},
        {"ip_address": 1, "user_account": 1, "reporting_device": 1,
         "unsupported_evidence_type": 1}),
    "plain_indicators.json": (
        "plain_indicators",
        {("domain", PHISH_DOMAIN), ("domain", EVIL_DOMAIN), ("sha1", KNOWN_FILE["sha1"]),
         ("sha256", KNOWN_FILE["sha256"])},
        {"ip_address": 1, "unsupported_evidence_type": 1}),
}


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def reasons(skipped: list[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for item in skipped:
        counts[item["reason"]] = counts.get(item["reason"], 0) + 1
    return counts


@pytest.mark.parametrize("fixture", sorted(EXPECTED))
def test_each_fixture_is_detected_as_its_format(fixture: str) -> None:
    assert alert_formats().detect(load(fixture), fixture).id == EXPECTED[fixture][0]


@pytest.mark.parametrize("fixture", sorted(EXPECTED))
def test_each_fixture_yields_its_indicators_and_skips_what_cannot_be_looked_up(
        fixture: str) -> None:
    _, indicators, skipped = EXPECTED[fixture]
    found = alert_formats().extract(load(fixture), fixture)
    assert {(i["type"], i["value"]) for i in found["indicators"]} == indicators
    assert reasons(found["skipped"]) == skipped


# Families no public sample was found for (tests/corpus/README.md): each is pinned by a test
# below on a payload built from the vendor's documented fields.
DOCUMENTED_ONLY = {"defender_streaming_records", "crowdstrike_detect", "misp_event_search"}


def test_every_format_has_a_sample_or_a_corpus_payload() -> None:
    corpus = yaml.safe_load(CORPUS_EXPECTED.read_text(encoding="utf-8"))
    covered = {format_id for format_id, _, _ in EXPECTED.values()} | DOCUMENTED_ONLY
    for entry in corpus.values():
        covered |= {entry["format"], *entry.get("item_formats", [])}
    for name in corpus:  # formats reached inside others (a record's row, an incident's alerts)
        alert = json.loads((CORPUS_EXPECTED.parent / "alerts" / name).read_text("utf-8"))
        if isinstance(alert, dict):
            found = alert_formats().extract(alert, name)
            covered |= {item["sources"][0]["format"] for item in found["indicators"]}
            covered |= {item["source"]["format"] for item in found["skipped"]}
    assert {known.id for known in alert_formats().formats} <= covered


def _documented(alert: dict[str, Any]) -> dict[str, Any]:
    return alert_formats().extract(alert, "documented.json")


def test_a_sentinel_security_alert_row_reads_its_entities_from_the_json_string() -> None:
    entities = [{"$id": "3", "Type": "host", "HostName": "ws-17"},
                {"$id": "4", "Type": "filehash", "Algorithm": "SHA256",
                 "Value": KNOWN_FILE["sha256"]},
                {"$id": "5", "Type": "dns", "DomainName": EVIL_DOMAIN},
                {"$id": "6", "Type": "file", "Name": "igfxtray.exe"},
                {"$id": "7", "Type": "ip", "Address": "203.0.113.7"}]
    found = _documented({"SystemAlertId": "a1", "AlertName": "x", "ProviderName": "MDATP",
                         "Entities": json.dumps(entities), "ExtendedProperties": "{}"})
    assert found["format"]["id"] == "sentinel_security_alert"
    assert {(i["type"], i["value"]) for i in found["indicators"]} == {
        ("sha256", KNOWN_FILE["sha256"]), ("domain", EVIL_DOMAIN)}
    assert reasons(found["skipped"]) == {"reporting_device": 1, "no_hash": 1, "ip_address": 1}


def test_a_sentinel_security_incident_row_says_where_its_entities_are() -> None:
    found = _documented({"IncidentNumber": 7, "AlertIds": "[\"a1\"]",
                         "ProviderName": "Azure Sentinel"})
    assert [w["code"] for w in found["warnings"]] == ["entities_not_included"]


def test_a_streaming_records_batch_reads_each_record_as_its_table_row() -> None:
    record = {"category": "AdvancedHunting-DeviceNetworkEvents", "operationName": "Publish",
              "properties": {"Timestamp": "2024-01-01T00:00:00Z", "DeviceName": "ws-17",
                             "RemoteUrl": f"https://{EVIL_DOMAIN}/x", "RemoteIP": "203.0.113.7"}}
    found = _documented({"records": [record, record]})
    assert found["format"]["id"] == "defender_streaming_records"
    assert [(i["value"], i["sources"][0]["format"]) for i in found["indicators"]] == [
        (EVIL_DOMAIN, "advanced_hunting_row")]


def test_a_crowdstrike_detect_reads_its_behaviors() -> None:
    found = _documented({"detection_id": "ldt:1", "device": {"hostname": "ws-17"},
                         "behaviors": [{"sha256": KNOWN_FILE["sha256"], "filename": "a.exe",
                                        "ioc_type": "domain", "ioc_value": EVIL_DOMAIN}]})
    assert {(i["type"], i["value"]) for i in found["indicators"]} == {
        ("sha256", KNOWN_FILE["sha256"]), ("domain", EVIL_DOMAIN)}


def test_a_qradar_offense_names_its_source_and_asks_for_its_events() -> None:
    found = _documented({"id": 3, "offense_source": "203.0.113.7", "offense_type": 0,
                         "magnitude": 4})
    assert reasons(found["skipped"]) == {"ip_address": 1}
    assert [w["code"] for w in found["warnings"]] == ["offense_events_needed"]


def test_a_raw_sysmon_process_create_gives_its_hashes_and_never_its_imphash() -> None:
    found = _documented({"UtcTime": "2024-01-01 00:00:00.000", "ProcessGuid": "{x}",
                         "Image": "C:\\Windows\\igfxtray.exe",
                         "Hashes": f"SHA1={KNOWN_FILE['sha1'].upper()},MD5={KNOWN_FILE['md5']},"
                                   "IMPHASH=D90D8C7812AEC8DA0FA173AFA1293AB2"})
    [file] = found["indicators"]
    assert file["hashes"] == {"sha1": KNOWN_FILE["sha1"], "md5": KNOWN_FILE["md5"]}
    assert reasons(found["skipped"]) == {"not_a_file_hash": 1}


def test_a_file_name_is_never_looked_up_as_a_domain() -> None:
    alert = {"indicators": [{"type": "domain", "value": name} for name in
                            ("igfxtray.exe", "resume.pdf", "winhelp.cpl", "logo.svg")]}
    found = alert_formats().extract(alert, "a.json")
    assert found["indicators"] == []
    assert reasons(found["skipped"]) == {"not_a_domain": 4}


def test_an_internal_suffix_makes_a_domain_of_a_private_name() -> None:
    from integration.playbook.alerts import ExtractPolicy

    alert = {"indicators": [{"type": "domain", "value": "build01.corp"}]}
    assert alert_formats().extract(alert, "a.json")["indicators"] == []
    found = alert_formats().extract(alert, "a.json", policy=ExtractPolicy(
        internal_suffixes=("corp",)))
    assert [i["value"] for i in found["indicators"]] == ["build01.corp"]


def test_thehive_and_sentinelone_are_read_as_themselves() -> None:
    thehive = {"type": "external", "source": "x", "sourceRef": "r", "title": "t",
               "artifacts": [{"dataType": "domain", "data": EVIL_DOMAIN}]}
    s1 = {"threatInfo": {"sha1": KNOWN_FILE["sha1"]}, "agentRealtimeInfo": {},
          "indicators": [{"category": "Evasion", "description": "behaviour"}]}
    assert alert_formats().detect(thehive, "t.json").id == "thehive_alert"
    assert alert_formats().detect(s1, "s.json").id == "sentinelone_threat"


def test_every_indicator_names_the_format_and_field_it_came_from() -> None:
    found = alert_formats().extract(load("sentinel_incident.json"), "sentinel_incident.json")
    fields = {i["value"]: i["sources"][0] for i in found["indicators"]}
    assert fields["quiet.example"] == {
        "format": "sentinel_incident", "field": "entities[DnsResolution].properties.domainName"}


def test_a_sentinel_file_entity_takes_its_filehash_entities_and_its_name_along() -> None:
    found = alert_formats().extract(load("sentinel_incident.json"), "sentinel_incident.json")
    [file] = [i for i in found["indicators"] if i["kind"] == "file"]
    assert file["hashes"] == {"sha1": KNOWN_FILE["sha1"], "sha256": KNOWN_FILE["sha256"]}
    assert file["context"]["name"] == "updater_x64.exe"


def test_a_files_hashes_from_one_record_are_one_indicator_keyed_by_its_sha1() -> None:
    found = alert_formats().extract(load("graph_security_alert_v2.json"), "graph.json")
    known = [i for i in found["indicators"] if i["value"] == KNOWN_FILE["sha1"]]
    assert len(known) == 1
    assert known[0]["hashes"] == KNOWN_FILE


def test_a_url_gives_its_host_refanged_and_lowercased() -> None:
    alert = {"indicators": [{"type": "url", "value": "hxxps://EVIL[.]example:8443/a?b=c"}]}
    found = alert_formats().extract(alert, "a.json")
    assert [(i["type"], i["value"]) for i in found["indicators"]] == [("domain", EVIL_DOMAIN)]


def test_a_url_whose_host_is_an_ip_address_is_skipped_as_an_ip() -> None:
    alert = {"indicators": [{"type": "url", "value": "http://203.0.113.9/payload.bin"}]}
    found = alert_formats().extract(alert, "a.json")
    assert found["indicators"] == []
    assert reasons(found["skipped"]) == {"ip_address": 1}


def test_a_value_that_is_not_a_valid_indicator_is_skipped_with_the_reason() -> None:
    alert = {"indicators": [{"type": "sha1", "value": KNOWN_FILE["md5"]},
                            {"type": "domain", "value": "not a domain"}]}
    found = alert_formats().extract(alert, "a.json")
    assert found["indicators"] == []
    assert reasons(found["skipped"]) == {"invalid_value": 2}
    messages = " ".join(item["message"] for item in found["skipped"])
    assert "expected a sha1 hash, got a md5" in messages and "contains a space" in messages


def test_a_defender_users_nt_domain_is_not_taken_for_a_dns_domain() -> None:
    found = alert_formats().extract(load("defender_alert.json"), "defender_alert.json")
    assert "contoso" not in {i["value"] for i in found["indicators"]}


def test_an_object_in_no_known_format_is_read_by_field_names_with_a_warning() -> None:
    found = alert_formats().extract({"hello": "world", "event": {"Sha1": KNOWN_FILE["sha1"],
                                     "message": "evil.example was seen", "url_id": "x.example"}},
                                    "incoming/odd.json")
    assert found["format"]["id"] == "generic"
    assert [(i["value"], i["sources"][0]["field"]) for i in found["indicators"]] == [
        (KNOWN_FILE["sha1"], "event.Sha1")]  # never from free text or ids
    assert [w["code"] for w in found["warnings"]] == ["generic_format"]


def test_an_alert_that_is_not_an_object_is_refused_naming_the_file() -> None:
    with pytest.raises(AlertError, match=r"^incoming/list\.json: an alert is a JSON object"):
        alert_formats().detect([{"indicators": []}], "incoming/list.json")


def test_a_hash_equal_to_a_device_id_of_the_alert_is_never_a_file() -> None:
    device = "73e7e2de709dff64ef64b1d0c30e67fab63279db"
    alert = {"@odata.type": "#microsoft.graph.security.alert", "evidence": [
        {"@odata.type": "#microsoft.graph.security.deviceEvidence", "mdeDeviceId": device},
        {"@odata.type": "#microsoft.graph.security.fileHashEvidence", "algorithm": "sha1",
         "value": device.upper()}]}
    found = alert_formats().extract(alert, "a.json")
    assert found["indicators"] == []
    assert [(s["value"], s["reason"]) for s in found["skipped"]] == [(device, "device_id")]


def test_a_mail_domain_counts_only_where_the_evidence_marks_it_involved() -> None:
    def message(verdict: str) -> dict[str, Any]:
        return {"@odata.type": "#microsoft.graph.security.alert", "evidence": [
            {"@odata.type": "#microsoft.graph.security.analyzedMessageEvidence",
             "verdict": verdict, "p1Sender": {"emailAddress": "billing@phish.example"},
             "urls": ["https://evil.example/pay"]}]}

    def domains(alert: dict[str, Any]) -> set[str]:
        return {i["value"] for i in alert_formats().extract(alert, "m.json")["indicators"]}

    assert domains(message("malicious")) == {PHISH_DOMAIN, EVIL_DOMAIN}
    assert domains(message("unknown")) == {EVIL_DOMAIN}  # the message's URLs always count


def test_every_alert_of_a_graph_incident_is_read_into_one_extraction() -> None:
    def alert(url: str) -> dict[str, Any]:
        return {"@odata.type": "#microsoft.graph.security.alert", "evidence": [
            {"@odata.type": "#microsoft.graph.security.urlEvidence", "url": url}]}

    incident = {"@odata.type": "#microsoft.graph.security.incident",
                "alerts": [alert("https://evil.example/a"), alert("https://phish.example/b")]}
    found = alert_formats().extract(incident, "i.json")
    assert found["format"]["id"] == "graph_security_incident"
    assert [i["value"] for i in found["indicators"]] == [EVIL_DOMAIN, PHISH_DOMAIN]
    assert found["indicators"][0]["sources"][0]["field"] == "alerts[] > evidence[urlEvidence].url"


# --- user formats and the formats command -------------------------------------------------


def test_a_user_format_is_tried_before_the_shipped_ones(tmp_path: Path) -> None:
    from integration.playbook.alerts import formats_for

    rules = tmp_path / "mine.yaml"
    rules.write_text("formats:\n  - id: my_list\n    keys: [indicators]\n    detect: '`true`'\n"
                     "    extract:\n      - {type: domain, field: mine,\n"
                     "         expression: 'indicators[].value'}\n",
                     encoding="utf-8")
    alert = {"indicators": [{"type": "domain", "value": EVIL_DOMAIN}]}
    found = formats_for(str(rules)).extract(alert, "a.json")
    assert found["format"] == {"id": "my_list", "title": "my_list", "origin": str(rules)}


def test_a_user_format_file_is_validated_by_the_schema_naming_the_file(tmp_path: Path) -> None:
    from integration.errors import ConfigError
    from integration.playbook.alerts import formats_for

    rules = tmp_path / "bad.yaml"
    rules.write_text("formats:\n  - id: x\n    detect: '`true`'\n    extrct: []\n",
                     encoding="utf-8")
    with pytest.raises(ConfigError, match=r"bad\.yaml: not a valid alert format file"):
        formats_for(str(rules))


def test_formats_test_explains_which_rule_matched_and_what_was_skipped(capsys: Any) -> None:
    from integration.cli import main

    sample = Path(__file__).parent / "corpus" / "alerts" / "thehive3_alert_create_artifacts.json"
    assert main(["formats", "test", str(sample), "--format", "table"]) == 0
    out = capsys.readouterr().out
    assert "format thehive_alert" in out
    assert "also matched, less specific: splunk_soar_container" in out
    assert "lookup domain thehive-project.org" in out
    assert "skip   no_hash: logo.svg" in out and "skip   ip_address: 127.0.0.1" in out


def test_a_case_note_names_the_alerts_format_and_the_users_rule_file() -> None:
    from integration.playbook.steps import StepContext, render_note

    note = render_note(StepContext(source="a.json", formats=alert_formats()),
                       {"envelopes": [], "format": {"id": "acme_edr", "title": "ACME EDR",
                                                    "origin": "/etc/mde/acme.yaml"}})
    assert "format: ACME EDR \\(acme\\_edr, from /etc/mde/acme.yaml\\)" in note


def test_the_generic_reader_never_takes_a_bare_32_hex_hash_for_an_md5() -> None:
    imphash, md5 = "f34d5f2d4577ed6d9ceec516c1f5a744", "0af07660056a692b7cb82fa329221ddd"
    found = alert_formats().extract({"related": {"hash": [imphash]}, "x": {"Md5": md5}}, "g")
    assert [(i["type"], i["value"]) for i in found["indicators"]] == [("md5", md5)]
    assert [(s["reason"], s["value"]) for s in found["skipped"]] == [("invalid_value", imphash)]


def test_a_kibana_alert_with_dotted_keys_is_read_like_a_nested_ecs_document() -> None:
    # As Kibana's alerts index returns a detection alert: flattened kibana.alert.* fields
    # beside ECS fields (built from Elastic's documented alert schema, not a published sample).
    alert = {"@timestamp": "2024-01-01T00:00:00Z",
             "kibana.alert.rule.uuid": "6eae8572-5571-11ed-a602-953b659b2e32",
             "kibana.alert.rule.name": "Endpoint Security", "host.name": "ws-17",
             "file.hash.sha256": KNOWN_FILE["sha256"], "file.name": "a.exe",
             "process": {"hash": {"sha1": KNOWN_FILE["sha1"]}, "name": "b.exe"},
             "dns.question.name": EVIL_DOMAIN, "user.name": "alice"}
    found = alert_formats().extract(alert, "kibana.json")
    assert found["format"]["id"] == "elastic_ecs"
    assert {(i["type"], i["value"]) for i in found["indicators"]} == {
        ("sha256", KNOWN_FILE["sha256"]), ("sha1", KNOWN_FILE["sha1"]), ("domain", EVIL_DOMAIN)}
    assert reasons(found["skipped"]) == {"reporting_device": 1, "user_account": 1}


def test_a_misp_attribute_search_answer_is_read_by_attribute_type() -> None:
    answer = {"response": {"Attribute": [
        {"type": "domain", "value": EVIL_DOMAIN, "category": "Network activity"},
        {"type": "filename|sha256", "value": f"a.exe|{KNOWN_FILE['sha256']}"},
        {"type": "imphash", "value": "f34d5f2d4577ed6d9ceec516c1f5a744"},
        {"type": "ip-dst", "value": "203.0.113.7"}]}}
    found = alert_formats().extract(answer, "misp.json")
    assert found["format"]["id"] == "misp_attributes"
    assert [(i["value"], i.get("context", {}).get("name")) for i in found["indicators"]] == [
        (EVIL_DOMAIN, None), (KNOWN_FILE["sha256"], "a.exe")]
    assert reasons(found["skipped"]) == {"not_a_file_hash": 1, "ip_address": 1}


# --- odd data in one place spoils nothing else (review of issue 17) ----------------------


def test_a_sentinel_alert_whose_entity_refs_are_not_strings_keeps_its_other_entities() -> None:
    entities = [{"$ref": ["3"]}, {"$id": {"a": 1}, "Type": "file", "FileHashes": [{"$ref": {}}]},
                {"$id": "5", "Type": "dns", "DomainName": EVIL_DOMAIN}]
    found = _documented({"SystemAlertId": "a1", "AlertName": "x", "ProviderName": "MDATP",
                         "Entities": json.dumps(entities)})
    assert [(i["type"], i["value"]) for i in found["indicators"]] == [("domain", EVIL_DOMAIN)]


def test_a_sentinel_file_entity_whose_properties_are_not_an_object_keeps_the_others() -> None:
    found = _documented({"properties": {"relatedEntities": [
        {"kind": "File", "properties": [1, 2]}, {"kind": "File", "properties": "text"},
        {"kind": "File", "properties": {"fileHashEntityIds": 5, "fileHashes": "x"}},
        {"kind": "DnsResolution", "properties": {"domainName": EVIL_DOMAIN}}]}})
    assert found["format"]["id"] == "sentinel_incident"
    assert [(i["type"], i["value"]) for i in found["indicators"]] == [("domain", EVIL_DOMAIN)]


def _stix_indicator(number: int, pattern: Any) -> dict[str, Any]:
    return {"type": "indicator", "id": f"indicator--{number}", "pattern": pattern,
            "pattern_type": "stix"}


def test_a_stix_pattern_that_is_not_a_string_hides_no_other_indicator() -> None:
    found = alert_formats().extract({"type": "bundle", "id": "bundle--1", "objects": [
        _stix_indicator(1, f"[domain-name:value = '{EVIL_DOMAIN}']"), _stix_indicator(2, 12),
        _stix_indicator(3, f"[file:hashes.'SHA-1' = '{KNOWN_FILE['sha1']}']")]}, "b.json")
    assert [(i["type"], i["value"]) for i in found["indicators"]] == [
        ("domain", EVIL_DOMAIN), ("sha1", KNOWN_FILE["sha1"])]
    assert [(s["reason"], s["value"]) for s in found["skipped"]] == [("invalid_value", 12)]


def test_a_stix_pattern_that_does_not_parse_is_skipped_as_an_invalid_value() -> None:
    found = alert_formats().extract({"type": "bundle", "id": "bundle--1", "objects": [
        _stix_indicator(1, f"[domain-name:value = '{EVIL_DOMAIN}'")]}, "b.json")
    assert [(s["reason"], s["value"]) for s in found["skipped"]] == [
        ("invalid_value", f"[domain-name:value = '{EVIL_DOMAIN}'")]


def test_a_misp_composite_whose_value_is_not_a_string_hides_no_other_attribute() -> None:
    found = alert_formats().extract({"Event": {"Attribute": [
        {"type": "domain|ip", "value": 7},
        {"type": "domain|ip", "value": f"{EVIL_DOMAIN}|203.0.113.9"},
        {"type": "filename|sha256", "value": None},
        {"type": "filename|sha256", "value": f"a.exe|{KNOWN_FILE['sha256']}"}]}}, "e.json")
    assert {(i["type"], i["value"]) for i in found["indicators"]} == {
        ("domain", EVIL_DOMAIN), ("sha256", KNOWN_FILE["sha256"])}


def test_the_generic_reader_reads_indicator_fields_at_any_depth_the_reader_allows() -> None:
    alert: Any = {"sha1": KNOWN_FILE["sha1"]}
    for _ in range(30):
        alert = {"level": [alert]}
    found = alert_formats().extract(alert, "deep.json")
    assert found["format"]["id"] == "generic"
    assert [(i["type"], i["value"]) for i in found["indicators"]] == [("sha1", KNOWN_FILE["sha1"])]


def test_a_misp_event_search_answer_reads_each_of_its_events() -> None:
    # MISP's POST /events/restSearch answer (returnFormat json), as the sweep reads it too.
    found = alert_formats().extract({"response": [
        {"Event": {"info": "one", "Attribute": [{"type": "domain", "value": EVIL_DOMAIN}]}},
        {"Event": {"info": "two", "Object": [{"Attribute": [
            {"type": "sha256", "value": KNOWN_FILE["sha256"]}]}]}}]}, "search.json")
    assert found["format"]["id"] == "misp_event_search"
    assert [(i["type"], i["value"], i["sources"][0]["format"]) for i in found["indicators"]] == [
        ("domain", EVIL_DOMAIN, "misp_event"), ("sha256", KNOWN_FILE["sha256"], "misp_event")]


def test_a_sentinel_alert_whose_entities_are_too_long_to_read_says_so() -> None:
    entities = json.dumps([{"$id": str(n), "Type": "host", "HostName": "h" * 40}
                           for n in range(20_000)])  # valid JSON, over 1,000,000 characters
    found = _documented({"SystemAlertId": "a1", "AlertName": "x", "ProviderName": "MDATP",
                         "Entities": entities})
    assert [w["code"] for w in found["warnings"]] == ["entities_not_parsed"]
    assert "longer than the 1,000,000 characters" in found["warnings"][0]["message"]


def test_two_fields_a_format_cannot_read_are_two_warnings(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump({"formats": [{
        "id": "acme", "keys": ["acme"], "detect": "`true`", "extract": [
            {"type": "domain", "field": "acme.c2", "expression": "starts_with(acme.c2, 'x')"},
            {"type": "domain", "field": "acme.dns",
             "expression": "starts_with(acme.dns, 'x')"}]}]}))
    found = alert_formats(user_path=str(rules)).extract(
        {"acme": {"c2": 1, "dns": 2}}, "acme.json")
    assert [w["message"].split(" could not")[0] for w in found["warnings"]] == [
        "acme: acme.c2", "acme: acme.dns"]


def test_a_user_rule_calling_an_unknown_function_is_refused_when_the_file_is_loaded(
        tmp_path: Path) -> None:
    from integration.errors import ConfigError

    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump({"formats": [{
        "id": "acme", "keys": ["acme"], "detect": "`true`", "extract": [
            {"type": "domain", "field": "acme.c2", "expression": "regex(acme.c2, '[')"}]}]}))
    with pytest.raises(ConfigError, match=r"extract\[0\].*unknown function regex\(\)"):
        alert_formats(user_path=str(rules))


def test_misp_attributes_beside_an_event_key_that_is_no_object_are_read() -> None:
    found = alert_formats().extract({"Event": "x", "Attribute": [
        {"type": "domain", "value": EVIL_DOMAIN}]}, "attributes.json")
    assert [(i["type"], i["value"]) for i in found["indicators"]] == [("domain", EVIL_DOMAIN)]


def test_a_misp_object_whose_attributes_are_no_list_keeps_the_event_readable() -> None:
    found = alert_formats().extract({"Event": {"Attribute": [
        {"type": "domain", "value": EVIL_DOMAIN}], "Object": [{"Attribute": 1.5}, 7]}}, "e.json")
    assert [(i["type"], i["value"]) for i in found["indicators"]] == [("domain", EVIL_DOMAIN)]


def test_a_file_whose_verdict_is_an_object_is_still_judged_by_its_publisher() -> None:
    found = alert_formats().extract({"@odata.type": "#microsoft.graph.security.alert",
                                     "evidence": [{
        "@odata.type": "#microsoft.graph.security.fileEvidence", "verdict": {"odd": 1},
        "fileDetails": {"sha1": KNOWN_FILE["sha1"], "filePublisher": "Microsoft Corporation"}}]},
        "v2.json")
    assert [s["reason"] for s in found["skipped"]] == ["trusted_publisher"]
