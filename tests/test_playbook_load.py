"""Loading playbooks: the shipped ones are valid; a malformed one is refused up front with an
error naming the file and the step, and the CLI exits 2. No network here."""

from __future__ import annotations

from pathlib import Path

import pytest

from integration import schemas
from integration.cli import main as cli_main
from integration.playbook import PlaybookError, load_playbook
from integration.playbook.steps import BUILTINS

PLAYBOOKS = Path(__file__).resolve().parent.parent / "playbooks"

GOOD = """\
name: test
trigger: alert
steps:
  - id: extract
    builtin: extract_indicators
    params:
      alert: {expr: alert}
  - id: domains
    action: get_machines_for_domain
    for_each: "steps.extract.indicators[?kind == 'domain']"
    params:
      domain: {expr: item.value}
    on_error: continue
"""

# name -> (text replacing a part of GOOD, what the message must say after "FILE: ")
MALFORMED: dict[str, tuple[str, str, str]] = {
    "bad_yaml": (
        "    params:\n      domain: {expr: item.value}",
        "    params:\n      domain: {expr: item.value\n    oops: [",
        "in step 'domains'): not valid YAML"),
    "schema_violation": (
        "    on_error: continue", "    on_error: maybe",
        "steps[1] (domains): on_error: 'maybe' is not one of ['continue', 'fail']"),
    "both_action_and_builtin": (
        "    action: get_machines_for_domain",
        "    action: get_machines_for_domain\n    builtin: deduplicate",
        "steps[1] (domains): give exactly one of 'action' and 'builtin'"),
    "bad_jmespath": (
        "for_each: \"steps.extract.indicators[?kind == 'domain']\"",
        "for_each: \"steps.extract.indicators[?kind == 'domain'\"",
        "steps[1] (domains): for_each: invalid JMESPath expression"),
    "bad_jmespath_in_params": (
        "domain: {expr: item.value}", "domain: {expr: 'item.'}",
        "steps[1] (domains): params.domain: invalid JMESPath expression"),
    "unknown_action": (
        "action: get_machines_for_domain", "action: get_machines_for_ip",
        "steps[1] (domains): unknown action 'get_machines_for_ip'"),
    "unknown_param": (
        "domain: {expr: item.value}", "domains: {expr: item.value}",
        "steps[1] (domains): action 'get_machines_for_domain' has no param(s) domains; "
        "it takes contact, domain, include_raw, priority, use_cache"),
    "unknown_step_reference": (
        "steps.extract.indicators", "steps.extrakt.indicators",
        "steps[1] (domains): expression \"steps.extrakt.indicators[?kind == 'domain']\" "
        "reads steps.extrakt, which is not an earlier step"),
    "duplicate_step_id": (
        "  - id: domains", "  - id: extract", "steps[1] (extract): duplicate step id"),
}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "playbook.yaml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("name", sorted(p.name for p in PLAYBOOKS.glob("*.yaml")))
def test_each_shipped_playbook_validates(name: str) -> None:
    assert load_playbook(PLAYBOOKS / name).steps


def test_the_schema_lists_exactly_the_builtins_the_engine_has() -> None:
    step = schemas.schema("playbook.schema.json")["$defs"]["step"]
    assert set(step["properties"]["builtin"]["enum"]) == set(BUILTINS)


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_a_malformed_playbook_is_refused_naming_file_and_step(case: str,
                                                               tmp_path: Path) -> None:
    old, new, expected = MALFORMED[case]
    assert old in GOOD
    path = write(tmp_path, GOOD.replace(old, new, 1))
    with pytest.raises(PlaybookError) as caught:
        load_playbook(path)
    assert caught.value.message.startswith(f"{path}: ")
    assert expected in caught.value.message
    assert caught.value.exit_status == 2


def test_a_bad_yaml_error_gives_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("on_error: continue", "on_error: [continue"))
    with pytest.raises(PlaybookError, match=r"line 1[0-9], column \d+"):
        load_playbook(path)


def test_an_expression_reading_item_without_for_each_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace(
        "    for_each: \"steps.extract.indicators[?kind == 'domain']\"\n", ""))
    with pytest.raises(PlaybookError, match=r"steps\[1\] \(domains\): .* reads item, but the "
                                            r"step has no for_each"):
        load_playbook(path)


def test_a_set_field_outside_the_enrichment_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD + "  - id: tag\n    builtin: set_field\n"
                                  "    params: {path: alert.severity, value: High}\n")
    with pytest.raises(PlaybookError, match=r"steps\[2\] \(tag\): params\.path: .*under the "
                                            r"enrichment"):
        load_playbook(path)


def test_validate_exits_2_and_names_file_and_step(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, GOOD.replace("action: get_machines_for_domain",
                                        "action: get_machines_for_ip"))
    assert cli_main(["playbook", "validate", str(path), "--format", "table"]) == 2
    assert f"{path}: steps[1] (domains): unknown action" in capsys.readouterr().err


def test_run_refuses_a_malformed_playbook_before_reading_anything_else(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, GOOD.replace("on_error: continue", "on_error: maybe"))
    status = cli_main(["playbook", "run", str(path), "--alert", str(tmp_path / "missing.json")])
    assert status == 2
    assert f"{path}: steps[1] (domains): on_error" in capsys.readouterr().err


def test_validate_accepts_the_shipped_playbooks(capsys: pytest.CaptureFixture[str]) -> None:
    paths = [str(path) for path in sorted(PLAYBOOKS.glob("*.yaml"))]
    assert cli_main(["playbook", "validate", *paths, "--format", "table"]) == 0
    assert capsys.readouterr().out.count(": ok (") == len(paths)
