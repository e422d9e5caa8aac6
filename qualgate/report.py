"""Report: counts per check, score distributions, examples, and the dataset-level gate conditions."""

from __future__ import annotations

import json
from array import array
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from qualgate.config import GateConditions, GateConfig
from qualgate.findings import MALFORMED, OVERRIDE, Decision
from qualgate.packs import pack_notes, suggested_pack
from qualgate.preamble import summary
from qualgate.repair import Repaired, field_group, repairs_of
from qualgate.untrusted import md_code, md_text, term

QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
#: Example rejections kept per check (report.json, report.html); report.md shows the first few.
EXAMPLES_PER_CHECK = 50
EXAMPLES_IN_MARKDOWN = 3
EXAMPLE_TEXT_CHARS = 300
HISTOGRAM_BINS = 40
#: Check kinds whose findings mean the sample copies private data: its text stays out of the report.
PRIVATE_KINDS = frozenset({"private_leak"})


@dataclass
class _CheckStats:
    kind: str
    scored: int = 0
    rejected: int = 0
    skipped: int = 0
    overruled: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    examples: list[dict[str, Any]] = field(default_factory=list)


class ReportBuilder:
    """Folds decisions, one at a time, into the numbers of a Report."""

    def __init__(self, config: GateConfig, score_columns: list[str]) -> None:
        self.config = config
        self.total = self.accepted = 0
        self.checks: dict[str, _CheckStats] = {MALFORMED: _CheckStats(MALFORMED)}
        for spec in config.checks:
            self.checks[spec.name] = _CheckStats(spec.kind)
        self._scores: dict[str, array[float]] = {c: array("d") for c in score_columns}  # 8 bytes a value
        # thresholds that rejected samples crossed, per score column (found by the finding's score value)
        self._limits: dict[str, Counter[float]] = defaultdict(Counter)
        self.overrides: list[dict[str, Any]] = []
        self._private = {spec.name for spec in config.checks if spec.kind in PRIVATE_KINDS}
        #: what the run's overrides file held (path, entries, ids matching no sample); set by the caller
        self.override_info: dict[str, Any] | None = None
        #: records another shipped pack reads better, counted while the default pack's auto view is in use
        self._fits: Counter[str] | None = (Counter() if config.label == "pack default" and config.input.text == "auto"
                                          else None)
        #: records repaired (of them accepted), and per step the fields it changed; seconds set by the caller
        self.repaired = self.repaired_accepted = 0
        self.repair_steps: dict[str, Counter[str]] = defaultdict(Counter)
        self.repair_seconds: float | None = None
        # a check counts as having scored a sample when its first score column is present
        self._first: dict[str, _CheckStats] = {}
        for col in score_columns:
            name = col.split(".", 1)[0]
            if name in self.checks and all(not k.startswith(name + ".") for k in self._first):
                self._first[col] = self.checks[name]

    def add(self, d: Decision) -> None:
        self.add_all([d])

    def add_all(self, decisions: Sequence[Decision]) -> None:
        """``add`` each of ``decisions``, in order: the score columns one at a time, and per decision only what
        it has beyond scores (findings, skipped checks, an override, repairs)."""
        self.total += len(decisions)
        for key, values in self._scores.items():
            values.extend([v for d in decisions if (v := d.scores.get(key)) is not None])
        for key, stats in self._first.items():
            stats.scored += sum([key in d.scores for d in decisions])
        plain = self._fits is None
        for d in decisions:
            if plain and not (d.findings or d.skipped or d.override is not None
                              or isinstance(d.sample.record, Repaired)):
                self.accepted += 1  # accepted, as nothing was found
            else:
                self._add_rest(d)

    def _add_rest(self, d: Decision) -> None:
        """What ``add`` counts of a decision besides its scores."""
        accepted = d.accepted
        if accepted:
            self.accepted += 1
        if d.override is not None:
            src = d.sample.source
            self.overrides.append({"id": d.id, "source": str(src) if src else None, **d.override.to_dict(),
                                   "findings": [f"{f.check}/{f.reason}" for f in d.findings
                                                if f.check != OVERRIDE]})
        if repairs := repairs_of(d.sample.record):
            self.repaired += 1
            self.repaired_accepted += accepted
            for entry in repairs:
                for step in entry["steps"]:
                    self.repair_steps[step][field_group(entry["field"])] += 1
        if self._fits is not None and d.sample.record is not None and (pack := suggested_pack(d.sample.record)):
            self._fits[pack] += 1
        scores = d.scores
        for name in d.skipped:
            if name in self.checks:
                self.checks[name].skipped += 1
        seen: set[str] = set()
        # a sample that copies a private record (or was not checked for that) never has its text shown
        private = any(name in d.skipped for name in self._private) or any(f.check in self._private
                                                                          for f in d.findings)
        for f in d.findings:
            stats = self.checks.setdefault(f.check, _CheckStats(f.check))
            stats.reasons[f.reason] += 1
            if f.score is not None and f.threshold is not None:
                col = next((k for k in (f"{f.check}.{n}" for n in _score_names(f.check, scores))
                            if scores.get(k) == f.score), None)
                if col is not None:
                    self._limits[col][f.threshold] += 1
            if f.check in seen:
                continue
            seen.add(f.check)
            if accepted:
                stats.overruled += 1
                continue
            stats.rejected += 1
            if len(stats.examples) < EXAMPLES_PER_CHECK:
                src = d.sample.source
                stats.examples.append({"id": d.id, "source": str(src) if src else None,
                                       "reason": f.reason, "message": f.message,
                                       "text": "" if private else _snippet(d)})

    def finish(self, sections: dict[str, Any] | None = None, baseline: dict[str, Any] | None = None,
               private: dict[str, Any] | None = None, reference: dict[str, Any] | None = None,
               diversity: dict[str, Any] | None = None, limits: dict[str, list[float]] | None = None,
               **run_info: Any) -> Report:
        """``limits``: configured thresholds per score column, drawn on the histograms with those crossed."""
        rejected = self.total - self.accepted
        by_check = {
            name: {"kind": s.kind, "scored": s.scored, "rejected": s.rejected, "skipped": s.skipped,
                   "reject_rate": share(s.rejected, self.total), "reasons": dict(sorted(s.reasons.items())),
                   **({"overruled": s.overruled} if s.overruled else {})}
            for name, s in self.checks.items()
        }
        data: dict[str, Any] = {
            "total": self.total,
            "accepted": self.accepted,
            "rejected": rejected,
            "reject_rate": share(rejected, self.total),
            "by_check": by_check,
            "scores": {k: _summary(v) for k, v in self._scores.items()},
            "histograms": {k: _histogram(v, self._limits.get(k), (limits or {}).get(k))
                           for k, v in self._scores.items() if v},
            "examples": {n: s.examples for n, s in self.checks.items() if s.examples},
            "gate": evaluate_gate(self.config.gate, self.total, self.accepted, by_check, diversity),
            "sets": sections or {},
            "warnings": [w for sec in (sections or {}).values() for w in sec.get("warnings", [])],
            "notes": pack_notes(self._fits or {}, self.total),
            "baseline": baseline,
            "private": private,  # file names and counts only: private text is never written
            "reference": reference,
            "diversity": diversity,
            "overrides": self.overrides_section(),
            "repairs": self.repairs_section(),
            "config": {"source": self.config.source, "description": self.config.description,
                       "checks": [c.to_dict() for c in self.config.checks],
                       "resolved": self.config.to_dict()},  # what `qualgate tune` re-decides with
            "run": {**run_info, "repair_seconds": round(self.repair_seconds, 3)}
            if self.repair_seconds is not None else run_info,  # timing: differs between two runs of one command
        }
        return Report(data)


    def repairs_section(self) -> dict[str, Any] | None:
        """Records repaired before the checks, and per step the fields it changed (chat turns counted under
        their list's name); None when the config makes no repairs."""
        cfg = self.config.repair
        if cfg is None or not cfg.active:
            return None
        return {"steps": [s for s in cfg.steps], "records": self.repaired, "accepted": self.repaired_accepted,
                "by_step": {step: dict(sorted(fields.items())) for step, fields in sorted(self.repair_steps.items())}}

    def overrides_section(self) -> dict[str, Any] | None:
        if not self.overrides and self.override_info is None:
            return None
        info = dict(self.override_info or {})
        info.update(applied=len(self.overrides),
                    accepted=sum(o["decision"] == "accept" for o in self.overrides),
                    rejected=sum(o["decision"] == "reject" for o in self.overrides), items=self.overrides)
        return info


def _score_names(check: str, scores: dict[str, float | None]) -> list[str]:
    prefix = check + "."
    return [k[len(prefix):] for k in scores if k.startswith(prefix)]


def _snippet(d: Decision) -> str:
    """The start of the sample's text view, for the HTML report's searchable examples."""
    text = d.sample.text or (d.sample.raw or b"").decode("utf-8", "replace")
    # lone surrogates (from JSON escapes) cannot be written as UTF-8: they become "?"
    return text[:EXAMPLE_TEXT_CHARS].encode("utf-8", "replace").decode("utf-8")


def _histogram(values: array[float], crossed: Counter[float] | None,
               configured: list[float] | None = None) -> dict[str, Any]:
    """Bin counts of one score column; log-spaced bins for positive heavy-tailed scores (perplexity),
    one bar per value when a score takes few distinct values (counts, flags). ``thresholds``: the
    configured limits, then any other limit rejected samples crossed (most used first), at most 4."""
    arr = np.frombuffer(values, dtype=np.float64)
    arr = arr[np.isfinite(arr)]
    limits = list(dict.fromkeys([*(configured or []), *(t for t, _ in (crossed or Counter()).most_common(3))]))
    out: dict[str, Any] = {"count": int(arr.size), "thresholds": limits[:4]}
    if not arr.size:
        return {**out, "kind": "empty", "edges": [], "counts": []}
    distinct = np.unique(arr)
    if distinct.size <= 12 and np.all(distinct == np.round(distinct)):
        counts = [int((arr == v).sum()) for v in distinct]
        return {**out, "kind": "discrete", "values": distinct.tolist(), "counts": counts}
    lo, hi = float(arr.min()), float(arr.max())
    log = lo > 0 and hi / lo > 100
    edges = (np.geomspace(lo, hi, HISTOGRAM_BINS + 1) if log else np.linspace(lo, hi, HISTOGRAM_BINS + 1))
    binned, _ = np.histogram(arr, bins=edges)
    return {**out, "kind": "log" if log else "linear", "edges": [round(float(e), 6) for e in edges],
            "counts": binned.tolist()}


def share(n: int, total: int) -> float:
    """``n / total`` rounded as every rate in a report is (0 for an empty run); tune re-counts with it too."""
    return round(n / total, 6) if total else 0.0


def _summary(values: array[float]) -> dict[str, float | int | None]:
    if not values:
        return {"count": 0}
    arr = np.frombuffer(values, dtype=np.float64)
    out: dict[str, float | int | None] = {"count": int(arr.size), "mean": round(float(arr.mean()), 6),
                                          "min": float(arr.min()), "max": float(arr.max())}
    for q, v in zip(QUANTILES, np.quantile(arr, QUANTILES), strict=True):
        out[f"p{round(q * 100)}"] = round(float(v), 6)
    return out


def evaluate_gate(cond: GateConditions, total: int, accepted: int, by_check: dict[str, dict[str, Any]],
                  diversity: dict[str, Any] | None = None) -> dict[str, Any]:
    """Each configured condition with its value, limit and outcome; the gate passes when all do."""
    rejected = total - accepted
    rows: list[dict[str, Any]] = []

    def add(name: str, value: float | None, limit: float, ok: bool, message: str | None = None) -> None:
        row: dict[str, Any] = {"name": name, "value": value, "limit": limit, "passed": ok}
        if message:
            row["message"] = message
        rows.append(row)

    if cond.max_reject_rate is not None:
        rate = share(rejected, total)
        add("max_reject_rate", rate, cond.max_reject_rate, rate <= cond.max_reject_rate)
    if cond.max_rejected is not None:
        add("max_rejected", rejected, cond.max_rejected, rejected <= cond.max_rejected)
    if cond.min_accepted is not None:
        add("min_accepted", accepted, cond.min_accepted, accepted >= cond.min_accepted)
    if cond.max_malformed is not None:
        bad = by_check.get(MALFORMED, {}).get("rejected", 0)
        add("max_malformed", bad, cond.max_malformed, bad <= cond.max_malformed)
    for name, limit in cond.max_check_reject_rate.items():
        rate = by_check.get(name, {}).get("reject_rate", 0.0)
        add(f"max_check_reject_rate.{name}", rate, limit, rate <= limit)
    div = diversity or {}
    for name, key in (("min_reference_coverage", "reference_coverage"), ("min_diversity_ratio", "ratio")):
        limit = getattr(cond, name)
        if limit is None:
            continue
        value = div.get(key)
        if value is None:
            add(name, None, limit, False, div.get("note", "diversity was not measured"))
        else:
            ok = value >= limit
            add(name, value, limit, ok, None if ok else _diversity_message(key, value, limit, div))
    return {"passed": all(r["passed"] for r in rows), "conditions": rows}


def _diversity_message(key: str, value: float, limit: float, div: dict[str, Any]) -> str:
    """Which reference clusters the accepted set lost, with example reference texts."""
    what = (f"accepted set covers {value:.0%} of {div.get('clusters')} reference clusters (limit {limit:.0%})"
            if key == "reference_coverage" else
            f"accepted set's Vendi score is {value:.2f} of the reference's (limit {limit})")
    missing = div.get("missing_clusters") or []
    if not missing:
        return what
    shown = "; ".join(f"#{m['cluster']} ({m['reference_share']:.1%} of reference, {m['accepted_share']:.1%} "
                      f"accepted), e.g. {m['examples'][0]!r}" for m in missing[:3] if m["examples"])
    more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
    return f"{what}; missing clusters: {shown}{more}"


class Report:
    """The finished report: ``data`` is what ``report.json`` holds."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data

    @property
    def passed(self) -> bool:
        return bool(self.data["gate"]["passed"])

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def to_json(self) -> str:
        return json.dumps(self.data, indent=2, ensure_ascii=False, default=str) + "\n"

    def to_junit(self) -> str:
        """JUnit XML for CI test dashboards: one test case per gate condition (failed when not met) and one per
        check (always passing; its counts in the output), so a dashboard shows the gate and per-check trends.
        Names and messages pass through ``term``: a control character would make the XML invalid."""
        import xml.etree.ElementTree as ET

        d = self.data
        suites = ET.Element("testsuites", name="qualgate")
        conds = d["gate"]["conditions"]
        gate = ET.SubElement(suites, "testsuite", name="gate conditions", tests=str(len(conds)),
                             failures=str(sum(not c["passed"] for c in conds)))
        for c in conds:
            case = ET.SubElement(gate, "testcase", classname="qualgate.gate", name=term(c["name"]))
            if not c["passed"]:
                failure = ET.SubElement(case, "failure",
                                        message=term(f"{c['name']} = {c['value']} (limit {c['limit']})"))
                failure.text = term(c.get("message") or "")
        checks = ET.SubElement(suites, "testsuite", name="checks", tests=str(len(d["by_check"])), failures="0")
        for name, c in d["by_check"].items():
            case = ET.SubElement(checks, "testcase", classname=term(f"qualgate.check.{c['kind']}"), name=term(name))
            reasons = term(", ".join(f"{k}: {v}" for k, v in sorted(c["reasons"].items())))
            ET.SubElement(case, "system-out").text = (
                f"scored {c['scored']}, rejected {c['rejected']} ({c['reject_rate']:.2%}), skipped {c['skipped']}"
                + (f"; {reasons}" if reasons else ""))
        return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"

    def summary_line(self) -> str:
        d = self.data
        return (f"{d['total']} records: {d['accepted']} accepted, {d['rejected']} rejected "
                f"({d['reject_rate']:.1%}); gate {'PASSED' if self.passed else 'FAILED'}")

    def to_markdown(self) -> str:
        """report.md: every string from the data or the config goes through md_text / md_code (untrusted)."""
        d = self.data
        lines = [f"# qualgate report: gate {'PASSED' if self.passed else 'FAILED'}", "",
                 f"**{d['total']}** records: **{d['accepted']}** accepted, **{d['rejected']}** rejected "
                 f"({d['reject_rate']:.1%}). Config: {md_code(d['config']['source'])}.", ""]
        if d["gate"]["conditions"]:
            lines += ["## Gate conditions", "", "| condition | value | limit | result |", "|---|---:|---:|---|"]
            for c in d["gate"]["conditions"]:
                lines.append(f"| {md_text(c['name'])} | {_fmt(c['value'])} | {_fmt(c['limit'])} | "
                             f"{'pass' if c['passed'] else '**FAIL**'} |")
            lines.append("")
            lines += [f"- **{md_text(c['name'])}**: {md_text(c['message'], 600)}" for c in d["gate"]["conditions"]
                      if c.get("message")]
        lines += ["## Checks", "", "Checks run cheapest first; a sample that already failed skips later checks "
                  "unless `--all-findings` was given (the *skipped* column).", "",
                  "| check | kind | scored | rejected | rate | skipped | reasons |",
                  "|---|---|---:|---:|---:|---:|---|"]
        for name, c in d["by_check"].items():
            if name == MALFORMED and not c["rejected"]:
                continue
            reasons = ", ".join(f"{md_text(r)} ({n})" for r, n in c["reasons"].items()) or "-"
            lines.append(f"| {md_text(name)} | {md_text(c['kind'])} | {c['scored']} | {c['rejected']} | "
                         f"{c['reject_rate']:.1%} | {c['skipped']} | {reasons} |")
        scores = {k: v for k, v in d["scores"].items() if v.get("count")}
        if scores:
            lines += ["", "## Score distributions", "", "| score | count | min | p5 | p50 | p95 | max |",
                      "|---|---:|---:|---:|---:|---:|---:|"]
            for k, s in scores.items():
                lines.append(f"| {md_text(k)} | {s['count']} | {_fmt(s['min'])} | {_fmt(s['p5'])} | "
                             f"{_fmt(s['p50'])} | {_fmt(s['p95'])} | {_fmt(s['max'])} |")
        for name, sec in d.get("sets", {}).items():
            clusters = sec.get("largest_clusters") or []
            if clusters:
                lines += ["", f"## Largest duplicate clusters ({md_text(name)})", "",
                          "| kept sample | in baseline | duplicates | examples |", "|---|---|---:|---|"]
                for c in clusters:
                    lines.append(f"| {md_code(c['kept'], cell=True)} | {'yes' if c['in_baseline'] else 'no'} | "
                                 f"{c['duplicates']} | {', '.join(md_code(e, cell=True) for e in c['examples'])} |")
        for name, sec in d.get("sets", {}).items():
            if (prefix := sec.get("shared_prefix")) and prefix.get("found"):
                lines += ["", f"## Shared prefix dropped ({md_text(name)})", "", md_text(summary(prefix), 600)]
        for name, sec in d.get("sets", {}).items():
            if "set_perplexity" in sec or sec.get("backend") in ("ngram", "kenlm", "hf"):
                lines += ["", f"## Language model ({md_text(name)})", "", _lm_line(sec), ""]
                lines += ["| threshold | value | from |", "|---|---:|---|"]
                for which in ("max", "min", "max_context_ratio"):
                    t = sec.get(which) or {}
                    lines.append(f"| {which} | {_fmt(t.get('value'))} | {md_text(t.get('from', '-'))} |")
                for key in ("set_perplexity", "set_context_ratio"):
                    if key in sec:
                        q = sec[key]
                        lines.append(f"\n{md_text(sec.get('set') or 'reference')} set {key[4:]}: "
                                     + ", ".join(f"{md_text(k)} {_fmt(v)}" for k, v in q.items()))
        div = d.get("diversity")
        if div:
            lines += ["", f"## Diversity (accepted vs {md_text(div['against'])})", ""]
            if "note" in div:
                lines.append(md_text(div["note"], 600))
            else:
                nn = div["nn_distance"]
                lines += ["| metric | accepted | reference |", "|---|---:|---:|",
                          f"| nearest-neighbour cosine distance, mean (at n={_fmt(nn['compared_at'])}) | "
                          f"{_fmt(nn['accepted']['mean'])} | {_fmt(nn['reference']['mean'])} |",
                          f"| Vendi score (at n={_fmt(div['vendi']['compared_at'])}) | "
                          f"{_fmt(div['vendi']['accepted'])} | {_fmt(div['vendi']['reference'])} |",
                          f"| cluster entropy ({_fmt(div['clusters'])} reference clusters) | "
                          f"{_fmt(div['entropy']['accepted'])} | {_fmt(div['entropy']['reference'])} |", "",
                          f"Diversity ratio {_fmt(div['ratio'])}; reference coverage {div['reference_coverage']:.1%}, "
                          f"tail coverage {div['tail_coverage']:.1%}."]
                if div["missing_clusters"]:
                    lines += ["", "| missing cluster | reference share | accepted share | example reference text |",
                              "|---:|---:|---:|---|"]
                    for m in div["missing_clusters"][:10]:
                        lines.append(f"| {_fmt(m['cluster'])} | {m['reference_share']:.1%} | "
                                     f"{m['accepted_share']:.1%} | "
                                     f"{md_text(m['examples'][0]) if m['examples'] else '-'} |")
        if d.get("notes"):
            lines += ["", "## Notes", ""] + [f"- {md_text(n)}" for n in d["notes"]]
        if d.get("warnings"):
            lines += ["", "## Warnings", ""] + [f"- {md_text(w)}" for w in d["warnings"]]
        rep = d.get("repairs")
        if rep:
            changed = "; ".join(f"{md_text(step)}: " + ", ".join(f"{md_text(f)} {n}" for f, n in fields.items())
                                for step, fields in rep["by_step"].items()) or "none"
            lines += ["", "## Repairs", "",
                      f"{rep['records']} records repaired before the checks ({rep['accepted']} of them accepted); "
                      f"fields changed per step: {changed}. Each record's repairs and original values: "
                      "`qualgate.repairs` in rejected.jsonl, the `repairs` column of scores.parquet."]
        ov = d.get("overrides")
        if ov:
            lines += ["", "## Reviewer overrides", "",
                      f"{ov['applied']} applied from {md_code(ov.get('file', '-'))} ({ov['accepted']} accepted, "
                      f"{ov['rejected']} rejected by a reviewer); findings stay recorded."]
            if ov.get("unmatched"):
                lines.append(f"{len(ov['unmatched'])} override id(s) matched no sample: "
                             + ", ".join(md_code(i) for i in ov["unmatched"][:10]))
            if ov["items"]:
                lines += ["", "| sample | decision | reviewer | overruled findings | note |", "|---|---|---|---|---|"]
                for o in ov["items"][:50]:
                    lines.append(f"| {md_code(o['id'], cell=True)} | {md_text(o['decision'])} | "
                                 f"{md_text(o['reviewer'])} | {', '.join(md_text(f) for f in o['findings']) or '-'} | "
                                 f"{md_text(o['note'])} |")
        if d.get("baseline"):
            b = d["baseline"]
            lines += ["", "## Baseline", "", f"{_fmt(b['records'])} records from "
                      f"{', '.join(md_code(f) for f in b['files'])} ({_fmt(b['skipped'])} malformed skipped); "
                      "index cache: " + (", ".join(f"{md_text(k)} {md_text(v['status'])}"
                                                   for k, v in b["cache"].items()) or "-")]
        if d["examples"]:
            lines += ["", "## Example rejections", ""]
            grouped: dict[str, list[dict[str, Any]]] = defaultdict(list, d["examples"])
            for name, examples in grouped.items():
                lines.append(f"### {md_text(name)}")
                lines.append("")
                for e in examples[:EXAMPLES_IN_MARKDOWN]:
                    src = e.get("source")
                    where = f" ({md_text(src)})" if src and not e["message"].startswith(src) else ""
                    lines.append(f"- {md_code(e['id'])}{where}: {md_text(e['message'])}")
                lines.append("")
        return "\n".join(lines).rstrip() + "\n"


def _fmt(v: Any) -> str:
    """A number for report.md; anything else (None, or a string where report.json was edited) as escaped text."""
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v) if isinstance(v, int) else md_text(v)


def _lm_line(sec: dict[str, Any]) -> str:
    """One sentence on which model scored, trained on what, per which unit."""
    what = sec.get("model") or f"order-{sec.get('order')} Kneser-Ney n-gram"
    trained = f", trained on {sec['trained_on']}" if sec.get("trained_on") else ""
    unit = md_text(sec.get("unit"))
    return (f"Backend {md_code(sec.get('backend'))} ({md_text(what)}{md_text(trained)}); perplexity per {unit}, "
            f"first {_fmt(sec.get('max_tokens'))} {unit}s; per-sample cache {'on' if sec.get('cache') else 'off'}; "
            f"{_fmt(sec.get('set_records', 0))} {md_text(sec.get('set') or 'reference')} records.")
