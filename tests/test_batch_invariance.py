"""Keep-first decisions do not depend on the batch size: a sample is only ever named a duplicate of, and only
ever compared with, samples that were finally accepted, exactly as with batches of one sample.

Within a batch a keep-first check admits samples tentatively; a later check (semantic_duplicate after
near_duplicate, private_leak after both) may still reject one, and the gate then decides the rest of the
batch again. The records mix the paraphrases of fixtures/semantic_sample.jsonl, the private records (which
private_leak rejects after both duplicate checks admitted them), exact and near copies of both, and texts
too short for the length check.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qualgate import Gate
from qualgate.checks import SetCheck
from tests.conftest import FIXTURES, require_embed

require_embed()

CONFIG: dict[str, Any] = {"version": 1, "input": {"text": "text", "id": "id"}, "checks": [
    {"check": "length", "min_words": 4},
    {"check": "near_duplicate"},
    {"check": "semantic_duplicate"},
    {"check": "private_leak"},
]}
BATCHES = (1, 2, 3, 7, 64)


def _lines(name: str) -> list[dict[str, Any]]:
    return [json.loads(x) for x in (FIXTURES / name).read_text().splitlines() if x.strip()]


POOL = [f"{r['instruction']} {r['output']}" for r in _lines("semantic_sample.jsonl")] + \
       [r["text"] for r in _lines("private_records.jsonl")]


def _variant(text: str, how: int) -> str:
    """0: as is; 1: an exact copy once normalised; 2: a near copy; 3: too short for the length check."""
    words = text.split()
    return [text, text.upper(), " ".join(words[:-1]), " ".join(words[:3])][how]


def _records(picks: list[tuple[int, int]]) -> list[dict[str, Any]]:
    return [{"id": f"r{n}", "text": _variant(POOL[p], how)} for n, (p, how) in enumerate(picks)]


#: exact and near copies of a private record and of paraphrases, twice over: conflicts in both duplicate checks
CONFLICTS = _records([(14, 0), (0, 0), (2, 0), (14, 1), (0, 1), (2, 2), (15, 2), (15, 0), (15, 1), (3, 0)] * 2)


@pytest.fixture(scope="module")
def gate(tmp_path_factory: pytest.TempPathFactory) -> Gate:
    """One gate for every run (a gate keeps nothing of one run for the next but its loaded sets)."""
    gate = Gate.from_config(CONFIG, workers=1, cache_dir=tmp_path_factory.mktemp("cache"))
    gate.load_set("private", [str(FIXTURES / "private_records.jsonl")])
    return gate


def _outcome(gate: Gate, records: list[dict[str, Any]], batch: int) -> list[tuple[Any, ...]]:
    gate.batch_size = batch
    result = gate.run(records)
    return [(d.id, d.accepted, [(f.check, f.reason, f.evidence.get("duplicate_of")) for f in d.findings],
             d.skipped) for d in result.decisions]


picks = st.lists(st.tuples(st.integers(0, len(POOL) - 1), st.sampled_from([0, 0, 0, 1, 1, 2, 3])),
                 min_size=1, max_size=60)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(picks=picks)
def test_decisions_are_the_same_for_every_batch_size(gate: Gate, picks: list[tuple[int, int]]) -> None:
    records = _records(picks)
    one = _outcome(gate, records, 1)
    accepted = {sid for sid, ok, _, _ in one if ok}
    for _, _, findings, _ in one:
        for _, _, kept in findings:
            assert kept is None or kept in accepted, (kept, one)
    for batch in (*BATCHES[1:], len(records), 512):
        assert _outcome(gate, records, batch) == one, batch


def test_a_sample_copying_one_a_later_check_rejected_is_decided_again(gate: Gate) -> None:
    """The private record passes both duplicate checks, then private_leak rejects it: its copy later in the same
    batch is no duplicate of it (it was never kept) but a private leak itself; the clusters say the same."""
    secret = POOL[-6]
    records = [{"id": "a", "text": secret}, {"id": "b", "text": POOL[0]}, {"id": "c", "text": secret.upper()},
               {"id": "d", "text": POOL[0].upper()}]
    for batch in (1, 512):
        gate.batch_size = batch
        result = gate.run(records)
        reasons = {d.id: [(f.check, f.evidence.get("duplicate_of")) for f in d.findings] for d in result.decisions}
        assert reasons == {"a": [("private_leak", None)], "b": [], "c": [("private_leak", None)],
                           "d": [("near_duplicate", "b")]}, batch
        clusters = result.report["sets"]["near_duplicate"]["largest_clusters"]
        assert [(c["kept"], c["duplicates"]) for c in clusters] == [("b", 1)], batch


def test_keep_first_checks_declare_it() -> None:
    from qualgate.checks import REGISTRY

    keep_first = {kind for kind, cls in REGISTRY.items() if issubclass(cls, SetCheck) and cls.keeps_first}
    assert keep_first == {"near_duplicate", "semantic_duplicate"}


def test_the_ray_engine_decides_again_like_the_local_one(gate: Gate) -> None:
    """The Ray engine's shuffled candidates (near_duplicate's pairs; semantic_duplicate's neighbour lists, with
    ``partitions``) go through the same second pass: its decisions equal the local engine's with batches of one."""
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        pytest.skip("needs the ray extra")
    import ray

    checks = [{**c, "partitions": 1} if c["check"] == "semantic_duplicate" else c for c in CONFIG["checks"]]
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    try:
        on_ray = Gate.from_config({**CONFIG, "checks": checks}, workers=2, batch_size=8, cache_dir=None,
                                  engine="ray")
        on_ray.load_set("private", [str(FIXTURES / "private_records.jsonl")])
        assert _outcome(on_ray, CONFLICTS, 8) == _outcome(gate, CONFLICTS, 1)
    finally:
        ray.shutdown()


def test_features_scored_ahead_give_the_same_second_pass(gate: Gate, tmp_path: Path) -> None:
    """A checkpointed run scores every check's features (shingles, embeddings) ahead, per batch: a part decided
    again takes its rows of them."""
    ahead = Gate.from_config(CONFIG, workers=1, batch_size=8, cache_dir=None,
                             checkpoint_dir=tmp_path)
    ahead.load_set("private", [str(FIXTURES / "private_records.jsonl")])
    assert _outcome(ahead, CONFLICTS, 8) == _outcome(gate, CONFLICTS, 1)
