"""Index structures for set-aware checks: what new samples are compared against.

``KeyIndex`` is a multimap from 64-bit keys to integer values kept as a few sorted numpy arrays
(merged like a log-structured merge tree), so millions of LSH band keys cost ~16 bytes each and a
whole batch is looked up with a handful of ``searchsorted`` calls. ``ShingleStore`` keeps each kept
sample's shingle-hash set in chunked flat arrays for true-Jaccard verification.
"""

from __future__ import annotations

import bisect

import numpy as np
import numpy.typing as npt

U64 = npt.NDArray[np.uint64]
I64 = npt.NDArray[np.int64]
U32 = npt.NDArray[np.uint32]


class KeyIndex:
    """Append-only multimap ``uint64 key -> int64 value`` with vectorised batch lookups."""

    def __init__(self) -> None:
        self.levels: list[tuple[U64, I64]] = []

    def __len__(self) -> int:
        return sum(len(k) for k, _ in self.levels)

    @property
    def nbytes(self) -> int:
        return sum(k.nbytes + v.nbytes for k, v in self.levels)

    def add(self, keys: U64, values: I64) -> None:
        if len(keys) == 0:
            return
        order = np.argsort(keys, kind="stable")
        self.levels.append((keys[order], values[order]))
        # Keep O(log n) levels: merge while the newest level is at least half the size of the one below.
        while len(self.levels) > 1 and 2 * len(self.levels[-1][0]) >= len(self.levels[-2][0]):
            (k2, v2), (k1, v1) = self.levels.pop(), self.levels.pop()
            k, v = np.concatenate([k1, k2]), np.concatenate([v1, v2])
            order = np.argsort(k, kind="stable")
            self.levels.append((k[order], v[order]))

    def query(self, keys: U64) -> tuple[I64, I64]:
        """All matches as parallel arrays ``(position in keys, value)``."""
        pos_out: list[I64] = []
        val_out: list[I64] = []
        for k, v in self.levels:
            left = np.searchsorted(k, keys, side="left")
            hit = k[np.minimum(left, len(k) - 1)] == keys
            if not hit.any():
                continue
            left = left[hit]
            counts_hit = np.searchsorted(k, keys[hit], side="right") - left
            starts = np.repeat(left, counts_hit)
            within = np.arange(int(counts_hit.sum())) - np.repeat(np.cumsum(counts_hit) - counts_hit, counts_hit)
            pos_out.append(np.repeat(np.flatnonzero(hit), counts_hit).astype(np.int64))
            val_out.append(v[starts + within])
        if not pos_out:
            return np.empty(0, np.int64), np.empty(0, np.int64)
        return np.concatenate(pos_out), np.concatenate(val_out)

    def arrays(self) -> tuple[U64, I64]:
        """Everything as one sorted pair of arrays (for saving)."""
        if not self.levels:
            return np.empty(0, np.uint64), np.empty(0, np.int64)
        k = np.concatenate([k for k, _ in self.levels])
        v = np.concatenate([v for _, v in self.levels])
        order = np.argsort(k, kind="stable")
        return k[order], v[order]

    @classmethod
    def from_arrays(cls, keys: U64, values: I64) -> KeyIndex:
        idx = cls()
        if len(keys):
            idx.levels.append((keys.astype(np.uint64), values.astype(np.int64)))
        return idx


class ShingleStore:
    """Shingle-hash sets of kept samples, by global index, in chunked flat arrays."""

    def __init__(self) -> None:
        self._starts: list[int] = []
        self._chunks: list[tuple[U32, I64]] = []
        self.size = 0

    def __len__(self) -> int:
        return self.size

    @property
    def nbytes(self) -> int:
        return sum(f.nbytes + o.nbytes for f, o in self._chunks)

    def extend(self, sets: list[U32]) -> None:
        if not sets:
            return
        lengths = np.fromiter((len(s) for s in sets), dtype=np.int64, count=len(sets))
        offsets = np.zeros(len(sets) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        flat = np.concatenate(sets).astype(np.uint32) if offsets[-1] else np.empty(0, np.uint32)
        self._starts.append(self.size)
        self._chunks.append((flat, offsets))
        self.size += len(sets)

    def get(self, i: int) -> U32:
        c = bisect.bisect_right(self._starts, i) - 1
        flat, offsets = self._chunks[c]
        j = i - self._starts[c]
        return flat[offsets[j]:offsets[j + 1]]

    def arrays(self) -> tuple[U32, I64]:
        if not self._chunks:
            return np.empty(0, np.uint32), np.zeros(1, np.int64)
        flats, offs, base = [], [np.zeros(1, np.int64)], 0
        for flat, offsets in self._chunks:
            flats.append(flat)
            offs.append(offsets[1:] + base)
            base += int(offsets[-1])
        return np.concatenate(flats), np.concatenate(offs)

    @classmethod
    def from_arrays(cls, flat: U32, offsets: I64) -> ShingleStore:
        store = cls()
        if len(offsets) > 1:
            store._starts.append(0)
            store._chunks.append((flat.astype(np.uint32), offsets.astype(np.int64)))
            store.size = len(offsets) - 1
        return store


def jaccard(a: U32, b: U32) -> float:
    """True Jaccard similarity of two sorted sets of unique shingle hashes."""
    if len(a) == 0 and len(b) == 0:
        return 1.0
    inter = len(np.intersect1d(a, b, assume_unique=True))
    return inter / (len(a) + len(b) - inter)
