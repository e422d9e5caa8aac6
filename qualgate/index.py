"""Index structures for set-aware checks: what new samples are compared against.

``KeyIndex`` is a multimap from 64-bit keys to integer values in a numpy open-addressing hash
table, so millions of LSH band keys cost ~20 bytes each and a whole batch is looked up at once.
``ShingleStore`` keeps each kept sample's shingle-hash set in chunked flat arrays for true-Jaccard
verification.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

U64 = npt.NDArray[np.uint64]
I64 = npt.NDArray[np.int64]
U32 = npt.NDArray[np.uint32]


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def fingerprints(keys: U64) -> U32:
    """The 32 bits of each key that a ``KeyIndex(fingerprint=True)`` stores and matches on.

    Two keys match in such an index exactly when their fingerprints are equal, so grouping keys by
    fingerprint (the Ray engine's LSH shuffle) proposes exactly the index's candidates.
    """
    out: U32 = ((np.asarray(keys, dtype=np.uint64) * _GOLDEN) >> np.uint64(32)).astype(np.uint32)
    return out


class KeyIndex:
    """Append-only multimap ``uint64 key -> int value``: a numpy open-addressing hash table.

    Linear probing, load factor at most 0.7, values stored as int32 (-1 marks an empty slot). Both
    inserting and looking up a whole batch are vectorised: each round handles every pending key at
    once, and the rounds stop at the longest probe chain. With ``fingerprint=True`` only 32 bits of
    each key are stored (8 bytes a slot instead of 12): a rare false match only adds an LSH candidate,
    which is verified anyway, so the LSH index uses it and the exact-text index does not.
    """

    _GOLDEN = _GOLDEN
    _MAX_LOAD = 0.7

    def __init__(self, capacity: int = 1024, fingerprint: bool = False) -> None:
        self.fingerprint = fingerprint
        bits = max(10, (max(int(capacity / self._MAX_LOAD), 1) - 1).bit_length())
        self._keys, self._vals = self._alloc(bits)
        self._n = 0

    def _alloc(self, bits: int) -> tuple[npt.NDArray[Any], npt.NDArray[np.int32]]:
        self._bits = bits
        self._mask = np.int64((1 << bits) - 1)
        return (np.zeros(1 << bits, dtype=np.uint32 if self.fingerprint else np.uint64),
                np.full(1 << bits, -1, dtype=np.int32))

    def __len__(self) -> int:
        return self._n

    @property
    def nbytes(self) -> int:
        return int(self._keys.nbytes + self._vals.nbytes)

    def _hash(self, keys: U64) -> tuple[I64, npt.NDArray[Any]]:
        """Home slots and stored form. A fingerprint (``fingerprints``) is the top 32 bits of the mixed key,
        and the home slot the top bits of the same, so a table can grow without the full keys."""
        if self.fingerprint:
            stored = fingerprints(keys)
            return self._rehome(stored), stored
        home: I64 = ((keys * self._GOLDEN) >> np.uint64(64 - self._bits)).astype(np.int64)
        return home, keys

    def _rehome(self, stored: npt.NDArray[Any]) -> I64:
        if self.fingerprint:
            fp: I64 = (stored >> np.uint32(32 - self._bits)).astype(np.int64)
            return fp
        home: I64 = ((stored * self._GOLDEN) >> np.uint64(64 - self._bits)).astype(np.int64)
        return home

    def add(self, keys: U64, values: I64) -> None:
        if len(keys) == 0:
            return
        keys = np.asarray(keys, dtype=np.uint64)
        values = np.asarray(values, dtype=np.int64)
        if values.max() >= 2**31 - 1 or values.min() < 0:
            raise ValueError("KeyIndex values must be in [0, 2^31 - 1)")
        if len(keys) >= 2**31 - 2:
            raise ValueError("add at most 2^31 - 3 keys at a time")
        if self._n + len(keys) > self._MAX_LOAD * len(self._vals):
            self._grow(self._n + len(keys))
        self._place(*self._hash(keys), values.astype(np.int32))
        self._n += len(keys)

    def _grow(self, needed: int) -> None:
        """Rehash into a table twice as large (or more), a slice at a time to bound the extra memory."""
        bits = self._bits
        while needed > self._MAX_LOAD * (1 << bits):
            bits += 1
        if self.fingerprint and bits > 32:
            raise MemoryError("KeyIndex with fingerprints holds at most 2^32 slots")
        old_keys, old_vals = self._keys, self._vals
        self._keys, self._vals = self._alloc(bits)
        step = 1 << 20
        for lo in range(0, len(old_vals), step):
            vals = old_vals[lo:lo + step]
            used = np.flatnonzero(vals >= 0)
            if len(used) == 0:
                continue
            stored = old_keys[lo:lo + step][used]
            self._place(self._rehome(stored), stored, vals[used])
        del old_keys, old_vals

    def _place(self, slots: I64, stored: npt.NDArray[Any], values: npt.NDArray[np.int32]) -> None:
        while len(slots):
            free = np.flatnonzero(self._vals[slots] < 0)
            placed = np.zeros(len(slots), dtype=bool)
            if len(free):
                # One winner per free slot without sorting: every claimant writes its own marker
                # (-2, -3, ...; the last write wins), and the winners are those that read theirs back.
                # Each slot a loser marked is then overwritten by its winner's real value.
                markers = -2 - np.arange(len(free), dtype=np.int32)
                self._vals[slots[free]] = markers
                win = free[self._vals[slots[free]] == markers]
                self._keys[slots[win]] = stored[win]
                self._vals[slots[win]] = values[win]
                placed[win] = True
            rest = ~placed
            stored, values, slots = stored[rest], values[rest], (slots[rest] + 1) & self._mask

    def query(self, keys: U64) -> tuple[I64, I64]:
        """All matches as parallel arrays ``(position in keys, value)``."""
        slots, stored = self._hash(np.asarray(keys, dtype=np.uint64))
        pos = np.arange(len(slots), dtype=np.int64)
        pos_out: list[I64] = []
        val_out: list[I64] = []
        while len(pos):
            vals = self._vals[slots]
            occupied = vals >= 0
            match = occupied & (self._keys[slots] == stored)
            if match.any():
                pos_out.append(pos[match])
                val_out.append(vals[match].astype(np.int64))
            stored, pos, slots = stored[occupied], pos[occupied], (slots[occupied] + 1) & self._mask
        if not pos_out:
            return np.empty(0, np.int64), np.empty(0, np.int64)
        return np.concatenate(pos_out), np.concatenate(val_out)

    def items(self) -> tuple[npt.NDArray[Any], I64]:
        """Every stored ``(key, value)`` (fingerprints where ``fingerprint``), in slot order."""
        used = np.flatnonzero(self._vals >= 0)
        return self._keys[used], self._vals[used].astype(np.int64)

    def state(self) -> dict[str, npt.NDArray[Any]]:
        """The table itself (for saving; loading it back needs no rehashing)."""
        return {"keys": self._keys, "vals": self._vals, "n": np.asarray([self._n, int(self.fingerprint)])}

    @classmethod
    def from_state(cls, state: Mapping[str, npt.NDArray[Any]]) -> KeyIndex:
        n, fingerprint = (int(x) for x in state["n"])
        idx = cls(fingerprint=bool(fingerprint))
        idx._bits = len(state["vals"]).bit_length() - 1
        idx._mask = np.int64((1 << idx._bits) - 1)
        idx._keys, idx._vals, idx._n = state["keys"], state["vals"].astype(np.int32), n
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


def ranges(starts: I64, lengths: I64) -> I64:
    """Concatenated aranges [s, s+len) for each pair."""
    total = int(lengths.sum())
    if total == 0:
        return np.empty(0, np.int64)
    offsets = np.repeat(starts - (np.cumsum(lengths) - lengths), lengths)
    out: I64 = np.arange(total, dtype=np.int64) + offsets
    return out


def _slices(starts: I64, ends: I64) -> tuple[I64, I64]:
    offsets = np.zeros(len(starts) + 1, dtype=np.int64)
    np.cumsum(ends - starts, out=offsets[1:])
    return offsets, ranges(starts, ends - starts)


def csr_take(offsets: I64, rows: Sequence[int]) -> tuple[I64, I64]:
    """Rows ``rows`` of CSR lists (row r is ``offsets[r]:offsets[r+1]``): their new offsets, and the positions
    of their items in the old item arrays."""
    idx = np.asarray(rows, dtype=np.int64)
    return _slices(offsets[idx], offsets[idx + 1])


def csr_find(keys: Any, queries: Any) -> tuple[I64, I64]:
    """Per query, the items of sorted ``keys`` equal to it, as CSR: offsets and the positions in ``keys``."""
    lo = np.searchsorted(keys, queries, side="left").astype(np.int64)
    hi = np.searchsorted(keys, queries, side="right").astype(np.int64)
    return _slices(lo, hi)


def jaccard(a: U32, b: U32) -> float:
    """True Jaccard similarity of two sorted sets of unique shingle hashes."""
    if len(a) == 0 and len(b) == 0:
        return 1.0
    inter = len(np.intersect1d(a, b, assume_unique=True))
    return inter / (len(a) + len(b) - inter)


def pack_strings(strings: Sequence[str]) -> tuple[npt.NDArray[np.uint8], I64]:
    """Strings as UTF-8 bytes plus offsets: exact, any length, and loadable without pickle."""
    encoded = [s.encode("utf-8", "surrogatepass") for s in strings]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum([len(e) for e in encoded], out=offsets[1:])
    return np.frombuffer(b"".join(encoded), dtype=np.uint8), offsets


def unpack_strings(data: npt.NDArray[np.uint8], offsets: I64) -> list[str]:
    raw, offs = np.asarray(data, dtype=np.uint8).tobytes(), np.asarray(offsets).tolist()
    return [raw[a:b].decode("utf-8", "surrogatepass") for a, b in itertools.pairwise(offs)]
