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
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from qualgate.checks.embedding import SemanticDuplicate
from qualgate.checks.minhash import NearDuplicate
from qualgate.engines.base import BatchResult, init_worker, join_verdicts, worker_run
from qualgate.engines.lsh import PairTable
from qualgate.engines.semantic import NeighbourTable
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

    def __init__(self, config: dict[str, Any], names: list[str], featured: list[str], all_findings: bool,
                 model_features: bool) -> None:
        init_worker(config, names, featured, all_findings, model_features)

    def run(self, samples: list[Sample]) -> BatchResult:
        return worker_run(samples)


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
    args = gate.scorer_args(model_features=True)
    run_id = uuid.uuid4().hex[:8]
    pool = [actor.options(name=f"qualgate-scorer-{run_id}-{i}").remote(*args) for i in range(n)]
    shuffled = shuffled_checks(ray, gate)
    try:
        if shuffled:
            yield from _staged(gate, ray, pool, batches, shuffled)
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
    return join_verdicts(gate.local_checks, gate.all_findings, batch, result)


def _batch_rows(result: Any, name: str) -> tuple[Any, Any]:
    """A Ray task: the LSH shuffle rows of one scored batch (it reads the actor's result where it lies)."""
    from qualgate.engines.lsh import batch_tables

    return batch_tables(result.features, name)


def _batch_vectors(result: Any, name: str, first: int) -> Any:
    """A Ray task: one scored batch's embeddings with their global positions (partitioned semantic search)."""
    from qualgate.engines.semantic import batch_vectors

    return batch_vectors(result.features, name, first)


class _Shuffled:
    """A set check whose candidates come from a shuffle over every scored batch, not from a local index."""

    #: what ``run`` returns (a dataclass of arrays): how a checkpoint stores and loads it
    table_type: ClassVar[type]

    def __init__(self, ray: Any, check: Any) -> None:
        self.ray, self.check, self.name = ray, check, check.name
        self.refs: list[list[Any]] = []

    def add(self, result_ref: Any, first: int) -> None:
        """Emit the rows of one scored batch whose first sample is input position ``first``."""
        raise NotImplementedError

    def run(self, partitions: int) -> Any:
        raise NotImplementedError

    def features(self, table: Any, live: list[int], feats: Any, first: int) -> Any:
        raise NotImplementedError

    def digest(self) -> str:
        """What of the check's set the shuffle result depends on (for the checkpoint key)."""
        raise NotImplementedError


class _NearDuplicates(_Shuffled):
    table_type = PairTable
    def __init__(self, ray: Any, check: NearDuplicate) -> None:
        from qualgate.engines.lsh import baseline_tables

        super().__init__(ray, check)
        self.task = ray.remote(num_returns=2)(_batch_rows)
        self.refs = [[], []]
        if check.n_baseline:
            for refs, table in zip(self.refs, baseline_tables(check), strict=True):
                refs.append(ray.put(table))

    def add(self, result_ref: Any, first: int) -> None:
        for refs, ref in zip(self.refs, self.task.remote(result_ref, self.name), strict=True):
            refs.append(ref)

    def run(self, partitions: int) -> Any:
        from qualgate.engines.lsh import candidates

        return candidates(self.refs[0], self.refs[1], partitions, self.check.params.max_candidates)

    def features(self, table: Any, live: list[int], feats: Any, first: int) -> Any:
        return table.features(feats.exact, feats.bands)

    def digest(self) -> str:
        import xxhash

        keys, kept = self.check.exact_keys()
        return f"{self.check.cache_token()}:{self.check.n_baseline}:" \
               f"{xxhash.xxh3_64_hexdigest(keys.tobytes() + kept.tobytes())}"


class _SemanticPartitions(_Shuffled):
    table_type = NeighbourTable
    def __init__(self, ray: Any, check: SemanticDuplicate) -> None:
        from qualgate.engines.semantic import baseline_vectors

        super().__init__(ray, check)
        self.task = ray.remote(_batch_vectors)
        self.refs = [[ray.put(baseline_vectors(check))] if check.n_set else []]

    def add(self, result_ref: Any, first: int) -> None:
        self.refs[0].append(self.task.remote(result_ref, self.name, self.check.n_set + first))

    def run(self, partitions: int) -> Any:
        from qualgate.engines.semantic import neighbours

        return neighbours(self.refs[0], self.check, partitions)

    def features(self, table: Any, live: list[int], feats: Any, first: int) -> Any:
        return table.features(self.check.n_set + first + np.asarray(live, dtype=np.int64))

    def digest(self) -> str:
        import xxhash

        vecs = self.check.index.vectors() if self.check.n_set else np.empty(0, np.float32)
        return f"{self.check.params.model_dump_json()}:{self.check.n_set}:{xxhash.xxh3_64_hexdigest(vecs.tobytes())}"


def shuffled_checks(ray: Any, gate: Gate) -> list[_Shuffled]:
    """The gate's set checks that the Ray engine runs as shuffles: near-duplicates always (exact), semantic
    duplicates when configured with ``partitions`` (SemDeDup, approximate)."""
    out: list[_Shuffled] = []
    for c in gate.set_checks:
        if isinstance(c, NearDuplicate):
            out.append(_NearDuplicates(ray, c))
        elif isinstance(c, SemanticDuplicate) and c.params.partitions > 0:
            out.append(_SemanticPartitions(ray, c))
    return out


def _staged(gate: Gate, ray: Any, pool: list[Any], batches: Iterator[list[Sample]],
            shuffled: list[_Shuffled]) -> Iterator[list[Decision]]:
    """Keep-first checks fed by a shuffle need every sample's features before the first decision: score
    everything (actors), shuffle (Ray Data), then decide batch by batch in input order."""
    checkpoint = gate.checkpoint
    scoring = _Scoring(ray, pool, checkpoint)
    clock = time.perf_counter()
    stages = gate.engine_info.setdefault("stages_seconds", {})
    scored: list[tuple[Any, Any, int]] = []
    in_flight: list[Any] = []
    first = 0
    for i, batch in enumerate(batches):
        ref = scoring.submit(i, batch)
        scored.append((ray.put(batch), ref, first))
        for stage in shuffled:
            stage.add(ref, first)
        first += len(batch)
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
    tables: dict[str, Any] = {}
    for stage in shuffled:
        key = checkpoint.pairs_key(stage.name, scoring.keys, stage.digest()) if checkpoint else ""
        table = checkpoint.load_table(key, stage.table_type) if checkpoint else None
        if table is None:
            table = stage.run(partitions)
            if checkpoint:
                checkpoint.save_table(key, table)
        tables[stage.name] = table
    stages["shuffle"] = round(time.perf_counter() - clock, 3)
    gate.engine_info["shuffle_pairs"] = {name: len(table) for name, table in tables.items()}
    deciding = 0.0
    for batch_ref, ref, start in scored:
        clock = time.perf_counter()
        result = ray.get(ref)
        features = result.features
        for stage in shuffled:
            if stage.name in features:
                live, feats = features[stage.name]
                features[stage.name] = (live, stage.features(tables[stage.name], live, feats, start))
        decisions = join_verdicts(gate.local_checks, gate.all_findings, ray.get(batch_ref), result)
        deciding += time.perf_counter() - clock
        stages["decide"] = round(deciding, 3)
        yield decisions
