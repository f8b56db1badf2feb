"""Alert formats (integration/alert_formats.yaml): detection and extraction, no network."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from integration.emulator.seed import (
    EMPTY_DOMAIN,
    EVIL_DOMAIN,
    IDN_DOMAIN,
    KNOWN_FILE,
    PHISH_DOMAIN,
)
from integration.playbook import AlertError, alert_formats

FIXTURES = Path(__file__).resolve().parent.parent / "playbooks" / "samples"
ROTTEN_SHA1 = "ff836cfb1af40252bd2a2ea843032e99a5b262ed"  # rundll32 from Microsoft's docs
EDGE_SHA1 = "a8ad1ca2fb3304890971d4b58c8af496ee60a5ee"

# fixture -> (format id, {(type, value)} after deduplication is left to the playbook,
#             skipped reasons with counts)
EXPECTED: dict[str, tuple[str, set[tuple[str, str]], dict[str, int]]] = {
    "defender_alert.json": (
        "defender_alert",
        {("domain", EVIL_DOMAIN), ("sha1", KNOWN_FILE["sha1"]), ("sha1", ROTTEN_SHA1)},
        {"ip_address": 1, "user_account": 1, "process_without_hash": 1}),
    "graph_security_alert_v2.json": (
        "graph_security_alert_v2",
        {("domain", PHISH_DOMAIN), ("sha1", KNOWN_FILE["sha1"]), ("sha1", EDGE_SHA1)},
        {"ip_address": 1, "user_account": 1, "device": 1, "process_without_hash": 1,
         "unsupported_type": 1}),
    "ocsf_detection_finding.json": (
        "ocsf_detection_finding",
        {("domain", IDN_DOMAIN), ("domain", EVIL_DOMAIN), ("sha1", KNOWN_FILE["sha1"]),
         ("sha256", KNOWN_FILE["sha256"])},
        {"ip_address": 1, "user_account": 1, "file_without_hash": 1, "unsupported_hash": 1}),
    "splunk_soar_container.json": (
        "splunk_soar_container",
        {("domain", PHISH_DOMAIN), ("domain", EMPTY_DOMAIN), ("domain", "fin-lt-0142.contoso.com"),
         ("sha256", KNOWN_FILE["sha256"]), ("md5", KNOWN_FILE["md5"])},
        {"ip_address": 3, "user_account": 1}),
    "sentinel_incident.json": (
        "sentinel_incident",
        {("domain", EVIL_DOMAIN), ("domain", EMPTY_DOMAIN), ("sha1", KNOWN_FILE["sha1"]),
         ("sha256", KNOWN_FILE["sha256"])},
        {"ip_address": 1, "user_account": 1, "device": 1, "unsupported_type": 1}),
    "plain_indicators.json": (
        "plain_indicators",
        {("domain", PHISH_DOMAIN), ("domain", EVIL_DOMAIN), ("sha1", KNOWN_FILE["sha1"]),
         ("sha256", KNOWN_FILE["sha256"])},
        {"ip_address": 1, "unsupported_type": 1}),
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


def test_every_format_has_a_fixture() -> None:
    assert {known.id for known in alert_formats().formats} == \
        {format_id for format_id, _, _ in EXPECTED.values()}


def test_every_indicator_names_the_format_and_field_it_came_from() -> None:
    found = alert_formats().extract(load("sentinel_incident.json"), "sentinel_incident.json")
    fields = {i["value"]: i["sources"][0] for i in found["indicators"]}
    assert fields[KNOWN_FILE["sha256"]] == {
        "format": "sentinel_incident", "field": "entities[FileHash SHA256].properties.hashValue"}


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


def test_an_alert_in_no_known_format_is_refused_naming_the_file() -> None:
    with pytest.raises(AlertError, match=r"^incoming/odd\.json: not in any known alert format"):
        alert_formats().detect({"hello": "world"}, "incoming/odd.json")


def test_an_alert_that_is_not_an_object_is_refused_naming_the_file() -> None:
    with pytest.raises(AlertError, match=r"^incoming/list\.json: an alert is a JSON object"):
        alert_formats().detect([{"indicators": []}], "incoming/list.json")
