"""SemDeDup-style semantic-duplicate search: k-means partitions, exact search inside each partition.

Exact keep-first dedup (``checks/embedding.py``, ``SemanticDuplicate``) compares every sample with every
kept earlier sample: n²/2 inner products, and a sequential pass that a cluster cannot split. SemDeDup
(Abbas et al., 2023) clusters the vectors with k-means and searches only inside each cluster, so the
work drops about k-fold and each cluster can go to a different worker. This module is that search as
plain numpy/faiss functions with no engine in them, plus the exact reference to measure it against:

- :func:`partition` - spherical k-means on a seeded subsample, then every vector to its nearest centroid
  (:func:`assign` does the second step alone, e.g. per shard once the centroids are broadcast);
- :func:`neighbours_in_partition` - for the rows of one partition (given by global input position), each
  row's earlier rows of that partition with cosine >= threshold, sorted by (-cosine, position), at most
  ``max_neighbours``; partitions' results concatenate with :func:`csr_from_pairs`;
- :func:`earlier_neighbours` - both steps over all partitions, as CSR arrays;
- :func:`resolve_keep_first` - keep-first decisions from those lists (the reference resolution);
- :func:`exact_keep_first` - the same decisions computed the exact local way, for comparison.

Semantics (those of the local check): samples in global input order, unit float32 vectors (cosine =
inner product). Sample i is a duplicate when some *kept* earlier sample has cosine >= threshold; it names
the kept sample of highest cosine, the earlier one on ties. A non-duplicate is kept only when eligible
(the other checks accepted it); non-eligible samples are never kept, so never named.

Where the partitioned result differs from the exact one:

- a pair split across two partitions is never compared: that duplicate is missed (the sample is kept,
  and may later be named by samples of its own partition that the exact run would have named otherwise);
- a row lists at most ``max_neighbours`` earlier neighbours; when all of them are not kept (duplicates
  themselves, or not eligible) while a kept one lies further down, the duplicate is missed. Giant
  clusters of paraphrases are where this happens; ``max_neighbours=None`` lists them all;
- only neighbours at or above the threshold are listed, so the "nearest kept sample" evidence that the
  local check records for non-duplicates is not available here, and an engine that wants it can only
  find it within the partition (a nearer kept sample in another partition goes unseen).

With k=1 and no neighbour limit the result equals the exact one. Duplicates are resolved only within
a partition, so partitions also resolve independently of each other.

Cosines are accumulated in float64 and rounded to float32: a pair's cosine must not depend on which
block, partition, worker or CPU computed it, or ties and values at the threshold would decide
differently on different engines. It costs about 2x the float32 matrix-product time on CPU. Thresholds
compare in float64, as the local check compares Python floats.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]

MAX_NEIGHBOURS = 100  # like MinHash's max_candidates: a row's list stays small even inside a giant cluster
TRAIN_SAMPLE = 100_000  # k-means learns centroids from at most this many vectors (seeded choice)
BLOCK = 512  # query rows per matrix product
CHUNK = 4096  # key rows per matrix product: BLOCK x CHUNK cosines (~25 MB with the float64 product)


class Partitions(NamedTuple):
    labels: I64  # partition of each row, 0 <= label < len(centroids)
    centroids: F32  # unit vectors, one per partition


class Pairs(NamedTuple):
    """Neighbour pairs in COO form, sorted by (row, -sim, nbr): ``nbr < row`` are global positions."""

    row: I64
    nbr: I64
    sim: F32


class Neighbours(NamedTuple):
    """CSR lists: row i's earlier neighbours are ``nbr[offsets[i]:offsets[i + 1]]``, best first."""

    offsets: I64
    nbr: I64
    sims: F32


class KeepFirst(NamedTuple):
    duplicate_of: I64  # the kept earlier row each row repeats, -1 when it repeats none
    cosine: F32  # cosine to that row; NaN for non-duplicates


def _unit_rows(vecs: Any) -> F32:
    x = np.ascontiguousarray(vecs, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"expected a 2-d array of vectors, got shape {x.shape}")
    return x


def cosines(a: F32, b: F32) -> F32:
    """``a @ b.T`` accumulated in float64, rounded to float32: the same value for a pair whatever the blocking."""
    product: npt.NDArray[np.float64] = a.astype(np.float64) @ b.astype(np.float64).T
    return product.astype(np.float32)


# ------------------------------------------------------------------------------------------ partitions
def partition(vecs: Any, k: int, *, seed: int = 0, niter: int = 20, sample: int = TRAIN_SAMPLE) -> Partitions:
    """Spherical k-means partitions of unit vectors; deterministic for the same input, k and seed.

    Centroids are learnt from at most ``sample`` rows drawn with ``seed`` (k-means needs a few dozen points
    per centroid, not all of them), then every row goes to its nearest centroid. k=1 is one partition
    (exact search); k is capped at the number of rows.
    """
    x = _unit_rows(vecs)
    n, d = x.shape
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if n == 0:
        return Partitions(np.zeros(0, dtype=np.int64), np.zeros((0, d), dtype=np.float32))
    if k == 1 or n == 1:
        mean = x.mean(axis=0, dtype=np.float64)
        norm = float(np.linalg.norm(mean))
        centroid = (mean / norm if norm > 0 else mean).astype(np.float32)
        return Partitions(np.zeros(n, dtype=np.int64), centroid[None, :])
    import faiss

    k = min(k, n)
    train = x
    if n > sample:
        rng = np.random.default_rng(seed)
        train = x[np.sort(rng.choice(n, size=sample, replace=False))]
    # min/max points per centroid: no warning for small inputs and no second subsample inside faiss
    km = faiss.Kmeans(d, k, niter=niter, seed=seed, spherical=True, verbose=False,
                      min_points_per_centroid=1, max_points_per_centroid=len(train))
    km.train(train)
    centroids = np.ascontiguousarray(km.centroids, dtype=np.float32)
    return Partitions(assign(x, centroids), centroids)


def assign(vecs: Any, centroids: F32) -> I64:
    """Nearest centroid (highest inner product) of each row: what every shard does with broadcast centroids."""
    import faiss

    x = _unit_rows(vecs)
    if len(x) == 0:
        return np.zeros(0, dtype=np.int64)
    index = faiss.IndexFlatIP(centroids.shape[1])
    index.add(np.ascontiguousarray(centroids, dtype=np.float32))
    _, ids = index.search(x, 1)
    return np.asarray(ids[:, 0], dtype=np.int64)


def partition_rows(labels: Any) -> list[I64]:
    """Global positions of each non-empty partition's rows, ascending (what an engine groups by)."""
    lab = np.asarray(labels, dtype=np.int64)
    order = np.argsort(lab, kind="stable")
    cuts = np.flatnonzero(np.diff(lab[order])) + 1
    return [g.astype(np.int64) for g in np.split(order, cuts)] if len(lab) else []


# ------------------------------------------------------------------------------------------ neighbours
def _top_per_row(row: I64, nbr: I64, sim: F32, limit: int | None) -> Pairs:
    """Sort pairs by (row, -sim, nbr) and keep each row's first ``limit``."""
    order = np.lexsort((nbr, -sim, row))
    row, nbr, sim = row[order], nbr[order], sim[order]
    if limit is not None and len(row):
        starts = np.flatnonzero(np.r_[True, row[1:] != row[:-1]])
        rank = np.arange(len(row)) - np.repeat(starts, np.diff(np.r_[starts, len(row)]))
        keep = rank < limit
        row, nbr, sim = row[keep], nbr[keep], sim[keep]
    return Pairs(row, nbr, sim)


def _empty_pairs() -> Pairs:
    return Pairs(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32))


def _concat(parts: Sequence[Pairs]) -> Pairs:
    if not parts:
        return _empty_pairs()
    return Pairs(np.concatenate([p.row for p in parts]).astype(np.int64, copy=False),
                 np.concatenate([p.nbr for p in parts]).astype(np.int64, copy=False),
                 np.concatenate([p.sim for p in parts]).astype(np.float32, copy=False))


def neighbours_in_partition(positions: Any, vecs: Any, threshold: float,
                            max_neighbours: int | None = MAX_NEIGHBOURS, *,
                            block: int = BLOCK, chunk: int = CHUNK) -> Pairs:
    """Each row's earlier rows of the same partition with cosine >= threshold, best first, at most
    ``max_neighbours``; rows and neighbours are the given global ``positions`` (any order, unique), so
    results of different partitions concatenate. Memory is bounded by ``block x chunk`` cosines plus
    ``block x max_neighbours`` pairs, whatever the partition's size."""
    pos = np.asarray(positions, dtype=np.int64)
    x = _unit_rows(vecs)
    if len(pos) != len(x):
        raise ValueError(f"{len(pos)} positions for {len(x)} vectors")
    order = np.argsort(pos, kind="stable")
    pos, x = pos[order], x[order]  # local order = global order, so "earlier" and ties compare locally
    if np.any(pos[1:] == pos[:-1]):
        raise ValueError("positions must be unique")
    thr = np.float64(threshold)
    out: list[Pairs] = []
    for s in range(0, len(x), block):
        e = min(s + block, len(x))
        q = x[s:e]
        found = _empty_pairs()
        for c in range(0, e - 1, chunk):  # keys before the block's last row
            c2 = min(c + chunk, e - 1)
            sim = cosines(q, x[c:c2])
            hit = sim >= thr
            if c2 > s:  # the chunk reaches into the block: keep only keys earlier than their query
                hit &= np.arange(c, c2)[None, :] < np.arange(s, e)[:, None]
            r, k = np.nonzero(hit)
            found = _top_per_row(*_concat([found, Pairs(r + s, k + c, sim[r, k])]), max_neighbours)
        out.append(found)
    local = _concat(out)
    return Pairs(pos[local.row], pos[local.nbr], local.sim)


def csr_from_pairs(n: int, parts: Sequence[Pairs]) -> Neighbours:
    """Concatenate pair lists (e.g. one per partition) into CSR lists over rows ``0..n-1``."""
    row, nbr, sim = _top_per_row(*_concat(parts), None)
    if len(row) and (row.min() < 0 or row.max() >= n):
        raise ValueError(f"row positions must lie in [0, {n})")
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(row, minlength=n), out=offsets[1:])
    return Neighbours(offsets, nbr, sim)


def earlier_neighbours(vecs: Any, labels: Any, threshold: float,
                       max_neighbours: int | None = MAX_NEIGHBOURS) -> Neighbours:
    """Each row's earlier rows of its partition with cosine >= threshold, sorted by (-cosine, row), as CSR."""
    x = _unit_rows(vecs)
    lab = np.asarray(labels, dtype=np.int64)
    if len(lab) != len(x):
        raise ValueError(f"{len(lab)} labels for {len(x)} vectors")
    parts = [neighbours_in_partition(rows, x[rows], threshold, max_neighbours) for rows in partition_rows(lab)]
    return csr_from_pairs(len(x), parts)


# ------------------------------------------------------------------------------------------ resolution
def _eligible(eligible: Any, n: int) -> Bools:
    elig = np.ones(n, dtype=bool) if eligible is None else np.asarray(eligible, dtype=bool)
    if elig.shape != (n,):
        raise ValueError(f"eligible has shape {elig.shape}, expected ({n},)")
    return elig


def resolve_keep_first(offsets: Any, nbr: Any, sims: Any, eligible: Any = None) -> KeepFirst:
    """Keep-first decisions in input order: a row repeats the first *kept* row of its (best-first) list,
    otherwise it is kept when eligible (``None``: all are). The reference resolution; the real engine
    resolves in the check."""
    off = np.asarray(offsets, dtype=np.int64)
    nb = np.asarray(nbr, dtype=np.int64)
    sm = np.asarray(sims, dtype=np.float32)
    n = len(off) - 1
    elig = _eligible(eligible, n)
    kept = np.zeros(n, dtype=bool)
    dup = np.full(n, -1, dtype=np.int64)
    cos = np.full(n, np.nan, dtype=np.float32)
    for i in range(n):
        a, b = int(off[i]), int(off[i + 1])
        if a < b:
            hits = np.flatnonzero(kept[nb[a:b]])
            if len(hits):
                dup[i], cos[i] = nb[a + hits[0]], sm[a + hits[0]]
                continue
        kept[i] = elig[i]
    return KeepFirst(dup, cos)


def exact_keep_first(vecs: Any, threshold: float, eligible: Any = None, *,
                     block: int = BLOCK, chunk: int = CHUNK) -> KeepFirst:
    """Keep-first decisions the exact local way: each row against all kept earlier rows (blocked products
    against the kept set, then in order within the block, as ``SemanticDuplicate.score_batch`` does)."""
    x = _unit_rows(vecs)
    n = len(x)
    elig = _eligible(eligible, n)
    thr = float(threshold)
    kept = np.empty(n, dtype=np.int64)
    n_kept = 0
    dup = np.full(n, -1, dtype=np.int64)
    cos = np.full(n, np.nan, dtype=np.float32)
    for s in range(0, n, block):
        e = min(s + block, n)
        q = x[s:e]
        best = np.full(e - s, -np.inf, dtype=np.float32)
        best_g = np.full(e - s, -1, dtype=np.int64)
        for c in range(0, n_kept, chunk):  # kept rows ascend, so argmax's first maximum is the earliest
            rows = kept[c:min(c + chunk, n_kept)]
            sim = cosines(q, x[rows])
            j = np.argmax(sim, axis=1)
            v = sim[np.arange(len(q)), j]
            better = v > best  # strictly: an earlier chunk wins ties
            best[better], best_g[better] = v[better], rows[j[better]]
        within = cosines(q, q)
        admitted: list[int] = []
        for t in range(e - s):
            v, g = float(best[t]), int(best_g[t])
            if admitted:  # kept earlier in this block: later than every earlier-block row, so must beat it
                row = within[t, admitted]
                j = int(np.argmax(row))
                if float(row[j]) > v:
                    v, g = float(row[j]), s + admitted[j]
            if g >= 0 and v >= thr:
                dup[s + t], cos[s + t] = g, v
            elif elig[s + t]:
                admitted.append(t)
        kept[n_kept:n_kept + len(admitted)] = np.asarray(admitted, dtype=np.int64) + s
        n_kept += len(admitted)
    return KeepFirst(dup, cos)
