"""Envelopes for people (table, markdown) and for programs (JSON)."""

from __future__ import annotations

import json
from typing import Any

TABLE_COLUMNS = (("hostname", "Host"), ("os", "OS"), ("risk", "Risk"), ("health", "Health"),
                 ("last_seen", "Last seen (UTC)"), ("ip", "IP"), ("group", "Group"))
# Shown only when the lookup asked for the contact timeline (`--contact`).
CONTACT_COLUMNS = (("first_contact", "First contact (UTC)"), ("last_contact", "Last contact (UTC)"),
                   ("contacts", "Count"), ("process", "Process"))
HUNTING_ONLY_NOTE = " (hunting only)"


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
    if summary.get("hunting_calls") is not None:
        source += f"; contact: {summary['hunting_calls']} hunting call(s) for the batch"
    return f"{kind} {shown}: {result}{_as_whom(summary.get('principal'))} [{source}]"


def _as_whom(principal: Any) -> str:
    """Whose device groups a user's answer covers; an application's answer says nothing."""
    if not isinstance(principal, dict) or principal.get("type") != "user":
        return ""
    return f" as {principal.get('name') or principal.get('id')} (their device groups only)"


def columns_for(envelope: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    """The table's columns: the contact columns only when some machine has a contact."""
    if any("contact" in machine.get("mde", {}) for machine in envelope.get("machines", [])):
        return TABLE_COLUMNS + CONTACT_COLUMNS
    return TABLE_COLUMNS


def machine_row(machine: dict[str, Any]) -> dict[str, str]:
    os_info = machine.get("os", {})
    groups = machine.get("groups", [])
    return {**_contact_cells(machine.get("mde", {}).get("contact")),
        "hostname": machine.get("hostname") or machine.get("uid", ""),
        "os": " ".join(str(part) for part in (os_info.get("name"), os_info.get("version"))
                       if part) or "-",
        "risk": machine.get("risk_level", "-"),
        "health": machine.get("mde", {}).get("health_status", "-"),
        "last_seen": (machine.get("last_seen_time_dt") or "-")[:19].replace("T", " "),
        "ip": machine.get("ip", "-"),
        "group": groups[0].get("name", groups[0]["uid"]) if groups else "-",
    }


def _contact_cells(contact: dict[str, Any] | None) -> dict[str, str]:
    if not contact:
        return {"first_contact": "-", "last_contact": "-", "contacts": "-", "process": "-"}
    process = contact.get("process", {})
    return {
        "first_contact": contact["first_seen_time_dt"][:19].replace("T", " "),
        "last_contact": contact["last_seen_time_dt"][:19].replace("T", " "),
        "contacts": str(contact["count"]),
        # The name, and the command line that tells what it did (cut: tables stay readable).
        "process": " ".join(part for part in (
            process.get("name"), _short(process.get("command_line"), 60)) if part) or "-",
    }


def _short(text: str | None, limit: int) -> str | None:
    return text if text is None or len(text) <= limit else text[:limit - 1] + "…"


def _host(machine: dict[str, Any], host: str) -> str:
    hunting_only = machine.get("mde", {}).get("contact", {}).get("source") == "hunting_only"
    return host + HUNTING_ONLY_NOTE if hunting_only else host


def table_block(envelope: dict[str, Any]) -> str:
    lines = [headline(envelope), *_warning_lines(envelope)]
    columns = columns_for(envelope)
    machines = envelope.get("machines", [])
    rows = [machine_row(machine) for machine in machines]
    for machine, row in zip(machines, rows, strict=True):
        row["hostname"] = _host(machine, row["hostname"])
    if rows:
        lines.append(text_table([title for _, title in columns],
                                [[row[key] for key, _ in columns] for row in rows]))
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
    if envelope.get("action") == "test_connectivity":
        return "\n".join(["#### Defender connectivity", "", headline(envelope),
                          *(f"> {line}" for line in _warning_lines(envelope))])
    indicator = envelope.get("indicator", {})
    value = indicator.get("value") or str(indicator.get("original"))
    shown = defang(value) if indicator.get("type") == "domain" else value
    title = f"#### Defender machines for {indicator.get('type', 'indicator')} `{shown}`"
    lines = [title, "", headline(envelope).replace(value, shown, 1).replace("|", "\\|"),
             *(f"> {line}" for line in _warning_lines(envelope))]
    rows = [machine_row(machine) for machine in envelope.get("machines", [])]
    columns = columns_for(envelope)
    if rows:
        lines += ["", "| " + " | ".join(title for _, title in columns) + " |",
                  "|" + "---|" * len(columns)]
        for machine, row in zip(envelope["machines"], rows, strict=True):
            portal = machine.get("mde", {}).get("portal_url")
            host = _cell(row["hostname"])
            row["hostname"] = _host(machine, f"[{host}]({portal})" if portal else host)
            lines.append("| " + " | ".join(
                row[key] if key == "hostname" else _cell(row[key]) for key, _ in columns)
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
    principal = details.get("principal") or {}
    if principal.get("type") == "user":
        scopes = ", ".join(details.get("scopes", [])) or "none"
        groups = details.get("device_groups", 0)
        return (f"connectivity{where}: ok{_as_whom(principal)} (scopes: {scopes}; "
                f"{groups} device group{'s' if groups != 1 else ''} visible)")
    roles = ", ".join(details.get("roles", [])) or "none"
    return f"connectivity{where}: ok (token roles: {roles})"
