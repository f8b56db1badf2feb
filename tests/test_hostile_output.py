"""Output that cannot attack its reader: each hostile value (terminal escapes, BEL, CR, NUL,
bidi overrides, markdown that breaks out of a link, HTML, images) fed through every format,
from a machine Defender sends (the emulator serves it) and from an alert's file names.

Tables are checked for raw control characters; markdown is rendered by markdown-it-py
(CommonMark, raw HTML on, as platforms render case notes) and its tokens checked: the only
links are our own portal links, and there is no image and no HTML at all."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from markdown_it import MarkdownIt

from integration.cli import main as cli_main
from integration.emulator.seed import KNOWN_FILE
from integration.render import render

ROOT = Path(__file__).resolve().parent.parent
ENRICH_ALERT = ROOT / "playbooks" / "enrich-alert.yaml"
HOSTILE_DOMAIN = "hostile.example"
HOSTILE: dict[str, str] = {
    "osc_title": "\x1b]0;you have been pwned\x07",
    "screen_clear": "\x1b[2J\x1b[Hhost",
    "colours": "\x1b[31;1mred\x1b[0m",
    "bel_cr_nul": "a\x07b\rc\x00d",
    "c1_csi": "x\x9b2Jy",
    "bidi_override": "invoice\u202egpj.exe",
    "link_breakout": "a](javascript:alert(document.cookie))[b",
    "html": "<img src=x onerror=alert(document.domain)>",
    "image": "![x](https://attacker.example/pixel.png)",
    "autolink": "<https://attacker.example/a>",
    "table_cell": "a | b\n| c",
    "emphasis_code": "**bold** `code` ~~x~~ _i_",
}
CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def hostile_machine(index: int, value: str) -> dict[str, Any]:
    """Every text field a table or note shows holds the value; the group has a name and no
    id (rbacGroupName without rbacGroupId), which once crashed the table."""
    return {"id": f"{index:040x}", "computerDnsName": value, "osPlatform": value,
            "version": value, "riskScore": value, "healthStatus": value,
            "rbacGroupName": value, "lastSeen": "2025-06-01T08:00:00Z"}


@pytest.fixture
def hostile_emulator(emulator: Any) -> Any:
    machines = [hostile_machine(index, value) for index, value in enumerate(HOSTILE.values(), 1)]
    emulator.admin.load_dataset({
        "machines": machines,
        "domains": {HOSTILE_DOMAIN: [machine["id"] for machine in machines]},
        "files": [{**{kind: KNOWN_FILE[kind] for kind in ("sha1", "sha256")},
                   "machines": [machines[0]["id"]]}]})
    return emulator


def lookup(config_file: Path, fmt: str, capsys: pytest.CaptureFixture[str]) -> str:
    cli_main(["domain", HOSTILE_DOMAIN, "--config", str(config_file), "--format", fmt])
    return capsys.readouterr().out


def assert_no_raw_control_characters(text: str) -> None:
    found = CONTROL.findall(text)
    assert not found, f"raw control characters reached the output: {found!r}"


def assert_markdown_is_inert(text: str, allowed_link_prefix: str) -> None:
    assert_no_raw_control_characters(text)
    tokens = MarkdownIt("commonmark").enable("table").parse(text)
    inline = [child for token in tokens for child in (token.children or [])]
    kinds = {token.type for token in [*tokens, *inline]}
    assert "image" not in kinds
    assert not kinds & {"html_inline", "html_block"}
    links = [token.attrGet("href") for token in inline if token.type == "link_open"]
    assert all(str(href).startswith(allowed_link_prefix) for href in links), links
    html = MarkdownIt("commonmark").enable("table").render(text)
    assert "<img" not in html and "javascript:" not in html.replace("javascript:alert", "")
    assert "onerror" not in html or "&lt;img" in html


def test_machine_table_shows_every_control_character_escaped(
        hostile_emulator: Any, config_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = lookup(config_file, "table", capsys)
    assert_no_raw_control_characters(out)
    assert "\\x1b]0;you have been pwned\\x07" in out
    assert "invoice\\u202egpj.exe" in out
    assert "rbacGroupName" not in out and "KeyError" not in out


def test_machine_markdown_links_only_to_the_portal(
        hostile_emulator: Any, config_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = lookup(config_file, "markdown", capsys)
    assert_markdown_is_inert(out, "https://security.microsoft.com/machines/")
    # The link's text is still the host name, escaped: nothing an analyst must see is lost.
    assert "a\\]\\(javascript:alert\\(document.cookie\\)\\)\\[b" in out
    assert out.count("](https://security.microsoft.com/machines/") == len(HOSTILE)


def test_machine_json_keeps_every_value_exactly(
        hostile_emulator: Any, config_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    envelope = json.loads(lookup(config_file, "json", capsys))[0]
    assert {machine["hostname"] for machine in envelope["machines"]} == \
        {value.strip() for value in HOSTILE.values()}


def test_every_format_of_render_survives_a_group_without_an_id() -> None:
    envelope = {"action": "get_machines_for_domain", "status": "success",
                "indicator": {"type": "domain", "value": "x.example", "original": "x.example"},
                "machines": [{"uid": "1", "groups": [{"name": "Servers"}]}],
                "summary": {"total_machines": 1, "api_calls": 1}}
    for fmt in ("json", "table", "markdown"):
        assert "Servers" in render([envelope], fmt)


def test_error_messages_from_upstream_are_escaped_in_markdown() -> None:
    envelope = {"action": "get_machines_for_domain", "status": "error",
                "indicator": {"type": "domain", "value": "x.example", "original": "x.example"},
                "error": {"code": "upstream_error", "retryable": False,
                          "message": "Defender said: " + HOSTILE["image"] + HOSTILE["html"]},
                "summary": {"api_calls": 1}}
    assert_markdown_is_inert(render([envelope], "markdown"), "https://")
    assert_no_raw_control_characters(render([{**envelope, "error": {
        **envelope["error"], "message": HOSTILE["osc_title"]}}], "table"))


def hostile_alert(tmp_path: Path) -> Path:
    """A Defender alert whose evidence names files with every hostile value."""
    sample = json.loads((ROOT / "playbooks" / "samples" / "defender_alert.json").read_text())
    evidence = [{"entityType": "File", "sha1": KNOWN_FILE["sha1"], "fileName": value,
                 "filePath": value} for value in HOSTILE.values()]
    evidence.append({"entityType": "Url", "url": f"https://{HOSTILE_DOMAIN}/x"})
    path = tmp_path / "hostile-alert.json"
    path.write_text(json.dumps({**sample, "title": HOSTILE["link_breakout"],
                                "evidence": evidence}), "utf-8")
    return path


@pytest.mark.parametrize("fmt", ["table", "markdown", "json", "ocsf"])
def test_playbook_output_with_hostile_file_names_is_inert(
        fmt: str, hostile_emulator: Any, config_file: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    cli_main(["playbook", "run", str(ENRICH_ALERT), "--alert", str(hostile_alert(tmp_path)),
              "--config", str(config_file), "--format", fmt])
    out = capsys.readouterr().out
    if fmt == "table":
        assert_no_raw_control_characters(out)
    elif fmt == "markdown":
        assert_markdown_is_inert(out, "https://security.microsoft.com/machines/")
        assert "&lt;img src=x onerror" in out  # shown, as text
    else:
        json.loads(out)  # JSON escapes control characters itself; it must stay JSON
        assert "\x1b" not in out and "\x00" not in out


def test_case_note_of_the_analyst_playbook_is_inert(
        hostile_emulator: Any, config_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cli_main(["playbook", "run", str(ROOT / "playbooks" / "analyst-lookup.yaml"),
              "--indicator", HOSTILE_DOMAIN, "--config", str(config_file), "--format", "json"])
    note = json.loads(capsys.readouterr().out)["enrichment"]["note"]
    assert HOSTILE_DOMAIN.replace(".", "[.]") in note
    assert_markdown_is_inert(note, "https://security.microsoft.com/machines/")
