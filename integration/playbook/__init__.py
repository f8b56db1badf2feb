"""The playbook engine: YAML playbooks that chain the plugin's actions onto incoming alerts.

    model        load and validate a playbook (schemas/playbook.schema.json, JMESPath, actions)
    alerts       alert formats as data (integration/alert_formats.yaml): detect and extract
    steps        the builtin steps
    lookups      action steps: each distinct indicator once, concurrently, with a memo
    engine       run a playbook on one alert or on an analyst's inputs
    batch        a durable batch over a directory of alerts or an NDJSON file

    playbook = load_playbook("playbooks/enrich-alert.yaml")    # PlaybookError if malformed
    lookups = LookupService(lambda: enricher)                   # action steps, with a memo
    result = PlaybookRunner(playbook, lookups).run(alert, source="alert.json")
    result.document, result.exit_status                         # alert + "enrichment"
"""

from integration.playbook.alerts import AlertFormats, alert_formats
from integration.playbook.batch import Batch, BatchSummary, batch_items, write_atomically
from integration.playbook.engine import PlaybookRunner, RunResult
from integration.playbook.errors import AlertError, PlaybookError, StepFailed
from integration.playbook.lookups import LocalMemo, LookupService, StoreMemo
from integration.playbook.model import Playbook, load_playbook, parse_playbook

__all__ = ["AlertError", "AlertFormats", "Batch", "BatchSummary", "LocalMemo", "LookupService",
           "Playbook", "PlaybookError", "PlaybookRunner", "RunResult", "StepFailed",
           "StoreMemo", "alert_formats", "batch_items", "load_playbook", "parse_playbook",
           "write_atomically"]
