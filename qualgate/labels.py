"""``qualgate tune --labels``: how well a run's decisions match human labels, and which thresholds match best.

A label says whether a person would keep a sample (``accept``) or drop it (``reject``); a labelled reject is
the positive class. Reviewer overrides are labels too: the overrides a run applied (or ``--overrides``) count,
and an overrides file can be passed as ``--labels``; an explicit label wins over an override.

Per check, precision/recall/F1 are measured on the labelled samples the check *scored*. Without
``--all-findings`` a sample rejected by an earlier check skips the later ones, so a later check's recall is
its recall on what reached it, and the labelled rejects it never saw are counted apart. A label does not say
which defect it is about, so a check's own recall is low by design (it catches one kind of defect) and a
threshold chosen to maximise it would make the check catch the other checks' defects. Thresholds are
therefore chosen, one parameter at a time with every other decision as recorded, to maximise the *gate's*
F1 on the labels (``objective="check"`` maximises the check's own F1 instead). Each candidate is decided by
the check's own ``decide`` on the stored scores, so the numbers are exact, except where a sample the check
rejected skipped the later checks and the candidate lets it pass: those are taken as accepted and counted
as ``assumed``.
"""

from __future__ import annotations

import csv
import io
import itertools
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from qualgate.checks import REGISTRY, Check, SetCheck
from qualgate.checks.base import Measurement
from qualgate.config import CheckSpec
from qualgate.decide import owning_check
from qualgate.errors import ConfigError
from qualgate.findings import MALFORMED, OVERRIDE, Finding
from qualgate.overrides import content_sha256, jsonl_items, yaml_items
from qualgate.runfolder import QUALGATE_FIELD, Row, row_sample
from qualgate.tune import Tuned
from qualgate.untrusted import term

#: Fewer labelled rejects than this behind a suggested threshold: it is reported with a warning (and not
#: written by ``--apply``).
MIN_POSITIVES = 20
_MAX_VALUES = 400  # distinct score values a parameter's candidates are drawn from (quantiles beyond that)


class LabelEntry(BaseModel):
    """One labelled sample: ``id`` and ``label`` (or ``decision``, as in an overrides file)."""

    model_config = ConfigDict(extra="allow", frozen=True)
    id: str = Field(min_length=1, description="the sample's id, as in scores.parquet / rejected.jsonl")
    label: Literal["accept", "reject"] | None = Field(None, description="what a person decided")
    decision: Literal["accept", "reject"] | None = Field(None, description="the same, named as in an overrides file")
    sha256: str | None = Field(None, pattern=r"^[0-9a-f]{16,64}$",
                               description="the record's content hash (or a prefix of 16+ hex digits): the label "
                                           "applies to that content only")

    @field_validator("id", mode="before")
    @classmethod
    def _id(cls, v: Any) -> Any:
        return str(v) if isinstance(v, int) and not isinstance(v, bool) else v

    @field_validator("label", "decision", mode="before")
    @classmethod
    def _lower(cls, v: Any) -> Any:
        return v.strip().lower() if isinstance(v, str) else v

    @property
    def value(self) -> str:
        return str(self.label or self.decision)


@dataclass
class Labels:
    """The entries of one or more labels files, by id (a later file wins), and what was skipped."""

    entries: dict[str, tuple[LabelEntry, str]]
    sources: list[str]
    blank: int = 0  # CSV rows with an empty label: not labelled yet


def load_labels(paths: list[str | Path]) -> Labels:
    """Read labels files (JSONL, CSV, or YAML/JSON: a list, or a mapping with ``labels`` or ``overrides``);
    a malformed entry is a ConfigError naming the file, line and key."""
    out = Labels({}, [])
    for path in paths:
        name = str(path)
        try:
            text = Path(path).read_bytes().decode("utf-8-sig")
        except OSError as exc:
            raise ConfigError(f"cannot read the labels file: {exc.strerror}", file=name) from None
        except UnicodeDecodeError as exc:
            raise ConfigError(f"labels file is not valid UTF-8 (offset {exc.start})", file=name) from None
        lower = name.lower()
        if lower.endswith((".jsonl", ".ndjson")):
            items = list(jsonl_items(text, name))
        elif lower.endswith((".csv", ".tsv")):
            items = _csv_items(text, name, "\t" if lower.endswith(".tsv") else ",", out)
        else:
            items = _yaml_labels(text, name)
        mine: dict[str, int] = {}
        for line, item in items:
            if not isinstance(item, dict):
                raise ConfigError(f"a label must be a mapping with id and label (accept|reject), got "
                                  f"{type(item).__name__}", file=name, line=line)
            try:
                entry = LabelEntry(**{str(k): v for k, v in item.items()})
            except ValidationError as exc:
                err = exc.errors()[0]
                key = ".".join(str(p) for p in err["loc"]) or None
                raise ConfigError(err["msg"], file=name, line=line, key=key) from None
            if entry.label is None and entry.decision is None:
                raise ConfigError("no label: set 'label' (or 'decision') to accept or reject", file=name, line=line,
                                  key="label")
            if entry.label and entry.decision and entry.label != entry.decision:
                raise ConfigError(f"label {entry.label!r} and decision {entry.decision!r} disagree", file=name,
                                  line=line, key="decision")
            if entry.id in mine:
                first = out.entries[entry.id]
                if first[0].value != entry.value or first[0].sha256 != entry.sha256:
                    raise ConfigError(f"id {entry.id!r} is labelled twice, differently (first at {first[1]})",
                                      file=name, line=line, key="id")
                continue
            mine[entry.id] = line
            out.entries[entry.id] = (entry, f"{name}:{line}")
        out.sources.append(name)
    return out


def _yaml_labels(text: str, name: str) -> list[tuple[int, Any]]:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        root = None  # yaml_items reports it with its line
    if isinstance(root, yaml.MappingNode) and [k.value for k, _ in root.value] == ["labels"]:
        text = _relabel(text, root)
    try:
        return yaml_items(text, name)
    except ConfigError as exc:  # the overrides reader's words: name what a labels file holds
        detail = exc.detail.replace("overrides (id, decision, reviewer, note)", "labels (id, label)")
        detail = detail.replace("a list of overrides,", "a list of labels,")
        raise ConfigError(detail.replace("the key 'overrides'", "the key 'labels' (or 'overrides')"),
                          file=name, line=exc.line, key="labels" if exc.key == "overrides" else exc.key) from None


def _relabel(text: str, root: yaml.MappingNode) -> str:
    """The text with its single top-level key ``labels`` renamed ``overrides`` (same lines), for yaml_items."""
    key = root.value[0][0]
    lines = text.splitlines(keepends=True)
    ln, col = key.start_mark.line, key.start_mark.column
    line = lines[ln]
    end = key.end_mark.column if key.end_mark.line == ln else len(line)
    lines[ln] = line[:col] + "overrides" + line[end:]
    return "".join(lines)


def _csv_items(text: str, name: str, delimiter: str, out: Labels) -> list[tuple[int, Any]]:
    reader = csv.DictReader(io.StringIO(text), delimiter=delimiter)
    fields = [f.strip() for f in reader.fieldnames or []]
    if "id" not in fields or not {"label", "decision"} & set(fields):
        raise ConfigError(f"the header must name the columns id and label (or decision), got {', '.join(fields)}",
                          file=name, line=1)
    items: list[tuple[int, Any]] = []
    try:
        for row in reader:
            clean = {(k or "").strip(): (v.strip() if isinstance(v, str) else v) for k, v in row.items() if k}
            clean = {k: v for k, v in clean.items() if v not in ("", None)}
            if not clean.get("label") and not clean.get("decision"):
                out.blank += 1  # a sheet being filled in: this row is not labelled yet
                continue
            items.append((reader.line_num, clean))
    except csv.Error as exc:
        raise ConfigError(f"invalid CSV: {exc}", file=name, line=reader.line_num) from None
    return items


# ------------------------------------------------------------------------------------------------ metrics
@dataclass
class Confusion:
    """Counts of one decision rule against the labels (positive: rejected)."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0

    def add(self, truth: bool, predicted: bool) -> None:
        if predicted:
            if truth:
                self.tp += 1
            else:
                self.fp += 1
        elif truth:
            self.fn += 1
        else:
            self.tn += 1

    @property
    def precision(self) -> float | None:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else None

    @property
    def recall(self) -> float | None:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else None

    @property
    def f1(self) -> float | None:
        if not self.tp + self.fp + self.fn:
            return None  # nothing to reject and nothing rejected
        return 2 * self.tp / (2 * self.tp + self.fp + self.fn)

    @property
    def rejected(self) -> int:
        return self.tp + self.fp

    def to_dict(self) -> dict[str, Any]:
        return {"tp": self.tp, "fp": self.fp, "fn": self.fn, "tn": self.tn, "precision": _r(self.precision),
                "recall": _r(self.recall), "f1": _r(self.f1), "positives": self.tp + self.fn,
                "negatives": self.fp + self.tn}


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


@dataclass
class _Case:
    """A labelled sample as one check sees it."""

    truth: bool
    scored: bool
    fixed: bool  # the check rejects it whatever its thresholds (a missing or malformed field)
    other: bool  # another check rejects it
    later_skipped: bool  # checks after this one skipped it (it was rejected here, without --all-findings)
    m: Measurement | None


@dataclass
class Suggestion:
    """The best value found for one decision parameter (or one entry of a dict-valued one)."""

    param: str
    current: Any
    best: Any
    setting: str  # CHECK.PARAM=VALUE for --set
    at_current: dict[str, Any]
    at_best: dict[str, Any]
    samples: int  # labelled samples the check scored
    deciding: int  # ... whose gate decision this check makes (no other check rejects them)
    positives: int  # labelled rejects the choice rests on
    assumed: int = 0
    warning: str | None = None
    run_rejected: dict[str, int] | None = None  # the check's rejections in the whole run: current, best

    @property
    def changed(self) -> bool:
        return bool(self.best != self.current)

    def to_dict(self) -> dict[str, Any]:
        return {"param": self.param, "current": self.current, "best": self.best, "changed": self.changed,
                "set": self.setting, "at_current": self.at_current, "at_best": self.at_best,
                "labelled_scored": self.samples, "deciding": self.deciding, "positives": self.positives,
                "assumed_accepted": self.assumed, "warning": self.warning, "run_rejected": self.run_rejected}


@dataclass
class CheckReport:
    name: str
    kind: str
    scored: Confusion
    not_scored: dict[str, int]
    suggestions: list[Suggestion] = field(default_factory=list)
    not_tunable: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"check": self.name, "kind": self.kind, **self.scored.to_dict(), "not_scored": self.not_scored,
                "suggestions": [s.to_dict() for s in self.suggestions],
                **({"not_tunable": self.not_tunable} if self.not_tunable else {})}


@dataclass
class LabelReport:
    """What ``evaluate`` found: label counts, the gate's and each check's agreement, suggested thresholds."""

    run: str
    sources: list[str]
    objective: str
    all_findings: bool
    labelled: dict[str, int]
    gate: Confusion
    checks: list[CheckReport]
    unknown_ids: list[str]
    hash_mismatch: list[str]
    conflicts: list[str]
    blank: int
    min_positives: int = MIN_POSITIVES

    def suggestions(self, *, supported: bool = False) -> list[tuple[str, Suggestion]]:
        """The changed suggestions (``supported``: only those resting on enough labelled rejects)."""
        return [(c.name, s) for c in self.checks for s in c.suggestions
                if s.changed and (not supported or s.warning is None)]

    def to_dict(self) -> dict[str, Any]:
        return {"run": self.run, "sources": self.sources, "objective": self.objective,
                "all_findings": self.all_findings, "labelled": self.labelled,
                "gate": self.gate.to_dict(), "checks": [c.to_dict() for c in self.checks],
                "unknown_ids": {"count": len(self.unknown_ids), "ids": self.unknown_ids[:100]},
                "hash_mismatch": {"count": len(self.hash_mismatch), "ids": self.hash_mismatch[:100]},
                "conflicts_with_overrides": {"count": len(self.conflicts), "ids": self.conflicts[:100]},
                "blank_rows": self.blank, "min_positives": self.min_positives,
                "set": [s.setting for _, s in self.suggestions()]}


def needs_records(labels: Labels) -> bool:
    """True when some label is bound to a content hash (then the run's records must be read)."""
    return any(e.sha256 for e, _ in labels.entries.values())


def evaluate(tuned: Tuned, labels: Labels, *, objective: str = "gate",
             min_positives: int = MIN_POSITIVES) -> LabelReport:
    """Compare the (re-)decided run with ``labels`` and search each decision parameter for the best value.

    ``tuned`` must hold every score column (``tune(..., all_scores=True)``) and, for hash-bound labels, the
    records (``records=True``)."""
    run = tuned.run
    rows, decisions = run.rows, tuned.decisions
    truth: dict[int, bool] = {}
    used: set[str] = set()
    mismatch: set[str] = set()
    conflicts: list[str] = []
    counts = {"from_files": 0, "from_overrides": 0}
    for i, (row, d) in enumerate(zip(rows, decisions, strict=True)):
        hit = labels.entries.get(row.id)
        label: str | None = None
        if hit is not None:
            entry = hit[0]
            if entry.sha256 is None or _hash(row).startswith(entry.sha256):
                label = entry.value
                used.add(row.id)
                counts["from_files"] += 1
            else:
                mismatch.add(row.id)
        if d.override is not None:
            if label is None:
                label = d.override.decision
                counts["from_overrides"] += 1
            elif label != d.override.decision:
                conflicts.append(row.id)
        if label is not None:
            truth[i] = label == "reject"
    counts["samples"] = len(truth)
    counts["reject"] = sum(truth.values())
    counts["accept"] = len(truth) - counts["reject"]
    findings = {i: [f for f in decisions[i].findings if f.check != OVERRIDE] for i in truth}
    gate = Confusion()
    for i, t in truth.items():
        gate.add(t, bool(findings[i]))
    # a hash-bound label that matched one of several records sharing its id is no mismatch
    report = LabelReport(str(run.path), labels.sources, objective, run.all_findings, counts, gate, [],
                         sorted(set(labels.entries) - {r.id for r in rows}), sorted(mismatch - used), conflicts,
                         labels.blank, min_positives)
    sections = run.report.get("sets") or {}
    specs = {s.name: s for s in tuned.config.checks}
    for name in run.check_order:
        spec = specs.get(name)
        if spec is None:
            continue
        cases: list[_Case] = []
        scored = Confusion()
        not_scored = {"reject": 0, "accept": 0}
        for i, t in truth.items():
            row, d = rows[i], decisions[i]
            mine = [f for f in findings[i] if _mine(f, name)]
            other = len(mine) < len(findings[i])
            if name in d.skipped:
                not_scored["reject" if t else "accept"] += 1
                cases.append(_Case(t, False, False, other, False, None))
                continue
            scored.add(t, bool(mine))
            fixed = any(f.check == MALFORMED for f in mine)
            later = bool(d.skipped) and not run.all_findings
            cases.append(_Case(t, True, fixed, other, later, None if fixed else _measure(spec, row)))
        rep = CheckReport(name, spec.kind, scored, not_scored)
        report.checks.append(rep)
        counter = _RunCounter(spec, rows, decisions, sections.get(name))
        _search(rep, spec, cases, sections.get(name), objective, min_positives, counter)
    return report


class _RunCounter:
    """How many samples of the whole run a check rejects with given parameters (on the samples it scored):
    labels are few and seldom a random sample, so this is a change's real size. Measured lazily."""

    def __init__(self, spec: CheckSpec, rows: list[Row], decisions: list[Any], section: dict[str, Any] | None):
        self.spec, self.rows, self.decisions, self.section = spec, rows, decisions, section
        self._ms: list[Measurement | None] | None = None
        self._other: list[bool] = []

    def rejects(self, params: dict[str, Any]) -> list[bool]:
        """Per scored sample: whether the check rejects it with ``params``."""
        if self._ms is None:
            self._ms, self._other = [], []
            for row, d in zip(self.rows, self.decisions, strict=True):
                if self.spec.name in d.skipped:
                    continue
                found = [f for f in d.findings if f.check != OVERRIDE]
                mine = [f for f in found if _mine(f, self.spec.name)]
                self._other.append(len(mine) < len(found))
                self._ms.append(None if any(f.check == MALFORMED for f in mine) else _measure(self.spec, row))
        check = _build(self.spec, params, self.section)
        assert isinstance(check, Check)
        return [m is None or bool(check.decide(m)) for m in self._ms]

    def count(self, params: dict[str, Any]) -> int:
        return sum(self.rejects(params))

    def gate_flips(self, a: dict[str, Any], b: dict[str, Any]) -> int:
        """Samples whose gate decision differs between the two (no other check rejects them)."""
        return sum(x != y and not o for x, y, o in zip(self.rejects(a), self.rejects(b), self._other, strict=True))

    @property
    def scored(self) -> int:
        return len(self._ms or [])


def _hash(row: Row) -> str:
    rec = row.record
    if isinstance(rec, dict) and isinstance(rec.get(QUALGATE_FIELD, {}).get("sha256"), str):
        return str(rec[QUALGATE_FIELD]["sha256"])
    return content_sha256(row_sample(row)) if rec is not None else ""


def _mine(f: Finding, name: str) -> bool:
    return f.check == name or (f.check == MALFORMED and owning_check(f) == name)


def _measure(spec: CheckSpec, row: Row) -> Measurement:
    import json

    names = REGISTRY[spec.kind].score_names
    stored = row.evidence.get(spec.name)
    return Measurement({k: row.scores.get(f"{spec.name}.{k}") for k in names}, json.loads(stored) if stored else {})


@dataclass
class Combined:
    """Supported changes chosen one at a time, each re-deciding the run (``tune``) before the next is chosen:
    single-parameter suggestions overlap (two limits catching the same labelled rejects), so applying them all
    at once would reject more than each promised."""

    settings: list[str]
    gate_before: Confusion
    gate_after: Confusion
    tuned: Tuned
    report: LabelReport

    def to_dict(self) -> dict[str, Any]:
        return {"set": self.settings, "gate_before": self.gate_before.to_dict(),
                "gate_after": self.gate_after.to_dict(), "exact": self.tuned.exact}


def combine(first: Tuned, report: LabelReport, labels: Labels, settings: list[str], *, overrides: Any = None,
            records: bool = False, max_steps: int = 10) -> Combined:
    """Greedily take the supported suggestion (resting on ``min_positives`` labelled rejects) that raises the
    gate's F1 most, re-decide the run with it, and repeat while one still does."""
    from qualgate.tune import tune

    chosen: dict[str, str] = {}  # CHECK.PARAM -> its setting: a parameter chosen again keeps its last value
    tried: set[str] = set()
    tuned, current = first, report
    for _ in range(max_steps):
        pool = [((s.at_best["gate"]["f1"] or 0.0) - (s.at_current["gate"]["f1"] or 0.0), s)
                for _, s in current.suggestions(supported=True) if s.setting not in tried]
        pool = [(g, s) for g, s in pool if g > 1e-12]
        if not pool:
            break
        _, pick = max(pool, key=lambda x: (x[0], -(x[1].run_rejected or {}).get("best", 0)))
        tried.add(pick.setting)
        trial = {**chosen, pick.setting.partition("=")[0]: pick.setting}
        again = tune(first.run.path, [*settings, *trial.values()], overrides=overrides, records=records,
                     all_scores=True)
        result = evaluate(again, labels, objective=report.objective, min_positives=report.min_positives)
        # re-decided for real, the gain may vanish: without --all-findings a sample a loosened check lets
        # through needs the later checks' scores, which the run does not have, and keeps its decision
        if (result.gate.f1 or 0.0) <= (current.gate.f1 or 0.0) + 1e-12:
            continue
        chosen, tuned, current = trial, again, result
    return Combined(list(chosen.values()), report.gate, current.gate, tuned, current)


# ------------------------------------------------------------------------------------------------- search
def _search(rep: CheckReport, spec: CheckSpec, cases: list[_Case], section: dict[str, Any] | None,
            objective: str, min_positives: int, counter: _RunCounter) -> None:
    cls = REGISTRY[spec.kind]
    if not cls.decision_params:
        return
    live = [c for c in cases if c.scored]
    if not live:
        return
    current = spec.params.model_dump()
    probe = _build(spec, current, section)
    if isinstance(probe, str):
        rep.not_tunable = probe
        return
    fields = type(spec.params).model_fields
    for param in sorted(cls.decision_params):
        value = current.get(param)
        if isinstance(value, dict):
            for key, sub in value.items():
                if isinstance(sub, (int, float)) and not isinstance(sub, bool):
                    cands = _numeric(sub, _values(spec, param, key, live), isinstance(sub, int))
                    rep.suggestions.extend(_best(spec, param, key, cands, cases, section, objective, min_positives,
                                               counter))
            continue
        kind = _kind(fields[param].annotation if param in fields else None, value)
        if kind == "bool":
            cands = [value, not value]
        elif kind in ("int", "float"):
            cands = [*_numeric(value, _values(spec, param, None, live), kind == "int"), None]
        else:
            continue
        rep.suggestions.extend(_best(spec, param, None, cands, cases, section, objective, min_positives, counter))


def _kind(annotation: Any, value: Any) -> str | None:
    if isinstance(value, bool):
        return "bool"
    args = set(typing.get_args(annotation)) or {annotation}
    if float in args:
        return "float"
    if int in args:
        return "int"
    if bool in args:
        return "bool"
    return "int" if isinstance(value, int) else "float" if isinstance(value, float) else None


def _values(spec: CheckSpec, param: str, key: Any, live: list[_Case]) -> list[float]:
    """The stored values of the score(s) ``param`` limits (by the ``min_<score>``/``max_<score>`` naming
    convention; every score of the check when it names none), on the labelled samples the check scored."""
    names = REGISTRY[spec.kind].score_names
    stem = param[4:] if param.startswith(("min_", "max_")) else param
    if key is not None:
        stem = stem.replace("ngram", f"{key}gram", 1)
    related = [stem] if stem in names else list(names)
    out = {float(v) for c in live if c.m is not None for s in related
           if isinstance(v := c.m.values.get(s), (int, float)) and math.isfinite(v)}
    values = sorted(out)
    if len(values) > _MAX_VALUES:
        step = (len(values) - 1) / (_MAX_VALUES - 1)
        values = [values[round(i * step)] for i in range(_MAX_VALUES)]
    return values


def _numeric(current: Any, values: list[float], integer: bool) -> list[Any]:
    """Candidate thresholds: one in every gap between stored values (a round number where one fits, else the
    values themselves), one beyond each end, and the current value."""
    out: list[Any] = [current]
    if integer:
        for v in values:
            lo = math.floor(v)
            out.extend([lo - 1, lo, lo + 1, math.ceil(v)])
        return list(dict.fromkeys(out))
    if not values:
        return out
    span = values[-1] - values[0] or abs(values[-1]) or 1.0
    out.extend([_round_between(values[0] - span, values[0]), _round_between(values[-1], values[-1] + span)])
    for a, b in itertools.pairwise(values):
        out.extend([a, _round_between(a, b), b])
    return list(dict.fromkeys(out))


def _round_between(a: float, b: float) -> float:
    """The roundest number strictly between a and b (their midpoint when none is rounder)."""
    mid = (a + b) / 2
    for digits in range(0, 12):
        r = round(mid, digits)
        if a < r < b:
            return r
    return mid


def _build(spec: CheckSpec, params: dict[str, Any], section: dict[str, Any] | None) -> Check[Any] | str | None:
    """The check with these parameters, ready to decide; None when they are not valid, a string when the check
    cannot decide from stored scores (why)."""
    try:
        check = REGISTRY[spec.kind](spec.name, type(spec.params).model_validate(params))
    except (ValidationError, ConfigError, ValueError, TypeError):
        return None
    if isinstance(check, SetCheck):
        why = check.restore_for_decide(section)
        if why is not None:
            return str(why)
    return check


def _best(spec: CheckSpec, param: str, key: Any, cands: list[Any], cases: list[_Case],
          section: dict[str, Any] | None, objective: str, min_positives: int,
          counter: _RunCounter) -> list[Suggestion]:
    """The value of ``param`` (entry ``key`` of a dict-valued one) that matches the labels best: highest F1
    among the values that get fewer labelled samples wrong than the current one, then fewest labelled
    rejections, then nearest the current value, then fewest rejections in the whole run."""
    base = spec.params.model_dump()
    current = base[param] if key is None else base[param][key]

    def with_value(value: Any) -> dict[str, Any]:
        return {**base, param: value if key is None else {**base[param], key: value}}

    scored: list[tuple[tuple[Any, ...], Any, dict[str, Any], int, int]] = []
    at_current: dict[str, Any] | None = None
    current_errors = 0
    for value in cands:
        params = with_value(value)
        check = _build(spec, params, section)
        if not isinstance(check, Check):
            continue
        gate, own, assumed = Confusion(), Confusion(), 0
        try:
            for c in cases:
                if not c.scored:
                    gate.add(c.truth, c.other)
                    continue
                rejected = c.fixed or (c.m is not None and bool(check.decide(c.m)))
                own.add(c.truth, rejected)
                gate.add(c.truth, rejected or c.other)
                assumed += (not rejected and not c.other and c.later_skipped)
        except Exception:  # a value the params model admits but decide cannot use (e.g. None): not a candidate
            if value == current:
                raise
            continue
        target = gate if objective == "gate" else own
        metrics = {"gate": gate.to_dict(), "check": own.to_dict()}
        errors = target.fp + target.fn
        if value == current:
            at_current, current_errors = metrics, errors
        rank = (target.f1 or 0.0, -target.rejected, -_distance(value, current))
        scored.append((rank, value, metrics, assumed, errors))
    if not scored or at_current is None:
        return []
    # F1 alone rewards any extra rejection more precise than half the current F1: with the gate's precision
    # low (rejections the thresholds cannot fix), a length limit that rejects every long answer would "win".
    # A change must get fewer labelled samples wrong than the current value does.
    allowed = [s for s in scored if s[4] < current_errors or s[1] == current]
    top = max(s[0] for s in allowed)
    tied = [s for s in allowed if s[0] == top]
    if len(tied) > 1:  # equal on the labels (e.g. no current value to be near): the smaller change to the run
        tied.sort(key=lambda s: (counter.count(with_value(s[1])), _magnitude(s[1])))
    _, best, metrics, assumed, _ = tied[0]
    live = [c for c in cases if c.scored]
    deciding = [c for c in live if not c.other]
    positives = sum(c.truth for c in (deciding if objective == "gate" else live))
    name = param if key is None else f"{param}[{key}]"
    shown = best if key is None else {**base[param], key: best}
    setting = f"{spec.name}.{param}={_flow(shown)}"
    warnings: list[str] = []
    run_rejected = None
    if best != current:
        if positives < min_positives:
            warnings.append(f"rests on {positives} labelled reject(s) (fewer than {min_positives})")
        after, before = counter.count(with_value(best)), counter.count(with_value(current))
        run_rejected = {"scored": counter.scored, "current": before, "best": after}
        # Labels gathered where the current limit is (its rejections, borderline cases) say little about a
        # value far from it: the change must flip labelled samples at least half as densely as labelled
        # samples lie in the run, or the labels do not cover what it changes.
        lab_flips = abs(_rejected(metrics["gate"]) - _rejected(at_current["gate"]))
        run_flips = counter.gate_flips(with_value(current), with_value(best))
        if run_flips and counter.scored and lab_flips / run_flips < 0.5 * len(live) / counter.scored:
            warnings.append(f"changes the decision on {run_flips} samples of the run, {lab_flips} of them "
                            "labelled: the labels cover it too thinly")
    return [Suggestion(name, current, best, setting, at_current, metrics, len(live), len(deciding), positives,
                       assumed if best != current else 0, "; ".join(warnings) or None, run_rejected)]


def _rejected(counts: dict[str, Any]) -> int:
    return int(counts["tp"]) + int(counts["fp"])


def _magnitude(value: Any) -> float:
    return abs(float(value)) if isinstance(value, (int, float)) else 0.0


def _distance(value: Any, current: Any) -> float:
    if value == current:
        return 0.0
    if isinstance(value, (int, float)) and isinstance(current, (int, float)) and not isinstance(value, bool):
        return abs(float(value) - float(current))
    return math.inf


def _flow(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix("\n...").strip()


# ------------------------------------------------------------------------------------------------- output
def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def render(r: LabelReport, combined: Combined | None = None) -> str:
    """The labels report as a terminal table; ids, names and values pass through ``term``."""
    lab = r.labelled
    lines = [f"labels: {lab['samples']} labelled samples of {term(r.run)} ({lab['reject']} reject, {lab['accept']} "
             f"accept; {lab['from_files']} from {', '.join(term(s) for s in r.sources)}, {lab['from_overrides']} "
             "from overrides)"]
    if r.unknown_ids:
        lines.append(f"  {len(r.unknown_ids)} label id(s) match no sample of the run (ignored): "
                     + ", ".join(term(i) for i in r.unknown_ids[:10]))
    if r.hash_mismatch:
        lines.append(f"  {len(r.hash_mismatch)} label(s) bound to other content (sha256) than the run's record: "
                     "not used: " + ", ".join(term(i) for i in r.hash_mismatch[:10]))
    if r.conflicts:
        lines.append(f"  {len(r.conflicts)} label(s) disagree with the run's override (the label is used): "
                     + ", ".join(term(i) for i in r.conflicts[:10]))
    if r.blank:
        lines.append(f"  {r.blank} CSV row(s) without a label (skipped)")
    g = r.gate
    lines += ["", f"gate (before overrides): precision {_pct(g.precision)}  recall {_pct(g.recall)}  F1 {_pct(g.f1)}  "
                  f"(tp {g.tp}, fp {g.fp}, fn {g.fn}, tn {g.tn})", "",
              "per check, on the labelled samples it scored (positive: labelled reject)",
              f"{'check':<22} {'scored':>6} {'rej':>4} {'acc':>4} {'tp':>4} {'fp':>4} {'fn':>4} "
              f"{'prec':>5} {'recall':>6} {'F1':>5} {'unscored rej/acc':>17}"]
    for c in r.checks:
        k = c.scored
        lines.append(f"{term(c.name):<22} {k.tp + k.fp + k.fn + k.tn:>6} {k.tp + k.fn:>4} {k.fp + k.tn:>4} {k.tp:>4} "
                     f"{k.fp:>4} {k.fn:>4} {_pct(k.precision):>5} {_pct(k.recall):>6} {_pct(k.f1):>5} "
                     f"{c.not_scored['reject']:>8}/{c.not_scored['accept']}")
    if not r.all_findings:
        lines.append("(run without --all-findings: a sample rejected by an earlier check is not scored by later "
                     "ones, so a check's recall is on what reached it; 'unscored' counts the rest)")
    target = "gate F1" if r.objective == "gate" else "the check's F1"
    lines += ["", f"thresholds ({target} on the labels, one parameter at a time, others as run):",
              f"{'parameter':<40} {'current':>10} {'best':>10} {'F1 now':>7} {'F1 best':>8} {'check P/R at best':>18} "
              f"{'rests on':>9} {'run rejects':>14}"]
    key = "gate" if r.objective == "gate" else "check"
    notes: list[str] = []
    for c in r.checks:
        if c.not_tunable:
            notes.append(f"{term(c.name)}: not tunable from stored scores ({term(c.not_tunable)})")
        for s in c.suggestions:
            best = s.at_best["check"]
            lines.append(f"{term(c.name + '.' + s.param):<40} {term(_short(s.current)):>10} "
                         f"{term(_short(s.best)) if s.changed else '=':>10} "
                         f"{_pct(s.at_current[key]['f1']):>7} {_pct(s.at_best[key]['f1']):>8} "
                         f"{_pct(best['precision']) + '/' + _pct(best['recall']):>18} {s.positives:>5} rej"
                         + (f" {s.run_rejected['current']:>6} -> {s.run_rejected['best']:<6}" if s.run_rejected else
                            "") + (" !" if s.warning else ""))
            if s.assumed:
                notes.append(f"{term(c.name + '.' + s.param)}: {s.assumed} labelled sample(s) it would let through "
                             "were not scored by later checks (taken as accepted)")
    changed = r.suggestions()
    for name, sug in changed:
        if sug.warning:
            notes.append(f"! {term(name + '.' + sug.param)}: {sug.warning}")
    if not changed:
        notes.append("no parameter matches the labels better than its current value")
    elif combined is None:
        sets = " ".join(f"--set '{term(s.setting)}'" for _, s in changed if not s.warning)
        notes.append(f"each on its own (they may overlap): qualgate tune --run {term(r.run)} {sets}" if sets else
                     "no change is well supported by the labels")
    elif combined.settings:
        a, b = combined.gate_before, combined.gate_after
        sets = " ".join(f"--set '{term(x)}'" for x in combined.settings)
        notes += [f"together (chosen one at a time, the run re-decided after each): gate precision {_pct(a.precision)}"
                  f" -> {_pct(b.precision)}, recall {_pct(a.recall)} -> {_pct(b.recall)}, F1 {_pct(a.f1)} -> "
                  f"{_pct(b.f1)}", f"try: qualgate tune --run {term(r.run)} {sets}"]
    elif not r.suggestions(supported=True):
        notes.append("no change is well supported by the labels: none to apply")
    else:
        notes.append("no supported change raises the gate's F1 once the run is re-decided with it"
                     + ("" if r.all_findings else " (without --all-findings, a sample a loosened check lets through "
                        "keeps its decision: the later checks never scored it)"))
    return "\n".join([*lines, "", *notes]) + "\n"


def _short(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def apply_snippet(r: LabelReport, combined: Combined) -> str:
    """The run's resolved config with the combined changes set (YAML), so ``qualgate filter -c FILE`` uses them;
    a comment lists them and the suggestions left out for resting on too few labelled rejects."""
    data = combined.tuned.config.to_dict()
    skipped = [(s.setting, s.warning) for _, s in r.suggestions() if s.warning]
    head = [f"# thresholds from labels ({', '.join(r.sources)}) on run {r.run}",
            *(f"#   {u}" for u in combined.settings or ["(no change rests on enough labelled rejects)"]),
            *(f"# left out ({w}): {u}" for u, w in skipped)]
    return "\n".join(head) + "\n" + yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
