"""OCSF conformance, checked offline against the official OCSF 1.8.0 schema.

`ocsf-json-schema` ships the compiled OCSF 1.8.0 export and turns it into Draft 2020-12 JSON
Schema; it is strict (unknown keys rejected, `*_id` enums enforced), so a pass here means
an OCSF consumer will take our output. Profiles are not read from the data: we choose them.
Machine artifacts carry `*_dt` twins, which exist only in the `datetime` profile.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from ocsf_json_schema import OcsfJsonSchemaEmbedded, get_ocsf_schema

from integration.cli import main as cli_main
from integration.emulator.seed import build_dataset
from integration.lookup.normalize import normalize_machine
from integration.ocsf import (
    DETECTION_FINDING_CLASS_UID,
    OCSF_VERSION,
    enrichment_object,
    is_detection_finding,
    with_enrichment,
)

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "playbooks" / "samples"
OCSF_SAMPLE = SAMPLES / "ocsf_detection_finding.json"
CORPUS = ROOT / "tests" / "corpus" / "machines"
FIXTURES = ROOT / "tests" / "fixtures" / "machines"
ARTIFACT_PROFILES = ["datetime"]

Errors = Callable[[Any], list[str]]


@pytest.fixture(scope="module")
def ocsf() -> OcsfJsonSchemaEmbedded:
    return OcsfJsonSchemaEmbedded(get_ocsf_schema(OCSF_VERSION))


def _errors_of(schema: dict[str, Any]) -> Errors:
    Draft202012Validator.check_schema(schema)
    validator = Draft202012Validator(schema)

    def errors(instance: Any) -> list[str]:
        return [f"/{'/'.join(map(str, e.absolute_path))}: {e.message[:200]}"
                for e in validator.iter_errors(instance)]
    return errors


@pytest.fixture(scope="module")
def device_errors(ocsf: OcsfJsonSchemaEmbedded) -> Errors:
    return _errors_of(ocsf.get_object_schema("device", ARTIFACT_PROFILES))


@pytest.fixture(scope="module")
def enrichment_errors(ocsf: OcsfJsonSchemaEmbedded) -> Errors:
    return _errors_of(ocsf.get_object_schema("enrichment"))


@pytest.fixture(scope="module")
def finding_errors(ocsf: OcsfJsonSchemaEmbedded) -> Callable[[dict[str, Any]], list[str]]:
    """A Detection Finding's errors under the profiles its metadata declares."""
    by_profiles: dict[tuple[str, ...], Errors] = {}

    def errors(finding: dict[str, Any]) -> list[str]:
        profiles = tuple(sorted(finding.get("metadata", {}).get("profiles", [])))
        if profiles not in by_profiles:
            by_profiles[profiles] = _errors_of(
                ocsf.get_class_schema("detection_finding", list(profiles)))
        return by_profiles[profiles](finding)
    return errors


def as_device(artifact: dict[str, Any]) -> dict[str, Any]:
    """The OCSF part of a machine artifact: everything but `mde`."""
    return {key: value for key, value in artifact.items() if key != "mde"}


def corpus_records() -> list[tuple[str, dict[str, Any]]]:
    """(file name, record) for every record in tests/corpus/machines."""
    records = []
    for path in sorted(CORPUS.glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        records += [(path.name, record) for record in data.get("value", [data])]
    return records


# --- machine artifacts as OCSF Devices ---------------------------------------------------


def test_every_emulator_machine_is_an_ocsf_device(device_errors: Errors) -> None:
    machines = build_dataset()["machines"]
    failures = {}
    for raw in machines:
        errors = device_errors(as_device(normalize_machine(raw)))
        if errors:
            failures[raw["id"]] = errors[:3]
    assert len(machines) == 800
    assert failures == {}


@pytest.mark.parametrize(("name", "record"), corpus_records(),
                         ids=[name for name, _ in corpus_records()])
def test_every_real_record_is_an_ocsf_device(
    device_errors: Errors, name: str, record: dict[str, Any]
) -> None:
    assert device_errors(as_device(normalize_machine(record))) == []


@pytest.mark.parametrize("path", sorted(FIXTURES.glob("*.json")), ids=lambda path: path.stem)
def test_every_fixture_is_an_ocsf_device(device_errors: Errors, path: Path) -> None:
    raw = json.loads(path.read_text(encoding="utf-8"))
    assert device_errors(as_device(normalize_machine(raw, include_raw=True))) == []


ODD_VALUES = [{}, {"a": None}, [], [None, 1, {}], 0, 1.5, True, False, "", "?", " ", [["x"]]]


@pytest.mark.parametrize("odd", ODD_VALUES)
def test_oddly_typed_fields_still_give_an_ocsf_device(device_errors: Errors, odd: Any) -> None:
    keys = ("computerDnsName", "firstSeen", "lastSeen", "osPlatform", "version", "osBuild",
            "osArchitecture", "osProcessor", "lastIpAddress", "rbacGroupId", "rbacGroupName",
            "riskScore", "aadDeviceId", "ipAddresses")
    raw = {"id": "1e5bc9d7e413ddd7902c2932e418702b84d0cc07", **dict.fromkeys(keys, odd)}
    assert device_errors(as_device(normalize_machine(raw))) == []


@pytest.mark.parametrize(
    "address",
    [
        {"ipAddress": "?", "macAddress": "001122334455", "type": "Ppp"},
        {"ipAddress": "fe80::1%12", "type": "Tunnel", "operationalStatus": "Up"},
        {"ipAddress": "10.0.0.1", "macAddress": "00-11-22-33-44-55", "type": "Wireless80211"},
        {"ipAddress": None, "macAddress": "001122334455", "type": None},
    ],
)
def test_odd_interfaces_still_give_an_ocsf_device(device_errors: Errors, address: dict) -> None:
    raw = {"id": "1", "computerDnsName": "h", "ipAddresses": [address, "x", None]}
    assert device_errors(as_device(normalize_machine(raw))) == []


def test_os_without_a_platform_is_an_ocsf_os(device_errors: Errors) -> None:
    artifact = normalize_machine({"id": "1", "version": "22H2", "osBuild": 22631})
    assert artifact["os"]["name"] == "Unknown"
    assert device_errors(as_device(artifact)) == []


def test_the_check_is_not_vacuous(device_errors: Errors, ocsf: OcsfJsonSchemaEmbedded) -> None:
    """`mde` is no OCSF attribute, and `*_dt` needs the datetime profile: both must fail."""
    artifact = normalize_machine(json.loads((FIXTURES / "doc_example.json").read_text("utf-8")))
    assert device_errors(artifact) != []
    without_profile = _errors_of(ocsf.get_object_schema("device"))
    assert any("first_seen_time_dt" in error for error in without_profile(as_device(artifact)))


# --- the OCSF Detection Finding sample ---------------------------------------------------


def test_the_sample_is_a_valid_detection_finding(finding_errors: Errors) -> None:
    finding = json.loads(OCSF_SAMPLE.read_text(encoding="utf-8"))
    assert finding_errors(finding) == []


# --- enrichment objects ------------------------------------------------------------------


def machine_artifact() -> dict[str, Any]:
    return normalize_machine(json.loads((FIXTURES / "doc_example.json").read_text("utf-8")))


def test_enrichment_object_is_valid_ocsf_and_holds_indicators_and_machines(
    enrichment_errors: Errors,
) -> None:
    machine = machine_artifact()
    enrichment = {
        "indicators": [{"type": "domain", "value": "evil.example", "status": "success"},
                       {"type": "sha1", "value": "c07121aeac933a1896924ebbb35da036e82c4fcd",
                        "status": "not_found"}],
        "envelopes": [{"status": "success", "machines": [machine]}],
        "machines": [machine],
        "summary": {"total_machines": 1},
    }
    entry = enrichment_object(enrichment, enrichment["envelopes"], playbook="enrich-alert",
                              created_time=1748772000000)
    assert enrichment_errors(entry) == []
    assert entry["value"] == "evil.example, c07121aeac933a1896924ebbb35da036e82c4fcd"
    assert entry["created_time"] == 1748772000000
    assert entry["data"]["machines"] == [machine]
    assert "envelopes" not in entry["data"]  # folded into machines already


def test_enrichment_object_without_merged_machines_takes_them_from_the_envelopes(
    enrichment_errors: Errors,
) -> None:
    machine = machine_artifact()
    envelopes = [{"status": "success", "indicator": {"type": "domain", "value": "a.example"},
                  "machines": [machine]},
                 {"status": "success", "indicator": {"type": "domain", "value": "b.example"},
                  "machines": [machine]}]
    entry = enrichment_object({}, envelopes, playbook="p")
    assert enrichment_errors(entry) == []
    assert [m["uid"] for m in entry["data"]["machines"]] == [machine["uid"]]
    assert entry["value"] == "a.example, b.example"
    assert isinstance(entry["created_time"], int)


def test_with_enrichment_appends_after_the_findings_own_and_leaves_the_input_alone() -> None:
    finding = {"class_uid": 2004, "enrichments": [{"name": "x", "value": "y", "data": {}}]}
    before = copy.deepcopy(finding)
    ours = {"name": "indicators", "value": "", "data": {}}
    out = with_enrichment(finding, ours)
    assert out["enrichments"] == [*before["enrichments"], ours]
    assert finding == before


@pytest.mark.parametrize(
    ("alert", "expected"),
    [({"class_uid": DETECTION_FINDING_CLASS_UID}, True), ({"class_uid": 2001}, False),
     ({"class_uid": "2004"}, False), ({"class_uid": True}, False), ({}, False), ([], False)],
)
def test_only_class_2004_is_a_detection_finding(alert: Any, expected: bool) -> None:
    assert is_detection_finding(alert) is expected


# --- mde-enrich playbook run --format ocsf -----------------------------------------------


def run_ocsf(alert: Path, config_file: Path, capsys: pytest.CaptureFixture[str]) -> Any:
    status = cli_main(["playbook", "run", "enrich-alert", "--alert", str(alert),
                       "--config", str(config_file), "--format", "ocsf"])
    assert status == 0
    return json.loads(capsys.readouterr().out)


def test_ocsf_finding_comes_back_whole_with_our_enrichment_appended(
    config_file: Path, emulator: Any, capsys: pytest.CaptureFixture[str],
    finding_errors: Errors, device_errors: Errors,
) -> None:
    finding = json.loads(OCSF_SAMPLE.read_text(encoding="utf-8"))
    out = run_ocsf(OCSF_SAMPLE, config_file, capsys)
    assert finding_errors(out) == []
    *theirs, ours = out["enrichments"]
    assert theirs == finding.get("enrichments", [])
    assert {key: value for key, value in out.items() if key != "enrichments"} == finding
    assert (ours["name"], ours["type"]) == ("indicators", "related_machines")
    assert ours["provider"] == "Microsoft Defender for Endpoint"
    looked_up = {indicator["value"] for indicator in ours["data"]["indicators"]}
    assert {"evil.example", "c07121aeac933a1896924ebbb35da036e82c4fcd"} <= looked_up
    machines = ours["data"]["machines"]
    assert machines
    for machine in machines:
        # The machines inside are artifacts: OCSF Devices once `mde` and our merge note go.
        device = {k: v for k, v in as_device(machine).items() if k != "related_indicators"}
        assert device_errors(device) == []


def test_other_alert_formats_give_an_array_of_ocsf_enrichment_objects(
    config_file: Path, emulator: Any, capsys: pytest.CaptureFixture[str],
    enrichment_errors: Errors,
) -> None:
    out = run_ocsf(SAMPLES / "defender_alert.json", config_file, capsys)
    assert isinstance(out, list)
    assert len(out) == 1
    (entry,) = out
    assert enrichment_errors(entry) == []
    assert entry["data"]["machines"]
    assert entry["data"]["format"]["id"] == "defender_alert"
