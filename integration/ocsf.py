"""A playbook run's result in OCSF 1.8.0 terms (`mde-enrich playbook run --format ocsf`).

The result becomes one OCSF `enrichment` object: `name`/`value` say what was enriched (the
indicators taken from the alert), `data` holds those indicators with their lookup status,
the machines that touched them (machine artifacts: OCSF Device attributes plus `mde`) and
the summary. An OCSF Detection Finding comes back whole with that object appended to its
`enrichments`, so it stays one valid finding for whatever reads OCSF next; any other alert
has no OCSF home to go back into, so the answer is a JSON array of enrichment objects,
ready to be spliced into an `enrichments` list.

No OCSF schema is needed here: the tests check the output against the official one.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Protocol

from integration import __version__
from integration.playbook.engine import ENRICHMENT_KEY

OCSF_VERSION = "1.8.0"
DETECTION_FINDING_CLASS_UID = 2004
ENRICHMENT_NAME = "indicators"  # the attribute enriched: the domains and files of the alert
ENRICHMENT_TYPE = "related_machines"
PROVIDER = "Microsoft Defender for Endpoint"
# The run's own bookkeeping: every lookup's full answer, already folded into `machines`.
_LEFT_OUT_OF_DATA = frozenset({"envelopes"})


class RunOutcome(Protocol):
    """What this module reads of a playbook run (integration.playbook.engine.RunResult)."""

    @property
    def document(self) -> dict[str, Any]: ...

    @property
    def enrichment(self) -> dict[str, Any]: ...

    @property
    def envelopes(self) -> list[dict[str, Any]]: ...


def render_run(
    result: RunOutcome, playbook: str, *, created_time: int | None = None
) -> dict[str, Any] | list[dict[str, Any]]:
    """The finding with our enrichment appended when the alert is an OCSF Detection Finding,
    else a list holding our enrichment object."""
    entry = enrichment_object(result.enrichment, result.envelopes, playbook=playbook,
                              created_time=created_time)
    alert = {key: value for key, value in result.document.items() if key != ENRICHMENT_KEY}
    if is_detection_finding(alert):
        return with_enrichment(alert, entry)
    return [entry]


def is_detection_finding(alert: Any) -> bool:
    class_uid = alert.get("class_uid") if isinstance(alert, Mapping) else None
    # bool is an int in Python; JSON `true` is no class id.
    return class_uid == DETECTION_FINDING_CLASS_UID and not isinstance(class_uid, bool)


def with_enrichment(finding: Mapping[str, Any], entry: dict[str, Any]) -> dict[str, Any]:
    """A copy of the finding with `entry` after its own enrichments (the input is untouched).

    An `enrichments` that is not a list was not valid OCSF to begin with: it is replaced,
    as keeping it would leave no valid place for ours."""
    earlier = finding.get("enrichments")
    kept = list(earlier) if isinstance(earlier, list) else []
    return {**finding, "enrichments": [*kept, entry]}


def enrichment_object(
    enrichment: Mapping[str, Any],
    envelopes: list[dict[str, Any]],
    *,
    playbook: str,
    created_time: int | None = None,
) -> dict[str, Any]:
    """One OCSF enrichment object for a run's enrichment (and its lookups' envelopes)."""
    data = _data(enrichment, envelopes)
    values = [str(i["value"]) for i in data["indicators"]
              if isinstance(i, Mapping) and i.get("value") is not None]
    return {
        "name": ENRICHMENT_NAME,
        # OCSF wants one string; an alert with nothing to look up enriches nothing: "".
        "value": ", ".join(dict.fromkeys(values)),
        "type": ENRICHMENT_TYPE,
        "provider": PROVIDER,
        "created_time": time.time_ns() // 1_000_000 if created_time is None else created_time,
        "desc": f"Machines in {PROVIDER} that touched these domains or files "
                f"(mde-enrich {__version__}, playbook {playbook})",
        "data": data,
    }


def _data(enrichment: Mapping[str, Any], envelopes: list[dict[str, Any]]) -> dict[str, Any]:
    """The playbook's enrichment without the raw envelopes; `indicators` and `machines` are
    always there, taken from the envelopes when the playbook did not merge them itself."""
    data = {key: value for key, value in enrichment.items() if key not in _LEFT_OUT_OF_DATA}
    if not isinstance(data.get("indicators"), list):
        data["indicators"] = [dict(e["indicator"]) for e in envelopes
                              if isinstance(e.get("indicator"), Mapping)]
    if not isinstance(data.get("machines"), list):
        data["machines"] = _machines(envelopes)
    return data


def _machines(envelopes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every envelope's machines, each once (by uid), in the order first seen."""
    machines: dict[str, dict[str, Any]] = {}
    for envelope in envelopes:
        for machine in envelope.get("machines") or []:
            if isinstance(machine, Mapping):
                machines.setdefault(str(machine.get("uid")), dict(machine))
    return list(machines.values())
