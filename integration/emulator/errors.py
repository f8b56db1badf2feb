"""The emulator's API error: one class for Defender's and Graph's `{"error": {...}}` bodies."""

from __future__ import annotations

from collections.abc import Mapping


class ApiError(Exception):
    """A Defender API failure: the `{"error": {"code", "message", "target"}}` body."""

    def __init__(self, status: int, code: str, message: str,
                 headers: Mapping[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = dict(headers or {})
