"""Run a playbook on one alert (or on an analyst's inputs).

The alert comes back unchanged with one key added, `enrichment`. Expressions see a document
`{alert, inputs, steps, enrichment, playbook}` (plus `item` and `index` inside a for_each); a
step's result is `steps.<id>` (null when its `when` was falsy).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from integration.bounded import ALERT, check_nesting
from integration.errors import PluginError, error_from_record, exit_status_for
from integration.playbook.alerts import AlertFormats, formats_for
from integration.playbook.errors import AlertError, PlaybookError, StepFailed
from integration.playbook.expressions import ExpressionError, render_template, truthy
from integration.playbook.lookups import LookupService
from integration.playbook.model import Playbook, Step
from integration.playbook.steps import BUILTINS, StepContext, put_output

ENRICHMENT_KEY = "enrichment"
# 2: envelopes name their machines by `machine_uids`; each machine is listed once, in
# `machines` (1 repeated every machine inside each envelope).
ENRICHMENT_SCHEMA_VERSION = 2


@dataclass
class RunResult:
    document: dict[str, Any]  # the alert plus `enrichment` (manual: {inputs, enrichment})
    envelopes: list[dict[str, Any]] = field(default_factory=list)  # every lookup's answer

    @property
    def enrichment(self) -> dict[str, Any]:
        enrichment: dict[str, Any] = self.document[ENRICHMENT_KEY]
        return enrichment

    @property
    def exit_status(self) -> int:
        return exit_status_for(self.envelopes)


class PlaybookRunner:
    """Runs one playbook, alert after alert, sharing its lookups (and their memo)."""

    def __init__(self, playbook: Playbook, lookups: LookupService,
                 formats: AlertFormats | None = None,
                 inputs: Mapping[str, Any] | None = None) -> None:
        self.playbook = playbook
        self.lookups = lookups
        from integration.config import alert_options

        user_formats, self.internal_suffixes = alert_options(getattr(lookups, "config", None))
        self.formats = formats or formats_for(user_formats)
        self.inputs = dict(inputs or {})  # used by every run that is given none

    def run(self, alert: Any = None, *, inputs: Mapping[str, Any] | None = None,
            source: str = "alert") -> RunResult:
        """Raises AlertError for an alert that cannot be enriched and StepFailed when a step
        with `on_error: fail` fails; lookup failures otherwise live in the envelopes."""
        playbook = self.playbook
        resolved = playbook.resolve_inputs(self.inputs if inputs is None else inputs)
        on_alert = playbook.reads_alert or alert is not None
        if on_alert:
            if not isinstance(alert, dict):
                kind = "nothing" if alert is None else type(alert).__name__
                raise AlertError(f"{source}: an alert is a JSON object, not {kind}")
            # A platform's dict is not read through a bounded reader: nested past the limit,
            # copying it (or any step walking it) would be a RecursionError.
            check_nesting(alert, limits=ALERT, what=source, error=AlertError)
            if ENRICHMENT_KEY in alert:
                raise AlertError(f"{source}: the alert already has a top-level "
                                 f"'{ENRICHMENT_KEY}' key (was it enriched before?)")
        context = StepContext(source=source, formats=self.formats,
                              enrichment={"schema_version": ENRICHMENT_SCHEMA_VERSION},
                              enricher=lambda: self.lookups.enricher,
                              internal_suffixes=self.internal_suffixes)
        # No copy of the alert: expressions only read, builtins never write to what they are
        # given, and outputs are copied on write (put_output), so the caller's alert is safe.
        document: dict[str, Any] = {
            "alert": alert, "inputs": resolved, "steps": {},
            "enrichment": context.enrichment,
            "playbook": {"name": playbook.name, "trigger": playbook.trigger}}
        envelopes: list[dict[str, Any]] = []
        for step in playbook.steps:
            self._run_step(step, document, context, envelopes)
        if not on_alert:
            result = {"inputs": resolved, ENRICHMENT_KEY: context.enrichment}
        else:
            result = {**alert, ENRICHMENT_KEY: context.enrichment}
        return RunResult(result, envelopes)

    def _run_step(self, step: Step, document: dict[str, Any], context: StepContext,
                  envelopes: list[dict[str, Any]]) -> None:
        steps = document["steps"]
        steps[step.id] = None
        where = self.playbook.where(step)
        try:
            if step.when is not None and not truthy(step.when.search(document)):
                return
            if step.for_each is None:
                params = [render_template(step.params, document)]
            else:
                items = step.for_each.search(document)
                items = [] if items is None else items
                if not isinstance(items, list):
                    raise ExpressionError(f"for_each must give a list, got "
                                          f"{type(items).__name__}")
                params = [render_template(step.params, {**document, "item": item,
                                                        "index": index})
                          for index, item in enumerate(items)]
            results = self._invoke(step, params, context)
        except AlertError:
            raise  # the alert itself is wrong: no step can make that right
        except (PluginError, ExpressionError) as exc:
            # An expression failing on real data is the playbook's fault: config_error, exit 2.
            error = exc if isinstance(exc, PluginError) else PlaybookError(str(exc))
            if error is not exc:
                error.__cause__ = exc
            if step.on_error == "fail":
                raise StepFailed(f"{where}: {error.message}", error) from error
            context.enrichment.setdefault("step_errors", []).append(
                {"step": step.id, "code": error.code, "message": error.message})
            return
        if step.action is not None:
            envelopes.extend(r for r in results if isinstance(r, dict) and "status" in r)
            failed = [r for r in results if isinstance(r, dict) and r.get("status") == "error"]
            if failed and step.on_error == "fail":
                first = failed[0]["error"]
                cause = error_from_record(first)
                raise StepFailed(f"{where}: {len(failed)} lookup(s) failed; first: "
                                 f"{first['code']}: {first['message']}", cause)
        value = results if step.for_each is not None else results[0]
        steps[step.id] = value
        if step.output:
            put_output(context.enrichment, step.output, value)

    def _invoke(self, step: Step, params: list[dict[str, Any]], context: StepContext
                ) -> list[Any]:
        if step.action is not None:
            return self.lookups.run_action(step.action, params)
        builtin = BUILTINS[step.builtin or ""]
        return [builtin.run(context, one) for one in params]
