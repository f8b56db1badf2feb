"""The contact timeline (`contact: true`, `--contact`): one advanced hunting query through
Microsoft Graph per batch, merged into each machine as `mde.contact`; hunting-only machines
added and marked; a missing permission is a warning, never a failed lookup; off by default.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import assert_valid_envelope

from integration import actions
from integration.cli import main as cli_main
from integration.clouds import resolve_endpoints
from integration.defender.hunting import domain_query, file_query, kql_string
from integration.emulator import Emulator, seed
from integration.emulator import kql as kql_subset
from integration.emulator.events import HUNTING_ONLY_DEVICE_ID, HUNTING_ONLY_DEVICE_NAME
from integration.render import render
from integration.values.indicators import Indicator, parse_domain, parse_file_hash

HUNTING_PATH = "/v1.0/security/runHuntingQuery"
DATASET = seed.build_dataset()
WINDOW_START = seed.REFERENCE_NOW - dt.timedelta(days=30)


def hunting_calls(emulator: Emulator) -> list[dict[str, Any]]:
    return [entry for entry in emulator.admin.requests_log() if entry["path"] == HUNTING_PATH]


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[dict[str, Any]]]:
    status = cli_main([*argv, "--format", "json"])
    envelopes = json.loads(capsys.readouterr().out)
    for envelope in envelopes:
        assert_valid_envelope(envelope)
    return status, envelopes


def _moment(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text[:19]).replace(tzinfo=dt.timezone.utc)


def expected_contact(table: str | tuple[str, ...], device_id: str, match: Any) -> dict[str, Any]:
    """What the seeded events say about one device, worked out here without the emulator."""
    tables = (table,) if isinstance(table, str) else table
    rows = [row for name in tables for row in DATASET["hunting"]["tables"][name]
            if row["DeviceId"] == device_id and match(row)
            and _moment(row["Timestamp"]) > WINDOW_START]
    assert rows, "the seed must give this device events in the window"
    last = max(rows, key=lambda row: row["Timestamp"])
    return {"first": min(row["Timestamp"] for row in rows)[:23] + "Z",
            "last": last["Timestamp"][:23] + "Z", "count": len(rows),
            "process": {"name": last["InitiatingProcessFileName"],
                        "sha1": last["InitiatingProcessSHA1"],
                        "command_line": last["InitiatingProcessCommandLine"]}}


def to_domain(domain: str) -> Any:
    def match(row: dict[str, Any]) -> bool:
        url = row["RemoteUrl"].removeprefix("https://").split("/")[0]
        return url == domain or url.endswith("." + domain)
    return match


def assert_contact(machine: dict[str, Any], expected: dict[str, Any], source: str) -> None:
    contact = machine["mde"]["contact"]
    assert contact["source"] == source
    assert contact["first_seen_time_dt"] == expected["first"]
    assert contact["last_seen_time_dt"] == expected["last"]
    assert contact["count"] == expected["count"]
    assert contact["process"] == expected["process"]
    # The epoch twins say the same moments.
    for key in ("first_seen_time", "last_seen_time"):
        moment = dt.datetime.fromtimestamp(contact[key] / 1000, dt.timezone.utc)
        assert moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:23] + "Z" == contact[key + "_dt"]


# --- with the option on -------------------------------------------------------------------


def test_a_batch_of_domains_costs_one_hunting_call_and_every_machine_gets_its_contact(
        config_file: Path, emulator: Emulator, capsys: pytest.CaptureFixture[str]) -> None:
    status, envelopes = run_json(capsys, "domain", seed.EVIL_DOMAIN, seed.PHISH_DOMAIN,
                                 seed.UNKNOWN_DOMAIN, "--contact", "--config", str(config_file))
    assert status == 0
    assert len(hunting_calls(emulator)) == 1
    evil, phish, unknown = envelopes
    for envelope, domain in ((evil, seed.EVIL_DOMAIN), (phish, seed.PHISH_DOMAIN)):
        listed = set(DATASET["domains"][domain])
        for machine in envelope["machines"]:
            if machine["uid"] in listed:
                assert_contact(machine, expected_contact("DeviceNetworkEvents", machine["uid"],
                                                         to_domain(domain)), "machines_api")
        assert {m["uid"] for m in envelope["machines"]} >= listed
        assert "warnings" not in envelope
    assert unknown["status"] == "not_found" and unknown["machines"] == []


def test_each_envelope_of_a_batch_says_how_many_hunting_calls_the_batch_took(
        config_file: Path, emulator: Emulator, capsys: pytest.CaptureFixture[str]) -> None:
    _, envelopes = run_json(capsys, "domain", seed.EVIL_DOMAIN, seed.PHISH_DOMAIN, "--contact",
                            "--config", str(config_file))
    assert [envelope["summary"]["hunting_calls"] for envelope in envelopes] == [1, 1]


def test_a_hunting_only_machine_is_added_and_marked(
        config: dict[str, Any], emulator: Emulator) -> None:
    envelope = actions.get_machines_for_domain({"domain": seed.EVIL_DOMAIN, "contact": True},
                                               config)
    by_uid = {machine["uid"]: machine for machine in envelope["machines"]}
    assert len(by_uid) == 3 + 1 and envelope["summary"]["total_machines"] == 4
    added = by_uid[HUNTING_ONLY_DEVICE_ID]
    assert envelope["machines"][-1] is added or envelope["machines"][-1] == added  # listed last
    assert added["hostname"] == HUNTING_ONLY_DEVICE_NAME
    assert added["name"] == "kiosk-lobby-01"
    assert added["mde"]["portal_url"].endswith(f"/machines/{HUNTING_ONLY_DEVICE_ID}/overview")
    assert_contact(added, expected_contact("DeviceNetworkEvents", HUNTING_ONLY_DEVICE_ID,
                                           to_domain(seed.EVIL_DOMAIN)), "hunting_only")
    # Nothing is invented for it: no OS, IP, risk or Defender details beyond the events.
    assert set(added) == {"uid", "hostname", "name", "type_id", "type", "vendor_name", "mde"}
    assert set(added["mde"]) == {"portal_url", "contact"}


def test_files_are_hunted_by_sha1_in_one_call_even_when_given_as_sha256(
        config_file: Path, emulator: Emulator, capsys: pytest.CaptureFixture[str]) -> None:
    other = DATASET["files"][3]
    status, envelopes = run_json(capsys, "file", seed.KNOWN_FILE["sha256"], other["sha1"],
                                 seed.UNKNOWN_FILE["sha1"], "--contact",
                                 "--config", str(config_file))
    assert status == 0
    assert len(hunting_calls(emulator)) == 1
    known, second, unknown = envelopes
    tables = ("DeviceFileEvents", "DeviceProcessEvents")
    for envelope, sha1 in ((known, seed.KNOWN_FILE["sha1"]), (second, other["sha1"])):
        for machine in envelope["machines"]:
            source = "hunting_only" if machine["uid"] == HUNTING_ONLY_DEVICE_ID \
                else "machines_api"
            assert_contact(machine, expected_contact(
                tables, machine["uid"], lambda row, sha1=sha1: row["SHA1"] == sha1), source)
    assert HUNTING_ONLY_DEVICE_ID in {m["uid"] for m in known["machines"]}
    assert unknown["status"] == "not_found"


def test_the_hunting_query_goes_to_graph_with_a_graph_token(
        config: dict[str, Any], emulator: Emulator) -> None:
    actions.get_machines_for_domain({"domain": seed.EVIL_DOMAIN, "contact": True}, config)
    (call,) = hunting_calls(emulator)
    assert call["method"] == "POST" and call["status"] == 200
    # Two tokens: Defender's resource and Graph's, each asked for once.
    assert len(emulator.admin.token_calls()) == 2
    emulator.admin.clear_log()
    actions.get_machines_for_domain({"domain": seed.PHISH_DOMAIN, "contact": True}, config)
    assert emulator.admin.token_calls() == []
    assert len(hunting_calls(emulator)) == 1


def test_a_throttled_hunting_call_waits_for_retry_after_and_is_sent_again(
        config: dict[str, Any], emulator: Emulator) -> None:
    emulator.admin.add_fault(HUNTING_PATH, {"status": 429, "headers": {"Retry-After": "1"}},
                             "pass")
    envelope = actions.get_machines_for_domain({"domain": seed.EVIL_DOMAIN, "contact": True},
                                               config)
    first, second = hunting_calls(emulator)
    assert (first["status"], second["status"]) == (429, 200)
    assert second["time"] - first["time"] >= 0.9
    assert all("contact" in machine["mde"] for machine in envelope["machines"])
    assert "warnings" not in envelope


# --- without the permission, or when hunting fails ----------------------------------------


def test_without_threat_hunting_permission_the_answer_comes_with_a_warning(
        emulator: Emulator, state_url: str) -> None:
    # This app may read machines but holds no Graph role.
    config = emulator.config(client_id=emulator.readwrite_client_id,
                             client_secret=emulator.readwrite_client_secret, state=state_url)
    envelope = actions.get_machines_for_domain({"domain": seed.EVIL_DOMAIN, "contact": True},
                                               config)
    assert envelope["status"] == "success"
    assert len(envelope["machines"]) == 3
    assert all("contact" not in machine["mde"] for machine in envelope["machines"])
    (warning,) = envelope["warnings"]
    assert "permission_denied" in warning and "ThreatHunting.Read.All" in warning
    (call,) = hunting_calls(emulator)
    assert call["status"] == 403


def test_a_failing_graph_is_a_warning_on_every_envelope_of_the_batch(
        config_file: Path, emulator: Emulator, capsys: pytest.CaptureFixture[str]) -> None:
    emulator.admin.add_fault(HUNTING_PATH, 500, repeat_last=True)
    status, envelopes = run_json(capsys, "domain", seed.EVIL_DOMAIN, seed.PHISH_DOMAIN,
                                 "--contact", "--config", str(config_file))
    assert status == 0
    for envelope in envelopes:
        assert envelope["status"] == "success"
        (warning,) = envelope["warnings"]
        assert warning.startswith("contact timeline unavailable: upstream_error")


# --- off by default -------------------------------------------------------------------------


def test_contact_is_off_by_default(config_file: Path, config: dict[str, Any], emulator: Emulator,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    run_json(capsys, "domain", seed.EVIL_DOMAIN, seed.PHISH_DOMAIN,
             "--config", str(config_file))
    envelope = actions.get_machines_for_file_hash({"file_hash": seed.KNOWN_FILE["sha1"]}, config)
    assert hunting_calls(emulator) == []
    assert all("contact" not in machine["mde"] for machine in envelope["machines"])
    assert HUNTING_ONLY_DEVICE_ID not in {machine["uid"] for machine in envelope["machines"]}


def test_contact_must_be_a_boolean(config: dict[str, Any], emulator: Emulator) -> None:
    envelope = actions.get_machines_for_domain({"domain": seed.EVIL_DOMAIN, "contact": "yes"},
                                               config)
    assert envelope["error"]["code"] == "invalid_input"
    assert emulator.admin.requests_log() == []


# --- output ---------------------------------------------------------------------------------


def test_table_and_markdown_show_contact_columns_only_when_asked(
        config: dict[str, Any], emulator: Emulator) -> None:
    with_contact = actions.get_machines_for_domain(
        {"domain": seed.EVIL_DOMAIN, "contact": True}, config)
    without = actions.get_machines_for_domain({"domain": seed.EVIL_DOMAIN}, config)
    docs = next(m for m in with_contact["machines"] if m["uid"] == seed.DOCS_MACHINE_ID)
    first = docs["mde"]["contact"]["first_seen_time_dt"][:19].replace("T", " ")
    for fmt in ("table", "markdown"):
        shown = render([with_contact], fmt)
        for title in ("First contact (UTC)", "Last contact (UTC)", "Count", "Process"):
            assert title in shown
        assert first in shown and docs["mde"]["contact"]["process"]["name"] in shown
        assert f"{HUNTING_ONLY_DEVICE_NAME} (hunting only)" in shown or \
            (f"[{HUNTING_ONLY_DEVICE_NAME}](" in shown and "(hunting only)" in shown)
        assert "First contact" not in render([without], fmt)


# --- the KQL subset of the emulator ---------------------------------------------------------


def graph_token(emulator: Emulator, client_id: str, secret: str) -> str:
    answer = requests.post(f"{emulator.base_url}/{emulator.tenant_id}/oauth2/v2.0/token", data={
        "grant_type": "client_credentials", "client_id": client_id, "client_secret": secret,
        "scope": "https://graph.microsoft.com/.default"}, verify=emulator.ca_path, timeout=10)
    return str(answer.json()["access_token"])


def hunt(emulator: Emulator, query: str, token: str) -> requests.Response:
    return requests.post(f"{emulator.base_url}{HUNTING_PATH}", json={"Query": query},
                         headers={"Authorization": f"Bearer {token}"}, verify=emulator.ca_path,
                         timeout=10)


@pytest.mark.parametrize("query", [
    "DeviceNetworkEvents | take 10",
    "DeviceNetworkEvents | project DeviceId",
    'DeviceNetworkEvents | where RemoteUrl contains "evil"',
    "let x = 1; DeviceNetworkEvents",
    "DeviceLogonEvents | where Timestamp > ago(1d)",
    "union DeviceFileEvents, IdentityLogonEvents",
    "DeviceNetworkEvents | summarize dcount(DeviceId)",
    "DeviceNetworkEvents | where NoSuchColumn in (\"a\")",
    'DeviceNetworkEvents | where RemoteUrl in ("a"',
    "DeviceNetworkEvents | where Timestamp > now()",
])
def test_the_emulator_rejects_kql_outside_its_subset_as_graph_does(
        emulator: Emulator, query: str) -> None:
    token = graph_token(emulator, emulator.client_id, emulator.client_secret)
    answer = hunt(emulator, query, token)
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["code"] == "BadRequest" and error["message"]


def test_the_emulator_answers_in_graphs_shape_and_wants_the_hunting_role(
        emulator: Emulator) -> None:
    query = domain_query([parse_domain(seed.EVIL_DOMAIN)])
    token = graph_token(emulator, emulator.client_id, emulator.client_secret)
    body = hunt(emulator, query, token).json()
    assert [column["name"] for column in body["schema"]] == [
        "DeviceId", "DeviceName", "RemoteUrl", "FirstSeen", "Count", "Timestamp",
        "InitiatingProcessFileName", "InitiatingProcessSHA1", "InitiatingProcessCommandLine"]
    assert {row["DeviceId"] for row in body["results"]} == \
        {*DATASET["domains"][seed.EVIL_DOMAIN], HUNTING_ONLY_DEVICE_ID}
    denied = hunt(emulator, query, graph_token(emulator, emulator.noroles_client_id,
                                               emulator.noroles_client_secret))
    assert denied.status_code == 403 and denied.json()["error"]["code"] == "Forbidden"


def test_the_kql_subset_runs_what_the_plugin_builds() -> None:
    tables = DATASET["hunting"]["tables"]
    result = kql_subset.run(file_query([parse_file_hash(seed.KNOWN_FILE["sha1"])]), tables,
                            seed.REFERENCE_NOW)
    assert {row["SHA1"] for row in result.rows} == {seed.KNOWN_FILE["sha1"]}
    assert all(isinstance(row["Count"], int) and row["Count"] >= 1 for row in result.rows)


# --- query building -------------------------------------------------------------------------


def test_kql_string_escapes_quotes_and_backslashes() -> None:
    assert kql_string('a"b\\c') == '"a\\"b\\\\c"'
    assert kql_string("it's") == '"it\'s"'
    with pytest.raises(ValueError):
        kql_string("a\nb")
    # The emulator's tokenizer reads the literal back as the same value.
    token, = kql_subset._tokens(kql_string('x"|take 1//\\'))
    assert token.value == 'x"|take 1//\\'


def test_hostile_looking_but_valid_values_stay_inside_their_literals() -> None:
    # A URL whose path is trying to break out: only its host is the indicator.
    indicator = parse_domain('http://evil.example/"\\')
    odd = parse_domain("x_y--z.example")
    query = domain_query([indicator, odd, indicator])
    assert 'has_any ("evil.example", "x_y--z.example")' in query  # deduplicated, quoted
    assert query.count('"') == 4
    # Built queries parse in the subset, their values intact.
    kql_subset.run(query, {}, seed.REFERENCE_NOW)


@pytest.mark.parametrize("indicator", [
    Indicator("domain", 'evil.example") | take 1 //', "raw"),
    Indicator("domain", "evil.example\\", "raw"),
    Indicator("sha1", "c07121aeac933a1896924ebbb35da036e82c4fc\"", "raw"),
    Indicator("sha256", seed.KNOWN_FILE["sha256"], "raw"),
])
def test_a_value_that_did_not_pass_validation_never_reaches_a_query(
        indicator: Indicator) -> None:
    build = domain_query if indicator.type == "domain" else file_query
    with pytest.raises(ValueError):
        build([indicator])


# --- clouds -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("cloud", "graph_base", "graph_scope"), [
    ("commercial", "https://graph.microsoft.com", "https://graph.microsoft.com/.default"),
    ("us-gcc", "https://graph.microsoft.com", "https://graph.microsoft.com/.default"),
    ("us-gcc-high", "https://graph.microsoft.us", "https://graph.microsoft.us/.default"),
    ("us-dod", "https://dod-graph.microsoft.us", "https://dod-graph.microsoft.us/.default"),
])
def test_each_cloud_has_its_graph_host_and_scope(cloud: str, graph_base: str,
                                                 graph_scope: str) -> None:
    endpoints = resolve_endpoints({"cloud": cloud})
    assert (endpoints.graph_base, endpoints.graph_scope) == (graph_base, graph_scope)
    overridden = resolve_endpoints({"cloud": cloud, "graph_base_url": "https://graph.test/"})
    assert overridden.graph_base == "https://graph.test"


# --- playbooks ------------------------------------------------------------------------------


def test_a_playbook_step_asking_for_contact_gets_it_in_one_hunting_call(
        config: dict[str, Any], emulator: Emulator) -> None:
    from integration.compose import enricher_for
    from integration.playbook import LookupService

    service = LookupService(lambda: enricher_for(config))
    plain, = service.run_action("get_machines_for_domain", [{"domain": seed.EVIL_DOMAIN}])
    assert hunting_calls(emulator) == []
    # The answer without contact, remembered by the run, does not stand in for one with it.
    evil, phish = service.run_action("get_machines_for_domain", [
        {"domain": seed.EVIL_DOMAIN, "contact": True},
        {"domain": seed.PHISH_DOMAIN, "contact": True}])
    assert len(hunting_calls(emulator)) == 1
    assert all("contact" in machine["mde"] for machine in evil["machines"])
    assert HUNTING_ONLY_DEVICE_ID in {machine["uid"] for machine in evil["machines"]}
    assert all("contact" in machine["mde"] for machine in phish["machines"])
    assert all("contact" not in machine["mde"] for machine in plain["machines"])
