"""Sender-controlled text, cut before it reaches a log line, /diagnostics or an output."""
from __future__ import annotations

MAX_TEXT_CHARS = 80  # what a log line or a diagnostics value quotes of a sender's string


def clip_text(text: object, limit: int = MAX_TEXT_CHARS) -> str:
    """repr() of a sender's string, cut to `limit` characters with the full length named, so a
    1 MB encoding string is quoted as 80 characters, not logged and republished whole."""
    text = str(text)
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text)} characters)"
