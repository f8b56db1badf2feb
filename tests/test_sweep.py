"""`mde-enrich sweep`: a threat-intel feed's indicators against the emulator's tenant, through
advanced hunting first and the machines API for the hits only; what changed since the last
sweep; the output formats and exit statuses."""

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
from integration.emulator import Emulator, seed

TOUCHED = 10
CLEAN = 1990


def sweep(capsys: pytest.CaptureFixture, config_file: Path, *argv: str) -> tuple[int, Any]:
    status = cli_main(["sweep", *argv, "--config", str(config_file)])
    out = capsys.readouterr().out
    try:
        return status, json.loads(out)
    except ValueError:
        return status, out


def bundle(path: Path, patterns: list[str], **extra: Any) -> Path:
    objects = [{"type": "indicator", "spec_version": "2.1",
                "id": f"indicator--{n:08x}-0000-4000-8000-000000000000",
                "created": "2025-01-01T00:00:00.000Z", "modified": "2025-01-01T00:00:00.000Z",
                "pattern": pattern, "pattern_type": "stix", "valid_from": "2025-01-01T00:00:00Z",
                **extra} for n, pattern in enumerate(patterns)]
    path.write_text(json.dumps({"type": "bundle", "id": "bundle--00000000-0000-4000-8000-"
                                "000000000000", "objects": objects}), encoding="utf-8")
    return path


def touched_domains(emulator: Emulator) -> list[str]:
    domains = emulator.admin.dataset_summary()["domains"]
    return sorted(name for name, count in domains.items() if 0 < count < 100)[:TOUCHED]


def calls(emulator: Emulator) -> tuple[int, int]:
    log = emulator.admin.requests_log()
    return (sum(e["path"].startswith("/api/") for e in log),
            sum(e["path"].endswith("/runHuntingQuery") for e in log))


@pytest.fixture
def big_bundle(emulator: Emulator, tmp_path: Path) -> tuple[Path, list[str]]:
    touched = touched_domains(emulator)
    domains = touched + [f"never-seen-{n}.example" for n in range(CLEAN)]
    return bundle(tmp_path / "feed.json", [f"[domain-name:value = '{d}']" for d in domains]), \
        touched


def test_2000_domains_name_the_10_touched_with_their_machines_at_under_005_calls_each(
        capsys, emulator: Emulator, config_file: Path, big_bundle) -> None:
    path, touched = big_bundle
    emulator.admin.clear_log()
    status, report = sweep(capsys, config_file, str(path), "--format", "json")
    api_calls, hunting_calls = calls(emulator)
    assert status == 0
    assert report["iocs"] == TOUCHED + CLEAN
    assert sorted(hit["indicator"]["value"] for hit in report["hits"]) == touched
    assert (api_calls + hunting_calls) / report["iocs"] <= 0.05
    assert report["summary"]["api_calls"] == api_calls == TOUCHED
    assert report["summary"]["hunting_calls"] == hunting_calls
    for hit in report["hits"]:  # the machines API's machines, each new on a first sweep
        listed = emulator.admin.dataset_summary()["domains"][hit["indicator"]["value"]]
        from_api = [m for m in hit["machines"] if m["mde"].get("contact", {}).get("source")
                    != "hunting_only"]
        assert len(from_api) == listed
        assert set(hit["new_machines"]) <= {m["uid"] for m in hit["machines"]}
        assert hit["new_machines"]


def test_a_second_sweep_right_after_reports_no_new_machine(capsys, emulator: Emulator,
                                                           config_file: Path, big_bundle):
    path, _ = big_bundle
    sweep(capsys, config_file, str(path), "--format", "json")
    status, report = sweep(capsys, config_file, str(path), "--format", "json", "--fail-on-new")
    assert status == 0
    assert len(report["hits"]) == TOUCHED
    assert report["summary"]["new_machines"] == 0 and report["gone"] == []


def test_fail_on_new_exits_1_when_a_sweep_finds_new_machines(capsys, emulator: Emulator,
                                                             config_file: Path, tmp_path: Path):
    path = bundle(tmp_path / "f.json", ["[domain-name:value = 'evil.example']"])
    status, report = sweep(capsys, config_file, str(path), "--format", "json", "--fail-on-new")
    assert status == 1 and report["summary"]["new_machines"] > 0


def _without_device(dataset: dict[str, Any], device_id: str) -> dict[str, Any]:
    changed = copy.deepcopy(dataset)
    for table, rows in changed["hunting"]["tables"].items():
        changed["hunting"]["tables"][table] = [r for r in rows if r["DeviceId"] != device_id]
    return changed


def test_a_machine_that_first_touches_a_domain_is_new_and_one_no_longer_seen_is_gone(
        capsys, emulator: Emulator, config_file: Path, tmp_path: Path) -> None:
    path = bundle(tmp_path / "f.json", ["[domain-name:value = 'phish.example']"])
    dataset = seed.build_dataset()
    device = dataset["domains"][seed.PHISH_DOMAIN][0]
    emulator.admin.load_dataset(_without_device(dataset, device))
    first = sweep(capsys, config_file, str(path), "--format", "json")[1]
    assert device not in first["hits"][0]["new_machines"]
    emulator.admin.load_dataset(dataset)
    second = sweep(capsys, config_file, str(path), "--format", "json")[1]
    assert second["hits"][0]["new_machines"] == [device]
    emulator.admin.load_dataset(_without_device(dataset, device))
    third = sweep(capsys, config_file, str(path), "--format", "json")[1]
    assert third["gone"] == [{"indicator": third["gone"][0]["indicator"], "machines": [device]}]
    assert third["hits"][0]["new_machines"] == []


def test_a_device_seen_only_in_dns_answers_is_a_hit(capsys, emulator: Emulator,
                                                    config_file: Path, tmp_path: Path):
    dataset = seed.build_dataset()
    tables = dataset["hunting"]["tables"]
    device = "d" * 40
    tables["DeviceNetworkEvents"] = [r for r in tables["DeviceNetworkEvents"]
                                     if "vpn" not in str(r["RemoteUrl"])]
    tables["DeviceEvents"] = [{
        "Timestamp": dataset["hunting"]["reference_now"].replace("Z", ".0000000Z"),
        "DeviceId": device, "DeviceName": "dns-only.corp.contoso.com",
        "ActionType": "DnsQueryResponse", "RemoteUrl": None,
        "AdditionalFields": json.dumps({"DnsQueryString": "login.dns-only.example"})}]
    emulator.admin.load_dataset(dataset)
    path = bundle(tmp_path / "f.json", ["[domain-name:value = 'dns-only.example']"])
    report = sweep(capsys, config_file, str(path), "--format", "json")[1]
    assert [m["uid"] for m in report["hits"][0]["machines"]] == [device]
    assert report["hits"][0]["machines"][0]["mde"]["contact"]["source"] == "hunting_only"


def test_an_md5_is_swept_through_hunting_and_looked_up_by_its_sha1(
        capsys, emulator: Emulator, config_file: Path, tmp_path: Path) -> None:
    known = seed.KNOWN_FILE
    path = bundle(tmp_path / "f.json", [f"[file:hashes.MD5 = '{known['md5']}']"])
    emulator.admin.clear_log()
    report = sweep(capsys, config_file, str(path), "--format", "json")[1]
    (hit,) = report["hits"]
    assert hit["indicator"]["type"] == "md5" and hit["indicator"]["sha1"] == known["sha1"]
    paths = [e["path"] for e in emulator.admin.api_calls()]
    assert paths == [f"/api/files/{known['sha1']}/machines"]  # no /api/files/{md5}


def test_an_indicator_named_twice_or_in_two_feeds_costs_once(capsys, emulator: Emulator,
                                                             config_file: Path, tmp_path: Path):
    one = bundle(tmp_path / "one.json", ["[domain-name:value = 'evil.example']"] * 2)
    two = tmp_path / "two.txt"
    two.write_text("# vendor list\nhxxps://Evil[.]example/landing\n", encoding="utf-8")
    emulator.admin.clear_log()
    report = sweep(capsys, config_file, str(one), str(two), "--format", "json")[1]
    assert report["iocs"] == 1 and calls(emulator) == (1, 1)
    assert {s["feed"] for s in report["hits"][0]["indicator"]["sources"]} == {
        str(one.resolve()), str(two.resolve())}


def test_one_feed_given_under_two_spellings_is_read_and_reported_once(
        capsys, emulator: Emulator, config_file: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    feed = bundle(tmp_path / "feed.json", ["[domain-name:value = 'evil.example']"])
    monkeypatch.chdir(tmp_path)  # `feed.json`, `./feed.json` and its absolute path: one feed
    report = sweep(capsys, config_file, "feed.json", "./feed.json", str(feed),
                   "--format", "json")[1]
    assert [f["feed"] for f in report["feeds"]] == [str(feed.resolve())]
    assert len(report["hits"][0]["indicator"]["sources"]) == 1


def test_a_feed_that_names_nothing_is_a_warning_not_a_silent_clean_sweep(
        capsys, emulator: Emulator, config_file: Path, tmp_path: Path) -> None:
    header_only = tmp_path / "vendor.csv"
    header_only.write_text("first_seen,indicator,type\n")  # the vendor changed its export
    status, report = sweep(capsys, config_file, str(header_only), "--format", "json")
    assert status == 0 and report["iocs"] == 0
    assert any("vendor.csv" in w and "no indicator" in w for w in report["warnings"])


def test_revoked_expired_and_unanswerable_indicators_are_skipped_with_their_reason(
        capsys, emulator: Emulator, config_file: Path, tmp_path: Path) -> None:
    path = tmp_path / "f.json"
    base = {"type": "indicator", "spec_version": "2.1", "created": "2025-01-01T00:00:00Z",
            "modified": "2025-01-01T00:00:00Z", "pattern_type": "stix",
            "valid_from": "2025-01-01T00:00:00Z"}
    objects = [
        {**base, "id": "indicator--1", "pattern": "[domain-name:value = 'a.example']",
         "revoked": True},
        {**base, "id": "indicator--2", "pattern": "[domain-name:value = 'b.example']",
         "valid_until": "2025-02-01T00:00:00Z"},
        {**base, "id": "indicator--3", "pattern": "[ipv4-addr:value = '10.0.0.1']"},
        {**base, "id": "indicator--4", "pattern": "title: x", "pattern_type": "sigma"},
        {**base, "id": "indicator--5", "pattern": "[domain-name:value = 'evil.example']"},
    ]
    path.write_text(json.dumps({"type": "bundle", "id": "bundle--1", "objects": objects}))
    report = sweep(capsys, config_file, str(path), "--format", "json")[1]
    assert report["iocs"] == 1
    assert [(s["ref"], s["reason"]) for s in report["skipped"]] == [
        ("indicator--1", "revoked"), ("indicator--2", "expired"),
        ("indicator--3", "unsupported_object"), ("indicator--4", "unsupported_pattern_type")]


def test_without_the_hunting_permission_every_indicator_is_looked_up_with_a_warning(
        capsys, emulator: Emulator, config_file: Path, tmp_path: Path) -> None:
    emulator.admin.add_fault(r"/runHuntingQuery$", {"status": 403}, repeat_last=True)
    path = bundle(tmp_path / "f.json", ["[domain-name:value = 'evil.example']",
                                        "[domain-name:value = 'never-seen.example']"])
    emulator.admin.clear_log()
    status, report = sweep(capsys, config_file, str(path), "--format", "json")
    assert status == 0
    assert calls(emulator)[0] == 2
    assert [h["indicator"]["value"] for h in report["hits"]] == ["evil.example"]
    assert report["summary"]["hunting"] is False
    assert "advanced hunting unavailable" in report["warnings"][0]


def test_a_source_that_cannot_be_read_exits_2_and_sends_nothing(
        capsys, emulator: Emulator, config_file: Path, tmp_path: Path) -> None:
    good = bundle(tmp_path / "f.json", ["[domain-name:value = 'evil.example']"])
    bad = tmp_path / "broken.json"
    bad.write_text("{not json", encoding="utf-8")
    emulator.admin.clear_log()
    status = cli_main(["sweep", str(good), str(bad), "--config", str(config_file)])
    assert status == 2 and "broken.json: not valid JSON" in capsys.readouterr().err
    assert calls(emulator) == (0, 0)


def test_a_bad_lookback_is_refused(capsys, config_file: Path, tmp_path: Path) -> None:
    path = bundle(tmp_path / "f.json", ["[domain-name:value = 'evil.example']"])
    status = cli_main(["sweep", str(path), "--lookback", "30 days", "--config",
                       str(config_file)])
    assert status == 2 and "ISO 8601 duration" in capsys.readouterr().err


def test_ocsf_output_is_one_valid_detection_finding_per_new_hit(
        capsys, emulator: Emulator, config_file: Path, tmp_path: Path) -> None:
    path = bundle(tmp_path / "f.json", ["[domain-name:value = 'evil.example']",
                                        "[domain-name:value = 'never-seen.example']"])
    status, findings = sweep(capsys, config_file, str(path), "--format", "ocsf")
    assert status == 0 and len(findings) == 1
    schema = OcsfJsonSchemaEmbedded(get_ocsf_schema("1.8.0")).get_class_schema(
        "detection_finding", findings[0]["metadata"]["profiles"])
    errors = [e.message for e in Draft202012Validator(schema).iter_errors(findings[0])]
    assert errors == []
    again = sweep(capsys, config_file, str(path), "--format", "ocsf")[1]
    assert again == []  # nothing new: nothing to report


@pytest.mark.parametrize("fmt", ["table", "markdown"])
def test_people_formats_name_the_hits_and_mark_the_new_machines(
        capsys, emulator: Emulator, config_file: Path, tmp_path: Path, fmt: str) -> None:
    path = bundle(tmp_path / "f.json", ["[domain-name:value = 'evil.example']"])
    status, text = sweep(capsys, config_file, str(path), "--format", fmt)
    assert status == 0
    assert "evil[.]example" in text and "(new)" in text and "1 touched" in text


def kill_then_resume(config: dict[str, Any], tmp_path: Path, path: Path,
                     killed_once: Callable[[], bool], **settings: Any) -> dict[str, Any]:
    """Run `mde-enrich sweep` in a process of its own, SIGKILL it once `killed_once()` says
    the moment has come, run it again to the end: the second run's report."""
    import os
    import signal
    import subprocess
    import sys
    import time

    import yaml

    config_path = tmp_path / "sweep-config.yaml"
    config_path.write_text(yaml.safe_dump({**config, **settings, "rate_limit": {
        "per_minute": 10000, "per_hour": 100000}}))
    command = [sys.executable, "-m", "integration.cli", "sweep", str(path), "--format", "json",
               "--config", str(config_path)]
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": str(root)}
    first = subprocess.Popen(command, cwd=root, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
    deadline = time.monotonic() + 20
    while not killed_once() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.4)  # what has arrived is kept; the held request is still waiting
    first.send_signal(signal.SIGKILL)
    _, stderr = first.communicate()
    assert first.returncode == -signal.SIGKILL, f"the sweep ended on its own: {stderr!r}"
    second = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True,
                            timeout=60)
    assert second.returncode == 0, second.stderr
    return json.loads(second.stdout)


def test_a_sweep_killed_mid_run_resumes_without_asking_anything_twice(
        emulator: Emulator, config: dict[str, Any], tmp_path: Path) -> None:
    import time
    from collections import Counter

    touched = touched_domains(emulator)
    domains = [*touched, *(f"never-seen-{n}.example" for n in range(440))]  # 3 hunting chunks
    path = bundle(tmp_path / "feed.json", [f"[domain-name:value = '{d}']" for d in domains])
    # The first chunk is answered; the second is held, then dropped: the kill lands there.
    emulator.admin.add_fault(r"/runHuntingQuery$", "pass", {"delay_s": 3.0, "drop": True})
    emulator.admin.clear_log()

    def hunted() -> list[dict[str, Any]]:
        return [e for e in emulator.admin.requests_log() if e["path"].endswith("runHuntingQuery")]

    report = kill_then_resume(config, tmp_path, path,
                              lambda: any(e["status"] == 200 for e in hunted()))
    assert sorted(h["indicator"]["value"] for h in report["hits"]) == touched
    assert report["summary"]["resumed"] is True
    assert all(h["new_machines"] for h in report["hits"])  # the killed run committed nothing
    time.sleep(3.0)  # the held request reaches the log once its delay is over
    answered_hunting = [e for e in hunted() if e["status"] == 200]
    assert len(answered_hunting) == 3  # three chunks, each answered once across both runs
    api = Counter(e["path"] for e in emulator.admin.api_calls() if e["status"] is not None)
    assert [p for p, count in api.items() if count > 1] == [] and len(api) == TOUCHED


PLAYBOOK = Path(__file__).resolve().parent.parent / "playbooks" / "ioc-sweep.yaml"


def test_the_ioc_sweep_playbook_is_a_valid_scheduled_playbook(capsys) -> None:
    import yaml

    from integration import schemas

    assert schemas.errors("playbook.schema.json", yaml.safe_load(PLAYBOOK.read_text())) == []
    status = cli_main(["playbook", "validate", str(PLAYBOOK), "--format", "json"])
    (entry,) = json.loads(capsys.readouterr().out)
    assert status == 0 and entry["valid"] and entry["trigger"] == "schedule"


def test_the_ioc_sweep_playbook_sweeps_its_sources_and_recommends_high_for_new_machines(
        capsys, emulator: Emulator, config_file: Path, tmp_path: Path) -> None:
    path = bundle(tmp_path / "f.json", ["[domain-name:value = 'evil.example']"])
    argv = ["playbook", "run", "ioc-sweep", "--input", f"sources={json.dumps([str(path)])}",
            "--config", str(config_file), "--format", "json"]
    status = cli_main(argv)
    first = json.loads(capsys.readouterr().out)["enrichment"]
    assert status == 0
    assert first["sweep"]["hits"][0]["indicator"]["value"] == "evil.example"
    assert first["recommended_severity"]["severity"] == "High"
    cli_main(argv)
    second = json.loads(capsys.readouterr().out)["enrichment"]
    assert second["sweep"]["summary"]["new_machines"] == 0
    assert "recommended_severity" not in second


def test_a_scheduled_alert_playbook_still_asks_for_alerts(capsys, config_file: Path) -> None:
    status = cli_main(["playbook", "run", "scheduled-enrichment", "--config", str(config_file)])
    assert status == 2 and "--alerts" in capsys.readouterr().err


def test_a_failed_lookup_is_reported_exits_4_and_is_asked_again_next_sweep(
        capsys, emulator: Emulator, config_file: Path, tmp_path: Path) -> None:
    path = bundle(tmp_path / "f.json", ["[domain-name:value = 'evil.example']",
                                        "[domain-name:value = 'phish.example']"])
    emulator.admin.add_fault(r"/api/domains/phish\.example/machines$", {"status": 500},
                             repeat_last=True)
    status, report = sweep(capsys, config_file, str(path), "--format", "json")
    assert status == 4
    assert [e["indicator"]["value"] for e in report["errors"]] == ["phish.example"]
    assert [h["indicator"]["value"] for h in report["hits"]] == ["evil.example"]
    emulator.admin.clear_faults()
    status, again = sweep(capsys, config_file, str(path), "--format", "json")
    assert status == 0
    hits = {h["indicator"]["value"]: h for h in again["hits"]}
    assert hits["phish.example"]["new_machines"] and not hits["evil.example"]["new_machines"]


def test_a_hunting_outage_fails_the_sweep_and_the_next_run_finishes_it(
        capsys, emulator: Emulator, config_file: Path, tmp_path: Path) -> None:
    path = bundle(tmp_path / "f.json", ["[domain-name:value = 'evil.example']",
                                        f"[file:hashes.'SHA-1' = '{seed.KNOWN_FILE['sha1']}']"])
    # The domains' query is answered, the files' query meets an outage.
    emulator.admin.add_fault(r"/runHuntingQuery$", "pass", {"status": 503}, repeat_last=True)
    status = cli_main(["sweep", str(path), "--config", str(config_file)])
    assert status == 4 and "upstream_error" in capsys.readouterr().err
    emulator.admin.clear_faults()
    emulator.admin.clear_log()
    status, report = sweep(capsys, config_file, str(path), "--format", "json")
    assert status == 0 and len(report["hits"]) == 2 and report["summary"]["resumed"]
    assert calls(emulator)[1] == 1  # only the files' query is asked again


def test_the_sweep_state_lives_in_redis_like_any_other_state(
        capsys, emulator: Emulator, config: dict[str, Any], redis_state_url: str,
        tmp_path: Path) -> None:
    import yaml

    config_path = tmp_path / "redis.yaml"
    config_path.write_text(yaml.safe_dump({**config, "state": redis_state_url}))
    path = bundle(tmp_path / "f.json", ["[domain-name:value = 'evil.example']"])
    first = sweep(capsys, config_path, str(path), "--format", "json")[1]
    second = sweep(capsys, config_path, str(path), "--format", "json")[1]
    assert first["summary"]["new_machines"] > 0 and second["summary"]["new_machines"] == 0


def test_two_runs_of_one_sweep_never_work_at_once(emulator: Emulator, config: dict[str, Any],
                                                  tmp_path: Path) -> None:
    from integration.compose import new_enricher
    from integration.config import load_settings
    from integration.errors import RunInProgress
    from integration.state.lease import Lease
    from integration.sweep.run import Sweep

    path = bundle(tmp_path / "f.json", ["[domain-name:value = 'evil.example']"])
    enricher = new_enricher(load_settings(config))
    running = Sweep(enricher, [str(path)])
    with Lease(enricher.store, f"sweep:{running.id}", "a sweep"), \
            pytest.raises(RunInProgress, match="another sweep of these feeds is in progress"):
        Sweep(enricher, [str(path)]).run()
    assert Sweep(enricher, [str(path)]).run()["summary"]["hits"] == 1  # free once it ends


def test_the_lookback_bounds_what_hunting_sees(capsys, emulator: Emulator, config_file: Path,
                                               tmp_path: Path) -> None:
    path = bundle(tmp_path / "f.json", ["[domain-name:value = 'phish.example']"])
    month = sweep(capsys, config_file, str(path), "--format", "json")[1]
    minute = sweep(capsys, config_file, str(path), "--format", "json", "--lookback", "PT1M")[1]
    assert month["hits"] and minute["hits"] == []
    assert minute["lookback"] == "PT1M"


# --- the sweep's hunting queries -------------------------------------------------------------


def _rows(table: str, **row: Any) -> dict[str, list[dict[str, Any]]]:
    base = {"Timestamp": "2025-06-01T00:00:00.0000000Z", "DeviceId": "a" * 40,
            "DeviceName": "ws-1.contoso.com", "ActionType": "x"}
    return {table: [{**base, **row}]}


def test_graph_is_sent_the_lookback_in_days_and_hours_never_weeks(
        capsys, emulator: Emulator, config_file: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # ISO 8601 weeks are not in xs:duration, the form .NET services such as Graph parse
    from integration.defender.hunting import HuntingClient

    sent: list[str] = []
    original = HuntingClient.run

    def recording(self: Any, query: str, calls: Any = None, *, timespan: str = "P30D") -> Any:
        sent.append(timespan)
        return original(self, query, calls, timespan=timespan)

    monkeypatch.setattr(HuntingClient, "run", recording)
    path = bundle(tmp_path / "f.json", ["[domain-name:value = 'evil.example']"])
    report = sweep(capsys, config_file, str(path), "--lookback", "P2W", "--format", "json")[1]
    assert sent == ["P14D"] and report["lookback"] == "P2W"
    sweep(capsys, config_file, str(path), "--lookback", "P1DT6H", "--format", "json")
    assert sent[1:] == ["P1DT6H"]


def test_the_sweep_domain_query_finds_connections_and_dns_answers_and_nothing_else() -> None:
    import datetime as dt

    from integration.defender.hunting import sweep_domain_query, sweep_sightings
    from integration.emulator import kql
    from integration.values.indicators import parse_domain

    wanted = [parse_domain("evil.example")]
    now = dt.datetime(2025, 6, 2, tzinfo=dt.timezone.utc)
    query = sweep_domain_query(wanted, 30 * 86400)
    for tables, found in [
        (_rows("DeviceNetworkEvents", RemoteUrl="https://cdn.evil.example/x"), True),
        (_rows("DeviceEvents", ActionType="DnsQueryResponse",
               AdditionalFields=json.dumps({"DnsQueryString": "evil.example"})), True),
        # the name in another action's fields, or a look-alike name, is no contact
        (_rows("DeviceEvents", ActionType="FileCreated",
               AdditionalFields=json.dumps({"DnsQueryString": "evil.example"})), False),
        (_rows("DeviceEvents", ActionType="DnsQueryResponse",
               AdditionalFields=json.dumps({"DnsQueryString": "evil.example.attacker.test"})),
         False),
        (_rows("DeviceNetworkEvents", RemoteUrl="notevil.example"), False),
    ]:
        rows = kql.run(query, tables, now).rows
        contacts, _ = sweep_sightings("domain", wanted, rows)
        assert bool(contacts) is found, tables


def test_the_sweep_file_query_finds_a_file_by_md5_and_gives_its_sha1() -> None:
    import datetime as dt

    from integration.defender.hunting import sweep_file_query, sweep_sightings
    from integration.emulator import kql
    from integration.values.indicators import parse_file_hash

    md5, sha1 = "1" * 32, "2" * 40
    wanted = [parse_file_hash(md5), parse_file_hash("3" * 64)]
    now = dt.datetime(2025, 6, 2, tzinfo=dt.timezone.utc)
    tables = _rows("DeviceImageLoadEvents", SHA1=sha1, SHA256="4" * 64, MD5=md5)
    rows = kql.run(sweep_file_query(wanted, 86400 * 7), tables, now).rows
    contacts, sha1s = sweep_sightings("file", wanted, rows)
    assert list(contacts) == [md5] and sha1s == {md5: sha1}


def test_a_sweep_killed_during_its_lookups_asks_none_of_them_again(
        emulator: Emulator, config: dict[str, Any], tmp_path: Path) -> None:
    from collections import Counter

    touched = touched_domains(emulator)
    path = bundle(tmp_path / "feed.json", [f"[domain-name:value = '{d}']" for d in touched])
    held = touched[-1]
    emulator.admin.configure(latency_s=0.05)
    emulator.admin.add_fault(f"/api/domains/{held}/machines$", {"delay_s": 3.0, "drop": True})
    emulator.admin.clear_log()

    def answered() -> list[str]:
        return [e["path"] for e in emulator.admin.api_calls() if e["status"] is not None]

    kept: list[int] = []

    def nine_answered() -> bool:
        kept[:] = [len(answered())]
        return kept[0] >= TOUCHED - 1

    # No result cache: only the sweep's own record can spare a second call.
    report = kill_then_resume(config, tmp_path, path, nine_answered, cache_ttl_s=0,
                              max_concurrency=2)
    assert sorted(h["indicator"]["value"] for h in report["hits"]) == touched
    assert len(answered()) - kept[0] == 1  # only the lookup in flight at the kill
    assert [p for p, n in Counter(answered()).items() if n > 1] == []


@pytest.mark.parametrize("fmt", ["table", "markdown"])
def test_a_hostile_device_name_cannot_attack_the_reader(capsys, emulator: Emulator,
                                                        config_file: Path, tmp_path: Path,
                                                        fmt: str) -> None:
    dataset = seed.build_dataset()
    dataset["hunting"]["tables"]["DeviceNetworkEvents"].append({
        "Timestamp": dataset["hunting"]["reference_now"].replace("Z", ".0000000Z"),
        "DeviceId": "e" * 40, "DeviceName": "\x1b[2Jpwn [click](http://attacker.test)",
        "ActionType": "ConnectionSuccess", "RemoteUrl": "hostile-name.example"})
    emulator.admin.load_dataset(dataset)
    path = bundle(tmp_path / "f.json", ["[domain-name:value = 'hostile-name.example']"])
    text = sweep(capsys, config_file, str(path), "--format", fmt)[1]
    assert "\x1b" not in text
    if fmt == "markdown":
        assert "](http://attacker.test)" not in text


def test_a_hostile_gone_device_id_cannot_attack_a_markdown_reader() -> None:
    from integration.sweep.render import render_markdown

    hostile = "[click](http://attacker.test)"
    report = {"iocs": 1, "lookback": "P30D", "hits": [], "warnings": [], "errors": [],
              "gone": [{"indicator": {"type": "domain", "value": "evil.example"},
                        "machines": [hostile]}],
              "summary": {"hits": 0, "new_machines": 0, "gone_machines": 1, "skipped": 0,
                          "hunting_calls": 1, "api_calls": 0, "errors": 0}}
    assert "](http://attacker.test)" not in render_markdown(report)


def test_a_user_sweeps_with_their_own_device_groups_and_state(emulator: Emulator,
                                                              state_url: str,
                                                              tmp_path: Path) -> None:
    from test_delegated import app_config, sign_in, user_config

    from integration.compose import new_enricher
    from integration.config import load_settings
    from integration.sweep.run import Sweep

    emulator.admin.configure(device_code_interval_s=1)
    path = bundle(tmp_path / "f.json", [f"[domain-name:value = '{seed.EVIL_DOMAIN}']"])
    sign_in(emulator, user_config(emulator, state_url), emulator.alice)
    emulator.admin.clear_log()
    alice = Sweep(new_enricher(load_settings(user_config(emulator, state_url))),
                  [str(path)]).run()
    assert alice["principal"]["type"] == "user" and alice["principal"]["name"] == emulator.alice
    (hit,) = alice["hits"]
    assert {g["name"] for m in hit["machines"] for g in m["groups"]} == {"Finance"}
    assert not emulator.admin.requests_log("/v1.0/security")  # hunting would show it all
    assert "outside the device groups" in alice["warnings"][0]
    # The application's sweep of the same feed has its own state: all its machines are new.
    application = Sweep(new_enricher(load_settings(app_config(emulator, state_url))),
                        [str(path)]).run()
    assert len(application["hits"][0]["new_machines"]) > len(hit["new_machines"])


def test_a_credential_that_no_longer_signs_in_is_exit_3_even_after_a_sweep(
        capsys, emulator: Emulator, config: dict[str, Any], config_file: Path,
        tmp_path: Path) -> None:
    import yaml

    path = bundle(tmp_path / "f.json", [f"[domain-name:value = '{seed.EVIL_DOMAIN}']"])
    assert sweep(capsys, config_file, str(path), "--format", "json")[0] == 0
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(yaml.safe_dump({**config, "client_secret": "not-the-secret"}))
    status = cli_main(["sweep", str(path), "--config", str(wrong)])
    assert status == 3 and "auth_failed" in capsys.readouterr().err
