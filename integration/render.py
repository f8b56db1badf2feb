"""Envelopes for people (table, markdown) and for programs (JSON)."""

from __future__ import annotations

import json
from typing import Any

TABLE_COLUMNS = (("hostname", "Host"), ("os", "OS"), ("risk", "Risk"), ("health", "Health"),
                 ("last_seen", "Last seen (UTC)"), ("ip", "IP"), ("group", "Group"))


def render(envelopes: list[dict[str, Any]], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(envelopes, indent=2, ensure_ascii=False)
    if fmt == "markdown":
        return "\n\n".join(markdown_block(envelope) for envelope in envelopes)
    return "\n\n".join(table_block(envelope) for envelope in envelopes)


def headline(envelope: dict[str, Any]) -> str:
    if envelope.get("action") == "test_connectivity":
        return _connectivity_line(envelope)
    indicator = envelope.get("indicator", {})
    shown = indicator.get("value") or repr(indicator.get("original"))
    kind = indicator.get("type", "indicator")
    if indicator.get("sha1"):
        shown += f" (SHA-1 {indicator['sha1']})"
    summary = envelope.get("summary", {})
    status = envelope["status"]
    if status == "error":
        error = envelope["error"]
        return f"{kind} {shown}: error {error['code']}: {error['message']}"
    if status == "not_found":
        result = "no machines"
    else:
        count = summary.get("total_machines", len(envelope.get("machines", [])))
        result = f"{count} machine{'s' if count != 1 else ''}"
        if summary.get("truncated"):
            result += " (Defender's 500-machine cap reached: there may be more)"
    source = "from cache" if summary.get("cached") else f"{summary.get('api_calls', 0)} API call(s)"
    return f"{kind} {shown}: {result} [{source}]"


def machine_row(machine: dict[str, Any]) -> dict[str, str]:
    os_info = machine.get("os", {})
    groups = machine.get("groups", [])
    return {
        "hostname": machine.get("hostname") or machine.get("uid", ""),
        "os": " ".join(str(part) for part in (os_info.get("name"), os_info.get("version"))
                       if part),
        "risk": machine.get("risk_level", "-"),
        "health": machine.get("mde", {}).get("health_status", "-"),
        "last_seen": (machine.get("last_seen_time_dt") or "-")[:19].replace("T", " "),
        "ip": machine.get("ip", "-"),
        "group": groups[0].get("name", groups[0]["uid"]) if groups else "-",
    }


def table_block(envelope: dict[str, Any]) -> str:
    lines = [headline(envelope), *_warning_lines(envelope)]
    rows = [machine_row(machine) for machine in envelope.get("machines", [])]
    if rows:
        lines.append(text_table([title for _, title in TABLE_COLUMNS],
                                [[row[key] for key, _ in TABLE_COLUMNS] for row in rows]))
    return "\n".join(lines)


def text_table(titles: list[str], rows: list[list[str]]) -> str:
    """Columns padded to their widest cell, under a dashed rule."""
    widths = [max(len(cell) for cell in column) for column in zip(titles, *rows, strict=True)]
    lines = [titles, ["-" * width for width in widths], *rows]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True))
                     .rstrip() for line in lines)


def defang(value: str) -> str:
    """A domain made unclickable for a case note: evil.example -> evil[.]example."""
    return value.replace(".", "[.]")


def markdown_block(envelope: dict[str, Any]) -> str:
    indicator = envelope.get("indicator", {})
    value = indicator.get("value") or str(indicator.get("original"))
    shown = defang(value) if indicator.get("type") == "domain" else value
    title = f"#### Defender machines for {indicator.get('type', 'indicator')} `{shown}`"
    lines = [title, "", headline(envelope).replace(value, shown, 1).replace("|", "\\|"),
             *(f"> {line}" for line in _warning_lines(envelope))]
    rows = [machine_row(machine) for machine in envelope.get("machines", [])]
    if rows:
        lines += ["", "| " + " | ".join(title for _, title in TABLE_COLUMNS) + " |",
                  "|" + "---|" * len(TABLE_COLUMNS)]
        for machine, row in zip(envelope["machines"], rows, strict=True):
            portal = machine.get("mde", {}).get("portal_url")
            host = _cell(row["hostname"])
            row["hostname"] = f"[{host}]({portal})" if portal else host
            lines.append("| " + " | ".join(
                row[key] if key == "hostname" else _cell(row[key]) for key, _ in TABLE_COLUMNS)
                + " |")
    return "\n".join(lines)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _warning_lines(envelope: dict[str, Any]) -> list[str]:
    warnings = list(envelope.get("warnings", []))
    warnings += envelope.get("connectivity", {}).get("warnings", [])
    return [f"warning: {warning}" for warning in warnings]


def _connectivity_line(envelope: dict[str, Any]) -> str:
    """test_connectivity's result: it has no indicator and no machines."""
    details = envelope.get("connectivity", {})
    where = f" to {details['api_base']}" if details.get("api_base") else ""
    if envelope["status"] == "error":
        error = envelope["error"]
        return f"connectivity{where}: error {error['code']}: {error['message']}"
    roles = ", ".join(details.get("roles", [])) or "none"
    return f"connectivity{where}: ok (token roles: {roles})"
