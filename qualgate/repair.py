"""Repairs: small, recorded fixes made to a record before any check reads it (datatrove's and data-juicer's
"mappers"), so that a fixable record is kept instead of rejected.

Three steps, each on by name in a config's ``repair:`` section, applied to every string field at the top level
of a record and to the ``content`` (or ShareGPT ``value``) of chat turns; the id field (``input.id``) and keys
are never changed:

- ``mojibake``: text decoded with the wrong codec ("donâ€™t" -> "don’t"), fixed with ftfy's encoding fixer
  alone (``ftfy.fix_encoding``: no HTML unescaping, no quote uncurling, no width or Unicode normalisation, and no
  U+FFFD put in for bytes that are lost). ASCII text is skipped before ftfy is asked.
- ``strip``: control characters (C0 and C1, but not tab, newline, carriage return, vertical tab or form feed)
  removed anywhere; whitespace and zero-width characters removed at both ends, except that a text of several
  lines keeps its first line's indentation (code). Newlines and tabs inside stay.
- ``placeholder_input``: a field of ``placeholder_fields`` (default ``input`` only) whose whole value is a
  "no input" placeholder (``<noinput>``, ``N/A``, ``No input required.``, ``None``) becomes empty. Only fields
  that hold optional context: in an answer, "None" or "N/A" can be the right reply, and stays for the checks.

The steps run in that order, again until nothing changes (at most ``_ROUNDS`` times), so repairing a repaired
record changes nothing. A repaired record is a ``Repaired`` dict: its ``repairs`` list one entry per changed
field, ``{"field", "steps", "before"}`` (``before``: the value as read), from which ``restore`` gives back the
original record exactly. The checks, accepted.jsonl and rejected.jsonl see the repaired record; the entries go
to rejected.jsonl's ``qualgate.repairs`` and scores.parquet's ``repairs`` column (for accepted records too), and
the report counts them. The sample id is the content hash of the record as read (``Gate.sample``).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from qualgate.regex import compile_pattern, user_patterns
from qualgate.sample import canonical_json, content_id

Step = Literal["mojibake", "strip", "placeholder_input"]
#: The repair steps, in the order they run.
STEPS: tuple[Step, ...] = ("mojibake", "strip", "placeholder_input")
_ROUNDS = 4
_CHAT_TEXT = ("content", "value")

#: A whole value that only says "there is no input": optional wrapping (quotes, <>, (), [], {}, backslashes,
#: backticks) and trailing punctuation around one of the phrases Alpaca-style generators write. "NA" only in
#: capitals: "Na" is sodium.
DEFAULT_PLACEHOLDER = (r"[\s\"'`\\<(\[{]*"
                       r"(?:no[ _-]?inputs?(?:[ _-]+(?:is[ _-]+)?(?:required|needed|necessary|provided|given))?"
                       r"|n/a|(?-i:NA)|none|not[ _-]+applicable)"
                       r"[\s\"'`\\>)\]}.,;:!?]*")
_CONTROL = re.compile("[\x00-\x08\x0e-\x1f\x7f-\x84\x86-\x9f]")
_INVISIBLE = "\u200b\u200c\u200d\u2060\ufeff"
_BREAKS = "\n\r\x0b\x0c\x85\u2028\u2029"
_EDGE = " \t\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u202f\u205f\u3000" \
        + _BREAKS + _INVISIBLE
_NO_INVISIBLE = str.maketrans("", "", _INVISIBLE)


class RepairConfig(BaseModel):
    """The ``repair:`` section: which fixes are made to records before the checks read them."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = Field(True, description="false turns repairs off (e.g. in a config extending a pack that "
                                            "repairs)")
    steps: list[Step] = Field(default_factory=lambda: list(STEPS),
                              description="repairs to make: mojibake (ftfy's encoding fixer), strip (control "
                                          "characters anywhere, whitespace at the ends), placeholder_input (a "
                                          "placeholder_fields value that is only '<noinput>', 'N/A', 'None' ... "
                                          "becomes empty); they always run in this order")
    placeholder_fields: list[str] = Field(default_factory=lambda: ["input"],
                                          description="fields emptied when their whole value is a placeholder: "
                                                      "only optional-context fields (an answer 'None' can be right)")
    placeholder_pattern: str = Field(DEFAULT_PLACEHOLDER,
                                     description="regex (RE2, case-insensitive) a whole value must match to be a "
                                                 "placeholder")

    @field_validator("steps")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("a repair step is named twice")
        return v

    @field_validator("placeholder_pattern")
    @classmethod
    def _compiles(cls, v: str) -> str:
        user_patterns([_whole(v)])  # RE2: a config's pattern cannot hang the gate
        return v

    @property
    def active(self) -> bool:
        return self.enabled and bool(self.steps)

    def token(self) -> str:
        """What a cache key needs to know about the repairs (set indexes hold repaired texts)."""
        return json.dumps(self.model_dump(), sort_keys=True)


class Repaired(dict):  # type: ignore[type-arg]
    """A record after repair (its fields as the checks read them), with ``repairs``: one entry per changed field,
    ``{"field": name, "steps": [...], "before": value as read}``. Pickles with its entries (worker processes)."""

    repairs: list[dict[str, Any]]


class Repairer:
    """Applies one ``RepairConfig`` to records; counts the seconds it spends (the report's ``repairs.seconds``)."""

    def __init__(self, config: RepairConfig, id_field: str | None = None) -> None:
        self.config = config
        self.id_field = id_field
        self.steps = [s for s in STEPS if s in config.steps]
        self._placeholder = compile_pattern(_whole(config.placeholder_pattern), ignore_case=True)
        self._placeholder_fields = set(config.placeholder_fields)
        self._ftfy: Any = None
        self.seconds = 0.0

    def repair(self, record: Mapping[str, Any]) -> Mapping[str, Any]:
        """``record`` itself when nothing needs a repair, else a new ``Repaired`` (``record`` is not changed)."""
        start = time.perf_counter()
        try:
            return self._repair(record)
        finally:
            self.seconds += time.perf_counter() - start

    def _repair(self, record: Mapping[str, Any]) -> Mapping[str, Any]:
        out: Repaired | None = None
        for key, value in record.items():
            if key == self.id_field:
                continue
            if isinstance(value, str):
                new, steps = self.fix_text(value, placeholder=key in self._placeholder_fields)
                if steps:
                    out = out if out is not None else _start(record)
                    out[key] = new
                    out.repairs.append({"field": key, "steps": steps, "before": value})
            elif isinstance(value, list) and any(isinstance(m, Mapping) for m in value):
                turns: list[Any] | None = None
                for i, msg in enumerate(value):
                    if not isinstance(msg, Mapping):
                        continue
                    for sub in _CHAT_TEXT:
                        text = msg.get(sub)
                        if not isinstance(text, str):
                            continue
                        new, steps = self.fix_text(text)
                        if steps:
                            out = out if out is not None else _start(record)
                            turns = turns if turns is not None else list(value)
                            turns[i] = {**turns[i], sub: new}
                            out.repairs.append({"field": f"{key}[{i}].{sub}", "steps": steps, "before": text})
                if turns is not None and out is not None:
                    out[key] = turns
        return out if out is not None else record

    def fix_text(self, text: str, *, placeholder: bool = False) -> tuple[str, list[str]]:
        """The repaired text and the steps that changed it, in the order first applied."""
        done: list[str] = []
        for _ in range(_ROUNDS):
            before = text
            for step in self.steps:
                if step == "mojibake":
                    new = text if text.isascii() else self._fix_encoding(text)
                elif step == "strip":
                    new = _strip(text)
                elif placeholder and text and self._placeholder.search(text):
                    new = ""
                else:
                    continue
                if new != text:
                    text = new
                    if step not in done:
                        done.append(step)
            if text == before:
                break
        return text, done

    def _fix_encoding(self, text: str) -> str:
        if self._ftfy is None:
            import ftfy  # ~0.1 s to import: only once a non-ASCII text is seen

            config = ftfy.TextFixerConfig(unescape_html=False, remove_terminal_escapes=False,
                                          replace_lossy_sequences=False, fix_latin_ligatures=False,
                                          fix_character_width=False, uncurl_quotes=False, fix_line_breaks=False,
                                          fix_surrogates=False, remove_control_chars=False, normalization=None,
                                          explain=False)
            self._ftfy = (ftfy.fix_encoding, config)
        fix, config = self._ftfy
        return str(fix(text, config))


def _strip(text: str) -> str:
    """Control characters removed; whitespace and zero-width characters removed at the end, and at the start of
    a one-line text. A text of several lines keeps the indentation of its first line (code, a Markdown code
    block): only blank lines and zero-width characters before it go."""
    text = _CONTROL.sub("", text).rstrip(_EDGE)
    rest = text.lstrip(_EDGE)
    if len(rest) == len(text):
        return text
    if not any(b in rest for b in _BREAKS):
        return rest
    lead = text[:len(text) - len(rest)]
    cut = max(lead.rfind(b) for b in _BREAKS) + 1
    return lead[cut:].translate(_NO_INVISIBLE) + rest


def _whole(pattern: str) -> str:
    return rf"\A(?:{pattern})\z"


def _start(record: Mapping[str, Any]) -> Repaired:
    out = Repaired(record)
    out.repairs = []
    return out


def content_hash_id(record: Mapping[str, Any]) -> str | None:
    """The content-hash id ``make_sample`` gives ``record`` (None when it is not JSON-serialisable)."""
    try:
        return content_id(canonical_json(record))
    except (TypeError, ValueError, RecursionError):
        return None


def repairs_of(record: Any) -> list[dict[str, Any]]:
    """The repair entries of a record (none for a record that was not repaired)."""
    return record.repairs if isinstance(record, Repaired) else []


_CHAT_PATH = re.compile(r"^(.*)\[(\d+)\]\.(content|value)$", re.DOTALL)


def field_group(field: str) -> str:
    """The top-level field an entry's ``field`` belongs to: a chat turn's list (``messages[3].content``)."""
    m = _CHAT_PATH.match(field)
    return m.group(1) if m else field


def restore(record: Mapping[str, Any], repairs: list[dict[str, Any]]) -> dict[str, Any]:
    """The record as read, from the repaired one and its entries (rejected.jsonl's ``qualgate.repairs``, or the
    JSON of scores.parquet's ``repairs`` column). A ``qualgate`` field added to a rejected record is dropped
    (``runfolder.original_record``)."""
    from qualgate.runfolder import original_record  # runfolder imports this module

    out = original_record(record)[0] or {}
    for entry in repairs:
        field, before = entry["field"], entry["before"]
        m = None if field in out else _CHAT_PATH.match(field)
        if m is None:
            out[field] = before
            continue
        key, i, sub = m.group(1), int(m.group(2)), m.group(3)
        turns = list(out[key])
        turns[i] = {**turns[i], sub: before}
        out[key] = turns
    return out
