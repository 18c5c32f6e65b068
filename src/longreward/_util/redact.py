"""One redaction function for everything a judge error can carry out of the process.

Servers echo request headers and keys in error bodies (a 401 that repeats the ``Authorization``
header, a 500 that dumps the request). Those texts become exception messages, unscored reasons
in output rows, log lines and SQLite rows, so they are redacted where the error is made (the
provider), again where the client turns an error into a result, and in every log record of the
``longreward`` loggers. Two kinds of secret are removed:

- values we know: the API key and every ``--header`` value, registered by the provider that
  sends them (``add_secrets``);
- anything shaped like a credential, known or not: ``Bearer …``, ``sk-…`` keys, JWTs,
  ``api_key=…``/``token: …`` pairs, and ``user:password@`` in URLs.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable

MASK = "***"

#: Shorter values are not registered: masking "1" or "json" would garble every message, and a
#: value that short protects nothing anyway.
_MIN_SECRET = 6

_PATTERNS = [
    # Authorization: Bearer <token> / Basic <token>
    (re.compile(r"(?i)\b(bearer|basic)(\s+)[A-Za-z0-9._~+/=-]{6,}"), r"\1\2" + MASK),
    # key: value, key=value, "key": "value" for credential-looking names
    (re.compile(r"(?i)([\"']?\b(?:x-)?(?:api[_-]?key|access[_-]?token|auth[_-]?token|token|"
                r"secret|password|passwd|authorization)[\"']?\s*[:=]\s*[\"']?)"
                r"(?!\*\*\*)(?!bearer\b|basic\b)([^\s\"',;}&]{4,})"),
     r"\1" + MASK),
    # OpenAI-style keys (sk-..., sk-proj-...), also inside longer text
    (re.compile(r"\bsk-[A-Za-z0-9_-]{12,}"), MASK),
    # JSON Web Tokens
    (re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"), MASK),
    # credentials in URLs: scheme://user:password@host
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s:@]+:[^/\s@]+@"), r"\1" + MASK + "@"),
]

_lock = threading.Lock()
_secrets: frozenset[str] = frozenset()


def split_header(item: str) -> tuple[str, str] | None:
    """A ``--header`` flag as (name, value): ``Name=value`` or curl's ``Name: value``, split
    at whichever separator comes first (a header name holds neither, while a value such as
    a base64 token may hold both). ``None`` when there is no separator or no name."""
    cuts = [i for i in (item.find("="), item.find(":")) if i > 0]
    if not cuts:
        return None
    at = min(cuts)
    name = item[:at].strip()
    return (name, item[at + 1:].strip()) if name else None


def add_secrets(values: Iterable[str | None]) -> None:
    """Register values to mask wherever they appear (API keys, header values). Process-wide:
    a key known to one endpoint object is a secret in every message of the process."""
    global _secrets
    new = {v for v in values if v and len(v) >= _MIN_SECRET}
    if new - _secrets:
        with _lock:
            _secrets = _secrets | new


def redact(text: str, extra: Iterable[str | None] = ()) -> str:
    """``text`` with registered secrets, ``extra`` values and credential-shaped strings masked."""
    if not text:
        return text
    # longest first: a key that contains another secret is masked whole
    for value in sorted(_secrets.union(v for v in extra if v and len(v) >= _MIN_SECRET),
                        key=len, reverse=True):
        if value in text:
            text = text.replace(value, MASK)
    for pattern, repl in _PATTERNS:
        text = pattern.sub(repl, text)
    return text


class RedactingFilter(logging.Filter):
    """Masks secrets in a log record's final message (arguments and exception text too)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            text = str(exc)
            if redact(text) != text:
                # the traceback would print the raw message: keep the type and a clean text
                record.exc_info = None
                record.exc_text = None
                record.msg = f"{record.msg} ({type(exc).__name__}: {redact(text)})"
        return True


def install_log_filter(*logger_names: str) -> None:
    """Attach ``RedactingFilter`` to each named logger (idempotent). A logger's filters only see
    records logged to that very logger, not those of its children, so every logger that logs
    judge errors is named."""
    for name in logger_names:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactingFilter) for f in logger.filters):
            logger.addFilter(RedactingFilter())
