"""Sample: one input record (never mutated), its stable id, and the text views checks read.

The text view is chosen by ``input.text``: ``auto`` (recognise common layouts), a field name (a string,
or a chat ``messages`` list of ``{role, content}``), or a template such as ``"{instruction}\\n{output}"``.
Templates only substitute top-level field names: no attribute access, no indexing, no format specs.

A field name that is a *role* (``instruction``, ``input``, ``output``: ``ROLES``), in a template or in a check's
parameter, reads the record field ``input.fields`` maps it to, or else the one ``FieldMap`` recognises in the
file's first records (GPTeacher's ``response`` for ``output``), so one pack serves datasets that name them
differently. A template reads a missing ``input`` as empty, as the checks do. ``FieldWatch`` stops a run
whose text view or checks need a field that nearly every record lacks.
"""

from __future__ import annotations

import difflib
import json
import string
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import xxhash

from qualgate.errors import ConfigError, FieldsMissingError
from qualgate.findings import MALFORMED, Finding

if TYPE_CHECKING:
    from qualgate.findings import Decision

AUTO = "auto"
#: the record fields that hold a chat (a list of messages), in the order the ``auto`` view tries them
CHAT_FIELDS = ("messages", "conversations", "conversation")
#: (request, optional context fields, answers): the request/answer layouts the ``auto`` view recognises
REQUEST_ANSWER = (
    ("instruction", ("input", "context"), ("output", "response", "answer")),
    ("prompt", (), ("completion", "response", "chosen")),
    ("question", ("context",), ("answer", "response")),
)
_TEXT_FIELDS = ("text", "content")
#: The roles a pack may name instead of a record field, each with the record fields that commonly hold it, in
#: order of preference (the role's own name first): what ``FieldMap`` looks for when ``input.fields`` is silent.
ROLES: dict[str, tuple[str, ...]] = {
    "instruction": ("instruction", "prompt", "question"),
    "input": ("input", "context"),
    "output": ("output", "response", "completion", "answer"),
}
#: Roles a template reads as empty where a record lacks them, as the checks do (Alpaca's ``input``)
OPTIONAL_ROLES = frozenset({"input"})


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
    #: role -> record field for the roles this record's file names otherwise (``FieldMap``); None: as named
    fields: Mapping[str, str] | None = None

    def key(self, field: str) -> str:
        """The record field that ``field`` (a role such as ``output``, or any other field name) reads."""
        return self.fields.get(field, field) if self.fields else field

    def view(self, field: str | None) -> str:
        """The text of ``field`` (``None``: the configured text view). Raises FieldProblem."""
        if field is None:
            return self.text
        if self.record is None:
            raise FieldProblem("missing_field", field, "record could not be parsed")
        return as_text(self.record, self.key(field))


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

    def required(self) -> list[str]:
        """The fields (or roles) every record needs for this view, each once."""
        return [f for f in dict.fromkeys(self.fields) if self.kind != "template" or f not in OPTIONAL_ROLES]

    def render(self, record: Mapping[str, Any], fields: Mapping[str, str] | None = None,
               ) -> tuple[str, list[dict[str, str]] | None]:
        """Text view and chat messages (if any); ``fields`` maps roles to record fields. Raises FieldProblem."""
        to = fields or {}
        if self.kind == "template":
            return "".join(lit + (_template_value(record, name, to.get(name, name)) if name else "")
                           for lit, name in self.parts), None
        if self.kind == "field":
            return _field_view(record, to.get(self.spec, self.spec))
        return _auto_view(record)


def _template_value(record: Mapping[str, Any], name: str, key: str) -> str:
    if name in OPTIONAL_ROLES and key not in record:
        return ""
    return as_text(record, key)


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
    for key in CHAT_FIELDS:
        if isinstance(record.get(key), list):
            return _field_view(record, key)
    for key in _TEXT_FIELDS:
        if key in record:
            return as_text(record, key), None
    for first, optional, answers in REQUEST_ANSWER:
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
                source: Source | None = None, raw: bytes | None = None, *, id_fallback: bool = False,
                fields: Mapping[str, str] | None = None) -> Sample:
    """Build a Sample from a parsed record; problems become a ``malformed`` finding, never an exception.
    ``fields``: role -> record field (``FieldMap.resolve``), for the text view and the checks.

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
        text, messages = spec.render(record, fields)
    except FieldProblem as exc:
        problem = problem or malformed(exc.reason, exc.message, source, exc.key)
    return Sample(sid, record, text, messages, source, raw, problem, fields or None)


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
            missing = [k for f in self.spec.required()
                       if s.record is not None and (k := s.key(f)) not in s.record]
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
            text += f" ({self.present()}" + "".join(
                f"; did you mean {guess!r} for {key!r}?" for c in causes
                if (key := _missing_key(c)) and (guess := did_you_mean(key, self.fields)))
            view = whole_set and any(c.startswith(("field ", "no known")) for c in self.causes)
            text += f"; a set is read with the input's text view {self.spec.spec!r})" if view else ")"
        return text

    def present(self) -> str:
        """E.g. "fields present: instruction, input, response": those of the first records."""
        more = self.n_fields - len(self.fields)
        return "fields present: " + (", ".join(self.fields) + (f" and {more} more" if more > 0 else "")
                                     if self.fields else "none")

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


def _missing_key(cause: str) -> str | None:
    """The field of a cause such as "field 'output' missing"."""
    if cause.startswith("field '") and cause.endswith("' missing"):
        return cause[len("field '"):-len("' missing")]
    return None


def did_you_mean(key: str, present: Sequence[str], fields: Mapping[str, str] | None = None) -> str | None:
    """The name ``key`` was most likely meant to be. A common name of a role (``answer``) suggests another name of
    that role that is present (``response``); any other name, a close spelling (difflib) of a present field or
    of a role read from one (``fields``: role -> record field)."""
    role = next((names for names in ROLES.values() if key in names), None)
    if role is not None:
        return next((n for n in role if n in present and n != key), None)
    roles = [r for r in ROLES if (fields or {}).get(r, r) in present]
    close = difflib.get_close_matches(key, [p for p in dict.fromkeys([*present, *roles]) if p != key], n=1,
                                      cutoff=0.6)
    return close[0] if close else None


# ---------------------------------------------------------------------------------------- role fields
class FieldMap:
    """Which record field holds each role a config names, decided once per input file: ``input.fields`` where
    it says, else (for the roles the config uses) the name of ``ROLES[role]`` that most of the file's first
    records hold, the role's own name whenever any holds it. One decision per file reads every record of a
    file alike, whatever the batches or workers; the decision travels with each Sample (``Sample.fields``)."""

    LOOK_AT = 512  # first records of a file that decide

    def __init__(self, explicit: Mapping[Any, str] | None, used: Iterable[str]) -> None:
        self.explicit = dict(explicit or {})
        wanted = set(used)
        self.auto = [r for r in ROLES if r in wanted and r not in self.explicit]

    def resolve(self, records: Iterable[Any]) -> dict[str, str]:
        """role -> record field, only where the two differ, from a file's first records (mappings; anything
        else, such as an unparseable line's None, is passed over)."""
        out = {r: f for r, f in self.explicit.items() if r != f}
        if not self.auto:
            return out
        names = [n for r in self.auto for n in ROLES[r]]
        counts: Counter[str] = Counter()
        for rec in records:
            if isinstance(rec, Mapping):
                counts.update(n for n in names if n in rec)
        taken = set(self.explicit.values())
        for role in self.auto:
            options = [n for n in ROLES[role] if n not in taken]
            if role in options and counts[role]:
                continue  # the role's own name: read as named
            best = max(options, key=lambda n: counts[n], default=None)  # the first of equals: preference order
            if best is not None and counts[best]:
                out[role] = best
                taken.add(best)
        return out

    @staticmethod
    def describe(fields: Mapping[str, str]) -> str:
        """E.g. "output=response" (roles in ``ROLES`` order)."""
        return ", ".join(f"{r}={fields[r]}" for r in sorted(fields, key=lambda r: (list(ROLES).index(r)
                                                                                  if r in ROLES else 9, r)))


class FieldWatch:
    """A field that the text view, the id or a check needs and that nearly every one of a file's first records
    lacks is a config mistake (a typo, another dataset's layout), not data to reject record by record:
    ``observe`` raises InputError (exit 2) naming the field, the file, the fields the records do have and the
    likely one, once ``WINDOW`` records of the file are decided, before the rest of it is scored.

    It counts only what the run found (malformed ``missing_field`` findings, per check among the records the
    check scored), so a field a check reads as optional (Alpaca's ``input``: missing = empty) never counts."""

    WINDOW = 512
    SHARE = 0.95
    MIN_RECORDS = 32  # fewer say too little: their records are rejected as malformed, one by one, as before

    def __init__(self, spec: TextSpec, checks: Sequence[str], id_field: str | None = None) -> None:
        self.spec, self.checks, self.id_field = spec, list(checks), id_field
        self._start(None)

    def _start(self, file: str | None) -> None:
        self.file, self.seen, self.parsed, self.closed = file, 0, 0, file is None
        self.usage = SetUsage(self.spec)  # the fields of the file's first records, as sets list them
        self.fields: Mapping[str, str] = {}
        self.tried: Counter[str] = Counter()  # per check: the records it scored (or tried to)
        self.missing: Counter[tuple[str, str]] = Counter()  # (check, or "" for the text view / "id", field)

    def observe(self, d: Decision) -> None:
        """Count one decision (in input order); raises InputError when its file's first records are decided
        and a needed field is missing in nearly all of them."""
        s = d.sample
        file = s.source.file if s.source is not None else "<records>"
        if file != self.file:
            self.finish()
            self._start(file)
        if self.closed:
            return
        self.seen += 1
        self.usage.add([s])
        if s.record is not None:
            self.parsed += 1
            self.fields = s.fields or {}
            problem = s.problem
            if problem is None:
                self.tried.update(c for c in self.checks if c not in d.skipped)
                self.missing.update((str(f.evidence["from_check"]), str(f.evidence.get("key"))) for f in d.findings
                                    if f.check == MALFORMED and f.reason == "missing_field"
                                    and "from_check" in f.evidence)
            elif problem.reason == "bad_id" and self.id_field is not None and self.id_field not in s.record:
                self.missing["id", self.id_field] += 1
            elif problem.reason == "missing_field":
                keys = [k for f in self.spec.required() if (k := s.key(f)) not in s.record]
                self.missing.update(("", k) for k in keys or [str(problem.evidence.get("key"))])
        if self.seen >= self.WINDOW:
            self.finish()

    def finish(self) -> None:
        """Decide on the records of the current file seen so far (its end, or the end of the input)."""
        if self.closed:
            return
        self.closed = True
        for (who, key), n in self.missing.most_common():
            total = self.tried[who] if who not in ("", "id") else self.parsed
            if total >= self.MIN_RECORDS and n >= self.SHARE * total:
                raise FieldsMissingError(self._message(who, key, n, total), file=self.file)

    def _message(self, who: str, key: str, n: int, total: int) -> str:
        share = f"in {'all ' if n == total else ''}{n} of the first {total} records"
        if key == "input.text":
            return (f"no known text layout (text, messages, instruction/output, prompt/completion) {share} "
                    f"({self.usage.present()}): set input.text or --text")
        role = next((r for r, f in self.fields.items() if f == key), None)
        what = (f"id field {key!r}" if who == "id" else f"field {key!r}" + (f" (read for {role!r})" if role else "")
                + ", which " + (f"check {who!r}" if who else f"the text view {self.spec.spec!r}") + " needs,")
        guess = did_you_mean(key, self.usage.fields, self.fields)
        if guess in ROLES and guess not in self.usage.fields:
            guess = f"{guess!r} (the role, read from {self.fields.get(guess, guess)!r})"
        elif guess is not None:
            guess = repr(guess)
        maps = role or (key if key in ROLES and who != "id" else None)
        fix = (f"map the role with --field {maps}=FIELD or input.fields" if maps else "fix --id or input.id"
               if who == "id" else "fix the check's field in the config" if who else "fix --text or input.text")
        return (f"{what} is missing {share}" + (f": did you mean {guess}?" if guess else "")
                + f" ({self.usage.present()}); {fix}")
