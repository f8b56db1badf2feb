"""The playbook engine's public API (the code lives in the `integration.playbook` package).

    playbook = load_playbook("playbooks/enrich-alert.yaml")    # PlaybookError if malformed
    lookups = LookupService(lambda: enricher)                   # action steps, with a memo
    result = PlaybookRunner(playbook, lookups).run(alert, source="alert.json")
    result.document, result.exit_status                         # alert + "enrichment"

    with Batch(store, source=Path("alerts"), out_dir=Path("out"), identity={...}) as batch:
        runner = PlaybookRunner(playbook, LookupService(lambda: enricher, memo=batch.memo))
        summary = batch.run(runner)                              # resumable after a kill
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
