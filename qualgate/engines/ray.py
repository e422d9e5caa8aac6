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

import uuid
from collections import deque
from collections.abc import Iterator
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from qualgate.models import require_modules

#: How often a dead scoring actor is restarted, and each of its tasks retried, before the run fails.
RETRIES = 3

if TYPE_CHECKING:
    from qualgate.findings import Decision
    from qualgate.gate import Gate
    from qualgate.sample import Sample


def connect(address: str | None = None) -> Any:
    """Join the Ray cluster at ``address`` (None: the one this process already joined, else a local one)."""
    require_modules("ray", extra="pip install 'qualgate[ray]'", who="--engine ray")
    import ray

    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
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
    pending: deque[tuple[list[Sample], Any]] = deque()
    try:
        for i, batch in enumerate(batches):
            pending.append((batch, pool[i % n].run.remote([replace(s, raw=None) for s in batch])))
            if len(pending) >= 2 * n:
                yield _join(gate, ray, *pending.popleft())
        while pending:
            yield _join(gate, ray, *pending.popleft())
    finally:
        for a in pool:
            ray.kill(a)


def _join(gate: Gate, ray: Any, batch: list[Sample], ref: Any) -> list[Decision]:
    return gate._join_verdicts(batch, ray.get(ref))
