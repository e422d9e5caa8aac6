"""SemDeDup partitioned semantic-duplicate search against the exact keep-first reference, on seeded synthetic
unit vectors with planted near-duplicate clusters (and, marked slow, against the real SemanticDuplicate check)."""

from __future__ import annotations

import importlib.util
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qualgate.semdedup import (
    KeepFirst,
    csr_from_pairs,
    earlier_neighbours,
    exact_keep_first,
    neighbours_in_partition,
    partition,
    partition_rows,
    resolve_keep_first,
)

needs_faiss = pytest.mark.skipif(importlib.util.find_spec("faiss") is None, reason="needs faiss (embed extra)")


def _unit(x: Any) -> Any:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def planted(n_clusters: int = 20, size: int = 6, n_background: int = 200, d: int = 64, noise: float = 0.25,
            seed: int = 0) -> tuple[Any, Any]:
    """Unit vectors in random order: clusters of near-copies of a random centre (noise of norm ~``noise``:
    members' cosine ~1/(1+noise²), 0.94 by default) among unrelated background vectors; returns the vectors
    and each row's cluster (-1: none)."""
    rng = np.random.default_rng(seed)
    centres = _unit(rng.normal(size=(n_clusters, d)))
    members = np.repeat(centres, size, axis=0) + rng.normal(scale=noise / np.sqrt(d), size=(n_clusters * size, d))
    vecs = np.vstack([_unit(members), _unit(rng.normal(size=(n_background, d)))])
    cluster = np.r_[np.repeat(np.arange(n_clusters), size), np.full(n_background, -1)]
    order = rng.permutation(len(vecs))
    return vecs[order], cluster[order]


def partitioned(vecs: Any, labels: Any, threshold: float, eligible: Any = None,
                max_neighbours: int | None = 100) -> KeepFirst:
    return resolve_keep_first(*earlier_neighbours(vecs, labels, threshold, max_neighbours), eligible)


def same(a: KeepFirst, b: KeepFirst) -> bool:
    return bool(np.array_equal(a.duplicate_of, b.duplicate_of)
                and np.array_equal(a.cosine, b.cosine, equal_nan=True))


def naive_lists(vecs: Any, threshold: float, limit: int | None = None) -> list[list[int]]:
    sims = vecs.astype(np.float64) @ vecs.astype(np.float64).T
    out = []
    for i in range(len(vecs)):
        js = [j for j in range(i) if sims[i, j] >= threshold]
        out.append(sorted(js, key=lambda j: (-float(np.float32(sims[i, j])), j))[:limit])
    return out


# ----------------------------------------------------------------------------------------------- exactness
@needs_faiss
@pytest.mark.parametrize("max_neighbours", [None, 100])
def test_one_partition_equals_exact(max_neighbours: int | None) -> None:
    vecs, _ = planted()
    eligible = np.random.default_rng(1).random(len(vecs)) < 0.8
    labels, centroids = partition(vecs, 1)
    assert set(labels.tolist()) == {0} and centroids.shape == (1, vecs.shape[1])
    exact = exact_keep_first(vecs, 0.9, eligible)
    assert (exact.duplicate_of >= 0).sum() > 50  # the data does have duplicates to find
    assert same(partitioned(vecs, labels, 0.9, eligible, max_neighbours), exact)


def test_exact_does_not_depend_on_blocking() -> None:
    vecs, _ = planted(seed=3)
    eligible = np.random.default_rng(3).random(len(vecs)) < 0.7
    ref = exact_keep_first(vecs, 0.9, eligible)
    for block, chunk in ((1, 1), (7, 3), (64, 5), (10_000, 10_000)):
        assert same(exact_keep_first(vecs, 0.9, eligible, block=block, chunk=chunk), ref)


@needs_faiss
def test_compact_planted_duplicates_found_with_many_partitions() -> None:
    vecs, cluster = planted(n_clusters=30, size=5, n_background=300, noise=0.15)
    exact = exact_keep_first(vecs, 0.9)
    for k in (4, 8, 16):
        labels, _ = partition(vecs, k)
        assert all(len(set(labels[cluster == c].tolist())) == 1 for c in range(30))  # clusters stay whole
        result = partitioned(vecs, labels, 0.9)
        assert same(result, exact)
        # every cluster keeps its first member and names it from all the others
        for c in range(30):
            rows = np.flatnonzero(cluster == c)
            assert result.duplicate_of[rows[0]] == -1
            assert set(result.duplicate_of[rows[1:]].tolist()) == {rows[0]}


@needs_faiss
def test_partitioned_is_exact_within_each_partition() -> None:
    """With no neighbour limit, partitioned resolution = the exact one run on each partition by itself."""
    vecs, cluster = planted(n_background=400, d=8, noise=0.3, seed=5)  # crowded: k-means splits clusters
    eligible = np.random.default_rng(5).random(len(vecs)) < 0.9
    labels, _ = partition(vecs, 8, seed=2)
    assert sum(len(set(labels[cluster == c].tolist())) > 1 for c in range(20)) >= 3
    result = partitioned(vecs, labels, 0.9, eligible, None)
    for rows in partition_rows(labels):
        alone = exact_keep_first(vecs[rows], 0.9, eligible[rows])
        dup = np.where(alone.duplicate_of >= 0, rows[np.maximum(alone.duplicate_of, 0)], -1)
        assert np.array_equal(result.duplicate_of[rows], dup)
        assert np.array_equal(result.cosine[rows], alone.cosine, equal_nan=True)


@needs_faiss
def test_split_pairs_are_missed_not_invented() -> None:
    """What partitioning loses: duplicates it finds are a subset of pairs >= threshold in one partition."""
    vecs, _ = planted(n_background=400, d=8, noise=0.3, seed=5)
    labels, _ = partition(vecs, 32, seed=2)
    result = partitioned(vecs, labels, 0.9)
    rows = np.flatnonzero(result.duplicate_of >= 0)
    g = result.duplicate_of[rows]
    assert np.all(g < rows) and np.all(labels[g] == labels[rows])
    assert np.all(np.einsum("ij,ij->i", vecs[rows], vecs[g]) >= 0.9 - 1e-6)
    assert len(rows) < (exact_keep_first(vecs, 0.9).duplicate_of >= 0).sum()  # some were split apart


# ------------------------------------------------------------------------------------------- partitions
@needs_faiss
def test_partition_is_deterministic() -> None:
    vecs, _ = planted(n_background=2000, seed=7)
    for sample in (100_000, 500):  # all rows, and a seeded subsample for training
        a, b = partition(vecs, 16, seed=4, sample=sample), partition(vecs, 16, seed=4, sample=sample)
        assert np.array_equal(a.labels, b.labels) and np.array_equal(a.centroids, b.centroids)
        assert a.labels.dtype == np.int64 and len(set(a.labels.tolist())) > 1
        assert np.allclose(np.linalg.norm(a.centroids, axis=1), 1, atol=1e-5)
    assert not np.array_equal(partition(vecs, 16, seed=4).labels, partition(vecs, 16, seed=5).labels)


@needs_faiss
def test_partition_edge_cases() -> None:
    vecs, _ = planted(n_clusters=2, size=2, n_background=1)
    labels, centroids = partition(vecs, 50)  # more partitions than rows: capped
    assert len(centroids) == len(vecs) and labels.max() < len(vecs)
    assert partition(vecs[:0], 8).labels.shape == (0,)
    assert partition(vecs[:1], 8).labels.tolist() == [0]
    with pytest.raises(ValueError):
        partition(vecs, 0)


# ------------------------------------------------------------------------------------------- neighbours
@pytest.mark.parametrize("limit", [None, 1, 3])
def test_blocked_lists_equal_naive_full_product(limit: int | None) -> None:
    vecs, _ = planted(n_clusters=10, size=8, n_background=150, noise=0.4, seed=11)
    expected = naive_lists(vecs, 0.85, limit)
    assert sum(map(len, naive_lists(vecs, 0.85))) > 100
    for block, chunk in ((16, 40), (1, 7), (2, 3), (5, 2), (512, 4096)):
        pairs = neighbours_in_partition(np.arange(len(vecs)), vecs, 0.85, limit, block=block, chunk=chunk)
        offsets, nbr, sims = csr_from_pairs(len(vecs), [pairs])
        assert offsets.dtype == nbr.dtype == np.int64 and sims.dtype == np.float32
        assert [nbr[offsets[i]:offsets[i + 1]].tolist() for i in range(len(vecs))] == expected
        full = vecs.astype(np.float64) @ vecs.astype(np.float64).T
        rows = np.repeat(np.arange(len(vecs)), np.diff(offsets))
        assert np.allclose(sims, full[rows, nbr], atol=1e-6)


def test_partition_positions_are_global_and_concatenate() -> None:
    vecs, _ = planted(noise=0.4, seed=13)
    labels = np.random.default_rng(13).integers(0, 5, len(vecs))
    parts = []
    for p in range(5):
        rows = np.flatnonzero(labels == p)
        shuffled = np.random.default_rng(p).permutation(rows)  # any order in, global positions out
        parts.append(neighbours_in_partition(shuffled, vecs[shuffled], 0.85, 4))
    merged = csr_from_pairs(len(vecs), parts[::-1])
    direct = earlier_neighbours(vecs, labels, 0.85, 4)
    assert np.array_equal(merged.offsets, direct.offsets) and np.array_equal(merged.nbr, direct.nbr)
    assert np.array_equal(merged.sims, direct.sims)
    rows = np.repeat(np.arange(len(vecs)), np.diff(direct.offsets))
    assert np.all(direct.nbr < rows) and np.all(labels[direct.nbr] == labels[rows])
    assert np.diff(direct.offsets).max() <= 4
    with pytest.raises(ValueError):
        neighbours_in_partition([1, 1], vecs[:2], 0.9)


def test_giant_cluster_beyond_the_neighbour_limit_is_missed() -> None:
    """Rows 0-4 are copies (kept: 0); rows 1-4 are not eligible so they are never kept; row 5 is nearer to
    them than to row 0: with 4 neighbours listed it sees only rows 1-4 and is kept; with more, it is a duplicate."""
    rng = np.random.default_rng(0)
    base = _unit(rng.normal(size=(1, 16)))[0]
    other = _unit(rng.normal(size=(1, 16)))[0]
    vecs = _unit(np.vstack([base, *[base + 0.02 * other] * 4, base + 0.05 * other]))
    eligible = np.array([True, False, False, False, False, True])
    labels = np.zeros(6, dtype=np.int64)
    assert partitioned(vecs, labels, 0.9, eligible, 4).duplicate_of[5] == -1
    assert partitioned(vecs, labels, 0.9, eligible, 5).duplicate_of[5] == 0
    assert exact_keep_first(vecs, 0.9, eligible).duplicate_of[5] == 0


# ------------------------------------------------------------------------------------------- resolution
def test_eligibility_respected() -> None:
    vecs, _ = planted(seed=17)
    eligible = np.random.default_rng(17).random(len(vecs)) < 0.5
    labels = np.zeros(len(vecs), dtype=np.int64)
    for result in (exact_keep_first(vecs, 0.9, eligible), partitioned(vecs, labels, 0.9, eligible)):
        named = result.duplicate_of[result.duplicate_of >= 0]
        assert len(named) and eligible[named].all()  # never named: non-eligible samples are not kept
        assert np.all(result.duplicate_of[named] == -1)  # and a named sample is itself no duplicate
    # a copy of a non-eligible sample is no duplicate of it: it is the first of its kind to be kept
    a = _unit(np.random.default_rng(0).normal(size=(1, 8)))[0]
    three = np.vstack([a, a, a])
    assert exact_keep_first(three, 0.9, [False, True, True]).duplicate_of.tolist() == [-1, -1, 1]
    assert partitioned(three, np.zeros(3), 0.9, [False, True, True]).duplicate_of.tolist() == [-1, -1, 1]
    assert exact_keep_first(three, 0.9, [False, False, True]).duplicate_of.tolist() == [-1, -1, -1]


def test_ties_go_to_the_earlier_row() -> None:
    """Two kept samples at exactly the same cosine from a third: the third names the earlier one."""
    x, y, z = np.eye(3, dtype=np.float32)
    middle = _unit((x + y)[None, :])[0]  # cosine 0.7071 to both x and y, which are 0 apart (both kept)
    for vecs in (np.vstack([x, y, middle]), np.vstack([y, x, middle]), np.vstack([x, z, y, middle])):
        n = len(vecs)
        for block, chunk in ((1, 1), (2, 1), (512, 4096)):
            assert exact_keep_first(vecs, 0.7, block=block, chunk=chunk).duplicate_of[-1] == 0
        assert partitioned(vecs, np.zeros(n), 0.7).duplicate_of[-1] == 0
        _, nbr, sims = earlier_neighbours(vecs, np.zeros(n), 0.7)
        assert nbr.tolist() == [0, n - 2] and sims[0] == sims[1]  # equal cosines: the earlier row first
    # the earlier copy is not eligible: the later copy is the kept one that gets named
    vecs = np.vstack([x, x, _unit((x + 0.1 * y)[None, :])[0]])
    assert exact_keep_first(vecs, 0.9, [True, True, True]).duplicate_of.tolist() == [-1, 0, 0]
    assert exact_keep_first(vecs, 0.9, [False, True, True]).duplicate_of.tolist() == [-1, -1, 1]
    assert partitioned(vecs, np.zeros(3), 0.9, [False, True, True]).duplicate_of.tolist() == [-1, -1, 1]


def test_resolution_of_hand_made_lists() -> None:
    # row 1 repeats 0; row 2 lists 1 (a duplicate, not kept) first, then 0; row 3 lists only 1
    offsets, nbr, sims = [0, 0, 1, 3, 4], [0, 1, 0, 1], np.array([0.95, 0.99, 0.93, 0.97], dtype=np.float32)
    result = resolve_keep_first(offsets, nbr, sims)
    assert result.duplicate_of.tolist() == [-1, 0, 0, -1]
    assert np.isnan(result.cosine[[0, 3]]).all() and result.cosine[2] == np.float32(0.93)


def test_threshold_compares_like_the_check() -> None:
    """The check compares Python floats: a cosine of float32(0.9) = 0.8999999762 is below a 0.9 threshold."""
    a = np.array([1.0, 0.0], dtype=np.float32)
    b = np.array([np.float32(0.9), np.sqrt(1 - np.float64(np.float32(0.9)) ** 2)], dtype=np.float32)
    vecs = np.vstack([a, b])
    assert float(vecs[0] @ vecs[1]) < 0.9
    assert exact_keep_first(vecs, 0.9).duplicate_of.tolist() == [-1, -1]
    assert partitioned(vecs, np.zeros(2), 0.9).duplicate_of.tolist() == [-1, -1]
    assert exact_keep_first(vecs, float(np.float32(0.9))).duplicate_of.tolist() == [-1, 0]


def test_empty_input() -> None:
    vecs = np.zeros((0, 4), dtype=np.float32)
    assert exact_keep_first(vecs, 0.9).duplicate_of.shape == (0,)
    offsets, nbr, _ = earlier_neighbours(vecs, np.zeros(0), 0.9)
    assert offsets.tolist() == [0] and nbr.shape == (0,)


# ------------------------------------------------------------------------------------------- properties
@st.composite
def small_inputs(draw: st.DrawFn) -> tuple[Any, float, Any, int, int]:
    """Few-valued integer vectors: many identical directions, so exact ties and cosines of exactly 1."""
    n = draw(st.integers(1, 30))
    d = draw(st.integers(2, 5))
    ints = draw(st.lists(st.lists(st.integers(-2, 2), min_size=d, max_size=d), min_size=n, max_size=n))
    x = np.array(ints, dtype=np.float64)
    x[np.all(x == 0, axis=1), 0] = 1.0
    threshold = draw(st.sampled_from([0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 1.0]))
    eligible = np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    return _unit(x), threshold, eligible, draw(st.integers(1, 8)), draw(st.integers(1, 8))


@settings(max_examples=200, deadline=None)
@given(small_inputs())
def test_property_one_partition_equals_exact(data: tuple[Any, float, Any, int, int]) -> None:
    vecs, threshold, eligible, block, chunk = data
    exact = exact_keep_first(vecs, threshold, eligible)
    assert same(exact_keep_first(vecs, threshold, eligible, block=block, chunk=chunk), exact)
    labels = np.zeros(len(vecs), dtype=np.int64)
    assert same(partitioned(vecs, labels, threshold, eligible, None), exact)
    pairs = neighbours_in_partition(np.arange(len(vecs)), vecs, threshold, None, block=block, chunk=chunk)
    assert np.all(pairs.nbr < pairs.row)
    assert same(resolve_keep_first(*csr_from_pairs(len(vecs), [pairs]), eligible), exact)


# ------------------------------------------------------------------------------------------- real check
@pytest.mark.slow
def test_exact_reference_matches_the_semantic_duplicate_check() -> None:
    """exact_keep_first decides like SemanticDuplicate.score_batch (batches of 50, engine-computed vectors)."""
    from tests.conftest import require_embed

    require_embed()
    from qualgate.checks.embedding import EmbeddingFeatures, SemanticDuplicate, SemanticDuplicateParams
    from qualgate.sample import Sample

    vecs, _ = planted(n_clusters=40, size=5, n_background=300, d=384, noise=0.25, seed=21)
    eligible = np.random.default_rng(21).random(len(vecs)) < 0.8
    check = SemanticDuplicate("semantic_duplicate", SemanticDuplicateParams())
    names: list[int] = []
    for s in range(0, len(vecs), 50):
        samples = [Sample(id=str(i), record={}, text="") for i in range(s, min(s + 50, len(vecs)))]
        out = check.score_batch(samples, list(eligible[s:s + 50]), EmbeddingFeatures(vecs[s:s + 50]))
        dup = [int(m.evidence["duplicate_of"]) if "duplicate_of" in m.evidence else -1 for m in out]  # type: ignore[union-attr]
        check.commit([bool(e) and d < 0 for e, d in zip(eligible[s:s + 50], dup, strict=True)])
        names.extend(dup)
    exact = exact_keep_first(vecs, 0.9, eligible)
    assert sum(d >= 0 for d in names) > 50
    assert names == exact.duplicate_of.tolist()
