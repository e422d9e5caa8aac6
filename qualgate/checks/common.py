"""Small helpers that several check modules share, so a change to one is a change to all."""

from __future__ import annotations

import re

#: a word: letters, digits or underscores, with inner apostrophes ("don't", "l’eau") kept inside the word
WORD_RE = re.compile(r"\w+(?:['’]\w+)*")


def where(field: str | None) -> str:
    """Where a finding's message says it looked: the named field, or the configured text view."""
    return f"field '{field}'" if field else "text"
