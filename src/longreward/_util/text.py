"""Text shaping for messages: one line, bounded length."""

from __future__ import annotations


def short(text: str, limit: int = 300) -> str:
    """``text`` on one line (runs of whitespace become one space), cut to ``limit``
    characters with an ellipsis, for error messages and log lines that quote a reply."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
