"""Envelopes for people (table, markdown) and for programs (JSON).

Every value in them comes from outside (Defender's machine fields, alert fields, hunting
rows, service error messages), so none may attack its reader: in a table, control
characters (terminal escapes, BEL, CR, NUL, bidi overrides) are shown escaped; in markdown,
link, image, emphasis and HTML syntax is escaped and only our own https portal links link.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import quote

TABLE_COLUMNS = (("hostname", "Host"), ("os", "OS"), ("risk", "Risk"), ("health", "Health"),
                 ("last_seen", "Last seen (UTC)"), ("ip", "IP"), ("group", "Group"))
# Shown only when the lookup asked for the contact timeline (`--contact`).
CONTACT_COLUMNS = (("first_contact", "First contact (UTC)"), ("last_contact", "Last contact (UTC)"),
                   ("contacts", "Count"), ("process", "Process"))
HUNTING_ONLY_NOTE = " (hunting only)"


# C0 and C1 controls, DEL, and the Unicode bidi and line/paragraph separators: each can
# move the cursor, recolour, retitle or reorder what an analyst sees.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_CONTROL_BUT_NEWLINE = re.compile(
    "[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]")
# CommonMark's inline syntax: backslash, code, emphasis, links and images, tables, strike.
_MARKDOWN = re.compile(r"([\\`*_\[\]()!|~])")
_HTML = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"}


def printable(text: Any) -> str:
    """A value for a terminal: every control character shown as an escape (`\\x1b`)."""
    return _CONTROL.sub(_escaped, str(text))


def terminal_safe(output: str) -> str:
    """Whole output for a terminal: our own newlines kept, every other control escaped."""
    return _CONTROL_BUT_NEWLINE.sub(_escaped, output)


def markdown_text(text: Any) -> str:
    """A value as literal markdown text on one line: no link, image, emphasis, code span,
    table cell break or HTML can come out of it, and no control character."""
    shown = _CONTROL.sub(lambda found: " " if found.group() in "\r\n\t" else "",
                         str(text))
    shown = _MARKDOWN.sub(r"\\\1", shown)
    return "".join(_HTML.get(char, char) for char in shown) if _has_html(shown) else shown


def markdown_link(label: str, url: Any) -> str:
    """`[label](url)` for an https URL we built (a portal page); any other URL is not
    linked. `label` is markdown already escaped."""
    if not isinstance(url, str) or not url.startswith("https://"):
        return label
    return f"[{label}]({quote(url, safe=':/?#=&%-._~')})"


def _escaped(found: re.Match[str]) -> str:
    code = ord(found.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _has_html(text: str) -> bool:
    return any(char in text for char in _HTML)


def render(envelopes: list[dict[str, Any]], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(envelopes, indent=2, ensure_ascii=False)
    if fmt == "markdown":
        return "\n\n".join(markdown_block(envelope) for envelope in envelopes)
    return terminal_safe("\n\n".join(table_block(envelope) for envelope in envelopes))


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
    """The table's cells, as text straight from the artifact (each renderer escapes them)."""
    os_info = _mapping(machine.get("os"))
    groups = [group for group in machine.get("groups") or [] if isinstance(group, dict)]
    mde = _mapping(machine.get("mde"))
    return {**_contact_cells(mde.get("contact")),
        "hostname": str(machine.get("hostname") or machine.get("uid", "")),
        "os": " ".join(str(part) for part in (os_info.get("name"), os_info.get("version"))
                       if part) or "-",
        "risk": str(machine.get("risk_level", "-")),
        "health": str(mde.get("health_status", "-")),
        "last_seen": _time_cell(machine.get("last_seen_time_dt")),
        "ip": str(machine.get("ip", "-")),
        # A group Defender named without an id (rbacGroupName alone) has no uid.
        "group": str(groups[0].get("name") or groups[0].get("uid") or "-") if groups else "-",
    }


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _time_cell(value: Any) -> str:
    return str(value)[:19].replace("T", " ") if value else "-"


def _contact_cells(contact: Any) -> dict[str, str]:
    if not contact or not isinstance(contact, dict):
        return {"first_contact": "-", "last_contact": "-", "contacts": "-", "process": "-"}
    process = _mapping(contact.get("process"))
    command_line = process.get("command_line")
    return {
        "first_contact": _time_cell(contact.get("first_seen_time_dt")),
        "last_contact": _time_cell(contact.get("last_seen_time_dt")),
        "contacts": str(contact.get("count", "-")),
        # The name, and the command line that tells what it did (cut: tables stay readable).
        "process": " ".join(str(part) for part in (
            process.get("name"), _short(command_line if isinstance(command_line, str)
                                        else None, 60)) if part) or "-",
    }


def _short(text: str | None, limit: int) -> str | None:
    return text if text is None or len(text) <= limit else text[:limit - 1] + "…"


def _host(machine: dict[str, Any], host: str) -> str:
    contact = _mapping(_mapping(machine.get("mde")).get("contact"))
    hunting_only = contact.get("source") == "hunting_only"
    return host + HUNTING_ONLY_NOTE if hunting_only else host


def table_block(envelope: dict[str, Any]) -> str:
    lines = [printable(headline(envelope)), *map(printable, _warning_lines(envelope))]
    columns = columns_for(envelope)
    machines = envelope.get("machines", [])
    rows = [{key: printable(cell) for key, cell in machine_row(machine).items()}
            for machine in machines]
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
        return "\n".join(["#### Defender connectivity", "", markdown_text(headline(envelope)),
                          *(f"> {markdown_text(line)}" for line in _warning_lines(envelope))])
    indicator = envelope.get("indicator", {})
    value = indicator.get("value") or str(indicator.get("original"))
    shown = defang(value) if indicator.get("type") == "domain" else value
    # A code span cannot be escaped from inside: no backtick may reach it.
    code = printable(shown).replace("`", "'")
    title = f"#### Defender machines for {markdown_text(indicator.get('type', 'indicator'))} " \
            f"`{code}`"
    lines = [title, "", markdown_text(headline(envelope).replace(value, shown, 1)),
             *(f"> {markdown_text(line)}" for line in _warning_lines(envelope))]
    rows = [machine_row(machine) for machine in envelope.get("machines", [])]
    columns = columns_for(envelope)
    if rows:
        lines += ["", "| " + " | ".join(title for _, title in columns) + " |",
                  "|" + "---|" * len(columns)]
        for machine, row in zip(envelope["machines"], rows, strict=True):
            cells = {key: markdown_text(cell) for key, cell in row.items()}
            portal = _mapping(machine.get("mde")).get("portal_url")
            cells["hostname"] = _host(machine, markdown_link(cells["hostname"], portal))
            lines.append("| " + " | ".join(cells[key] for key, _ in columns) + " |")
    return "\n".join(lines)


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
