"""The builtin steps: extract_indicators, deduplicate, merge_machines, set_field, render_note.

Each takes its rendered params and returns the step's result; only set_field writes to the
enrichment (and a step's `output`, which the engine handles). None of them touches the alert.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from integration.errors import InvalidInput
from integration.lookup.normalize import highest_risk
from integration.playbook.alerts import BAD_VERDICTS, HASH_PREFERENCE, AlertFormats, ExtractPolicy

OUTPUT_PATH = re.compile(r"^enrichment(\.[A-Za-z_][A-Za-z0-9_]*)*$")
RISK_UNKNOWN = "Unknown"


@dataclass
class StepContext:
    source: str  # the alert's file (or "-"), for messages
    formats: AlertFormats
    enrichment: dict[str, Any] = field(default_factory=dict)
    enricher: Callable[[], Any] | None = None  # the run's Enricher, built on first need
    internal_suffixes: tuple[str, ...] = ()  # the `internal_domain_suffixes` configuration


@dataclass(frozen=True)
class Builtin:
    run: Callable[[StepContext, dict[str, Any]], Any]
    required: frozenset[str]
    optional: frozenset[str] = frozenset()
    describe: str = ""


# --- extract_indicators / deduplicate ------------------------------------------------------


def extract_indicators(context: StepContext, params: dict[str, Any]) -> dict[str, Any]:
    policy = ExtractPolicy.from_params(params.get("trusted_publishers"),
                                       params.get("lookup_trusted"), context.internal_suffixes)
    return context.formats.extract(params["alert"], context.source, params.get("format"),
                                   policy)


def deduplicate(context: StepContext, params: dict[str, Any]) -> list[dict[str, Any]]:
    """One entry per domain and per file: a file's SHA-1, SHA-256 and MD5, when the alert
    ties them together, are one entry keyed by the best of them; sources are combined.
    Linear in the number of indicators: each identity key points at its group (union-find)."""
    parent: list[int] = []  # group index -> the group it was merged into (itself: a root)
    groups: list[list[dict[str, Any]]] = []
    owner: dict[str, int] = {}  # identity key -> a group that holds it

    def root(index: int) -> int:
        while parent[index] != index:
            parent[index] = parent[parent[index]]
            index = parent[index]
        return index

    for indicator in _list(params["indicators"], "indicators"):
        if not isinstance(indicator, dict):
            raise InvalidInput("param 'indicators' must hold indicator objects")
        mine = _identity_keys(indicator)
        hits = sorted({root(owner[key]) for key in mine if key in owner})
        if not hits:
            target = len(groups)
            parent.append(target)
            groups.append([])
        else:
            target = hits[0]  # the earliest group: output keeps first-appearance order
            for later in hits[1:]:  # this indicator ties two groups together
                groups[target] += groups[later]
                groups[later] = []
                parent[later] = target
        groups[target].append(indicator)
        for key in mine:
            owner[key] = target
    return [_summarize_group(items) for items in groups if items]


def _identity_keys(indicator: Mapping[str, Any]) -> set[str]:
    hashes = indicator.get("hashes") or {}
    if indicator.get("kind") == "file" and hashes:
        return {f"file:{value}" for value in hashes.values()}
    return {f"{indicator.get('kind')}:{indicator.get('value')}"}


def _summarize_group(items: list[dict[str, Any]]) -> dict[str, Any]:
    if items[0].get("kind") != "file":
        head = items[0]
        merged = {**{k: v for k, v in head.items() if k not in ("sources", "context")},
                  "sources": _unique(s for item in items for s in item.get("sources", []))}
        return _with_context(merged, items)
    hashes: dict[str, str] = {}
    originals: dict[str, str] = {}
    for item in items:
        for kind, value in (item.get("hashes") or {item["type"]: item["value"]}).items():
            hashes.setdefault(kind, value)
        if item["type"] not in originals:
            originals[item["type"]] = item.get("original", item["value"])
    best = next(kind for kind in HASH_PREFERENCE if kind in hashes)
    return _with_context({
        "kind": "file", "type": best, "value": hashes[best],
        "original": originals.get(best, hashes[best]),
        "sources": _unique(s for item in items for s in item.get("sources", [])),
        "hashes": {kind: hashes[kind] for kind in HASH_PREFERENCE if kind in hashes}}, items)


def _with_context(merged: dict[str, Any], items: list[dict[str, Any]]) -> dict[str, Any]:
    """One context from every mention: the first name, path, publisher... the alert gives,
    the gravest verdict (a file that one evidence calls malicious is malicious), all roles."""
    context: dict[str, Any] = {}
    for item in items:
        for key, value in (item.get("context") or {}).items():
            if key == "roles":
                context["roles"] = _unique([*context.get("roles", []), *value])
            elif key == "verdict":
                if context.get("verdict") not in BAD_VERDICTS or value == "malicious":
                    context["verdict"] = value
            else:
                context.setdefault(key, value)
    if context:
        merged["context"] = context
    return merged


# --- merge_machines -----------------------------------------------------------------------


def merge_machines(context: StepContext, params: dict[str, Any]) -> dict[str, Any]:
    """{indicators, envelopes, machines (one per uid, with related_indicators), skipped,
    summary}: what an analyst or a SOAR reads off an enriched alert. Each machine is written
    once: an envelope names its machines by `machine_uids` (schema version 2)."""
    envelopes = [e for e in _list(params["envelopes"], "envelopes") if isinstance(e, dict)]
    skipped = _list(params.get("skipped") or [], "skipped")
    machines: dict[str, dict[str, Any]] = {}
    named: list[dict[str, Any]] = []  # the envelopes, each naming its machines by uid
    for envelope in envelopes:
        related = _related(envelope)
        uids: list[str] = []
        for machine in envelope.get("machines", []):
            uid = str(machine.get("uid"))
            uids.append(uid)
            merged = machines.get(uid)
            if merged is None:  # a shallow copy: only related_indicators is added
                merged = machines[uid] = {**machine, "related_indicators": []}
            if related not in merged["related_indicators"]:
                merged["related_indicators"].append(related)
        named.append(_naming_machines(envelope, uids))
    given = params.get("indicators")
    indicators = _indicators_with_results(
        _list(given, "indicators") if given is not None else [], envelopes)
    result: dict[str, Any] = {
        "indicators": indicators,
        "envelopes": named,
        "machines": list(machines.values()),
        "skipped": skipped,
        "warnings": _list(params.get("warnings") or [], "warnings"),
        "summary": _summary(envelopes, list(machines.values()), indicators, skipped),
    }
    if params.get("format"):
        result["format"] = params["format"]
    return result


def _naming_machines(envelope: Mapping[str, Any], uids: list[str]) -> dict[str, Any]:
    """The envelope with `machine_uids` where its machines were (they are in `machines`)."""
    named = {key: value for key, value in envelope.items() if key != "machines"}
    if "machines" in envelope:
        named["machine_uids"] = uids
    return named


def _related(envelope: Mapping[str, Any]) -> dict[str, Any]:
    indicator = envelope.get("indicator", {})
    related = {"type": indicator.get("type"), "value": indicator.get("value")}
    if indicator.get("sha1"):
        related["sha1"] = indicator["sha1"]
    return related


def _file_identity(envelope: Mapping[str, Any]) -> str | None:
    indicator = envelope.get("indicator", {})
    identity = indicator.get("value") if indicator.get("type") == "sha1" else \
        indicator.get("sha1")
    return identity if isinstance(identity, str) else None


def _indicators_with_results(indicators: list[Any], envelopes: list[dict[str, Any]]
                             ) -> list[dict[str, Any]]:
    """Each indicator with its lookup's status; a SHA-256 or MD5 that resolved to a SHA-1
    also named in the alert is folded into that SHA-1's entry (they are one file)."""
    by_value: dict[Any, dict[str, Any]] = {}
    for envelope in envelopes:
        indicator = envelope.get("indicator", {})
        by_value.setdefault(indicator.get("value", indicator.get("original")), envelope)
    if not indicators:  # none given: describe what was looked up
        indicators = [{k: v for k, v in e.get("indicator", {}).items()} for e in envelopes]
    entries: list[dict[str, Any]] = []
    by_file: dict[str, dict[str, Any]] = {}
    for indicator in indicators:
        if not isinstance(indicator, dict):
            continue
        entry = dict(indicator)  # shallow: nested values are replaced, never changed
        answer = by_value.get(entry.get("value", entry.get("original")))
        if answer is not None:
            entry["status"] = answer["status"]
            entry["total_machines"] = answer["summary"]["total_machines"]
            if answer["status"] == "error":
                entry["error"] = answer["error"]["code"]
            sha1 = _file_identity(answer)
            if sha1:
                given = entry.get("hashes") or {entry.get("type"): entry.get("value")}
                entry["hashes"] = {**given, "sha1": sha1}
                if sha1 in by_file:
                    _fold(by_file[sha1], entry)
                    continue
                by_file[sha1] = entry
        else:
            entry["status"] = "not_looked_up"
        entries.append(entry)
    return entries


def _is_duplicate_record(machine: Mapping[str, Any]) -> bool:
    mde = machine.get("mde") or {}
    return bool(mde.get("merged_into_machine_id")) or mde.get("is_potential_duplicate") is True


def _fold(into: dict[str, Any], other: dict[str, Any]) -> None:
    into["hashes"] = {kind: value for kind in HASH_PREFERENCE
                      if (value := into["hashes"].get(kind) or other["hashes"].get(kind))}
    into["sources"] = _unique([*into.get("sources", []), *other.get("sources", [])])
    if into.get("status") != "success" and other.get("status") == "success":
        into["status"], into["total_machines"] = "success", other["total_machines"]


def _summary(envelopes: list[dict[str, Any]], machines: list[dict[str, Any]],
             indicators: list[dict[str, Any]], skipped: list[Any]) -> dict[str, Any]:
    risk_levels: dict[str, int] = {}
    # A record Defender merged into another, or flags as a potential duplicate, is shown but
    # not counted: one machine must not count twice in "machines involved" or the severity.
    counted = [machine for machine in machines if not _is_duplicate_record(machine)]
    for machine in counted:
        level = machine.get("risk_level") or RISK_UNKNOWN
        risk_levels[level] = risk_levels.get(level, 0) + 1
    highest = highest_risk(counted)
    statuses = {"success": 0, "not_found": 0, "error": 0}
    for envelope in envelopes:
        statuses[envelope["status"]] = statuses.get(envelope["status"], 0) + 1
    reasons: dict[str, int] = {}
    for item in skipped:
        reason = item.get("reason", "unknown") if isinstance(item, dict) else "unknown"
        reasons[reason] = reasons.get(reason, 0) + 1
    return {
        "indicators": len(indicators),
        "lookups": statuses,
        "api_calls": sum(e["summary"].get("api_calls", 0) for e in envelopes),
        "total_machines": len(counted),
        "duplicate_records_not_counted": len(machines) - len(counted),
        "risk_levels": risk_levels,
        "highest_risk": highest[1] if highest else None,
        "highest_risk_level_id": highest[0] if highest else None,
        "truncated": any(e["summary"].get("truncated") for e in envelopes),
        "failed": statuses["error"] > 0,
        "skipped": reasons,
    }


# --- set_field / render_note ---------------------------------------------------------------


def set_field(context: StepContext, params: dict[str, Any]) -> Any:
    problem = check_output_path(params["path"])
    if problem:
        raise InvalidInput(f"set_field: {problem}")
    put_output(context.enrichment, params["path"], params["value"])
    return params["value"]


def check_output_path(path: Any) -> str | None:
    if not isinstance(path, str) or not OUTPUT_PATH.match(path) or path == "enrichment":
        return (f"path {path!r} must name a field under the enrichment, like "
                "'enrichment.recommended_severity'")
    return None


def put_output(enrichment: dict[str, Any], path: str, value: Any) -> None:
    """Store `value` at `enrichment.a.b`; `enrichment` alone merges an object into it.

    No deep copy (it was the hot path's largest cost): values are shared with the step
    results they came from, and every object on the way to `a.b` is copied before it is
    written to (copy on write), so a later output never changes an earlier step's result."""
    parts = path.split(".")[1:]
    if not parts:
        if not isinstance(value, dict):
            raise InvalidInput("output 'enrichment' needs an object result to merge")
        enrichment.update(value)
        return
    target = enrichment
    for part in parts[:-1]:
        inner = target.get(part)
        target[part] = dict(inner) if isinstance(inner, dict) else {}
        target = target[part]
    target[parts[-1]] = value


def render_note(context: StepContext, params: dict[str, Any]) -> str:
    """A markdown note for the case: a title, a summary line (and the alert's format, when
    given), one block per indicator."""
    envelopes = [e for e in _list(params["envelopes"], "envelopes") if isinstance(e, dict)]
    said = format_line(params.get("format"))
    return note_markdown(envelopes, title=params.get("title"), summary=params.get("summary"),
                         indicators=_list(params.get("indicators"), "indicators"),
                         warnings=_list(params.get("warnings"), "warnings"),
                         details=[said] if said else None)


def format_line(found: Any) -> str | None:
    """`format: TheHive alert (thehive_alert)`, naming the user's rule file when it is one:
    said in tables and case notes alike."""
    if not isinstance(found, dict) or not found.get("id"):
        return None
    origin = found.get("origin")
    mine = f", from {origin}" if origin not in (None, "shipped", "built-in") else ""
    return f"format: {found.get('title', found['id'])} ({found['id']}{mine})"


def note_markdown(envelopes: list[dict[str, Any]], *, title: Any = None,
                  summary: Any = None, indicators: list[Any] | None = None,
                  warnings: list[Any] | None = None, details: list[str] | None = None) -> str:
    """A case note; `details` are lines said under the summary (skipped, recommendation).
    Platforms render it as HTML: every value in it is escaped markdown text."""
    from integration.render import markdown_block, markdown_text

    lines: list[str] = []
    if title:
        lines += [f"### {markdown_text(title)}", ""]
    if isinstance(summary, dict) and "total_machines" in summary:
        lines += [summary_line(summary, markdown_text), ""]
    if details:
        lines += [*(f"- {markdown_text(line)}" for line in details), ""]
    lines += [f"> warning: {markdown_text(text)}" for text in warning_texts(warnings)]
    if warnings:
        lines.append("")
    names = file_names(indicators)
    blocks = [also_given(with_file_name(markdown_block(envelope), envelope, names,
                                        markdown_text), others, markdown_text)
              for envelope, others in one_per_file(envelopes)]
    lines.append("\n\n".join(blocks) if blocks else "_No indicator was looked up._")
    return "\n".join(lines)


def one_per_file(envelopes: list[dict[str, Any]]
                 ) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """Each envelope to show, with the other spellings of its file: a SHA-256 or MD5 that
    resolved to a SHA-1 also looked up is the same file, shown once (it cost no call)."""
    by_sha1: dict[str, dict[str, Any]] = {}
    for envelope in envelopes:
        indicator = envelope.get("indicator") or {}
        if indicator.get("type") == "sha1" and envelope.get("status") != "error":
            by_sha1.setdefault(str(indicator.get("value")), envelope)
    shown: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []
    others: dict[int, list[dict[str, Any]]] = {}
    for envelope in envelopes:
        resolved = (envelope.get("indicator") or {}).get("sha1")
        twin = by_sha1.get(str(resolved)) if resolved else None
        if twin is not None and twin is not envelope:
            others.setdefault(id(twin), []).append(envelope)
            continue
        shown.append((envelope, others.setdefault(id(envelope), [])))
    return shown


def also_given(block: str, others: list[dict[str, Any]], escape: Callable[[Any], str]) -> str:
    """A block whose first line also names the file's other spellings."""
    if not others:
        return block
    spellings = ", ".join(f"{(o.get('indicator') or {}).get('type')} "
                          f"{(o.get('indicator') or {}).get('value')}" for o in others)
    first, newline, rest = block.partition("\n")
    return f"{first} (also given as {escape(spellings)}){newline}{rest}"


def warning_texts(warnings: list[Any] | None) -> list[str]:
    return [str(w.get("message") or w.get("code")) if isinstance(w, dict) else str(w)
            for w in warnings or []]


def file_names(indicators: list[Any] | None) -> dict[str, str]:
    """Each hash of a file the alert named -> the file's name, for tables and notes."""
    names: dict[str, str] = {}
    for indicator in indicators or []:
        name = (indicator.get("context") or {}).get("name") if isinstance(indicator, dict) \
            else None
        if isinstance(name, str):
            for value in [indicator.get("value"), *(indicator.get("hashes") or {}).values()]:
                names.setdefault(str(value), name)
    return names


def with_file_name(block: str, envelope: Mapping[str, Any], names: Mapping[str, str],
                   escape: Callable[[Any], str]) -> str:
    """A block whose first line names a file's hash, with the file's name (from the alert,
    so escaped for the block's format) beside it."""
    indicator = envelope.get("indicator") or {}
    name = names.get(str(indicator.get("value"))) or names.get(str(indicator.get("sha1")))
    if not name or indicator.get("type") == "domain":
        return block
    first, newline, rest = block.partition("\n")
    return f"{first} ({escape(name)}){newline}{rest}"


def summary_line(summary: Mapping[str, Any], escape: Callable[[Any], str]) -> str:
    """`**3 machines**, highest risk **High**.` in markdown; a table drops the stars."""
    count = summary["total_machines"]
    line = f"**{escape(count)} machine{'s' if count != 1 else ''}**"
    if summary.get("highest_risk"):
        line += f", highest risk **{escape(summary['highest_risk'])}**"
    if summary.get("truncated"):
        line += "; Defender's 500-machine cap was reached"
    if summary.get("failed"):
        line += "; some lookups failed"
    return line + "."


# --- helpers -------------------------------------------------------------------------------


def _list(value: Any, name: str) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, dict):
        return [value]  # one envelope where a list was expected
    if not isinstance(value, list):
        raise InvalidInput(f"param {name!r} must be a list, not {type(value).__name__}")
    flat: list[Any] = []
    for item in value:
        flat.extend(item if isinstance(item, list) else [item])
    return [item for item in flat if item is not None]


def _unique(items: Any) -> list[Any]:
    out: list[Any] = []
    for item in items:
        if item not in out:
            out.append(item)
    return out


# --- sweep -----------------------------------------------------------------------------------


def sweep(context: StepContext, params: dict[str, Any]) -> dict[str, Any]:
    """An IOC sweep over threat-intel feeds (integration/sweep/run.py): its report."""
    from integration.sweep.run import DEFAULT_LOOKBACK, Sweep

    sources = params["sources"]
    if isinstance(sources, str):
        sources = [sources]
    if not isinstance(sources, list) or not sources or \
            not all(isinstance(s, str) and s for s in sources):
        raise InvalidInput("param 'sources' must be a non-empty list of feed sources")
    lookback = params.get("lookback") or DEFAULT_LOOKBACK
    if not isinstance(lookback, str):
        raise InvalidInput("param 'lookback' must be an ISO 8601 duration such as P30D")
    if context.enricher is None:
        raise InvalidInput("a sweep step needs the plugin's configuration")
    return Sweep(context.enricher(), sources, lookback=lookback).run()


BUILTINS: dict[str, Builtin] = {
    "extract_indicators": Builtin(extract_indicators, frozenset({"alert"}),
                                  frozenset({"format", "trusted_publishers", "lookup_trusted"})),
    "deduplicate": Builtin(deduplicate, frozenset({"indicators"})),
    "merge_machines": Builtin(merge_machines, frozenset({"envelopes"}),
                              frozenset({"indicators", "skipped", "format", "warnings"})),
    "set_field": Builtin(set_field, frozenset({"path", "value"})),
    "sweep": Builtin(sweep, frozenset({"sources"}), frozenset({"lookback"})),
    "render_note": Builtin(render_note, frozenset({"envelopes"}),
                           frozenset({"title", "summary", "indicators", "warnings", "format"})),
}
