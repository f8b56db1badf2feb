"""Logs that never carry a secret: msal kept quiet unless --verbose, and every line that
reaches --verbose's stderr scrubbed.

msal logs a token endpoint's whole body when it is not JSON (a proxy page may echo the
form it was sent, client secret included), and Python prints such an error to stderr even
when nobody configured logging. So msal's loggers stay silent by default, in every process
that signs in (the CLI, an entry point a SOAR platform calls); `--verbose` lets them speak
through a handler whose filter masks the configured secrets and anything shaped like a
token, a client secret or a password.
"""

from __future__ import annotations

import logging
import re
import sys

LIBRARY_LOGGERS = ("msal",)
_QUIET = logging.CRITICAL + 1
# name=value in a form or query, "name": "value" in JSON, a bearer token, a bare JWT.
_NAMED = ("access_token", "refresh_token", "id_token", "client_secret", "client_assertion",
          "assertion", "password", "code", "device_code")
_PATTERNS = (
    (re.compile(r"(?i)\b(" + "|".join(_NAMED) + r")=[^&\s\"']+"), r"\1=***"),
    (re.compile(r"(?i)\"(" + "|".join(_NAMED) + r")\"\s*:\s*\"[^\"]*\""), r'"\1": "***"'),
    (re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]+"), r"\1 ***"),
    (re.compile(r"\beyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"), "***"),
)
_known_secrets: set[str] = set()
_state = {"verbose": False}


def remember_secret(value: str | None) -> None:
    """A configured secret (client secret, certificate password): masked wherever it shows."""
    if value and len(value) >= 4:
        _known_secrets.add(value)


def scrub(text: str) -> str:
    for secret in sorted(_known_secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class ScrubSecrets(logging.Filter):
    """A handler's filter: the record's message (and traceback) with every secret masked."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a library's bad format string: show it raw
            message = str(record.msg)
        record.msg, record.args = scrub(message), None
        if record.exc_info:
            # The traceback text may hold the body too; keep only its last line, scrubbed.
            exception = record.exc_info[1]
            record.msg += f" ({type(exception).__name__})"
            record.exc_info, record.exc_text = None, None
        return True


def quiet_libraries() -> None:
    """msal says nothing unless --verbose asked for it (idempotent, cheap)."""
    if not _state["verbose"]:
        for name in LIBRARY_LOGGERS:
            logging.getLogger(name).setLevel(_QUIET)


def verbose_to_stderr() -> None:
    """--verbose: our requests and msal's at DEBUG on stderr, scrubbed."""
    _state["verbose"] = True
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("mde-enrich: %(message)s"))
    handler.addFilter(ScrubSecrets())
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    logging.getLogger("mde_enrich").setLevel(logging.DEBUG)
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG)
