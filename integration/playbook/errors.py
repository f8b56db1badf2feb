"""Playbook errors: every one names the file (and the step, when there is one) it comes from.

Both are expected failures of the input, so they exit 2 like any other bad input or config.
"""

from __future__ import annotations

from typing import Any

from integration.errors import ConfigError, InvalidInput, PluginError


class PlaybookError(ConfigError):
    """A playbook that cannot be loaded: bad YAML, schema violation, bad expression, unknown
    action or parameter. Refused before anything runs."""


class AlertError(InvalidInput):
    """An alert that cannot be enriched: not JSON, not an object, or in no known format."""


class StepFailed(PluginError):
    """A step with `on_error: fail` failed; carries the code, exit status, retryability and
    HTTP status of its cause (which is also its `__cause__`)."""

    def __init__(self, message: str, cause: PluginError | None = None, **data: Any) -> None:
        if cause is not None:
            data.setdefault("retryable", cause.retryable)
            data.setdefault("status", cause.status)
        super().__init__(message, **data)
        if cause is not None:
            self.code, self.exit_status = cause.code, cause.exit_status
            self.__cause__ = cause


def where(source: str, index: int | None = None, step_id: str | None = None) -> str:
    """'playbooks/x.yaml: steps[2] (files)': the prefix of every playbook message."""
    if index is None:
        return source
    return f"{source}: steps[{index}]" + (f" ({step_id})" if step_id else "")
