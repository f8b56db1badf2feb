"""Hostile input: every document from outside is read bounded (size, depth, YAML aliases),
and a bad one is a clear error naming it, never a RecursionError, a MemoryError or a secret
quoted back. Each test here fed its input to the plugin as it was before these limits."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

from integration.bounded import ALERT, DOCUMENT, check_nesting, parse_json, parse_yaml, read_json
from integration.cli import main as cli_main
from integration.config import load_settings, read_config_file
from integration.errors import ConfigError, InvalidInput
from integration.playbook import PlaybookError, load_playbook
from integration.playbook.alerts import alert_formats, read_alerts

ROOT = Path(__file__).resolve().parent.parent
ENRICH_ALERT = ROOT / "playbooks" / "enrich-alert.yaml"
SECRET = "s3cr3t-Value-that-must-never-print"
DEEP_JSON = "[" * 100_000 + "]" * 100_000
# Nine aliases, each nine of the one before: 9**9 (387 million) values once expanded.
ALIAS_BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]\n" for i in range(8))


def deep_yaml(levels: int) -> str:
    return "[" * levels + "]" * levels


# --- the readers -------------------------------------------------------------------------


def test_json_nested_100000_deep_is_invalid_input_not_recursion_error() -> None:
    with pytest.raises(InvalidInput, match="nested deeper than 64 levels"):
        parse_json(DEEP_JSON, what="line 3")


def test_valid_json_700_deep_is_refused_before_anything_copies_it() -> None:
    with pytest.raises(InvalidInput, match="nested deeper than 64 levels"):
        parse_json('{"ok": 1, "unrelated": ' + "[" * 700 + "]" * 700 + "}")


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    text = json.dumps({"note": "[" * 500 + "{" * 500})
    assert parse_json(text)["note"].startswith("[[[")


def test_nan_and_infinity_are_not_json() -> None:
    for constant in ("NaN", "Infinity", "-Infinity"):
        with pytest.raises(InvalidInput, match="not a JSON number"):
            parse_json(f'{{"score": {constant}}}')


def test_a_file_past_the_size_cap_is_refused_without_reading_it_whole(tmp_path: Path) -> None:
    huge = tmp_path / "huge.json"
    with huge.open("wb") as file:  # 1 GiB on paper, nothing on disk
        file.truncate(1024 ** 3)
    with pytest.raises(InvalidInput, match=r"huge.json: larger than 64 MiB"):
        read_json(huge, limits=ALERT)


def test_yaml_alias_bomb_is_refused_at_once() -> None:
    with pytest.raises(InvalidInput, match="aliases expand to more than 100,000 values"):
        parse_yaml(ALIAS_BOMB)


def test_yaml_alias_inside_its_own_anchor_is_refused() -> None:
    with pytest.raises(InvalidInput, match="a value that contains it"):
        parse_yaml("a: &loop [1, *loop]")


def test_yaml_aliases_and_merge_keys_within_the_limit_still_work() -> None:
    data = parse_yaml("base: &base {timeout_s: 5}\nprod: {<<: *base, cloud: commercial}")
    assert data["prod"] == {"timeout_s": 5, "cloud": "commercial"}


def test_yaml_nested_5000_deep_is_refused_not_recursion_error() -> None:
    with pytest.raises(InvalidInput, match="nested deeper than 64 levels"):
        parse_yaml(deep_yaml(5000))


def test_a_dict_handed_over_already_parsed_is_checked_without_recursion() -> None:
    value: Any = []
    for _ in range(5000):
        value = [value]
    with pytest.raises(InvalidInput, match="nested deeper"):
        check_nesting({"alert": value}, what="alert")


# --- the config file ---------------------------------------------------------------------


def test_config_yaml_syntax_error_names_the_line_not_the_secret(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(f"tenant_id: t\nclient_id: c\nclient_secret: '{SECRET}\n", "utf-8")
    with pytest.raises(ConfigError) as caught:
        read_config_file(config)
    assert "line 4" in caught.value.message or "line 3" in caught.value.message
    assert SECRET not in caught.value.message and SECRET[:8] not in caught.value.message


def test_config_secret_on_a_line_with_a_mapping_error_is_not_printed(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(f"tenant_id: t\nclient_secret: {SECRET}: oops\n", "utf-8")
    with pytest.raises(ConfigError) as caught:
        read_config_file(config)
    assert "line 2, column" in caught.value.message
    assert SECRET not in caught.value.message


def test_config_alias_bomb_is_a_config_error_at_once(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("tenant_id: t\nclient_id: c\nclient_secret: x\n"
                      + ALIAS_BOMB.replace("a:", "z_a:", 1), "utf-8")
    with pytest.raises(ConfigError, match="alias bomb"):
        read_config_file(config)


def test_config_json_nested_deep_is_a_config_error(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text('{"tenant_id": "t", "x": ' + DEEP_JSON + "}", "utf-8")
    with pytest.raises(ConfigError, match="nested deeper"):
        read_config_file(config)


def test_config_dict_from_a_platform_nested_deep_is_a_config_error() -> None:
    value: Any = {}
    for _ in range(2000):
        value = {"x": value}
    with pytest.raises(ConfigError, match="nested deeper"):
        load_settings({"tenant_id": "t", "client_id": "c", "client_secret": "s",
                       "rate_limit": value})


def test_config_object_variable_nested_deep_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="MDE_RATE_LIMIT"):
        load_settings({"tenant_id": "t", "client_id": "c", "client_secret": "s"},
                      environ={"MDE_RATE_LIMIT": DEEP_JSON})


# --- playbooks and the alert formats table -----------------------------------------------


PLAYBOOK = textwrap.dedent("""\
    name: bomb
    trigger: manual
    inputs:
      domain: {type: string, required: true}
    steps:
      - id: look
        action: get_machines_for_domain
        params:
          domain: {expr: inputs.domain}
    """)


def test_playbook_alias_bomb_in_params_is_refused_at_load(tmp_path: Path) -> None:
    playbook = tmp_path / "bomb.yaml"
    playbook.write_text(PLAYBOOK + "      junk:\n" + textwrap.indent(ALIAS_BOMB, " " * 8),
                        "utf-8")
    with pytest.raises(PlaybookError, match=r"bomb\.yaml: its aliases expand"):
        load_playbook(playbook)


def test_playbook_alias_bomb_in_an_input_default_is_refused_at_load(tmp_path: Path) -> None:
    playbook = tmp_path / "bomb.yaml"
    playbook.write_text("bombs:\n" + textwrap.indent(ALIAS_BOMB, "  ") + PLAYBOOK.replace(
        "domain: {type: string, required: true}",
        "domain: {type: string, required: true}\n  extra: {type: array, default: *i}"), "utf-8")
    with pytest.raises(PlaybookError, match=r"bomb\.yaml: its aliases expand"):
        load_playbook(playbook)


def test_playbook_yaml_error_still_names_its_step(tmp_path: Path) -> None:
    playbook = tmp_path / "broken.yaml"
    playbook.write_text(PLAYBOOK.replace("{expr: inputs.domain}", "{expr: inputs.domain"),
                        "utf-8")
    with pytest.raises(PlaybookError, match=r"line \d+, column \d+ \(in step 'look'\): "
                                            "not valid YAML"):
        load_playbook(playbook)


def test_alert_formats_alias_bomb_is_a_config_error(tmp_path: Path) -> None:
    formats = tmp_path / "formats.yaml"
    formats.write_text(ALIAS_BOMB + "formats: []\n", "utf-8")
    with pytest.raises(ConfigError, match=r"formats\.yaml: its aliases expand"):
        alert_formats(formats)


def test_a_large_playbook_is_refused_by_size(tmp_path: Path) -> None:
    playbook = tmp_path / "large.yaml"
    playbook.write_text(PLAYBOOK + "# " + "x" * DOCUMENT.max_bytes + "\n", "utf-8")
    with pytest.raises(PlaybookError, match="larger than 1 MiB"):
        load_playbook(playbook)


# --- alerts ------------------------------------------------------------------------------


def test_ndjson_line_100000_deep_is_invalid_input_naming_the_line() -> None:
    text = '{"indicators": ["evil.example"]}\n' + DEEP_JSON + "\n"
    with pytest.raises(InvalidInput, match=r"alerts\.ndjson: line 2: nested deeper"):
        read_alerts(text, "alerts.ndjson")


def test_cli_alert_nested_deep_in_an_unrelated_field_exits_2(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    alert = tmp_path / "deep.json"
    alert.write_text('{"indicators": ["evil.example"], "vm": ' + "[" * 800 + "]" * 800 + "}",
                     "utf-8")
    assert cli_main(["playbook", "run", str(ENRICH_ALERT), "--alert", str(alert)]) == 2
    assert f"{alert}: nested deeper than 64 levels" in capsys.readouterr().err


def test_run_params_5000_deep_is_an_invalid_input_envelope(
        capsys: pytest.CaptureFixture[str]) -> None:
    params = '{"domain": ' + "[" * 5000 + "]" * 5000 + "}"
    status = cli_main(["run", "get_machines_for_domain", "--params", params, "--format", "json"])
    envelope = json.loads(capsys.readouterr().out)[0]
    assert status == 2
    assert envelope["error"]["code"] == "invalid_input"
    assert "nested deeper" in envelope["error"]["message"]


# --- alerts with nulls and odd data: the alert's problem, never the playbook's -----------


SAMPLES = ROOT / "playbooks" / "samples"
# sample -> the path of the list that may hold a null
NULL_IN_LISTS = {"plain_indicators.json": ("indicators",),
                 "graph_security_alert_v2.json": ("evidence",),
                 "ocsf_detection_finding.json": ("observables",),
                 "sentinel_incident.json": ("object", "properties", "relatedEntities"),
                 "defender_alert.json": ("evidence",)}


def sample(name: str) -> Any:
    return json.loads((SAMPLES / name).read_text("utf-8"))


@pytest.mark.parametrize("name", sorted(NULL_IN_LISTS))
def test_a_null_where_an_alert_lists_things_is_skipped(name: str) -> None:
    alert = sample(name)
    expected = alert_formats().extract(alert, name)
    node = alert
    for key in NULL_IN_LISTS[name]:
        node = node[key]
    node.insert(0, None)
    node.append(None)
    assert alert_formats().extract(alert, name) == expected


def test_a_rule_meeting_odd_data_is_a_warning_about_the_alert() -> None:
    alert = sample("defender_alert.json")
    alert["relatedUser"]["userName"] = 5  # a rule joins it with the domain name
    extracted = alert_formats().extract(alert, "alert.json")
    assert extracted["indicators"] == alert_formats().extract(
        sample("defender_alert.json"), "alert.json")["indicators"]
    warning = next(w for w in extracted["warnings"] if w["code"] == "unreadable_field")
    assert "defender_alert: relatedUser" in warning["message"]


def test_a_file_name_that_is_a_list_does_not_crash_the_extraction() -> None:
    alert = sample("defender_alert.json")
    for evidence in alert["evidence"]:
        if evidence.get("fileName"):
            evidence["fileName"] = ["a.exe", "b.exe"]
    assert alert_formats().extract(alert, "alert.json")["indicators"]


def test_cli_playbook_on_an_alert_with_nulls_enriches_it(
        config_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    alert = sample("graph_security_alert_v2.json")
    alert["evidence"][1:1] = [None, None]
    path = tmp_path / "alert.json"
    path.write_text(json.dumps(alert), "utf-8")
    status = cli_main(["playbook", "run", str(ENRICH_ALERT), "--alert", str(path),
                       "--config", str(config_file), "--format", "json"])
    assert status == 0
    assert json.loads(capsys.readouterr().out)["enrichment"]["indicators"]


@pytest.mark.parametrize("expression", ["(" * 5000 + "alert" + ")" * 5000,
                                        "!" * 5000 + "alert", "alert" + " | alert" * 5000])
def test_an_expression_nested_thousands_deep_is_refused_at_load(
        tmp_path: Path, expression: str) -> None:
    playbook = tmp_path / "deep.yaml"
    playbook.write_text(PLAYBOOK.replace("{expr: inputs.domain}",
                                         json.dumps({"expr": expression})), "utf-8")
    with pytest.raises(PlaybookError, match="nested"):
        load_playbook(playbook)
