"""A growing inner-product index over unit vectors (faiss): exact while small, HNSW above a size limit.

Exact search (``IndexFlatIP``) costs ``O(n)`` per query; past ``exact_limit`` vectors the index is
rebuilt once as HNSW (``IndexHNSWFlat``, inner product), which answers in ``O(log n)`` but may miss a
neighbour (recall is measured in ``bench/bench_embed.py``). HNSW vectors are inserted one at a time on
one thread (faiss inserts a multi-vector ``add`` level by level, and in parallel), so the same vectors
in the same order give the same graph however they were batched; the switch happens at exactly
``exact_limit`` vectors.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]
IndexKind = Literal["auto", "flat", "hnsw"]


def unit_rows(vecs: F32, tolerance: float = 1e-3) -> npt.NDArray[np.bool_]:
    """Per row: finite and of unit length, as the embedder gives them (NaN and inf are False). What a cache
    hands back is checked with this: damage on disk must cost a recomputation, never a NaN in a score."""
    wide = np.asarray(vecs, dtype=np.float64)
    return np.asarray(np.abs(np.einsum("ij,ij->i", wide, wide) - 1.0) <= tolerance)


def _faiss() -> Any:
    import faiss

    return faiss


class VectorIndex:
    """Vectors ``0..n-1`` in insertion order; ``search`` returns inner products and ids (-1 = none)."""

    def __init__(self, dim: int, kind: IndexKind = "auto", exact_limit: int = 100_000, hnsw_m: int = 32,
                 ef_construction: int = 80, ef_search: int = 128) -> None:
        self.dim, self.kind, self.exact_limit = dim, kind, exact_limit
        self.hnsw_m, self.ef_construction, self.ef_search = hnsw_m, ef_construction, ef_search
        self._index: Any = None
        self._kind_now = "flat"
        self._parts: list[F32] = []
        self.size = 0

    @property
    def structure(self) -> str:
        """What answers queries now: ``flat`` (exact) or ``hnsw`` (approximate)."""
        return self._kind_now

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"structure": self.structure, "vectors": self.size, "setting": self.kind,
                               "exact_limit": self.exact_limit}
        if self.structure == "hnsw":
            out.update(hnsw_m=self.hnsw_m, ef_construction=self.ef_construction, ef_search=self.ef_search)
        return out

    def _wants_hnsw(self, n: int) -> bool:
        return self.kind == "hnsw" or (self.kind == "auto" and n > self.exact_limit)

    def _new(self, hnsw: bool) -> Any:
        faiss = _faiss()
        if not hnsw:
            return faiss.IndexFlatIP(self.dim)
        index = faiss.IndexHNSWFlat(self.dim, self.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = self.ef_construction
        index.hnsw.efSearch = self.ef_search
        return index

    def _add_to(self, index: Any, vecs: F32) -> None:
        if self._kind_now != "hnsw":
            index.add(vecs)
            return
        faiss = _faiss()
        threads = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)  # a parallel HNSW build depends on thread timing
        try:
            for i in range(len(vecs)):  # one at a time: the graph must not depend on how adds were batched
                index.add(vecs[i:i + 1])
        finally:
            faiss.omp_set_num_threads(threads)

    def add(self, vecs: F32) -> None:
        vecs = np.ascontiguousarray(vecs, dtype=np.float32).reshape(-1, self.dim)
        if not len(vecs):
            return
        if self._index is None:
            self._kind_now = "hnsw" if self.kind == "hnsw" else "flat"
            self._index = self._new(self._kind_now == "hnsw")
        if self._kind_now == "flat" and self._wants_hnsw(self.size + len(vecs)):
            room = max(0, self.exact_limit - self.size)  # fill the exact index up to the limit, then switch
            if room:
                self._index.add(vecs[:room])
                self._parts.append(vecs[:room])
                self.size += room
                vecs = vecs[room:]
            self._kind_now = "hnsw"
            old = self.vectors()
            self._index = self._new(True)
            self._add_to(self._index, old)
        self._add_to(self._index, vecs)
        self._parts.append(vecs)
        self.size += len(vecs)

    def vectors(self) -> F32:
        """All stored vectors, in insertion order (kept to rebuild, export and compare exactly)."""
        if len(self._parts) > 1:
            self._parts = [np.concatenate(self._parts)]
        return self._parts[0] if self._parts else np.zeros((0, self.dim), dtype=np.float32)

    def search(self, queries: F32, k: int = 1) -> tuple[F32, I64]:
        if k < 1:
            raise ValueError("k must be >= 1")
        queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.dim)
        if self._index is None or not len(queries):
            return (np.full((len(queries), k), -np.inf, dtype=np.float32), np.full((len(queries), k), -1, np.int64))
        sims, ids = self._index.search(queries, min(k, self.size))
        if sims.shape[1] < k:
            pad = k - sims.shape[1]
            sims = np.pad(sims, ((0, 0), (0, pad)), constant_values=-np.inf)
            ids = np.pad(ids, ((0, 0), (0, pad)), constant_values=-1)
        sims = np.where(ids < 0, -np.inf, sims).astype(np.float32)
        return sims, ids.astype(np.int64)

    # ------------------------------------------------------------------------------------- state
    def state(self, prefix: str) -> dict[str, Any]:
        out: dict[str, Any] = {f"{prefix}vectors": self.vectors()}
        if self._kind_now == "hnsw" and self._index is not None:
            out[f"{prefix}faiss"] = _faiss().serialize_index(self._index)
        return out

    def load_state(self, arrays: Mapping[str, Any], prefix: str) -> None:
        """Raises ValueError when the stored vectors are not ``state``'s (a damaged cache: rebuild it)."""
        vecs = np.asarray(arrays[f"{prefix}vectors"])
        if vecs.dtype != np.float32 or vecs.ndim != 2 or vecs.shape[1] != self.dim or not unit_rows(vecs).all():
            raise ValueError(f"stored vectors are not {self.dim}-d finite unit float32 rows")
        self._index, self._parts, self.size, self._kind_now = None, [], 0, "flat"
        if f"{prefix}faiss" in arrays and len(vecs):
            index = _faiss().deserialize_index(np.asarray(arrays[f"{prefix}faiss"], dtype=np.uint8))
            if index.d != self.dim or index.ntotal != len(vecs) or not hasattr(index, "hnsw"):
                raise ValueError("the stored HNSW index does not hold the stored vectors")
            self._index = index
            self._index.hnsw.efSearch = self.ef_search
            self._kind_now = "hnsw"
            self._parts, self.size = [vecs], len(vecs)
        else:
            self.add(vecs)
