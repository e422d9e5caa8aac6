"""Semantic duplicates at scale, SemDeDup-style, on Ray Data (``semantic_duplicate`` with ``partitions: K``).

The actors embed every sample; each scored batch emits its vectors with their global positions; k-means
centroids are learnt on the driver from a strided subsample (``semdedup.partition``); ``map_batches`` labels
every vector with its nearest centroid; Ray Data groups the rows by label (the shuffle) and each group lists,
per row, its earlier rows with cosine >= threshold (``semdedup.neighbours_in_partition``). The check then
resolves keep-first in input order from those lists (``embedding.NeighbourFeatures``).

This is approximate where the exact local search is not: a duplicate pair split across two partitions is
never compared, and non-duplicates get no "nearest" evidence. ``qualgate.semdedup`` says where and
``bench/RESULTS.md`` how much (on Alpaca: recall 0.95-0.98 of the exact duplicates at 0.9).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from qualgate.checks.embedding import NeighbourFeatures
from qualgate.index import csr_find

if TYPE_CHECKING:
    import pyarrow as pa

    from qualgate.checks.embedding import SemanticDuplicate

I64 = npt.NDArray[np.int64]


def vector_table(positions: I64, vecs: npt.NDArray[np.float32]) -> pa.Table:
    import pyarrow as pa

    # variable-size lists, so a batch without vectors (no sample reached the check) concatenates with the rest
    flat = pa.array(np.ascontiguousarray(vecs, dtype=np.float32).ravel(), pa.float32())
    offsets = pa.array(np.arange(len(positions) + 1, dtype=np.int32) * (vecs.shape[1] if len(vecs) else 0))
    return pa.table({"pos": pa.array(positions, pa.int64()), "vec": pa.ListArray.from_arrays(offsets, flat)})


def _matrix(table: pa.Table) -> npt.NDArray[np.float32]:
    col = table.column("vec").combine_chunks()
    values = np.asarray(col.flatten().to_numpy(zero_copy_only=False), dtype=np.float32)
    return values.reshape(table.num_rows, -1) if table.num_rows else np.empty((0, 0), np.float32)


def batch_vectors(features: dict[str, tuple[list[int], Any]], name: str, first: int) -> pa.Table:
    """One scored batch's vectors for check ``name``, at global positions ``first + row`` (none when no
    sample of the batch reached the check)."""
    if name not in features:
        return vector_table(np.empty(0, np.int64), np.empty((0, 0), np.float32))
    live, feats = features[name]
    return vector_table(first + np.asarray(live, dtype=np.int64), feats.vecs)


def baseline_vectors(check: SemanticDuplicate) -> pa.Table:
    vecs = check.index.vectors()
    return vector_table(np.arange(len(vecs), dtype=np.int64), vecs)


def _stride(rows: pa.Table, stride: int) -> pa.Table:
    import pyarrow as pa

    return rows.filter(pa.array(rows.column("pos").to_numpy() % stride == 0))


def _label(rows: pa.Table, centroids: npt.NDArray[np.float32]) -> pa.Table:
    import pyarrow as pa

    from qualgate.semdedup import assign

    labels = assign(_matrix(rows), centroids) if rows.num_rows else np.empty(0, np.int64)
    return rows.append_column("label", pa.array(labels, pa.int64()))


def _search(rows: pa.Table, threshold: float, max_neighbours: int) -> pa.Table:
    import pyarrow as pa

    from qualgate.semdedup import neighbours_in_partition

    found = neighbours_in_partition(rows.column("pos").to_numpy(), _matrix(rows), threshold, max_neighbours)
    return pa.table({"row": pa.array(found.row, pa.int64()), "nbr": pa.array(found.nbr, pa.int64()),
                     "sim": pa.array(found.sim, pa.float32())})


@dataclass
class NeighbourTable:
    """Every sample's listed neighbours, sorted by sample, best first: ``NeighbourFeatures`` for any batch."""

    row: I64
    neighbour: I64
    cosine: npt.NDArray[np.float32]
    partitions: int

    def __len__(self) -> int:
        return len(self.row)

    def features(self, positions: I64) -> NeighbourFeatures:
        offsets, picked = csr_find(self.row, positions)
        return NeighbourFeatures(positions, offsets, self.neighbour[picked], self.cosine[picked])


def neighbours(vector_refs: Sequence[Any], check: SemanticDuplicate, partitions: int) -> NeighbourTable:
    """Partition the vectors (Arrow table refs) with k-means and search each partition in parallel."""
    import pyarrow as pa
    import ray
    import ray.data as rd

    from qualgate.engines.raydata import quiet_data
    from qualgate.semdedup import TRAIN_SAMPLE, partition

    quiet_data()
    p = check.params
    ds = rd.from_arrow_refs(list(vector_refs))
    n = ds.count()  # no rows: Ray Data cannot group a schema-less set
    if n == 0:
        return NeighbourTable(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float32), 0)
    stride = max(1, math.ceil(n / TRAIN_SAMPLE))  # a deterministic subsample: every stride-th position
    sample = pa.concat_tables(ray.get(ds.map_batches(partial(_stride, stride=stride),
                                                     batch_format="pyarrow").to_arrow_refs()))
    k = max(1, min(p.partitions, sample.num_rows))
    centroids = partition(_matrix(sample), k, seed=0).centroids
    pairs = (ds.map_batches(partial(_label, centroids=centroids), batch_format="pyarrow")
             .groupby("label", num_partitions=partitions)
             .map_groups(partial(_search, threshold=p.threshold, max_neighbours=p.max_neighbours),
                         batch_format="pyarrow"))
    tables = [t for t in ray.get(pairs.to_arrow_refs()) if t.num_rows]
    if not tables:
        return NeighbourTable(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float32), k)
    t = pa.concat_tables(tables)
    row, nbr, sim = (t.column(c).to_numpy() for c in ("row", "nbr", "sim"))
    order = np.lexsort((nbr, -sim.astype(np.float64), row))  # by sample, then best first, earliest on ties
    return NeighbourTable(row[order], nbr[order], sim[order].astype(np.float32), k)
