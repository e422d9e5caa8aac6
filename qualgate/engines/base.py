"""What every engine shares: how a batch is scored and decided, and what worker processes (or Ray actors) run.

A batch is scored in two halves. ``score_batch`` computes what does not depend on the other samples: the
per-sample checks' verdicts and the set-aware checks' index-free features (MinHash signatures, embeddings). It
can run anywhere (a worker process, a Ray actor) and be stored (``engines.checkpoint``); it returns a
``BatchResult``. ``join_verdicts`` then applies the set-aware checks in order, in the process that holds their
indexes. ``apply_checks`` is the one place that runs checks over decisions, in order, with the skip rule.
"""

from __future__ import annotations

import bisect
import gc
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

from qualgate.checks import Check, SetCheck
from qualgate.checks.base import Features
from qualgate.config import GateConfig, load_config
from qualgate.decide import decide_in_order, takes_next
from qualgate.findings import Decision, Finding
from qualgate.io import RawRecord, parse_line
from qualgate.repair import Repairer, content_hash_id
from qualgate.sample import (
    FieldProblem,
    Sample,
    Source,
    TextSpec,
    make_sample,
    malformed,
    unparseable_sample,
)

#: One sample's part of a scored batch: its findings, scores, skipped checks and evidence (``Decision``'s fields).
Verdict = tuple[list[Finding], dict[str, float | None], list[str], dict[str, dict[str, Any]]]
#: Per check name: the batch positions a worker computed features for, and those features.
BatchFeatures = dict[str, tuple[list[int], Features]]


@dataclass
class BatchResult:
    """What scoring a batch gives (``score_batch``): a verdict per sample, in batch order, and the set checks'
    features of the samples still alive. Pure data: it pickles to and from workers and actors, and a
    checkpoint stores it."""

    verdicts: list[Verdict]
    features: BatchFeatures

def _readable(d: Decision) -> bool:
    return d.sample.problem is None


def alive(d: Decision, all_findings: bool) -> bool:
    """Whether ``d`` takes the next check (``decide.decide_in_order``'s rule)."""
    return _readable(d) and takes_next(d.findings, all_findings)


#: After a conflict the rest of a batch is decided in parts of at least this many samples, growing while none
#: conflicts: a conflict redoes at most the rest of its part, not of the batch (``apply_checks``). Conflicts are
#: rare in real data (none in 10,000 Alpaca records); with one every 4 records, deciding took ~1.7x as long.
_MIN_PART = 32


def apply_checks(checks: Sequence[Check[Any]], decisions: Sequence[Decision], all_findings: bool,
                 features: BatchFeatures | None = None) -> None:
    """Run ``checks`` in order over ``decisions``, adding scores and findings in place.

    A sample that already has a finding skips later checks unless ``all_findings``; a malformed
    sample skips every check (there is nothing sound to score). ``features`` are set-check features
    precomputed by workers for (a superset of) the live samples.

    Decisions are those of batches of one sample: a keep-first check compares a sample with the samples it
    admitted tentatively earlier in the batch, and a later check may reject one of those. When a result
    relied on such a one (``SetCheck.tentative_uses``: a conflict), the decisions before it stand, the
    keep-first checks admit only those, and the rest is decided again (the other checks' results kept).
    Decisions do not depend on where a batch is cut, so after a conflict the rest goes in smaller parts.
    """
    lead = next((i for i, c in enumerate(checks) if isinstance(c, SetCheck) and c.keeps_first), len(checks))
    _run_checks(checks[:lead], decisions, all_findings, features)
    if lead == len(checks):
        return
    rest, start, size = checks[lead:], 0, len(decisions)
    memo: dict[tuple[str, int], Any] = {}
    before = [(d.findings, d.scores, d.skipped, d.evidence) for d in decisions]
    while start < len(decisions):
        part = decisions[start:start + size]
        for d, (f, sc, sk, ev) in zip(part, before[start:start + len(part)], strict=True):
            d.findings, d.scores, d.skipped, d.evidence = list(f), dict(sc), list(sk), dict(ev)
        scored = _run_checks(rest, part, all_findings, _shifted(features, start, start + len(part)), memo)
        accepted = [not d.findings for d in part]
        done = min((positions[q] for check, positions in scored for p, q in check.tentative_uses().items()
                    if not accepted[positions[p]]), default=len(part))
        for check, positions in scored:  # keep-first indexes admit only what every check accepted
            check.commit([accepted[p] for p in positions if p < done])
        start += done
        size = 2 * len(part) if done == len(part) else max(_MIN_PART, 2 * done)


def _run_checks(checks: Sequence[Check[Any]], decisions: Sequence[Decision], all_findings: bool,
                features: BatchFeatures | None, memo: dict[tuple[str, int], Any] | None = None,
                ) -> list[tuple[SetCheck[Any], list[int]]]:
    """One pass of ``checks`` over ``decisions``; returns the keep-first checks scored and the positions they
    scored. ``memo`` keeps the other checks' results (by check and decision) for a later pass."""
    scored: list[tuple[SetCheck[Any], list[int]]] = []

    def run(k: int, positions: list[int]) -> None:
        check, live = checks[k], [decisions[i] for i in positions]
        results: Iterable[Any]
        if isinstance(check, SetCheck) and check.keeps_first:
            results = check.score_batch([d.sample for d in live], [not d.findings for d in live],
                                        _features_for(features, check.name, positions))
            scored.append((check, positions))
        elif memo is None:
            results = _score_live(check, live, positions, features)
        else:
            todo = [r for r, d in enumerate(live) if (check.name, id(d)) not in memo]
            new = _score_live(check, [live[r] for r in todo], [positions[r] for r in todo], features)
            memo.update(((check.name, id(live[r])), m) for r, m in zip(todo, new, strict=True))
            results = [memo[check.name, id(d)] for d in live]
        columns = [(f"{check.name}.{key}", key) for key in check.score_names]
        quiet: Any = None  # the last measurement, if it had no evidence and decided nothing, and its scores
        quiet_scores: dict[str, float | None] = {}
        for d, m in zip(live, results, strict=True):
            if m is quiet:  # shared by the samples a set check found nothing for: decided once
                d.scores.update(quiet_scores)
                continue
            if isinstance(m, FieldProblem):
                bad = malformed(m.reason, f"check '{check.name}': {m.message}", d.sample.source, m.key)
                d.findings.append(replace(bad, evidence={**bad.evidence, "from_check": check.name}))
                continue
            scores = {column: m.values.get(key) for column, key in columns}
            d.scores.update(scores)
            if m.evidence:
                d.evidence[check.name] = m.evidence
            if found := check.decide(m):
                d.findings.extend(found)
            elif not m.evidence:
                quiet, quiet_scores = m, scores

    decide_in_order([c.name for c in checks], decisions, all_findings, run, _readable)
    return scored


def _score_live(check: Check[Any], live: list[Decision], positions: list[int],
                features: BatchFeatures | None) -> Iterable[Any]:
    """A check's results for ``live`` (a per-sample check, or a set check whose results depend on nothing
    else in the batch)."""
    if not live:
        return []
    if check.per_sample:
        return (_score_one(check, d.sample) for d in live)
    assert isinstance(check, SetCheck)
    return check.score_batch([d.sample for d in live], [not d.findings for d in live],
                             _features_for(features, check.name, positions))


def _shifted(features: BatchFeatures | None, start: int, end: int) -> BatchFeatures | None:
    """``features`` of the batch's samples at positions ``start`` to ``end``, numbered from ``start``."""
    if not features:
        return features
    out: BatchFeatures = {}
    for name, (have, feats) in features.items():
        lo, hi = bisect.bisect_left(have, start), bisect.bisect_left(have, end)
        out[name] = (have, feats) if (lo, hi) == (0, len(have)) and not start else \
            ([p - start for p in have[lo:hi]], feats.take(list(range(lo, hi))))
    return out


def _features_for(features: BatchFeatures | None, name: str, positions: list[int]) -> Features | None:
    if not features or name not in features:
        return None
    have, feats = features[name]
    if have == positions:
        return feats
    row = {p: r for r, p in enumerate(have)}
    if not all(p in row for p in positions):
        return None
    return feats.take([row[p] for p in positions])


def _score_one(check: Check[Any], sample: Sample) -> Any:
    try:
        return check.score(sample)
    except FieldProblem as exc:
        return exc


# ------------------------------------------------------------------------------------- samples
def sample_of(record: Mapping[str, Any], source: Source, raw: bytes | None, spec: TextSpec, id_key: str | None,
              repairer: Repairer | None, id_fallback: bool, fields: Mapping[str, str] | None = None) -> Sample:
    """The sample of ``record`` after ``repairer`` (if any). A repaired record loses its raw line
    (accepted.jsonl holds the repaired one) and keeps the id of the record as read: a content-hash id names
    the input, so it does not change when repairs are turned on or change (overrides and scores of earlier
    runs still find it; an override's sha256 binds to the repaired content the reviewer saw)."""
    fixed = repairer.repair(record) if repairer is not None else record
    if fixed is record:
        return make_sample(record, spec, id_key, source, raw, id_fallback=id_fallback, fields=fields)
    sample = make_sample(fixed, spec, id_key, source, None, id_fallback=id_fallback, fields=fields)
    value = record.get(id_key) if id_key is not None else None
    if not isinstance(value, (str, int)) or isinstance(value, bool):  # a content-hash id: of the input
        sample.id = content_hash_id(record) or sample.id
    return sample


def input_sample(item: RawRecord, spec: TextSpec, id_key: str | None, repairer: Repairer | None,
                 id_fallback: bool, fields: Mapping[str, str] | None = None) -> Sample:
    """The sample of a parsed record as read (``Gate.sample``; worker processes call it on the lines they parse)."""
    if item.error is not None or item.record is None:
        reason, msg = item.error or ("not_an_object", "no record")
        return unparseable_sample(reason, msg, item.source, item.raw or b"")
    return sample_of(item.record, item.source, item.raw if item.verbatim else None, spec, id_key, repairer,
                     id_fallback, fields)


# --------------------------------------------------------------------------------------- scoring
@dataclass
class Scorer:
    """What scores a batch (``score_batch``): the per-sample checks, the set checks whose features it computes,
    and whether every check runs on every sample (``all_findings``)."""

    checks: list[Check[Any]]
    set_checks: list[SetCheck[Any]]
    all_findings: bool


def new_decisions(samples: Sequence[Sample]) -> list[Decision]:
    """Each sample's decision before any check: an unreadable one carries its problem as its finding."""
    return [Decision(s, [s.problem] if s.problem else []) for s in samples]


def build_scorer(config: dict[str, Any] | GateConfig, names: list[str], featured: list[str], all_findings: bool,
                 model_features: bool = False) -> Scorer:
    """A scorer's own checks, built from the config. ``model_features``: model-based set checks (embeddings,
    ``hf`` perplexity) compute their features here too (the Ray engine's actors, which may hold GPUs, and the
    checkpointed local engine, which stores them)."""
    checks = {c.name: c for c in (spec.build() for spec in load_config(config).checks)}
    set_checks = [c for n in featured if isinstance(c := checks[n], SetCheck)]
    for c in set_checks:
        c.features_in_workers = model_features and c.model_features
    return Scorer([checks[n] for n in names], set_checks, all_findings)


def score_batch(scorer: Scorer, samples: list[Sample]) -> BatchResult:
    """The per-sample verdicts of a batch and its set checks' features: everything that does not depend on
    the other samples, so it can run anywhere and be stored."""
    decisions = new_decisions(samples)
    apply_checks(scorer.checks, decisions, scorer.all_findings)
    features: BatchFeatures = {}
    live = [i for i, d in enumerate(decisions) if alive(d, scorer.all_findings)]
    for check in scorer.set_checks:
        feats = check.features([samples[i] for i in live]) if live else None
        if feats is not None:
            features[check.name] = (live, feats)
    return BatchResult([(d.findings, d.scores, d.skipped, d.evidence) for d in decisions], features)


def join_verdicts(checks: Sequence[Check[Any]], all_findings: bool, batch: list[Sample],
                  result: BatchResult) -> list[Decision]:
    """Decisions from a scored batch (``score_batch``), with ``checks`` (the set-aware ones, whose indexes live
    in this process) applied here, in order."""
    decisions = [Decision(s, f, sc, sk, ev) for s, (f, sc, sk, ev) in zip(batch, result.verdicts, strict=True)]
    apply_checks(checks, decisions, all_findings, result.features)
    return decisions


@contextmanager
def frozen_gc() -> Iterator[None]:
    """Freeze what is loaded by now (modules, checks, indexes) for a run's duration: it lives for the whole run,
    and without this each full garbage collection walks it all again (100k-record bench corpus: 1.1 of 7.5 CPU s
    in the main process; 0.55 with). Unfrozen when the run ends, so a library user's later garbage is collected
    as usual; a caller who froze objects already keeps their freeze untouched."""
    freeze = gc.get_freeze_count() == 0
    if freeze:
        gc.freeze()
    try:
        yield
    finally:
        if freeze:
            gc.unfreeze()


# ------------------------------------------------------------------------------ worker processes
# A worker process (or Ray actor) holds one scorer, built once by ``init_worker``; the functions below are
# what an engine submits to it.
_WORKER: Scorer | None = None
#: How a worker turns a raw JSONL line into a Sample: the text spec, the id field and ``input.max_record_values``.
_MAKER: tuple[TextSpec, str | None, int] | None = None


def init_worker(config: dict[str, Any], names: list[str], featured: list[str], all_findings: bool,
                model_features: bool = False) -> None:
    """Build this worker process's scorer (``build_scorer``) and how it makes samples of raw lines."""
    global _WORKER, _MAKER
    cfg = load_config(config)  # once: the scorer and the sample maker read the same config
    _WORKER = build_scorer(cfg, names, featured, all_findings, model_features)
    _MAKER = (TextSpec(cfg.input.text), cfg.input.id, cfg.input.max_record_values)


def worker_run(samples: list[Sample]) -> BatchResult:
    """``score_batch`` with this worker's scorer."""
    assert _WORKER is not None, "worker not initialised"
    return score_batch(_WORKER, samples)


@dataclass
class Unparsed(Sample):
    """A JSONL line (``raw``) not parsed yet: a worker process parses it and makes its sample (``worker_parse``)."""


#: What a worker sends back for a batch of raw lines: the samples (``raw`` and ``source`` left out where they are
#: the line and its place, which the main process still holds: ``kept_raw``), the positions still alive, and the
#: set checks' features.
ParsedBatch = tuple[list[Sample], list[bool], list[int], dict[str, Features]]


def worker_parse(lines: list[tuple[bytes, str, int, Mapping[str, str] | None]]) -> ParsedBatch:
    """Parse raw JSONL lines, make their samples and compute the set checks' features (configs without
    per-sample checks), so the main process only decides: it no longer parses, and pickled samples load ~3x
    faster than their JSON parses."""
    assert _WORKER is not None and _MAKER is not None, "worker not initialised"
    spec, id_key, max_values = _MAKER
    samples, kept_raw = [], []
    for line, file, n, fields in lines:
        source = Source(file, n)
        sample = input_sample(parse_line(line, source, max_values), spec, id_key, None, False, fields)
        kept = sample.raw is line and sample.source is source
        if kept:
            sample.raw = sample.source = None
        samples.append(sample)
        kept_raw.append(kept)
    live = [i for i, s in enumerate(samples) if s.problem is None]  # fresh: only an unreadable one skips checks
    kept_alive = [samples[i] for i in live]
    features = {c.name: c.features_from(c.feature_input(kept_alive)) for c in _WORKER.set_checks if c.has_features}
    return samples, kept_raw, live, features


def worker_features(inputs: dict[str, Any]) -> dict[str, Features]:
    """Only the set checks' features, from what ``feature_input`` gave (configs without per-sample checks)."""
    assert _WORKER is not None, "worker not initialised"
    by_name = {c.name: c for c in _WORKER.set_checks}
    return {name: by_name[name].features_from(data) for name, data in inputs.items()}
