"""The sweep's feeds: a TAXII 2.1 collection on a real server (OASIS's medallion) with
`added_after` paging, MISP events and feed folders as MISP publishes them, CSV and text."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from taxii_server import PASSWORD, USER, TaxiiServer, taxii_server

from integration.cli import main as cli_main
from integration.emulator import Emulator, seed
from integration.emulator.certs import ensure_key_material
from integration.sweep.misp import read_events, read_feed_folder
from integration.sweep.text import read_text

MISP = Path(__file__).parent / "corpus" / "feeds" / "misp"


def sweep(capsys: pytest.CaptureFixture, config_file: Path, *sources: str) -> tuple[int, Any]:
    status = cli_main(["sweep", *sources, "--format", "json", "--config", str(config_file)])
    captured = capsys.readouterr()
    return status, json.loads(captured.out) if captured.out.strip() else captured.err


def indicator(number: int, pattern: str, **extra: Any) -> dict[str, Any]:
    return {"type": "indicator", "spec_version": "2.1",
            "id": f"indicator--{number:08x}-1111-4000-8000-000000000000",
            "created": "2025-01-01T00:00:00.000Z", "modified": "2025-01-01T00:00:00.000Z",
            "pattern": pattern, "pattern_type": "stix", "valid_from": "2025-01-01T00:00:00Z",
            **extra}


# --- TAXII 2.1 ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def taxii_keys(tmp_path_factory: pytest.TempPathFactory, emulator_session: Emulator) -> Any:
    return ensure_key_material(emulator_session.state_dir)


@pytest.fixture
def taxii(tmp_path: Path, taxii_keys: Any, monkeypatch: pytest.MonkeyPatch
          ) -> Iterator[TaxiiServer]:
    monkeypatch.setenv("MDE_TAXII_USER", USER)
    monkeypatch.setenv("MDE_TAXII_PASSWORD", PASSWORD)
    with taxii_server(tmp_path, taxii_keys.ca_path, taxii_keys.server_cert_path,
                      taxii_keys.server_key_path) as server:
        yield server


def test_a_taxii_collection_is_swept_and_a_later_sweep_fetches_only_what_was_added(
        capsys, emulator: Emulator, config_file: Path, taxii: TaxiiServer) -> None:
    taxii.add([indicator(1, "[domain-name:value = 'evil.example']"),
               *[indicator(10 + n, f"[domain-name:value = 'quiet-{n}.example']")
                 for n in range(150)]])  # more than one page of 100
    status, first = sweep(capsys, config_file, taxii.collection_url)
    assert status == 0
    assert first["feeds"][0]["fetched"] == 151 and first["iocs"] == 151
    assert [h["indicator"]["value"] for h in first["hits"]] == ["evil.example"]

    taxii.add([indicator(2, f"[file:hashes.'SHA-1' = '{seed.KNOWN_FILE['sha1']}']")])
    status, second = sweep(capsys, config_file, taxii.collection_url)
    assert second["feeds"][0]["fetched"] == 1  # added_after: only the new object
    assert second["iocs"] == 152  # the earlier indicators are still swept
    hits = {h["indicator"]["value"]: h for h in second["hits"]}
    assert set(hits) == {"evil.example", seed.KNOWN_FILE["sha1"]}
    assert hits["evil.example"]["new_machines"] == []
    assert hits[seed.KNOWN_FILE["sha1"]]["new_machines"]


def test_a_revocation_added_to_the_collection_stops_the_indicator_being_swept(
        capsys, emulator: Emulator, config_file: Path, taxii: TaxiiServer) -> None:
    taxii.add([indicator(1, "[domain-name:value = 'evil.example']")])
    sweep(capsys, config_file, taxii.collection_url)
    taxii.add([indicator(1, "[domain-name:value = 'evil.example']", revoked=True,
                         modified="2025-03-01T00:00:00.000Z")])
    second = sweep(capsys, config_file, taxii.collection_url)[1]
    assert second["iocs"] == 0 and second["hits"] == []
    assert [s["reason"] for s in second["skipped"]] == ["revoked"]


def test_a_collection_that_refuses_our_credentials_is_an_auth_failure(
        capsys, emulator: Emulator, config_file: Path, taxii: TaxiiServer,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MDE_TAXII_PASSWORD", "wrong")
    emulator.admin.clear_log()
    status, err = sweep(capsys, config_file, taxii.collection_url)
    assert status == 3 and "MDE_TAXII_PASSWORD" in err and "wrong" not in err
    assert emulator.admin.requests_log("/api/") == []


def test_a_collection_that_cannot_be_reached_is_exit_4_in_one_line_before_any_lookup(
        capsys, emulator: Emulator, config_file: Path) -> None:
    import socket

    with socket.socket() as probe:  # a port nothing listens on: the connection is refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    emulator.admin.clear_log()
    status, err = sweep(capsys, config_file, f"https://127.0.0.1:{port}/api/collections/x/")
    assert status == 4 and err.count("\n") == 1 and "cannot be reached" in err
    assert emulator.admin.requests_log("/api/") == []


def test_a_plain_http_collection_is_refused_before_anything_is_sent(
        capsys, emulator: Emulator, config_file: Path) -> None:
    emulator.admin.clear_log()
    status, err = sweep(capsys, config_file, "http://127.0.0.1:9/api/collections/x/")
    assert status == 2 and "HTTPS only" in err
    assert emulator.admin.requests_log() == []


@contextmanager
def endless_taxii(keys: Any) -> Iterator[tuple[str, list[str]]]:
    """A TLS stand-in for a broken TAXII server: every page says `more`, with the same `next`
    and no objects. Yields the collection URL and the paths it was asked for."""
    import ssl
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    asked: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # http.server calls it by this name
            asked.append(self.path)
            body = ({"id": "x", "title": "x", "can_read": True, "can_write": False}
                    if self.path.rstrip("/").endswith("/collections/x")
                    else {"more": True, "next": "same", "objects": []})
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/taxii+json;version=2.1")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(keys.server_cert_path, keys.server_key_path)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}/api/collections/x/", asked
    finally:
        server.shutdown()
        server.server_close()


def test_a_server_that_says_more_forever_is_an_upstream_error_not_an_endless_sweep(
        capsys, emulator: Emulator, config_file: Path, taxii_keys: Any) -> None:
    with endless_taxii(taxii_keys) as (url, asked):
        status, err = sweep(capsys, config_file, url)
    assert status == 4 and "more" in err and err.count("\n") == 1
    assert len(asked) < 10


def test_a_collection_that_never_answers_times_out_as_configured(
        capsys, emulator: Emulator, config_file: Path, tmp_path: Path) -> None:
    import socket

    import yaml

    quick = tmp_path / "quick.yaml"
    quick.write_text(yaml.safe_dump({**yaml.safe_load(config_file.read_text()),
                                     "timeout_s": 1}))
    with socket.socket() as silent:  # takes the connection (the backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        url = f"https://127.0.0.1:{silent.getsockname()[1]}/api/collections/x/"
        status, err = sweep(capsys, quick, url)
    assert status == 4 and "timed out" in err and err.count("\n") == 1


# --- MISP --------------------------------------------------------------------------------


def test_a_misp_event_respects_to_ids_and_splits_composite_attributes() -> None:
    document = json.loads((MISP / "asert_four_element_sword_event.json").read_text())
    read = read_events(document, "feed")
    values = {i.indicator.value: i.indicator.type for i in read.indicators}
    attributes = document["Event"]["Attribute"]
    composite = next(a for a in attributes if a["type"] == "filename|sha256" and a["to_ids"])
    assert values[composite["value"].split("|")[1].lower()] == "sha256"
    not_for_ids = next(a for a in attributes if a["type"] == "hostname" and not a["to_ids"])
    assert not_for_ids["value"] not in values
    reasons = {s.reason for s in read.skipped}
    assert {"not_to_ids", "unsupported_type"} <= reasons
    domain = next(a for a in attributes if a["type"] == "domain" and a["to_ids"])
    assert values[domain["value"]] == "domain"
    assert all(i.name == document["Event"]["info"] for i in read.indicators)


def test_a_misp_feed_folder_reads_every_event_its_manifest_lists() -> None:
    read = read_feed_folder(MISP / "feed", "feed")
    refs = {i.ref for i in read.indicators}
    for uuid in json.loads((MISP / "feed" / "manifest.json").read_text()):
        event = json.loads((MISP / "feed" / f"{uuid}.json").read_text())["Event"]
        assert refs & {a["uuid"] for a in event["Attribute"]}
    types = {i.indicator.type for i in read.indicators}
    assert {"md5", "sha1", "sha256"} <= types
    assert any(s.what.startswith("regkey|value") and s.reason == "unsupported_type"
               for s in read.skipped)


def test_a_misp_domain_ip_composite_gives_its_domain() -> None:
    read = read_events({"Event": {"info": "x", "Attribute": [
        {"type": "domain|ip", "value": "evil.example|203.0.113.7", "to_ids": "1"},
        {"type": "ip-dst", "value": "203.0.113.7", "to_ids": True},
        {"type": "sha256", "value": "a" * 64, "to_ids": False},
        {"type": "domain", "value": "gone.example", "to_ids": True, "deleted": True}]}}, "f")
    assert [(i.indicator.type, i.indicator.value) for i in read.indicators] == [
        ("domain", "evil.example")]
    assert [s.reason for s in read.skipped] == ["unsupported_type", "not_to_ids"]


def test_a_misp_feed_folder_is_swept(capsys, emulator: Emulator, config_file: Path,
                                     tmp_path: Path) -> None:
    folder = tmp_path / "feed"
    folder.mkdir()
    uuid = "5f0c3b6e-0000-4000-8000-000000000001"
    (folder / "manifest.json").write_text(json.dumps({uuid: {"info": "campaign"}}))
    (folder / f"{uuid}.json").write_text(json.dumps({"Event": {"uuid": uuid, "info": "campaign",
        "Attribute": [{"type": "filename|md5", "value": f"x.exe|{seed.KNOWN_FILE['md5']}",
                       "to_ids": True, "uuid": "a-1"}]}}))
    status, report = sweep(capsys, config_file, str(folder))
    assert status == 0
    (hit,) = report["hits"]
    assert hit["indicator"]["sha1"] == seed.KNOWN_FILE["sha1"]
    assert hit["indicator"]["sources"][0] == {"feed": str(folder.resolve()), "ref": "a-1",
                                             "name": "campaign"}


# --- CSV and text ------------------------------------------------------------------------


def test_a_text_list_is_one_indicator_a_line_with_comments_and_defanged_values() -> None:
    read = read_text("# vendor IOCs\n\nhxxp://evil[.]example/a\n"
                     f"SHA256:{'B' * 64}\n10.0.0.1\n", "f")
    assert [(i.indicator.type, i.indicator.value, i.ref) for i in read.indicators] == [
        ("domain", "evil.example", "line 3"), ("sha256", "b" * 64, "line 4")]
    assert [(s.ref, s.reason) for s in read.skipped] == [("line 5", "invalid_value")]


def test_a_csv_takes_its_indicator_column() -> None:
    read = read_text("first_seen,indicator,type\n2025-01-01,evil.example,domain\n"
                     f"2025-01-02,{'c' * 40},sha1\n", "f")
    assert [i.indicator.value for i in read.indicators] == ["evil.example", "c" * 40]


def test_a_one_column_csv_header_is_a_header_not_a_skipped_indicator() -> None:
    read = read_text("Indicator\nevil.example\n", "f")
    assert [i.indicator.value for i in read.indicators] == ["evil.example"]
    assert read.skipped == []


def test_a_csv_and_a_text_file_are_swept(capsys, emulator: Emulator, config_file: Path,
                                         tmp_path: Path) -> None:
    csv_file = tmp_path / "iocs.csv"
    csv_file.write_text(f"value,comment\n{seed.KNOWN_FILE['sha256']},dropper\n")
    text_file = tmp_path / "iocs.txt"
    text_file.write_text("evil.example\nnever-seen.example\n")
    status, report = sweep(capsys, config_file, str(csv_file), str(text_file))
    assert status == 0 and report["iocs"] == 3
    assert {h["indicator"]["value"] for h in report["hits"]} == {
        seed.KNOWN_FILE["sha256"], "evil.example"}


# --- STIX objects beside indicators ------------------------------------------------------


def test_observables_and_observed_data_are_swept_like_indicators() -> None:
    from integration.sweep.stix import read_objects

    sha256 = seed.KNOWN_FILE["sha256"]
    objects = [
        {"type": "domain-name", "spec_version": "2.1", "id": "domain-name--1",
         "value": "evil.example"},
        {"type": "file", "spec_version": "2.1", "id": "file--1", "hashes": {"SHA-256": sha256}},
        {"type": "observed-data", "id": "observed-data--1", "modified": "2025-01-01T00:00:00Z",
         "objects": {"0": {"type": "url", "value": "https://phish.example/login"},
                     "1": {"type": "ipv4-addr", "value": "203.0.113.9"}}},
        {"type": "malware", "id": "malware--1", "name": "not an observable"},
    ]
    read = read_objects(objects, "f", now_ms=0)
    assert [(i.indicator.value, i.ref) for i in read.indicators] == [
        ("evil.example", "domain-name--1"), (sha256, "file--1"),
        ("phish.example", "observed-data--1")]
    assert [(s.ref, s.reason) for s in read.skipped] == [("observed-data--1",
                                                          "unsupported_object")]


def test_the_latest_version_of_an_object_wins() -> None:
    from integration.sweep.stix import read_objects

    old = indicator(1, "[domain-name:value = 'old.example']")
    new = {**old, "pattern": "[domain-name:value = 'new.example']",
           "modified": "2025-02-01T00:00:00.000Z"}
    read = read_objects([new, old], "f", now_ms=0)
    assert [i.indicator.value for i in read.indicators] == ["new.example"]


def test_oasis_apt1_report_is_swept_with_its_certificates_and_ranges_skipped(
        capsys, emulator: Emulator, config_file: Path) -> None:
    path = Path(__file__).parent / "corpus" / "feeds" / "stix" / "apt1.json"
    status, report = sweep(capsys, config_file, str(path))
    assert status == 0 and report["hits"] == []
    assert report["iocs"] > 0
    reasons = {(s["what"].split(":")[0], s["reason"]) for s in report["skipped"]}
    assert {("ipv4-addr", "unsupported_object"), ("x509-certificate",
                                                  "unsupported_object")} <= reasons


def test_a_feed_names_a_private_domain_under_the_configured_internal_suffixes(
        capsys, emulator: Emulator, config: dict[str, Any], tmp_path: Path) -> None:
    config_file = tmp_path / "internal.yaml"
    config_file.write_text(json.dumps({**config, "internal_domain_suffixes": ["corp.contoso"]}))
    text_file = tmp_path / "iocs.txt"
    text_file.write_text("fileserver.corp.contoso\n")
    misp_file = tmp_path / "event.json"
    misp_file.write_text(json.dumps({"Event": {"info": "internal", "Attribute": [
        {"type": "domain", "value": "wiki.corp.contoso", "to_ids": True, "uuid": "a-1"}]}}))
    status, report = sweep(capsys, config_file, str(text_file), str(misp_file))
    assert status == 0, report
    assert report["iocs"] == 2 and report["skipped"] == []
