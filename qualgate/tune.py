"""``qualgate tune``: re-decide a finished run with other parameters, from its stored scores alone.

A run keeps every score and each check's evidence in ``scores.parquet`` and every finding in
``rejected.jsonl`` / ``overrides.jsonl``. Tuning rebuilds only the checks whose parameters change and calls
their ``decide`` on the stored measurement; every other check's findings are taken as recorded. The run's
order and skipping rule are replayed: without ``--all-findings`` a sample that now fails earlier skips the
later checks, and a sample that now passes a check it used to fail needs the later checks' scores, which
the original run skipped. Such samples keep their recorded decision and are counted as ``needs_scores``.

Keep-first duplicate checks admit only finally accepted samples to their index, so when a sample's
decision flips, duplicates named after it (or later samples that would have been named after it) may be
decided differently by a full re-run: those are counted as ``order_dependent``. With neither count, the
result equals a full re-run with the same parameters.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from qualgate.checks import REGISTRY, Check, SetCheck
from qualgate.checks.base import Measurement
from qualgate.config import GateConfig, load_config
from qualgate.decide import decide_in_order, owning_check
from qualgate.errors import ConfigError, InputError
from qualgate.findings import MALFORMED, OVERRIDE, Decision, Finding, Override
from qualgate.io import lines_at, loads_strict
from qualgate.overrides import Overrides, overrule
from qualgate.report import evaluate_gate, share
from qualgate.runfolder import Row, RunWriter, StoredRun, load_run, read_report, row_sample
from qualgate.sample import TextSpec
from qualgate.untrusted import term


def parse_settings(config: GateConfig, settings: list[str]) -> tuple[GateConfig, dict[str, Any]]:
    """Apply ``CHECK.PARAM=VALUE`` settings (VALUE read as YAML: numbers, lists, null) to a config."""
    data = config.to_dict()
    by_name = {c["name"]: c for c in data["checks"]}
    changes: dict[str, Any] = {}
    for item in settings:
        key, sep, text = item.partition("=")
        name, dot, param = key.strip().rpartition(".")
        if not sep or not dot or not name or not param:
            raise ConfigError(f"expected CHECK.PARAM=VALUE, got {item!r}", file="--set")
        if name not in by_name:
            raise ConfigError(f"no check named {name!r} in this run (checks: {', '.join(by_name)})", file="--set",
                              key=key)
        if param not in by_name[name] or param in ("check", "name"):
            known = [k for k in by_name[name] if k not in ("check", "name")]
            raise ConfigError(f"check {name!r} ({by_name[name]['check']}) has no parameter {param!r} "
                              f"(parameters: {', '.join(known)})", file="--set", key=key)
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"cannot read value {text!r}: {exc}", file="--set", key=key) from None
        by_name[name][param] = value
        changes[f"{name}.{param}"] = value
    try:
        new = load_config(data)
    except ConfigError as exc:  # name the check as --set does, not by its position in the config
        where = exc.key
        m = re.match(r"checks\[(\d+)\]\.(.+)", where or "")
        if m and int(m.group(1)) < len(data["checks"]):
            where = f"{data['checks'][int(m.group(1))]['name']}.{m.group(2)}"
        raise ConfigError(exc.detail, file="--set", key=where) from None
    new.source = config.source
    return new, changes


@dataclass
class Tuned:
    """The outcome of tuning: new decisions (in input order), what changed, and what could not be re-decided."""

    run: StoredRun
    config: GateConfig
    changes: dict[str, Any]
    decisions: list[Decision]
    before: dict[str, int]
    after: dict[str, int]
    accepted_before: int
    accepted_after: int
    newly_rejected: list[str] = field(default_factory=list)
    newly_accepted: list[str] = field(default_factory=list)
    needs_scores: Counter[str] = field(default_factory=Counter)
    needs_scores_ids: list[str] = field(default_factory=list)
    order_dependent: list[str] = field(default_factory=list)
    overrides: dict[str, Any] | None = None  # what a replacing overrides file matched (unmatched, refused)
    changed: dict[str, Check[Any]] = field(default_factory=dict)  # the rebuilt checks, ready to decide

    @property
    def exact(self) -> bool:
        return not self.needs_scores_ids and not self.order_dependent

    def gate_passed(self) -> bool:
        """The config's gate conditions on the new counts (diversity conditions: the original run's values)."""
        total = len(self.decisions)
        by_check = {n: {"rejected": c, "reject_rate": share(c, total)} for n, c in self.after.items()}
        return bool(evaluate_gate(self.config.gate, total, self.accepted_after, by_check,
                                  self.run.report.get("diversity"))["passed"])

    def to_dict(self) -> dict[str, Any]:
        checks = sorted(set(self.before) | set(self.after), key=lambda n: (n == MALFORMED, n))
        return {
            "run": str(self.run.path), "changes": self.changes,
            "total": len(self.decisions),
            "accepted": {"before": self.accepted_before, "after": self.accepted_after},
            "rejected": {"before": len(self.decisions) - self.accepted_before,
                         "after": len(self.decisions) - self.accepted_after},
            "by_check": {n: {"before": self.before.get(n, 0), "after": self.after.get(n, 0)} for n in checks},
            "newly_rejected": self.newly_rejected, "newly_accepted": self.newly_accepted,
            "needs_scores": {"samples": len(self.needs_scores_ids), "by_check": dict(self.needs_scores),
                             "ids": self.needs_scores_ids[:100]},
            "order_dependent": {"samples": len(self.order_dependent), "ids": self.order_dependent[:100]},
            "exact": self.exact,
            **({"overrides": self.overrides} if self.overrides is not None else {}),
        }


def tune(run_dir: str | Path, settings: list[str], *, overrides: Overrides | None = None,
         records: bool = False, all_scores: bool = False) -> Tuned:
    """Re-decide the run in ``run_dir`` with ``settings``; ``overrides`` replaces the run's own overrides.

    ``records``: also load the records and every score (what ``write`` needs); ``all_scores``: every score
    (what ``labels.evaluate`` needs)."""
    _, report, old_config = read_report(run_dir)
    config, changes = parse_settings(old_config, settings)
    specs = {s.name: s for s in config.checks}
    old_specs = {s.name: s for s in old_config.checks}
    changed: dict[str, Check[Any]] = {}
    sections = report.get("sets") or {}
    for name, spec in specs.items():
        if spec.params == old_specs[name].params:
            continue
        old, new = old_specs[name].params.model_dump(), spec.params.model_dump()
        scoring = sorted(k for k in new if new[k] != old[k] and k not in REGISTRY[spec.kind].decision_params)
        if scoring:
            allowed = ", ".join(sorted(REGISTRY[spec.kind].decision_params)) or "none"
            raise ConfigError(f"{', '.join(scoring)} change(s) how check {name!r} ({spec.kind}) scores, not only how "
                              f"it decides: re-run the gate (tunable from stored scores: {allowed})",
                              file="--set", key=f"{name}.{scoring[0]}")
        check = spec.build()
        if isinstance(check, SetCheck):
            why = check.restore_for_decide(sections.get(name))
            if why is not None:
                raise ConfigError(f"cannot re-decide check {name!r} ({check.kind}) from stored scores: {why}",
                                  file="--set", key=name)
        changed[name] = check
    run = load_run(run_dir, checks=None if records or all_scores else set(changed), records=records)
    # keep-first checks: set-aware checks that index the input itself ("baseline" role: the run's kept samples)
    keep_first = {s.name for s in config.checks
                  if issubclass(cls := REGISTRY[s.kind], SetCheck) and cls.compares_with == "baseline"}
    order = run.check_order
    result = Tuned(run, config, changes, [], {}, {}, 0, 0, changed=changed)
    view = TextSpec(config.input.text) if records else None
    fields = report.get("run", {}).get("fields") or {}  # per file: the roles the run read from other fields
    decisions: list[Decision] = []
    # samples whose gate decision (before any override) flips: keep-first indexes admit gate-accepted ones
    entering: set[str] = set()
    leaving: set[str] = set()
    for row in run.rows:
        findings, skipped, missing = _redecide(row, order, changed, run.all_findings)
        was_passing = not [f for f in row.findings if f.check != OVERRIDE]
        if missing:
            result.needs_scores.update(missing)
            result.needs_scores_ids.append(row.id)
            findings, skipped = [f for f in row.findings if f.check != OVERRIDE], list(row.skipped)
        elif was_passing != (not findings):
            (leaving if was_passing else entering).add(row.id)
        gone = set(skipped) if records else None  # the report of a written run counts what was scored
        scores = {k: v for k, v in row.scores.items() if k.split(".", 1)[0] not in gone} if gone else row.scores
        d = Decision(row_sample(row, view, config.input.id, fields.get(row.file)), findings, scores, skipped)
        if overrides is not None:
            overrides.apply(d)
        elif row.override is not None:  # the run's own overrides, as it applied them
            o = row.override
            overrule(d, Override(o["decision"], o["reviewer"], o.get("note", ""), o.get("from", "")))
        decisions.append(d)
    result.decisions = decisions
    if overrides is not None:
        result.overrides = overrides.info()
    for row, d in zip(run.rows, decisions, strict=True):
        result.accepted_before += row.accepted
        result.accepted_after += d.accepted
        for name in _rejecting_checks(row.findings, row.accepted):
            result.before[name] = result.before.get(name, 0) + 1
        for name in _rejecting_checks(d.findings, d.accepted):
            result.after[name] = result.after.get(name, 0) + 1
        if row.accepted and not d.accepted:
            result.newly_rejected.append(row.id)
        elif d.accepted and not row.accepted:
            result.newly_accepted.append(row.id)
    if keep_first:
        # Keep-first indexes hold the samples the gate accepted (overrides come after them). A sample that
        # leaves them changes what a re-run decides only for the samples named its duplicates (flagged). One
        # that enters them may make later samples its duplicates, which tune cannot see without their texts:
        # it is flagged, and the result is then not exact (as with needs_scores, whose decision is unknown).
        for row, d in zip(run.rows, decisions, strict=True):
            named = {f.evidence.get("duplicate_of") for f in [*row.findings, *d.findings] if f.check in keep_first}
            if row.id in entering or (named & leaving):
                result.order_dependent.append(row.id)
    return result


def _rejecting_checks(findings: list[Finding], accepted: bool) -> set[str]:
    return set() if accepted else {f.check for f in findings}


def _redecide(row: Row, order: list[str], changed: dict[str, Check[Any]],
              all_findings: bool) -> tuple[list[Finding], list[str], list[str]]:
    """New findings and skipped checks for one row, and the checks whose skipped scores it would need. The run's
    order and skip rule (``decide.decide_in_order``) replayed: changed checks decide on the stored scores, the
    others' findings are taken as recorded."""
    if row.findings and (not changed or any(f.check == MALFORMED and owning_check(f) is None for f in row.findings)):
        return [f for f in row.findings if f.check != OVERRIDE], list(row.skipped), []
    recorded: dict[str, list[Finding]] = {}
    for f in row.findings:  # a check's missing-field finding is that check's, in its place in the order
        recorded.setdefault(owning_check(f) or f.check, []).append(f)
    was_skipped = set(row.skipped)
    state = _Pending([], [])
    missing: list[str] = []

    def decide(k: int, _: list[int]) -> None:
        name = order[k]
        if name in was_skipped:  # the run never scored it: its decision is unknown
            missing.append(name)
            return
        check = changed.get(name)
        own = recorded.get(name, [])
        if check is None or any(f.check == MALFORMED for f in own):  # a missing field stays missing
            state.findings.extend(own)
        else:
            state.findings.extend(_decide(check, name, row))

    decide_in_order(order, [state], all_findings, decide)
    return state.findings, state.skipped, missing


@dataclass
class _Pending:
    findings: list[Finding]
    skipped: list[str]


def _decide(check: Check[Any], name: str, row: Row) -> list[Finding]:
    """The check's decision on the row's stored scores and evidence."""
    stored = row.evidence.get(name)
    values = {k: row.scores.get(f"{name}.{k}") for k in check.score_names}
    return check.decide(Measurement(values, json.loads(stored) if stored else {}))


def _original_lines(rows: list[Row], decisions: list[Decision]) -> dict[tuple[str, int], bytes]:
    """For records that were rejected and now are accepted: their input line, byte for byte, where the input
    is a JSONL file that still holds the same record there (else the record is written re-serialised)."""
    want: dict[str, set[int]] = {}
    for row, d in zip(rows, decisions, strict=True):
        if d.accepted and not isinstance(row.record, bytes) and row.file and row.line and row.unit == "line":
            want.setdefault(row.file, set()).add(row.line)
    found: dict[tuple[str, int], bytes] = {}
    for file, lines in want.items():
        try:
            found.update(((file, n), raw) for n, raw in lines_at(file, lines).items())
        except InputError:  # the input is gone: those records are written re-serialised
            continue
    return found


def write(tuned: Tuned, outdir: str | Path) -> Any:
    """Write the tuned decisions as a full run folder (accepted/rejected records, scores, reports)."""
    from qualgate.report import ReportBuilder

    run, report = tuned.run, tuned.run.report
    if Path(outdir).resolve() == run.path.resolve():
        raise InputError("write the tuned run to another folder: the original is what tune reads",
                         file=str(outdir))
    writer = RunWriter(outdir, run.score_columns)
    builder = ReportBuilder(tuned.config, run.score_columns)
    originals = _original_lines(run.rows, tuned.decisions)
    try:
        for row, d in zip(run.rows, tuned.decisions, strict=True):
            if isinstance(row.record, bytes):
                d.sample.raw = row.record  # accepted before: its original line, byte for byte
            elif (line := originals.get((row.file or "", row.line or 0))) is not None:
                try:
                    if loads_strict(line) == d.sample.record:
                        d.sample.raw = line  # now accepted: the input line it came from, as a re-run writes it
                except ValueError:
                    pass
            writer.write(d, stored_evidence=row.evidence)
            builder.add(d)
        diversity = report.get("diversity")
        if diversity:
            diversity = {**diversity, "tuned": "measured on the original run's accepted set, not re-measured"}
        run_info = {k: v for k, v in (report.get("run") or {}).items() if k not in ("seconds", "samples_per_second")}
        run_info["tuned_from"] = str(run.path)
        sections = dict(report.get("sets") or {})
        for name, check in tuned.changed.items():
            if name in sections and isinstance(check, SetCheck):
                sections[name] = check.tuned_section(sections[name])
        if tuned.overrides is not None:
            builder.override_info = tuned.overrides
        elif report.get("overrides"):
            builder.override_info = {k: v for k, v in report["overrides"].items()
                                     if k in ("file", "entries", "unmatched", "refused")}
        out = builder.finish(sections=sections, baseline=report.get("baseline"),
                             private=report.get("private"), reference=report.get("reference"),
                             diversity=diversity, limits=_limits(tuned), **run_info)
        out.data["tune"] = {"from_run": str(run.path), "changes": tuned.changes, "exact": tuned.exact,
                            "needs_scores": len(tuned.needs_scores_ids),
                            "order_dependent": len(tuned.order_dependent)}
        writer.close(out)
    except BaseException:
        writer.abort()
        raise
    return out


def _limits(tuned: Tuned) -> dict[str, list[float]]:
    """Configured thresholds per score column for the histograms (a check that cannot be built here, e.g. a
    model that is gone, just draws none)."""
    out: dict[str, list[float]] = {}
    for spec in tuned.config.checks:
        try:
            check = tuned.changed.get(spec.name) or spec.build()
            limits = check.score_limits()
        except Exception:
            continue
        out.update({f"{spec.name}.{score}": values for score, values in limits.items()})
    return out


def render(t: Tuned) -> str:
    """The per-check table of counts for a terminal; ids, names and paths pass through ``term``."""
    d = t.to_dict()
    lines = [f"tuned {term(d['run'])} with " + ", ".join(f"{term(k)}={term(repr(v))}" for k, v in t.changes.items()),
             f"{d['total']} samples: accepted {d['accepted']['before']} -> {d['accepted']['after']}, "
             f"rejected {d['rejected']['before']} -> {d['rejected']['after']}", "",
             f"{'check':<28} {'rejected before':>15} {'after':>8} {'change':>8}"]
    for name, c in d["by_check"].items():
        delta = c["after"] - c["before"]
        lines.append(f"{term(name):<28} {c['before']:>15} {c['after']:>8} {delta:>+8}")
    if t.newly_rejected:
        shown = ", ".join(term(i) for i in t.newly_rejected[:5])
        lines.append(f"\nnewly rejected: {len(t.newly_rejected)} (e.g. {shown})")
    if t.newly_accepted:
        shown = ", ".join(term(i) for i in t.newly_accepted[:5])
        lines.append(f"newly accepted: {len(t.newly_accepted)} (e.g. {shown})")
    if t.needs_scores_ids:
        by = ", ".join(f"{term(k)} ({v})" for k, v in t.needs_scores.most_common())
        lines.append(f"\n{len(t.needs_scores_ids)} sample(s) would now reach checks the original run skipped for "
                     f"them ({by}): they keep their recorded decision. Run the gate with --all-findings to "
                     "store every score.")
    if t.order_dependent:
        lines.append(f"\n{len(t.order_dependent)} sample(s) now enter or leave a keep-first duplicate index (or are "
                     "named duplicates of one that does): a full re-run may decide them differently, and also "
                     "later samples that duplicate them, which tune cannot see without recomputing.")
    if t.overrides is not None:
        ov = t.overrides
        if ov.get("unmatched"):
            shown = ", ".join(term(i) for i in ov["unmatched"][:10])
            lines.append(f"\n{len(ov['unmatched'])} override id(s) matched no sample: {shown}")
        if ov.get("refused"):
            lines.append(f"{len(ov['refused']['ids'])} accept override(s) refused: {term(ov['refused']['why'])}")
    lines.append("\nexact: these decisions equal a full re-run's" if t.exact else
                 "\nnot exact: a full re-run may differ for the samples above (and, through duplicate checks, "
                 "samples that duplicate them)")
    return "\n".join(lines) + "\n"
