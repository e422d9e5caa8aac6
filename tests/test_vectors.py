"""The faiss vector index (flat / HNSW / auto), the diversity math (Vendi, nearest neighbours, k-means,
bottom-k pool) and the diversity parts of config validation, on seeded random unit vectors."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xxhash
from hypothesis import given, settings
from hypothesis import strategies as st

from qualgate import ConfigError, load_config
from qualgate.diversity import _Pool, assign, kmeans, nn_distances, vendi
from qualgate.vectors import VectorIndex
from tests.conftest import require_embed

require_embed()

DIM = 32


def unit(n: int, seed: int, dim: int = DIM) -> Any:
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def same_answers(a: VectorIndex, b: VectorIndex, queries: Any, k: int = 5) -> None:
    sa, ia = a.search(queries, k)
    sb, ib = b.search(queries, k)
    np.testing.assert_array_equal(ia, ib)
    np.testing.assert_array_equal(sa, sb)


# ------------------------------------------------------------------------------------- flat
def test_flat_top1_is_exact_argmax() -> None:
    x, q = unit(500, 1), unit(200, 2)
    index = VectorIndex(DIM, "flat")
    index.add(x)
    sims, ids = index.search(q, 3)
    assert index.structure == "flat" and index.size == 500
    assert sims.shape == ids.shape == (200, 3) and sims.dtype == np.float32 and ids.dtype == np.int64
    exact = q @ x.T
    np.testing.assert_array_equal(ids[:, 0], np.argmax(exact, axis=1))
    np.testing.assert_allclose(sims[:, 0], exact.max(axis=1), atol=1e-5)
    assert (np.diff(sims, axis=1) <= 1e-6).all()  # best first


def test_k_beyond_size_and_empty_index_pad_with_minus_one_and_minus_inf() -> None:
    x, q = unit(5, 3), unit(4, 4)
    for kind in ("flat", "hnsw"):
        index = VectorIndex(DIM, kind)  # type: ignore[arg-type]
        index.add(x)
        sims, ids = index.search(q, 8)
        assert sims.shape == ids.shape == (4, 8)
        assert (ids[:, 5:] == -1).all() and np.isneginf(sims[:, 5:]).all()
        for row in ids:
            assert sorted(row[:5].tolist()) == [0, 1, 2, 3, 4]
        assert np.isfinite(sims[:, :5]).all()

        empty = VectorIndex(DIM, kind)  # type: ignore[arg-type]
        sims, ids = empty.search(q, 3)
        assert sims.shape == ids.shape == (4, 3)
        assert (ids == -1).all() and np.isneginf(sims).all()
        assert empty.size == 0 and empty.vectors().shape == (0, DIM)


def test_empty_add_and_empty_query_are_no_ops() -> None:
    index = VectorIndex(DIM, "flat")
    index.add(np.zeros((0, DIM), dtype=np.float32))
    assert index.size == 0
    index.add(unit(3, 5))
    sims, ids = index.search(np.zeros((0, DIM), dtype=np.float32), 2)
    assert sims.shape == ids.shape == (0, 2)


# ------------------------------------------------------------------------------------- auto
def test_auto_switches_to_hnsw_past_exact_limit_and_keeps_every_vector() -> None:
    x = unit(200, 6)
    parts = [x[:25], x[25:50], x[50:51], x[51:]]
    index = VectorIndex(DIM, "auto", exact_limit=50)
    index.add(parts[0])
    assert index.structure == "flat"
    index.add(parts[1])  # exactly exact_limit: still exact
    assert index.structure == "flat" and index.describe()["structure"] == "flat"
    assert "hnsw_m" not in index.describe()
    index.add(parts[2])
    assert index.structure == "hnsw" and index.size == 51
    index.add(parts[3])
    assert index.structure == "hnsw" and index.size == 200
    np.testing.assert_array_equal(index.vectors(), np.concatenate(parts))
    assert index.describe() == {"structure": "hnsw", "vectors": 200, "setting": "auto", "exact_limit": 50,
                                "hnsw_m": 32, "ef_construction": 80, "ef_search": 128}
    _, ids = index.search(x, 1)  # the vectors added before the switch were re-indexed too
    np.testing.assert_array_equal(ids[:, 0], np.arange(200))


def test_auto_first_batch_above_limit_starts_as_hnsw() -> None:
    index = VectorIndex(DIM, "auto", exact_limit=10)
    index.add(unit(11, 7))
    assert index.structure == "hnsw"
    small = VectorIndex(DIM, "auto", exact_limit=10)
    small.add(unit(10, 7))
    assert small.structure == "flat"


# ------------------------------------------------------------------------------------- hnsw
def test_hnsw_recall_at_1_against_exact() -> None:
    x, q = unit(3000, 8), unit(400, 9)
    index = VectorIndex(DIM, "hnsw")
    index.add(x)
    assert index.structure == "hnsw"
    _, ids = index.search(q, 1)
    recall = float((ids[:, 0] == np.argmax(q @ x.T, axis=1)).mean())
    assert recall >= 0.95


def test_hnsw_same_vectors_same_order_same_answers() -> None:
    x, q = unit(3000, 10), unit(300, 11)
    a, b = VectorIndex(DIM, "hnsw"), VectorIndex(DIM, "hnsw")
    for part in np.array_split(x, 3):
        a.add(part)
        b.add(part)
    same_answers(a, b, q, k=10)
    np.testing.assert_array_equal(a.state("")["faiss"], b.state("")["faiss"])  # the same graph


def test_hnsw_answers_do_not_depend_on_add_batching() -> None:
    x, q = unit(3000, 12), unit(2000, 13)
    weak = {"hnsw_m": 4, "ef_construction": 8, "ef_search": 4}  # low recall, so graph differences show in answers
    a, b = VectorIndex(DIM, "hnsw", **weak), VectorIndex(DIM, "hnsw", **weak)  # type: ignore[arg-type]
    a.add(x)
    for part in np.array_split(x, 7):
        b.add(part)
    same_answers(a, b, q)


# ------------------------------------------------------------------------------------- state
@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_state_round_trip(kind: str, tmp_path: Path) -> None:
    x, q = unit(1000, 14), unit(200, 15)
    index = VectorIndex(DIM, kind)  # type: ignore[arg-type]
    index.add(x[:600])
    index.add(x[600:])
    state = index.state("vec_")
    assert set(state) == ({"vec_vectors", "vec_faiss"} if kind == "hnsw" else {"vec_vectors"})

    loaded = VectorIndex(DIM, kind)  # type: ignore[arg-type]
    loaded.load_state(state, "vec_")
    assert (loaded.structure, loaded.size) == (kind, 1000)
    np.testing.assert_array_equal(loaded.vectors(), x)
    same_answers(index, loaded, q)

    path = tmp_path / "state.npz"
    np.savez(path, **state)
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    from_disk = VectorIndex(DIM, kind)  # type: ignore[arg-type]
    from_disk.load_state(arrays, "vec_")
    assert (from_disk.structure, from_disk.size) == (kind, 1000)
    np.testing.assert_array_equal(from_disk.vectors(), x)
    same_answers(index, from_disk, q)
    assert from_disk.describe() == index.describe()


def test_state_of_auto_index_after_switch_round_trips_as_hnsw() -> None:
    x, q = unit(300, 16), unit(50, 17)
    index = VectorIndex(DIM, "auto", exact_limit=100)
    index.add(x)
    loaded = VectorIndex(DIM, "auto", exact_limit=100)
    loaded.load_state(index.state("p"), "p")
    assert loaded.structure == "hnsw"
    same_answers(index, loaded, q)


def test_empty_state_round_trip() -> None:
    loaded = VectorIndex(DIM, "flat")
    loaded.load_state(VectorIndex(DIM, "flat").state("e_"), "e_")
    assert loaded.size == 0 and loaded.vectors().shape == (0, DIM)
    _, ids = loaded.search(unit(2, 18), 2)
    assert (ids == -1).all()


# ------------------------------------------------------------------------------------- diversity math
def test_vendi_identical_orthonormal_and_empty() -> None:
    v = unit(1, 19)
    assert vendi(np.repeat(v, 20, axis=0)) == pytest.approx(1.0, abs=1e-6)
    basis = np.linalg.qr(np.random.default_rng(20).standard_normal((DIM, DIM)))[0].astype(np.float32)
    for n in (1, 2, 7, DIM):
        assert vendi(basis[:n]) == pytest.approx(float(n), rel=1e-4)
    assert vendi(np.zeros((0, DIM), dtype=np.float32)) == 0.0
    assert 1.0 < vendi(unit(200, 21)) <= DIM


def test_nn_distances_duplicate_pair_and_brute_force() -> None:
    x = unit(300, 22)
    x[77] = x[13]
    d = nn_distances(x)
    assert d.shape == (300,) and d.dtype == np.float32
    assert d[13] == pytest.approx(0.0, abs=1e-6) and d[77] == pytest.approx(0.0, abs=1e-6)
    sims = x.astype(np.float64) @ x.astype(np.float64).T
    np.fill_diagonal(sims, -np.inf)
    expected = np.clip(1.0 - sims.max(axis=1), 0.0, 2.0)
    np.testing.assert_allclose(d, expected, atol=1e-5)
    assert (np.delete(d, [13, 77]) > 1e-3).all()


def _blobs(seed: int, k: int = 5, per: int = 60) -> tuple[Any, Any]:
    rng = np.random.default_rng(seed)
    centres = np.linalg.qr(rng.standard_normal((DIM, DIM)))[0][:k]  # orthonormal: far apart
    labels = np.repeat(np.arange(k), per)
    x = centres[labels] + 0.05 * rng.standard_normal((k * per, DIM))
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    order = rng.permutation(len(x))
    return x[order], labels[order]


def test_kmeans_deterministic_and_clusters_pure() -> None:
    x, truth = _blobs(23)
    a, b = kmeans(x, 5, seed=7), kmeans(x, 5, seed=7)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (5, DIM) and a.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-4)  # spherical
    labels = assign(x, a)
    assert labels.shape == (len(x),)
    for c in range(5):
        members = truth[labels == c]
        assert len(members) == 60 and len(set(members.tolist())) == 1  # one generating centre per cluster
    assert len({int(truth[labels == c][0]) for c in range(5)}) == 5


def _pool_items(n: int) -> tuple[list[str], Any, list[str]]:
    ids = [f"s{i}" for i in range(n)]
    vecs = np.random.default_rng(n).standard_normal((n, 4)).astype(np.float32)
    texts = [f"text {i} " * (i % 5 + 1) for i in range(n)]
    return ids, vecs, texts


@settings(max_examples=60, deadline=None)
@given(n=st.integers(0, 80), cap=st.integers(1, 20), data=st.data())
def test_pool_keeps_smallest_hashes_whatever_order_and_batching(n: int, cap: int, data: st.DataObject) -> None:
    ids, vecs, texts = _pool_items(n)
    order = data.draw(st.permutations(range(n)))
    cuts = sorted(data.draw(st.lists(st.integers(0, n), max_size=8)))
    bounds = [0, *cuts, n]

    pool = _Pool(cap, 4)
    for lo, hi in itertools.pairwise(bounds):
        part = list(order[lo:hi])
        pool.add([ids[i] for i in part], vecs[part], [texts[i] for i in part])
    got_vecs, got_texts = pool.arrays()

    reference = _Pool(cap, 4)
    reference.add(ids, vecs, texts)
    ref_vecs, ref_texts = reference.arrays()
    np.testing.assert_array_equal(got_vecs, ref_vecs)
    assert got_texts == ref_texts and pool.seen == reference.seen == n

    hashes = [xxhash.xxh3_64_intdigest(f"{i}\0{t}".encode()) for i, t in zip(ids, texts, strict=True)]
    keep = sorted(range(n), key=lambda i: hashes[i])[:cap]
    assert got_vecs.shape == (min(n, cap), 4) and got_vecs.dtype == np.float32
    np.testing.assert_array_equal(got_vecs, vecs[keep].reshape(-1, 4))
    assert got_texts == [texts[i] for i in keep]


# ------------------------------------------------------------------------------------- config
def test_unknown_diversity_key_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        load_config({"version": 1, "diversity": {"clusters": 10, "klusters": 3}})
    assert info.value.key == "diversity.klusters"
    assert "unknown key" in str(info.value) and "diversity.klusters" in str(info.value)


def test_reference_coverage_above_one_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        load_config({"version": 1, "gate": {"min_reference_coverage": 1.5}})
    assert info.value.key == "gate.min_reference_coverage"


def test_diversity_section_round_trips() -> None:
    section = {"field": "output", "clusters": 12, "max_samples": 500, "coverage_fraction": 0.5, "tail_share": 0.1,
               "vendi_samples": 100, "seed": 3}
    cfg = load_config({"version": 1, "diversity": section, "gate": {"min_reference_coverage": 0.8}})
    out = cfg.to_dict()
    assert out["diversity"] == section
    again = load_config(out)
    assert again.to_dict() == out and again.diversity == cfg.diversity
    assert load_config({"version": 1}).to_dict().get("diversity") is None


def test_needs_diversity() -> None:
    assert load_config({"version": 1, "gate": {"min_diversity_ratio": 0.7}}).gate.needs_diversity
    assert load_config({"version": 1, "gate": {"min_reference_coverage": 0.5}}).gate.needs_diversity
    assert not load_config({"version": 1, "gate": {"max_reject_rate": 0.5}}).gate.needs_diversity
    assert not load_config({"version": 1}).gate.needs_diversity


def test_the_diversity_map_axes_have_a_fixed_sign() -> None:
    """An SVD axis's sign is arbitrary, and float noise in the embeddings flipped the report's map between a
    plain and a checkpointed run: each axis now has its largest component positive, so the reference point
    furthest along a direction projects to the positive side whichever sign the SVD returned."""
    import numpy as np

    from qualgate.diversity import pca_map

    rng = np.random.default_rng(0)
    base = np.zeros((200, 8), dtype=np.float32)
    base[:, 0] = rng.normal(0, 3.0, 200)  # the main direction: the first axis
    base[:, 1] = rng.normal(0, 1.0, 200)
    base[:, 2:] = rng.normal(0, 0.01, (200, 6))
    for ref in (base, -base):
        far = int(np.argmax(ref[:, 0] - ref[:, 0].mean()))
        picture = pca_map(ref, ref[:5], ref[:0])
        assert picture["reference"][far][0] > 0
