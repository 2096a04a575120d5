"""How the API writes derived values and reads date-times: ISO 8601 UTC timestamps, and the
plain text of an HTML body."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime
from typing import Final


def _parse_time(value: str) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)


def _iso(moment: float | datetime) -> str:
    if not isinstance(moment, datetime):
        moment = datetime.fromtimestamp(moment, UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


_BREAKS: Final = re.compile(r"<\s*(?:br\s*/?|/p|/div|/li)\s*>", re.IGNORECASE)
_TAGS: Final = re.compile(r"<[^>]*>")


def _text(markup: str) -> str:
    """The plain text of an HTML body, as in `description_text` and `body_text`."""
    return html.unescape(_TAGS.sub("", _BREAKS.sub("\n", markup))).strip()
