"""A sweep's report for people (table, markdown) and for OCSF readers (one Detection Finding
per indicator with new machines)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from integration import __version__
from integration.render import defang, markdown_text, printable, terminal_safe, text_table

OCSF_VERSION = "1.8.0"
PROVIDER = "Microsoft Defender for Endpoint"


def _summary_line(report: dict[str, Any]) -> str:
    s = report["summary"]
    return (f"{report['iocs']} indicator(s) swept over {report['lookback']}: {s['hits']} "
            f"touched, {s['new_machines']} new machine(s), {s['gone_machines']} gone; "
            f"{s['skipped']} skipped; {s['hunting_calls']} hunting and {s['api_calls']} "
            f"machines API call(s)" + (f"; {s['errors']} failed" if s["errors"] else ""))


def _rows(report: dict[str, Any], escape: Callable[[Any], str],
          code: Callable[[str], str]) -> list[list[str]]:
    """One row per hit; host names (from outside) through `escape`, the indicator (validated:
    letters, digits, '-', '_', '.') through `code`."""
    rows = []
    for hit in report["hits"]:
        indicator = hit["indicator"]
        new = set(hit["new_machines"])
        names = [escape(m.get("hostname") or m.get("uid")) + (" (new)" if m.get("uid") in new
                                                               else "")
                 for m in hit["machines"]]
        shown = ", ".join(names[:4]) + (f", ... ({len(names) - 4} more)" if len(names) > 4
                                        else "")
        rows.append([indicator["type"], code(defang(indicator["value"])),
                     str(len(hit["machines"])), str(len(new)), shown])
    return rows


def render_table(report: dict[str, Any]) -> str:
    lines = [_summary_line(report)]
    rows = _rows(report, printable, str)
    if rows:
        lines += ["", text_table(["type", "indicator", "machines", "new", "hosts"], rows)]
    lines += [f"gone: {defang(g['indicator']['value'])}: "
              f"{', '.join(printable(m) for m in g['machines'])}" for g in report["gone"]]
    lines += [f"warning: {printable(w)}" for w in report["warnings"]]
    lines += [f"failed: {defang(e['indicator']['value'])}: {e['error']['code']}: "
              f"{printable(e['error']['message'])}" for e in report["errors"]]
    return terminal_safe("\n".join(lines))


def render_markdown(report: dict[str, Any]) -> str:
    lines = ["### IOC sweep", "", _summary_line(report)]
    rows = _rows(report, markdown_text, lambda value: f"`{value}`")
    if rows:
        lines += ["", "| type | indicator | machines | new | hosts |", "|---|---|---|---|---|"]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
    if report["gone"]:
        lines += ["", "**Gone since the last sweep**", ""]
        # machine ids come from hunting rows (outside data): escaped like host names
        lines += [f"- `{defang(g['indicator']['value'])}`: "
                  f"{', '.join(markdown_text(m) for m in g['machines'])}"
                  for g in report["gone"]]
    lines += [f"\n> warning: {markdown_text(w)}" for w in report["warnings"]]
    lines += [f"\n> failed: `{defang(e['indicator']['value'])}`: "
              f"{markdown_text(e['error']['message'])}" for e in report["errors"]]
    return "\n".join(lines)


def render_ocsf(report: dict[str, Any], *, now_ms: int | None = None) -> list[dict[str, Any]]:
    """One OCSF 1.8.0 Detection Finding (class 2004, activity Create) per indicator that
    touched machines new since the last sweep."""
    created = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    findings = []
    for hit in report["hits"]:
        if not hit["new_machines"]:
            continue
        indicator = hit["indicator"]
        new = set(hit["new_machines"])
        devices = [{k: v for k, v in m.items() if k != "mde"} for m in hit["machines"]
                   if m.get("uid") in new]
        observable_type = (1, "Hostname") if indicator["type"] == "domain" else (8, "Hash")
        findings.append({
            "class_uid": 2004, "class_name": "Detection Finding",
            "category_uid": 2, "category_name": "Findings",
            "activity_id": 1, "activity_name": "Create", "type_uid": 200401,
            "type_name": "Detection Finding: Create",
            "severity_id": 3, "severity": "Medium", "status_id": 1, "status": "New",
            "time": created,
            "message": f"{len(new)} machine(s) new since the last sweep touched "
                       f"{indicator['type']} {indicator['value']}",
            "finding_info": {
                "uid": f"mde-enrich-sweep:{indicator['type']}:{indicator['value']}:{created}",
                "title": f"IOC sweep hit: {indicator['value']}",
                "desc": "A threat-intel indicator was touched by machines in "
                        f"{PROVIDER} that earlier sweeps had not seen",
                "created_time": created,
                "types": ["IOC sweep"],
            },
            "observables": [{"name": "indicator", "type_id": observable_type[0],
                             "type": observable_type[1], "value": indicator["value"]}],
            "evidences": [{"device": device} for device in devices],
            # the devices carry *_dt times: the datetime profile says so
            "metadata": {"version": OCSF_VERSION, "profiles": ["datetime"],
                         "product": {"name": "mde-enrich", "vendor_name": "mde-enrich",
                                     "version": __version__}},
            "unmapped": {"sources": indicator.get("sources", []),
                         "new_machines": hit["new_machines"]},
        })
    return findings
