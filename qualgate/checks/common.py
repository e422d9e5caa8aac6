"""Small helpers that several check modules share, so a change to one is a change to all."""

from __future__ import annotations

import re

#: a word: letters, digits or underscores, with inner apostrophes ("don't", "l’eau") kept inside the word
WORD_RE = re.compile(r"\w+(?:['’]\w+)*")

#: a check's ``field`` parameter: a record field, or None for the configured text view
FieldName = str | None
OUTPUT_DOC = "record field to read; null = the configured text view"


def where(field: str | None) -> str:
    """Where a finding's message says it looked: the named field, or the configured text view."""
    return f"field '{field}'" if field else "text"


def line_of(text: str, pos: int) -> int:
    """1-based line number of character ``pos`` in ``text`` (for evidence that points into a field)."""
    return text.count("\n", 0, pos) + 1
