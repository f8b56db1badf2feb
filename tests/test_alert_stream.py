"""Alerts as a stream: a page, an array or NDJSON read one alert at a time, an unreadable
item set aside with its reason while the rest go on, outputs written as they come, small
(each machine once, compact JSON), in input order."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import pytest

from integration import schemas
from integration.cli import main as cli_main
from integration.emulator.seed import EVIL_DOMAIN, PHISH_DOMAIN
from integration.playbook import stream
from integration.playbook.outcome import in_order
from integration.playbook.steps import deduplicate
from integration.playbook.stream import read_stream

ROOT = Path(__file__).resolve().parent.parent
SCHEDULED = ROOT / "playbooks" / "scheduled-enrichment.yaml"
ENRICH_ALERT = ROOT / "playbooks" / "enrich-alert.yaml"
GRAPH_SAMPLE = ROOT / "playbooks" / "samples" / "graph_security_alert_v2.json"
DEEP_LINE = "[" * 100_000 + "]" * 100_000


def alert(domain: str, number: int = 0) -> dict[str, Any]:
    return {"id": f"a-{number}", "indicators": [{"type": "domain", "value": domain}]}


def items(text: str | bytes, chunk: int = 7) -> list[stream.StreamItem]:
    data = text.encode("utf-8") if isinstance(text, str) else text
    original = stream.CHUNK
    stream.CHUNK = chunk  # tiny chunks: every value is cut across reads somewhere
    try:
        return list(read_stream(io.BytesIO(data), "in.json"))
    finally:
        stream.CHUNK = original


# --- the reader ---------------------------------------------------------------------------


def test_a_page_is_read_alert_by_alert_with_its_odata_keys_around_it() -> None:
    page = {"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#alerts",
            "value": [alert("a.example", 1), {"title": "caf\u00e9 \\u00e9"}],
            "@odata.nextLink": "https://graph.microsoft.com/v1.0/alerts?$skip=2"}
    got = items(json.dumps(page))
    assert [i.alert for i in got] == page["value"]
    assert {i.shape for i in got} == {"page_of_alerts"}
    assert [i.label for i in got] == ["in.json item 1", "in.json item 2"]


def test_an_object_that_is_not_a_page_is_one_alert_even_with_a_value_list() -> None:
    one = {"id": "x", "value": [1, 2], "evidence": []}
    [got] = items(json.dumps(one, indent=2))
    assert (got.alert, got.shape, got.label) == (one, None, "in.json")


def test_ndjson_lines_are_numbered_and_a_broken_line_does_not_stop_the_rest() -> None:
    text = (json.dumps(alert("a.example")) + "\n\n" + '{"indicators": ]}\n' + DEEP_LINE + "\n"
            + "null\n" + json.dumps(alert("b.example")) + "\n")
    got = items(text, chunk=4096)
    assert [(i.line, i.readable) for i in got] == [(1, True), (3, False), (4, False),
                                                    (5, True), (6, True)]
    assert {i.shape for i in got} == {"ndjson"}
    assert "not valid JSON" in (got[1].problem or "")
    assert got[2].problem == "nested deeper than 64 levels"
    assert got[3].alert is None and got[3].label == "in.json line 5"  # read: the playbook
    assert got[4].alert == alert("b.example")                           # says what it is


def test_an_array_of_sentinel_entities_is_one_alert() -> None:
    entities = [{"kind": "File", "properties": {}}, {"kind": "Host", "properties": {}}]
    [got] = items(json.dumps(entities))
    assert got.alert == {"entities": entities} and got.shape is None


def test_a_broken_element_ends_a_pretty_array_with_its_reason() -> None:
    got = items('[\n  {"a": 1},\n  {"b": \n]\n')
    assert [i.readable for i in got] == [True, False]
    assert got[1].label == "in.json item 2" and "not valid JSON" in (got[1].problem or "")


def test_an_empty_page_has_a_shape_and_no_alert() -> None:
    [got] = items('{"value": []}')
    assert got.empty and got.shape == "page_of_alerts"


def test_text_that_is_not_utf8_is_said_so() -> None:
    [got] = items(b'{"title": "\xff"}')
    assert got.problem == "is not UTF-8 text"


def test_the_reader_holds_about_one_alert_however_long_the_array() -> None:
    """The text buffer never holds much more than the alert being decoded."""
    line = json.dumps({"id": "x" * 500, "evidence": list(range(50))})
    data = ("[" + ",".join([line] * 10_000) + "]").encode()
    largest = 0
    original = stream._Text._read

    def watched(self: Any) -> bool:
        nonlocal largest
        more = original(self)
        largest = max(largest, len(self.buf))
        return more
    stream._Text._read = watched  # type: ignore[method-assign]
    try:
        count = sum(1 for _ in read_stream(io.BytesIO(data), "big.json"))
    finally:
        stream._Text._read = original  # type: ignore[method-assign]
    assert count == 10_000
    assert largest < 2 * stream.CHUNK + 4 * len(line) < len(data) // 20


def test_in_order_gives_results_in_input_order_with_a_bounded_window() -> None:
    import threading
    import time

    running, most = 0, 0
    lock = threading.Lock()

    def work(n: int) -> int:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.001 * (n % 3))
        with lock:
            running -= 1
        return n * n
    assert list(in_order(range(50), work, 4)) == [n * n for n in range(50)]
    assert 1 < most <= 4


def test_deduplicate_ties_groups_together_through_a_later_indicator() -> None:
    files = [{"kind": "file", "type": "sha1", "value": "1" * 40, "hashes": {"sha1": "1" * 40}},
             {"kind": "file", "type": "md5", "value": "2" * 32, "hashes": {"md5": "2" * 32}},
             {"kind": "domain", "type": "domain", "value": "a.example"},
             {"kind": "file", "type": "sha256", "value": "3" * 64,
              "hashes": {"sha1": "1" * 40, "md5": "2" * 32, "sha256": "3" * 64}}]
    merged = deduplicate(None, {"indicators": files})  # type: ignore[arg-type]
    assert [m["value"] for m in merged] == ["1" * 40, "a.example"]
    assert merged[0]["hashes"] == {"sha1": "1" * 40, "sha256": "3" * 64, "md5": "2" * 32}


# --- through the CLI ----------------------------------------------------------------------


def test_an_array_given_to_alert_is_written_as_ndjson_one_compact_alert_a_line(
        config_file: Path, emulator: Any, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    given = tmp_path / "array.json"
    given.write_text(json.dumps([alert(EVIL_DOMAIN, 1), "no alert", alert(PHISH_DOMAIN, 3)],
                                indent=2), encoding="utf-8")
    status = cli_main(["playbook", "run", str(ENRICH_ALERT), "--alert", str(given),
                       "--config", str(config_file), "--format", "ndjson"])
    captured = capsys.readouterr()
    assert status == 2  # the one that is not an object
    lines = captured.out.splitlines()
    assert len(lines) == 3 and all(": " not in line[:40] for line in lines)  # compact
    documents = [json.loads(line) for line in lines]
    assert [d.get("id") for d in documents] == ["a-1", None, "a-3"]  # input order
    assert documents[1]["enrichment"]["error"]["code"] == "invalid_input"
    assert f"{given} item 2: an alert is a JSON object" in captured.err


def test_json_output_is_compact_off_a_terminal_and_indented_with_pretty(
        config_file: Path, emulator: Any, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["playbook", "run", str(ENRICH_ALERT), "--alert", str(GRAPH_SAMPLE),
            "--config", str(config_file), "--format", "json"]
    assert cli_main(argv) == 0
    compact = capsys.readouterr().out
    assert cli_main([*argv, "--pretty"]) == 0
    pretty = capsys.readouterr().out
    # the same alert and machines (the second run's envelopes say they came from the cache)
    assert json.loads(compact)["enrichment"]["machines"] == \
        json.loads(pretty)["enrichment"]["machines"]
    assert "\n" not in compact.strip() and '\n  "enrichment": {' in pretty


def test_the_enriched_alert_lists_each_machine_once_and_names_them_in_its_envelopes(
        config_file: Path, emulator: Any, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["playbook", "run", str(ENRICH_ALERT), "--alert", str(GRAPH_SAMPLE),
                     "--config", str(config_file), "--format", "json"]) == 0
    enrichment = json.loads(capsys.readouterr().out)["enrichment"]
    assert enrichment["schema_version"] == 2
    assert schemas.errors("enrichment.schema.json", enrichment) == []
    uids = [machine["uid"] for machine in enrichment["machines"]]
    named = [uid for envelope in enrichment["envelopes"] for uid in envelope["machine_uids"]]
    assert sorted(set(named)) == sorted(uids) and len(uids) == len(set(uids))
    assert not any("machines" in envelope for envelope in enrichment["envelopes"])
    for machine in enrichment["machines"]:  # still a machine artifact, plus its relations
        artifact = {k: v for k, v in machine.items() if k != "related_indicators"}
        assert schemas.errors("machine.schema.json", artifact) == []


# --- batches ------------------------------------------------------------------------------


def run_batch(source: Path, out: Path, config_file: Path) -> tuple[int, dict[str, Any]]:
    import contextlib

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        status = cli_main(["playbook", "run", str(SCHEDULED), "--alerts", str(source),
                           "--out", str(out), "--config", str(config_file), "--format",
                           "json"])
    return status, json.loads(buffer.getvalue())


def test_unreadable_lines_are_quarantined_with_their_reason_and_the_batch_goes_on(
        config_file: Path, emulator: Any, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    feed = tmp_path / "feed.ndjson"
    feed.write_text("\n".join([json.dumps(alert(EVIL_DOMAIN, 1)), DEEP_LINE, "null",
                               json.dumps(alert(PHISH_DOMAIN, 4))]) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    status, summary = run_batch(feed, out, config_file)
    assert status == 2
    assert (summary["enriched"], summary["quarantined"], summary["failed"]) == (2, 2, 0)
    assert sorted(p.name for p in out.glob("*.json")) == ["feed-000001.json",
                                                          "feed-000004.json"]
    reasons = "\n".join(error["message"] for error in summary["errors"])
    assert f"{feed} line 2: nested deeper than 64 levels" in reasons
    assert f"{feed} line 3: an alert is a JSON object, not nothing" in reasons
    written = (out / "feed-000004.json").read_text(encoding="utf-8")
    assert written.count("\n") == 1 and json.loads(written)["id"] == "a-4"  # compact


def test_an_output_name_taken_by_a_folder_fails_that_alert_only(
        config_file: Path, emulator: Any, tmp_path: Path) -> None:
    alerts, out = tmp_path / "alerts", tmp_path / "out"
    alerts.mkdir()
    for name, domain in (("a", EVIL_DOMAIN), ("b", PHISH_DOMAIN)):
        (alerts / f"{name}.json").write_text(json.dumps(alert(domain)), encoding="utf-8")
    (out / "a.json").mkdir(parents=True)
    status, summary = run_batch(alerts, out, config_file)
    assert status == 2
    assert (summary["enriched"], summary["failed"]) == (1, 1)
    assert f"{alerts / 'a.json'}: cannot write {out / 'a.json'}" in \
        summary["errors"][0]["message"]
    assert json.loads((out / "b.json").read_text(encoding="utf-8"))["enrichment"]


def test_a_read_only_output_folder_fails_each_alert_with_its_reason(
        config_file: Path, emulator: Any, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The refusal the kernel gives a non-root user, made here (root ignores folder modes)."""
    from integration.playbook import batch

    real_open = os.open

    def read_only(path: Any, flags: int, *args: Any) -> int:
        if str(path).startswith(str(tmp_path / "out")) and flags & os.O_CREAT:
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *args)
    alerts, out = tmp_path / "alerts", tmp_path / "out"
    alerts.mkdir()
    (alerts / "a.json").write_text(json.dumps(alert(EVIL_DOMAIN)), encoding="utf-8")
    monkeypatch.setattr(batch.os, "open", read_only)
    status, summary = run_batch(alerts, out, config_file)
    assert status == 2 and summary["failed"] == 1
    message = summary["errors"][0]["message"]
    assert "cannot write" in message and "Permission denied" in message


def test_a_second_batch_over_another_source_is_refused_the_same_out(
        config_file: Path, emulator: Any, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    first, second, out = tmp_path / "first.ndjson", tmp_path / "second.ndjson", tmp_path / "out"
    first.write_text(json.dumps(alert(EVIL_DOMAIN)) + "\n", encoding="utf-8")
    second.write_text(json.dumps(alert(PHISH_DOMAIN)) + "\n", encoding="utf-8")
    assert run_batch(first, out, config_file)[0] == 0
    capsys.readouterr()
    status = cli_main(["playbook", "run", str(SCHEDULED), "--alerts", str(second), "--out",
                       str(out), "--config", str(config_file)])
    assert status == 2
    assert f"{out}: holds the outputs of another batch (over {first})" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["first-000001.json"]


def test_the_fast_interpreter_answers_as_jmespath_does_on_every_format_rule_and_alert() -> None:
    """Every alert-format expression over every sample and corpus alert: the same answer as
    jmespath.search (the interpreter's fast path must not change a result)."""
    import jmespath

    from integration.playbook.alerts import alert_formats, read_alerts
    from integration.playbook.expressions import _options

    alerts = []
    for path in sorted([*(ROOT / "playbooks" / "samples").glob("*.json"),
                        *(ROOT / "tests" / "corpus" / "alerts").glob("*.json")]):
        alerts += read_alerts(path.read_text(encoding="utf-8"), path.name).alerts
    expressions = [e for f in alert_formats().formats
                   for e in [f.detect, *(r.expression for r in (*f.extract, *f.skip, *f.nested)),
                             *(w.when for w in f.warnings)]]
    from integration.playbook.expressions import ExpressionError

    def ours(expression: Any, alert: Any) -> Any:
        try:
            return expression.search(alert)
        except ExpressionError:
            return "fails"

    def theirs(expression: Any, alert: Any) -> Any:
        try:
            return jmespath.search(expression.source, alert, options=_options())
        except jmespath.exceptions.JMESPathError:
            return "fails"
    for alert in alerts:
        for expression in expressions:
            assert ours(expression, alert) == theirs(expression, alert), expression.source
