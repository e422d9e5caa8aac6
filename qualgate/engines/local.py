"""The local engine: a Gate's batches decided in this process, with per-sample work in ``gate.workers`` processes.

Four strategies, chosen per run (``evaluate``): one process (``-j 1``); a pool that runs the per-sample checks
and computes the set checks' features (``pooled``); a pool that only parses lines and computes features, for
configs without per-sample checks (``features_pooled``); and a checkpointed run that scores each batch whole,
models included, and stores it (``checkpointed``). In every one the set-aware checks decide here, in input
order, so decisions are the same whichever runs.
"""

from __future__ import annotations

import sys
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import replace
from multiprocessing import get_context
from typing import TYPE_CHECKING, Any

from qualgate.checks import SetCheck
from qualgate.engines.base import (
    BatchResult,
    Unparsed,
    alive,
    apply_checks,
    build_scorer,
    init_worker,
    join_verdicts,
    new_decisions,
    score_batch,
    worker_features,
    worker_parse,
    worker_run,
)
from qualgate.findings import Decision

if TYPE_CHECKING:
    from qualgate.engines.checkpoint import Checkpoint
    from qualgate.gate import Gate
    from qualgate.sample import Sample


def read_ahead(batches: Iterator[Any], checks: Sequence[Any], all_findings: bool) -> Iterator[Any]:
    """``checks.embedding.read_ahead``: only an embedding check reads ahead, and a gate without one never imported
    that module (numpy and the model stack), so the batches pass through unchanged."""
    if "qualgate.checks.embedding" not in sys.modules:
        return batches
    from qualgate.checks.embedding import read_ahead as embedding_read_ahead

    return embedding_read_ahead(batches, checks, all_findings)


def evaluate(gate: Gate, batches: Iterator[list[Sample]], several: bool) -> Iterator[list[Decision]]:
    """The gate's decisions for ``batches``, in order. ``several``: there is more than one batch (a pool is
    worth starting). ``batches`` may hold unparsed lines (``Unparsed``, ``Gate.samples``): only
    ``features_pooled`` has its workers parse them; every other strategy gets them parsed here."""
    featured = [c for c in gate.set_checks if c.has_features]
    pool = gate.workers > 1 and several
    if gate.checkpoint is not None:
        return checkpointed(gate, map(gate.parsed, batches), gate.checkpoint)
    if pool and gate.pooled_checks:
        return pooled(gate, map(gate.parsed, batches))
    if pool and featured:
        return features_pooled(gate, batches, featured)
    return in_process(gate, map(gate.parsed, batches))


def in_process(gate: Gate, batches: Iterator[list[Sample]]) -> Iterator[list[Decision]]:
    """``-j 1``: every check here, batch by batch (an embedding check embeds a window of batches ahead)."""
    def scored(batch: list[Sample]) -> tuple[list[Decision], None]:
        decisions = new_decisions(batch)
        apply_checks(gate.pooled_checks, decisions, gate.all_findings)
        return decisions, None

    for decisions, _ in read_ahead(map(scored, batches), gate.local_checks, gate.all_findings):  # embeds by window
        apply_checks(gate.local_checks, decisions, gate.all_findings)
        yield decisions


def process_pool(gate: Gate, model_features: bool = False) -> ProcessPoolExecutor:
    """``gate.workers`` processes, each holding the gate's scorer (``base.init_worker``)."""
    return ProcessPoolExecutor(gate.workers, mp_context=get_context("spawn"), initializer=init_worker,
                               initargs=gate.scorer_args(model_features))


def pipelined(gate: Gate, batches: Iterator[list[Sample]], submit: Callable[[ProcessPoolExecutor, list[Sample]], Any],
              join: Callable[[Any], list[Decision]], model_features: bool = False) -> Iterator[list[Decision]]:
    """Submit batches to a worker pool, at most 2 per worker in flight, and join them in input order."""
    pool = process_pool(gate, model_features)
    pending: deque[Any] = deque()
    try:
        for batch in batches:
            pending.append(submit(pool, batch))
            if len(pending) >= 2 * gate.workers:
                yield join(pending.popleft())
        while pending:
            yield join(pending.popleft())
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def pooled(gate: Gate, batches: Iterator[list[Sample]]) -> Iterator[list[Decision]]:
    """Per-sample checks (and set checks' features) in the workers; set checks here, in order."""
    def submit(pool: ProcessPoolExecutor, batch: list[Sample]) -> Any:
        return batch, pool.submit(worker_run, [replace(s, raw=None) for s in batch])

    def join(pending: tuple[list[Sample], Future[BatchResult]]) -> Any:
        batch, future = pending
        result = future.result()
        return [Decision(s, *v) for s, v in zip(batch, result.verdicts, strict=True)], result.features

    for decisions, features in read_ahead(pipelined(gate, batches, submit, join), gate.local_checks,
                                          gate.all_findings):
        apply_checks(gate.local_checks, decisions, gate.all_findings, features)
        yield decisions


def checkpointed(gate: Gate, batches: Iterator[list[Sample]], checkpoint: Checkpoint) -> Iterator[list[Decision]]:
    """Score each batch whole (per-sample checks and every set check's features, models included, in
    ``workers`` processes), store it in ``checkpoint``, then decide in order here. A killed run started
    again loads the batches it stored and scores only the rest; deciding is cheap and is simply redone."""
    def stored_or(batch: list[Sample], score: Callable[[list[Sample]], Any]) -> tuple[list[Sample], str, Any]:
        key = checkpoint.batch_key(batch)
        found = checkpoint.load_scored(key)
        return batch, key, (found if found is not None else score(batch))

    def join(pending: tuple[list[Sample], str, Any]) -> list[Decision]:
        batch, key, result = pending
        if isinstance(result, Future):
            result = result.result()
            checkpoint.save_scored(key, result)
        return join_verdicts(gate.local_checks, gate.all_findings, batch, result)

    if gate.workers > 1:
        return pipelined(gate, batches, lambda pool, batch: stored_or(batch, lambda b: pool.submit(
            worker_run, [replace(s, raw=None) for s in b])), join, model_features=True)
    scorer = build_scorer(*gate.scorer_args(model_features=True))

    def here(batch: list[Sample]) -> Future[BatchResult]:
        done: Future[BatchResult] = Future()
        done.set_result(score_batch(scorer, batch))
        return done

    return (join(stored_or(batch, here)) for batch in batches)


def features_pooled(gate: Gate, batches: Iterator[list[Sample]],
                    featured: list[SetCheck[Any]]) -> Iterator[list[Decision]]:
    """No per-sample checks: workers compute only the set checks' features (from texts, which pickle
    cheaply), while this process keeps the index and makes the keep-first decisions in order. Batches of
    unparsed lines (``Unparsed``) are parsed by the workers too."""
    def submit(pool: ProcessPoolExecutor, batch: list[Sample]) -> Any:
        if all(isinstance(s, Unparsed) and s.source is not None for s in batch):  # the head was parsed here
            return batch, None, pool.submit(worker_parse, [(s.raw or b"", s.source.file, s.source.line, s.fields)
                                                           for s in batch if s.source is not None])
        batch = gate.parsed(batch)
        decisions = new_decisions(batch)
        live = [i for i, d in enumerate(decisions) if alive(d, gate.all_findings)]
        inputs = {c.name: c.feature_input([batch[i] for i in live]) for c in featured}
        return decisions, live, pool.submit(worker_features, inputs)

    def join(pending: tuple[Any, list[int] | None, Future[Any]]) -> list[Decision]:
        decisions: list[Decision]
        batch, live, future = pending
        if live is None:
            samples, kept_raw, live, found = future.result()
            for s, line, kept in zip(samples, batch, kept_raw, strict=True):
                if kept:
                    s.raw, s.source = line.raw, line.source
            decisions = new_decisions(samples)
        else:
            decisions, found = batch, future.result()
        features = {name: (live, f) for name, f in found.items()}
        apply_checks(gate.local_checks, decisions, gate.all_findings, features)
        return decisions

    return pipelined(gate, batches, submit, join)
