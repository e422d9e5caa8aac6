"""Sample: one input record (never mutated), its stable id, and the text views checks read.

The text view is chosen by ``input.text``: ``auto`` (recognise common layouts), a field name (a string,
or a chat ``messages`` list of ``{role, content}``), or a template such as ``"{instruction}\\n{output}"``.
Templates only substitute top-level field names: no attribute access, no indexing, no format specs.
"""

from __future__ import annotations

import json
import string
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import xxhash

from qualgate.errors import ConfigError
from qualgate.findings import MALFORMED, Finding

AUTO = "auto"
_CHAT_FIELDS = ("messages", "conversations", "conversation")
_PAIRS = (
    ("instruction", ("input", "context"), ("output", "response", "answer")),
    ("prompt", (), ("completion", "response", "chosen")),
    ("question", ("context",), ("answer", "response")),
)
_TEXT_FIELDS = ("text", "content")


@dataclass(frozen=True)
class Source:
    """Where a record came from: file and 1-based position (a line, a JSON array item, a table row)."""

    file: str
    line: int
    unit: str = "line"

    def __str__(self) -> str:
        return f"{self.file}:{self.line}" if self.unit == "line" else f"{self.file} {self.unit} {self.line}"

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, self.unit: self.line}


class FieldProblem(Exception):
    """A field a check or the text view needs is missing or of the wrong type."""

    def __init__(self, reason: str, key: str, message: str) -> None:
        super().__init__(message)
        self.reason, self.key, self.message = reason, key, message


@dataclass
class Sample:
    """One record and its views. ``record`` is ``None`` only when the input could not be parsed."""

    id: str
    record: Mapping[str, Any] | None
    text: str = ""
    messages: list[dict[str, str]] | None = None
    source: Source | None = None
    raw: bytes | None = None
    problem: Finding | None = None

    def view(self, field: str | None) -> str:
        """The text of ``field`` (``None``: the configured text view). Raises FieldProblem."""
        if field is None:
            return self.text
        if self.record is None:
            raise FieldProblem("missing_field", field, "record could not be parsed")
        return as_text(self.record, field)


def as_text(record: Mapping[str, Any], key: str) -> str:
    """A field's value as text: strings as they are, numbers formatted, anything else is a problem."""
    if key not in record:
        raise FieldProblem("missing_field", key, f"field '{key}' is missing")
    value = record[key]
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or value is None or not isinstance(value, (int, float)):
        kind = "null" if value is None else type(value).__name__
        raise FieldProblem("wrong_type", key, f"field '{key}' should be a string, got {kind}")
    return str(value)


class TextSpec:
    """Parsed ``input.text``: how a record becomes the text that checks read."""

    def __init__(self, spec: str) -> None:
        self.spec = spec
        self.fields: list[str] = []
        self.parts: list[tuple[str, str | None]] = []
        if spec == AUTO:
            self.kind = "auto"
        elif "{" in spec or "}" in spec:
            self.kind = "template"
            try:
                parsed = list(string.Formatter().parse(spec))
            except ValueError as exc:
                raise ConfigError(f"bad template {spec!r}: {exc}", key="input.text") from None
            for literal, name, fmt, conv in parsed:
                if name is not None and (not name.isidentifier() or fmt or conv):
                    raise ConfigError(
                        f"template field {{{name}{'!' + conv if conv else ''}{':' + fmt if fmt else ''}}} "
                        "is not allowed: use plain top-level field names such as {instruction}",
                        key="input.text")
                self.parts.append((literal, name))
                if name is not None:
                    self.fields.append(name)
        else:
            self.kind = "field"
            self.fields = [spec]

    def render(self, record: Mapping[str, Any]) -> tuple[str, list[dict[str, str]] | None]:
        """Text view and chat messages (if any). Raises FieldProblem."""
        if self.kind == "template":
            return "".join(lit + (as_text(record, name) if name else "") for lit, name in self.parts), None
        if self.kind == "field":
            return _field_view(record, self.spec)
        return _auto_view(record)


def _field_view(record: Mapping[str, Any], key: str) -> tuple[str, list[dict[str, str]] | None]:
    value = record.get(key)
    if isinstance(value, list):
        messages = chat_messages(value, key)
        return "\n".join(m["content"] for m in messages), messages
    return as_text(record, key), None


def chat_messages(value: list[Any], key: str) -> list[dict[str, str]]:
    """Validate a chat list: ``{role, content}`` (or ShareGPT's ``{from, value}``) string pairs."""
    out: list[dict[str, str]] = []
    for i, msg in enumerate(value):
        where = f"{key}[{i}]"
        if not isinstance(msg, Mapping):
            raise FieldProblem("wrong_type", where, f"{where} should be an object with role and content")
        role = msg.get("role", msg.get("from"))
        content = msg.get("content", msg.get("value"))
        if not isinstance(role, str):
            raise FieldProblem("wrong_type" if role is not None else "missing_field", f"{where}.role",
                               f"{where}.role should be a string")
        if not isinstance(content, str):
            raise FieldProblem("wrong_type" if content is not None else "missing_field", f"{where}.content",
                               f"{where}.content should be a string")
        out.append({"role": role, "content": content})
    return out


def _auto_view(record: Mapping[str, Any]) -> tuple[str, list[dict[str, str]] | None]:
    for key in _CHAT_FIELDS:
        if isinstance(record.get(key), list):
            return _field_view(record, key)
    for key in _TEXT_FIELDS:
        if key in record:
            return as_text(record, key), None
    for first, optional, answers in _PAIRS:
        answer = next((a for a in answers if a in record), None)
        if first in record and answer is not None:
            parts = [as_text(record, first)]
            parts += [t for k in optional if k in record and (t := as_text(record, k))]
            parts.append(as_text(record, answer))
            return "\n".join(parts), None
    raise FieldProblem("missing_field", "input.text",
                       "no known text layout (text, messages, instruction/output, prompt/completion); "
                       "set input.text or --text")


def canonical_json(record: Any) -> bytes:
    """Key-sorted compact JSON: the same record gives the same bytes on every machine."""
    text = json.dumps(record, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return text.encode("utf-8", "surrogatepass")


def content_id(data: bytes) -> str:
    """Stable 64-bit content hash (xxh3), hex."""
    return xxhash.xxh3_64_hexdigest(data)


def malformed(reason: str, message: str, source: Source | None, key: str | None = None) -> Finding:
    evidence: dict[str, Any] = {}
    if source is not None:
        evidence.update(source.to_dict())
    if key is not None:
        evidence["key"] = key
    where = f"{source}: " if source is not None else ""
    return Finding(MALFORMED, reason, None, None, f"{where}{message}", evidence)


def make_sample(record: Mapping[str, Any], spec: TextSpec, id_field: str | None,
                source: Source | None = None, raw: bytes | None = None, *, id_fallback: bool = False) -> Sample:
    """Build a Sample from a parsed record; problems become a ``malformed`` finding, never an exception.

    ``id_fallback``: a record whose id field is missing (or not a string or integer) takes the content hash,
    as without ``id_field``, instead of a ``bad_id`` problem. For the sets inputs are compared with (baseline,
    private, reference): their ids only name evidence, and a human reference rarely has the generator's ids.
    """
    problem: Finding | None = None
    sid: str | None = None
    if id_field is not None:
        value = record.get(id_field)
        if isinstance(value, (str, int)) and not isinstance(value, bool):
            sid = str(value)
        elif not id_fallback:
            why = ("is missing" if id_field not in record
                   else f"should be a string or integer, got {type(value).__name__}")
            problem = malformed("bad_id", f"id field '{id_field}' {why}", source, id_field)
    if sid is None:
        try:
            sid = content_id(canonical_json(record))
        except (TypeError, ValueError, RecursionError) as exc:
            # Not JSON-shaped (non-string keys, cycles, absurd depth): only reachable from library input.
            sid = content_id(f"unserialisable:{source}".encode())
            why = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
            problem = problem or malformed("not_json", f"record is not JSON-serialisable: {why}", source)
    text, messages = "", None
    try:
        text, messages = spec.render(record)
    except FieldProblem as exc:
        problem = problem or malformed(exc.reason, exc.message, source, exc.key)
    return Sample(sid, record, text, messages, source, raw, problem)


def unparseable_sample(reason: str, message: str, source: Source, raw: bytes) -> Sample:
    """A record that could not be parsed at all: kept (as raw bytes) and rejected as malformed."""
    return Sample(content_id(raw), None, "", None, source, raw, malformed(reason, message, source))


def _cause(reason: str, key: str | None) -> str:
    """One short phrase per kind of unusable record, e.g. "field 'output' missing"."""
    if reason == "bad_id":
        return f"id field '{key}' missing or not a string or integer"
    if key == "input.text":
        return "no known text layout (text, messages, instruction/output, prompt/completion)"
    if key is not None and reason == "missing_field":
        return f"field '{key}' missing"
    if key is not None and reason == "wrong_type":
        return f"field '{key}' not text"
    return f"not readable ({reason})"


class SetUsage:
    """Why records of a set (baseline, private, reference) could not be used, so that "0 usable records"
    names the cause: counts per cause (for the text view, and for each check's own ``field``) and the field
    names the set's first records hold."""

    LOOK_AT = 5  # records whose field names are listed
    SHOW = 12  # field names a message lists at most

    def __init__(self, spec: TextSpec) -> None:
        self.spec = spec
        self.records = self.usable = 0
        self.causes: Counter[str] = Counter()
        #: per user of the set (a check's name, or "diversity"): its field's problems in the usable records
        self.by_user: dict[str, Counter[str]] = {}
        self.fields: list[str] = []  # the first SHOW field names of the first LOOK_AT records
        self.n_fields = 0  # how many distinct names those records have
        self._seen: set[str] = set()
        self._looked = 0

    def add(self, samples: Sequence[Sample]) -> list[Sample]:
        """Count a batch; returns its usable samples."""
        good: list[Sample] = []
        for s in samples:
            self.records += 1
            if s.record is not None and self._looked < self.LOOK_AT:
                self._looked += 1
                for k in map(str, s.record):
                    if k not in self._seen:
                        self._seen.add(k)
                        if len(self.fields) < self.SHOW:
                            self.fields.append(k if len(k) <= 40 else k[:39] + "…")
                self.n_fields = len(self._seen)
            if s.problem is None:
                good.append(s)
                continue
            missing = [f for f in dict.fromkeys(self.spec.fields) if s.record is not None and f not in s.record]
            if s.problem.reason == "missing_field" and missing:  # a template: name every field it lacks
                self.causes.update(f"field '{f}' missing" for f in missing)
            else:
                self.causes[_cause(s.problem.reason, s.problem.evidence.get("key"))] += 1
        self.usable += len(good)
        return good

    def add_field(self, user: str, samples: Sequence[Sample], field: str | None) -> None:
        """Count the usable samples in which ``user``'s own field is missing or not text."""
        if field is None:
            return
        for s in samples:
            try:
                s.view(field)
            except FieldProblem as exc:
                self.by_user.setdefault(user, Counter())[_cause(exc.reason, exc.key)] += 1

    def usable_by(self, user: str | None = None) -> int:
        return self.usable - sum(self.by_user.get(user, Counter()).values()) if user else self.usable

    def explain(self, user: str | None = None, *, whole_set: bool = True) -> str:
        """E.g. "field 'output' missing in all 200 (fields present: instruction, context, response, ...)":
        why records were unusable to ``user`` (None: to all), counting those of the whole set or not."""
        causes = (self.causes if whole_set else Counter()) + (self.by_user.get(user, Counter()) if user else Counter())
        if not causes:
            return ""
        parts = [f"{cause} in {'all ' if n == self.records else ''}{n}" for cause, n in causes.most_common()]
        text = "; ".join(parts)
        if any(c.startswith(("field ", "no known")) for c in causes):
            more = self.n_fields - len(self.fields)
            present = ", ".join(self.fields) + (f" and {more} more" if more > 0 else "") if self.fields else "none"
            view = whole_set and any(c.startswith(("field ", "no known")) for c in self.causes)
            text += f" (fields present: {present}" + (
                f"; a set is read with the input's text view {self.spec.spec!r})" if view else ")")
        return text

    def summary(self) -> dict[str, Any]:
        """Counts only, for reports: no field names read from the set (a private set's could be telling)."""
        out: dict[str, Any] = {"records": self.records, "usable": self.usable, "causes": dict(self.causes)}
        if by_user := {u: dict(c) for u, c in self.by_user.items() if c}:
            out["by_check"] = by_user
        return out

    def to_json(self) -> str:
        return json.dumps({**self.summary(), "fields": self.fields, "n_fields": self.n_fields})

    def restore(self, text: str, user: str) -> None:
        """Take what a cached index stored for ``user`` (``to_json``) as this set's usage. Raises (and changes
        nothing) when ``text`` is not what ``to_json`` writes."""
        data = json.loads(text)
        records, usable, fields = int(data["records"]), int(data["usable"]), [str(f) for f in data["fields"]]
        n_fields = int(data["n_fields"])
        causes = Counter({str(k): int(v) for k, v in data["causes"].items()})
        mine = {str(k): int(v) for k, v in data.get("by_check", {}).get(user, {}).items()}
        self.records, self.usable, self.fields, self.n_fields, self.causes = records, usable, fields, n_fields, causes
        if mine:
            self.by_user[user] = Counter(mine)
