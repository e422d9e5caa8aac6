"""The Ray engine (first part): a Gate's batches scored by Ray actors, decided on the driver in input order.

Each actor builds the gate's per-sample checks once (and with them any model they load) and computes, per
batch, those checks' verdicts and the set-aware checks' index-free features (MinHash signatures, and the
embeddings of the embedding checks, on a share of a GPU when the cluster has GPUs); the driver
submits batches to the actors round-robin, at most two per actor in flight, joins the results in input
order and makes the keep-first and other set-aware decisions itself. Decisions are therefore those of the
local engine, batch for batch. Records are read and outputs written on the driver (not yet through Ray
Data), and near-duplicate indexes are not yet sharded: see the README's "Scale-out" section.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import deque
from collections.abc import Iterator
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from qualgate.checks.minhash import NearDuplicate
from qualgate.models import require_modules

#: How often a dead scoring actor is restarted, and each of its tasks retried, before the run fails.
RETRIES = 3

if TYPE_CHECKING:
    from qualgate.engines.checkpoint import Checkpoint
    from qualgate.findings import Decision
    from qualgate.gate import Gate
    from qualgate.sample import Sample


def connect(address: str | None = None) -> Any:
    """Join the Ray cluster at ``address`` (None: the one this process already joined, else a local one)."""
    require_modules("ray", extra="pip install 'qualgate[ray]'", who="--engine ray")
    import ray

    if not ray.is_initialized():  # Ray's own errors still show; its start-up chatter does not
        ray.init(address=address, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True,
                 logging_level=logging.ERROR)
    return ray


class _Scorer:
    """One Ray actor: the gate's per-sample checks and feature makers, built once."""

    def __init__(self, config: dict[str, Any], names: list[str], featured: list[str], all_findings: bool) -> None:
        from qualgate.gate import _init_worker

        _init_worker(config, names, featured, all_findings, model_features=True)

    def run(self, samples: list[Sample]) -> Any:
        from qualgate.gate import _worker_run

        return _worker_run(samples)


def evaluate(gate: Gate, batches: Iterator[list[Sample]], address: str | None = None) -> Iterator[list[Decision]]:
    """The gate's decisions for ``batches``, in order, with the per-sample work done by Ray actors."""
    ray = connect(address)
    n = max(1, gate.workers)
    # embeddings are computed in the actors: with GPUs in the cluster, they share them
    gpus = float(ray.cluster_resources().get("GPU", 0)) if any(c.model_features for c in gate.set_checks) else 0.0
    # a scoring task is pure (a batch in, verdicts out), so a dead actor is restarted and its tasks re-run:
    # a lost worker costs the batches it held, not the run
    actor = ray.remote(num_cpus=1, num_gpus=min(1.0, gpus / n) if gpus else 0, max_restarts=RETRIES,
                       max_task_retries=RETRIES)(_Scorer)
    args = (gate.config.to_dict(), [c.name for c in gate._pooled], [c.name for c in gate.set_checks],
            gate.all_findings)
    run_id = uuid.uuid4().hex[:8]
    pool = [actor.options(name=f"qualgate-scorer-{run_id}-{i}").remote(*args) for i in range(n)]
    sharded = [c for c in gate.set_checks if isinstance(c, NearDuplicate)]
    try:
        if sharded:
            yield from _staged(gate, ray, pool, batches, sharded)
        else:
            yield from _streamed(gate, ray, pool, batches)
    finally:
        for a in pool:
            ray.kill(a)


def _submit(pool: list[Any], i: int, batch: list[Sample]) -> Any:
    return pool[i % len(pool)].run.remote([replace(s, raw=None) for s in batch])


class _Scoring:
    """Batches to scored results (Ray object refs): from the checkpoint when it has them, else by the actors,
    whose results are stored in the checkpoint as they arrive."""

    def __init__(self, ray: Any, pool: list[Any], checkpoint: Checkpoint | None) -> None:
        self.ray, self.pool, self.checkpoint = ray, pool, checkpoint
        self.unsaved: dict[Any, str] = {}
        self.keys: list[str] = []

    def submit(self, i: int, batch: list[Sample]) -> Any:
        if self.checkpoint is None:
            return _submit(self.pool, i, batch)
        key = self.checkpoint.batch_key(batch)
        self.keys.append(key)
        stored = self.checkpoint.load_scored(key)
        if stored is not None:
            return self.ray.put(stored)
        ref = _submit(self.pool, i, batch)
        self.unsaved[ref] = key
        return ref

    def save(self, refs: list[Any]) -> None:
        """Store the results of ``refs`` that are new (call with finished refs only)."""
        if self.checkpoint is not None:
            for ref in refs:
                if (key := self.unsaved.pop(ref, None)) is not None:
                    self.checkpoint.save_scored(key, self.ray.get(ref))


def _streamed(gate: Gate, ray: Any, pool: list[Any], batches: Iterator[list[Sample]]) -> Iterator[list[Decision]]:
    """No shuffle needed: decide each batch as soon as it is scored, at most two batches per actor in flight."""
    scoring = _Scoring(ray, pool, gate.checkpoint)
    pending: deque[tuple[list[Sample], Any]] = deque()
    for i, batch in enumerate(batches):
        pending.append((batch, scoring.submit(i, batch)))
        if len(pending) >= 2 * len(pool):
            yield _join(gate, ray, scoring, *pending.popleft())
    while pending:
        yield _join(gate, ray, scoring, *pending.popleft())


def _join(gate: Gate, ray: Any, scoring: _Scoring, batch: list[Sample], ref: Any) -> list[Decision]:
    result = ray.get(ref)
    scoring.save([ref])
    return gate._join_verdicts(batch, result)


def _batch_rows(result: Any, name: str) -> tuple[Any, Any]:
    """A Ray task: the shuffle rows of one scored batch (it reads the actor's result where it lies)."""
    from qualgate.engines.lsh import batch_tables

    return batch_tables(result[1], name)


def _staged(gate: Gate, ray: Any, pool: list[Any], batches: Iterator[list[Sample]],
            sharded: list[NearDuplicate]) -> Iterator[list[Decision]]:
    """Near-duplicates need every sample's bands before the first keep-first decision: score everything
    (actors), shuffle the band keys and verify the pairs (Ray Data), then decide batch by batch in order."""
    from qualgate.engines.lsh import baseline_tables, candidates

    checkpoint = gate.checkpoint
    scoring = _Scoring(ray, pool, checkpoint)
    clock = time.perf_counter()
    stages = gate.engine_info.setdefault("stages_seconds", {})
    rows_task = ray.remote(num_returns=2)(_batch_rows)
    scored: list[tuple[Any, Any]] = []
    rows: dict[str, tuple[list[Any], list[Any]]] = {c.name: ([], []) for c in sharded}
    for c in sharded:
        if c.n_baseline:
            band_rows, set_rows = baseline_tables(c)
            rows[c.name][0].append(ray.put(band_rows))
            rows[c.name][1].append(ray.put(set_rows))
    in_flight: list[Any] = []
    for i, batch in enumerate(batches):
        ref = scoring.submit(i, batch)
        scored.append((ray.put(batch), ref))
        for c in sharded:
            band_ref, set_ref = rows_task.remote(ref, c.name)
            rows[c.name][0].append(band_ref)
            rows[c.name][1].append(set_ref)
        in_flight.append(ref)
        if len(in_flight) >= 2 * len(pool):  # read no faster than the actors score
            done, in_flight = ray.wait(in_flight, num_returns=len(in_flight) - 2 * len(pool) + 1)
            scoring.save(done)
    ray.wait(in_flight, num_returns=len(in_flight))
    scoring.save(in_flight)
    stages["read_and_score"] = round(time.perf_counter() - clock, 3)
    clock = time.perf_counter()
    for a in pool:  # scoring is done and its results are the driver's: free the actors' CPUs for the shuffle
        ray.kill(a)
    partitions = max(2, 2 * len(pool))
    pairs = {}
    for c in sharded:
        key = checkpoint.pairs_key(c.name, scoring.keys, _baseline_digest(c)) if checkpoint else ""
        table = checkpoint.load_pairs(key) if checkpoint else None
        if table is None:
            table = candidates(*rows[c.name], partitions)
            if checkpoint:
                checkpoint.save_pairs(key, table)
        pairs[c.name] = table
    stages["shuffle_and_verify"] = round(time.perf_counter() - clock, 3)
    gate.engine_info["candidate_pairs"] = {name: len(table) for name, table in pairs.items()}
    deciding = 0.0
    for batch_ref, ref in scored:
        clock = time.perf_counter()
        verdicts, features = ray.get(ref)
        for name, table in pairs.items():
            if name in features:
                live, f = features[name]
                features[name] = (live, table.features(f.exact))
        decisions = gate._join_verdicts(ray.get(batch_ref), (verdicts, features))
        deciding += time.perf_counter() - clock
        stages["decide"] = round(deciding, 3)
        yield decisions


def _baseline_digest(check: NearDuplicate) -> str:
    import xxhash

    keys, kept = check._exact.items()
    return f"{check.cache_token()}:{check.n_baseline}:{xxhash.xxh3_64_hexdigest(keys.tobytes() + kept.tobytes())}"
