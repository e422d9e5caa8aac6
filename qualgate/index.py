"""Index structures for set-aware checks: what new samples are compared against.

``KeyIndex`` is a multimap from 64-bit keys to integer values in a numpy open-addressing hash
table, so millions of LSH band keys cost ~20 bytes each and a whole batch is looked up at once.
``ShingleStore`` keeps each kept sample's shingle-hash set in chunked flat arrays for true-Jaccard
verification. ``BandCandidates`` ranks a batch's LSH candidates under the bucket cap that keeps a
template shared by thousands of samples from costing the square of their number.
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

    With ``cap`` a key (a fingerprint, with ``fingerprint=True``) holds at most its first ``cap`` values; later
    ones are dropped. Equal keys share a probe chain, so an uncapped key stored n times makes every look-up
    of it (and of any key homed inside that run) walk n slots: the LSH bucket of a template.
    """

    _GOLDEN = _GOLDEN
    _MAX_LOAD = 0.7

    def __init__(self, capacity: int = 1024, fingerprint: bool = False, cap: int | None = None) -> None:
        self.fingerprint = fingerprint
        self.cap = cap
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

    def add(self, keys: U64, values: I64, stored: I64 | None = None) -> None:
        """Store ``values`` under ``keys``. ``stored``: with ``cap``, how many values each key holds already, when
        the caller has just looked them up (``BandCandidates.fill``), so they are not looked up again."""
        if len(keys) == 0:
            return
        keys = np.asarray(keys, dtype=np.uint64)
        values = np.asarray(values, dtype=np.int64)
        if values.max() >= 2**31 - 1 or values.min() < 0:
            raise ValueError("KeyIndex values must be in [0, 2^31 - 1)")
        if len(keys) >= 2**31 - 2:
            raise ValueError("add at most 2^31 - 3 keys at a time")
        if self.cap is not None:
            room = self._room(keys, stored)
            keys, values = keys[room], values[room]
            if len(keys) == 0:
                return
        if self._n + len(keys) > self._MAX_LOAD * len(self._vals):
            self._grow(self._n + len(keys))
        self._place(*self._hash(keys), values.astype(np.int32))
        self._n += len(keys)

    def _room(self, keys: U64, have: I64 | None = None) -> npt.NDArray[np.bool_]:
        """Which of ``keys`` (in order) still fit under ``cap``: a key's stored count (``have``, else looked up)
        plus its earlier occurrences in ``keys`` must stay below it."""
        assert self.cap is not None
        stored = self._hash(keys)[1]
        if have is None:
            have = np.bincount(self.query(keys)[0], minlength=len(keys))
        order = np.argsort(stored, kind="stable")
        ordered = stored[order]
        start = np.flatnonzero(np.concatenate([[True], ordered[1:] != ordered[:-1]]))
        rank = np.empty(len(keys), dtype=np.int64)
        rank[order] = np.arange(len(keys)) - np.repeat(start, np.diff(np.append(start, len(keys))))
        out: npt.NDArray[np.bool_] = have + rank < self.cap
        return out

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
            if len(slots) <= self._PLACE_TAIL:
                self._place_tail(slots, stored, values)
                return
            free = np.flatnonzero(self._vals[slots] < 0)
            placed = np.zeros(len(slots), dtype=bool)
            if len(free):
                placed[self._claim(free, slots, stored, values)] = True
            rest = ~placed
            stored, values, slots = stored[rest], values[rest], (slots[rest] + 1) & self._mask

    def query(self, keys: U64) -> tuple[I64, I64]:
        """All matches as parallel arrays ``(position in keys, value)``."""
        slots, stored = self._hash(np.asarray(keys, dtype=np.uint64))
        pos = np.arange(len(slots), dtype=np.int64)
        pos_out: list[I64] = []
        val_out: list[I64] = []
        while len(pos):
            if len(pos) <= self._TAIL:
                self._query_tail(slots, stored, pos, pos_out, val_out)
                break
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

    #: Look-ups (``_TAIL``) and insertions (``_PLACE_TAIL``) still probing once this few are left walk ``_WINDOW``
    #: slots a round: the long chains of a batch, ~2/3 of its rounds, for a few dozen keys (100k-record bench,
    #: main process: look-ups 0.29 -> 0.26 CPU s, insertions 0.51 -> 0.40).
    _TAIL = 64
    _PLACE_TAIL = 512
    _WINDOW = 16

    def _query_tail(self, slots: I64, stored: npt.NDArray[Any], pos: I64, pos_out: list[I64],
                    val_out: list[I64]) -> None:
        """``query``'s last rounds, ``_WINDOW`` probe steps at a time; its matches in the same order as one step a
        round would give (by step, then by position in the keys)."""
        step_out: list[I64] = []
        window = np.arange(self._WINDOW, dtype=np.int64)
        first = len(pos_out)
        step = 0
        while len(pos):
            at = (slots[:, None] + window) & self._mask
            vals = self._vals[at]
            # a chain ends at its first empty slot: only the slots before it count
            live = np.cumprod(vals >= 0, axis=1, dtype=bool)
            match = live & (self._keys[at] == stored[:, None])
            if match.any():
                row, col = np.nonzero(match)
                pos_out.append(pos[row])
                val_out.append(vals[row, col].astype(np.int64))
                step_out.append(step + col)
            more = live[:, -1]
            stored, pos, slots = stored[more], pos[more], (slots[more] + self._WINDOW) & self._mask
            step += self._WINDOW
        if len(pos_out) - first > 0:
            steps, tail_pos = np.concatenate(step_out), np.concatenate(pos_out[first:])
            order = np.lexsort((tail_pos, steps))
            tail_val = np.concatenate(val_out[first:])
            del pos_out[first:], val_out[first:]
            pos_out.append(tail_pos[order])
            val_out.append(tail_val[order])

    def _claim(self, rows: I64, target: I64, stored: npt.NDArray[Any], values: npt.NDArray[np.int32]) -> I64:
        """Entries ``rows`` each claim the free slot ``target[row]``; the rows that won one (one winner per slot).

        No sorting: every claimant writes its own marker (-2, -3, ...; the last write wins), and the winners are
        those that read theirs back. Each slot a loser marked is then overwritten by its winner's real value."""
        at = target[rows]
        markers = -2 - np.arange(len(rows), dtype=np.int32)
        self._vals[at] = markers
        win: I64 = rows[self._vals[at] == markers]
        self._keys[target[win]] = stored[win]
        self._vals[target[win]] = values[win]
        return win

    def _place_tail(self, slots: I64, stored: npt.NDArray[Any], values: npt.NDArray[np.int32]) -> None:
        """``_place``'s last rounds: each entry claims the first free slot of the ``_WINDOW`` from where it is (one
        winner per slot, as in ``_place``); the others move on to the slot they lost or past the window."""
        window = np.arange(self._WINDOW, dtype=np.int64)
        while len(slots):
            at = (slots[:, None] + window) & self._mask
            free = self._vals[at] < 0
            has = free.any(axis=1)
            claim = at[np.arange(len(slots)), free.argmax(axis=1)]
            placed = np.zeros(len(slots), dtype=bool)
            some = np.flatnonzero(has)
            if len(some):
                placed[self._claim(some, claim, stored, values)] = True
            rest = ~placed
            slots = np.where(has, claim, (slots + self._WINDOW) & self._mask)[rest]
            stored, values = stored[rest], values[rest]

    def items(self) -> tuple[npt.NDArray[Any], I64]:
        """Every stored ``(key, value)`` (fingerprints where ``fingerprint``), in slot order."""
        used = np.flatnonzero(self._vals >= 0)
        return self._keys[used], self._vals[used].astype(np.int64)

    def state(self) -> dict[str, npt.NDArray[Any]]:
        """The table itself (for saving; loading it back needs no rehashing)."""
        return {"keys": self._keys, "vals": self._vals,
                "n": np.asarray([self._n, int(self.fingerprint), self.cap or 0])}

    @classmethod
    def from_state(cls, state: Mapping[str, npt.NDArray[Any]]) -> KeyIndex:
        n, fingerprint, cap = ([int(x) for x in state["n"]] + [0])[:3]
        idx = cls(fingerprint=bool(fingerprint), cap=cap or None)
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

    def extend_flat(self, flat: U32, offsets: I64) -> None:
        """``extend`` with the sets stored flat: set i is ``flat[offsets[i]:offsets[i+1]]``, ``offsets[0]`` 0."""
        if len(offsets) < 2:
            return
        self._starts.append(self.size)
        self._chunks.append((flat.astype(np.uint32, copy=False), offsets.astype(np.int64, copy=False)))
        self.size += len(offsets) - 1

    def get(self, i: int) -> U32:
        c = bisect.bisect_right(self._starts, i) - 1
        flat, offsets = self._chunks[c]
        j = i - self._starts[c]
        return flat[offsets[j]:offsets[j + 1]]

    def take(self, rows: Sequence[int] | I64) -> tuple[U32, I64]:
        """The sets of kept samples ``rows`` as one flat array with offsets (a few numpy calls, not one per row)."""
        idx = np.asarray(rows, dtype=np.int64)
        chunk = np.searchsorted(np.asarray(self._starts, dtype=np.int64), idx, side="right") - 1
        by_chunk = np.argsort(chunk, kind="stable")
        # the chunks the rows are in, not every chunk: a chunk is a batch, and a million records make 2,000
        present, starts = np.unique(chunk[by_chunk], return_index=True)
        ends = np.append(starts[1:], len(idx))
        lo, hi = np.empty(len(idx), np.int64), np.empty(len(idx), np.int64)
        parts = [(c, by_chunk[a:b]) for c, a, b in zip(present.tolist(), starts.tolist(), ends.tolist(), strict=True)]
        for c, sel in parts:
            offsets = self._chunks[c][1]
            j = idx[sel] - self._starts[c]
            lo[sel], hi[sel] = offsets[j], offsets[j + 1]
        out_offsets = np.zeros(len(idx) + 1, dtype=np.int64)
        np.cumsum(hi - lo, out=out_offsets[1:])
        flat = np.empty(int(out_offsets[-1]), dtype=np.uint32)
        for c, sel in parts:
            flat[ranges(out_offsets[sel], hi[sel] - lo[sel])] = self._chunks[c][0][ranges(lo[sel], hi[sel] - lo[sel])]
        return flat, out_offsets

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


class BandCandidates:
    """A batch's LSH candidates among kept samples (the index's and the batch's own), ranked; both engines use it.

    The rule. A bucket (one band fingerprint) holds the entries of at most ``cap`` kept samples' bands, the
    first ones kept; a later kept sample is found through its other bands only. A sample's candidates are the
    kept samples with an entry in one of its buckets. A match through a full bucket ("crowded": a template that
    ``cap`` kept samples share) says little about which sample this one repeats, so candidates rank by their
    matches through buckets with room, then by their crowded matches, then by kept number (earlier first), and
    the first ``cap`` are verified. Where no bucket is full that is "most shared bands first, ties to the
    earlier kept sample", and the work per sample is at most ``cap`` entries per band, whatever the bucket.

    ``keys`` are the batch's band keys (samples x bands), looked up where ``mask`` is set (all by default); the
    index must be a ``KeyIndex(fingerprint=True, cap=cap)``. Call ``ranked(i)`` and then ``keep(i, g)`` for each
    sample in input order: a bucket that the batch's own samples share fills as they are kept, exactly as the
    index fills when they are admitted, so the batch size never changes a sample's candidates.
    """

    def __init__(self, index: KeyIndex, keys: U64, cap: int, mask: npt.NDArray[np.bool_] | None = None) -> None:
        n, per_row = keys.shape
        self.cap = cap
        live = np.flatnonzero(mask.ravel()) if mask is not None else np.arange(n * per_row, dtype=np.int64)
        fps = fingerprints(keys.ravel()[live])
        pos, val = index.query(keys.ravel()[live])
        pos = live[pos]
        #: entries already stored in each position's bucket (samples x bands, flat)
        self.fill = np.bincount(pos, minlength=n * per_row)
        # positions whose bucket has room and that another position of the batch shares: their buckets fill
        # (and may turn crowded) as the batch's samples are kept, so they are looked at sample by sample
        order = np.argsort(fps, kind="stable")
        same = fps[order][1:] == fps[order][:-1]
        twin = np.zeros(len(live), dtype=bool)
        twin[order[1:][same]] = True
        twin[order[:-1][same]] = True
        moving = np.zeros(n * per_row, dtype=bool)
        moving[live[twin]] = True
        moving &= self.fill < cap
        self._moving: dict[int, list[tuple[int, int]]] = {}  # sample -> [(position, fingerprint)]
        for p, fp in zip(np.flatnonzero(moving).tolist(), fingerprints(keys.ravel()[moving]).tolist(), strict=True):
            self._moving.setdefault(p // per_row, []).append((p, fp))
        on_moving = np.flatnonzero(moving[pos])
        by_pos = np.argsort(pos[on_moving], kind="stable")
        # the index's entries at moving positions, by position (needed only where the batch fills a bucket)
        self._stored_pos, self._stored_val = pos[on_moving][by_pos], val[on_moving][by_pos]
        self._batch: dict[int, list[int]] = {}  # fingerprint -> the batch's kept samples with an entry there
        # the index's entries, counted and ranked for all samples at once as the batch starts: one sort of
        # (sample, kept number, crowded) gives each pair's matches with room and crowded
        flagged = np.sort((((pos // per_row) << 32) | val) << 1 | (self.fill[pos] >= cap))
        first = np.ones(len(flagged), dtype=bool)
        first[1:] = (flagged[1:] >> 1) != (flagged[:-1] >> 1)
        starts = np.flatnonzero(first)
        ends = np.append(starts[1:], len(flagged))
        crowded = np.concatenate([[0], np.cumsum(flagged & 1)])
        crowd = crowded[ends] - crowded[starts]
        spec = ends - starts - crowd
        rows, kept = flagged[starts] >> 33, (flagged[starts] >> 1) & 0xFFFFFFFF
        rank = np.lexsort((kept, -crowd, -spec, rows))
        #: per sample (``_offsets``), its candidates best first, as their sort keys (-room, -crowded, kept)
        self._keys = (-spec[rank], -crowd[rank], kept[rank])
        self._kept = self._keys[2]
        self._offsets = np.searchsorted(rows[rank], np.arange(n + 1))

    def initial(self) -> tuple[I64, I64]:
        """``(sample, kept number)`` of each sample's first ``cap`` candidates in the index, ranked, as the batch
        starts: for most samples the final ranking (a caller can verify them all at once)."""
        lengths = np.minimum(np.diff(self._offsets), self.cap)
        rows = np.repeat(np.arange(len(lengths), dtype=np.int64), lengths)
        return rows, self._kept[ranges(self._offsets[:-1], lengths)]

    def ranked(self, i: int, extra: Mapping[int, int] | None = None) -> tuple[list[int], bool, list[int]]:
        """Sample ``i``'s candidates, best first, at most ``cap``; whether more were cut; and the batch's kept
        samples in buckets that they filled (dropping one would reopen its bucket: this sample depends on each).
        ``extra`` adds matches through buckets with room that the caller counted itself (kept number ->
        matches: the Ray engine's shuffle)."""
        a, b = int(self._offsets[i]), int(self._offsets[i + 1])
        # matches (with room, crowded) to add to the index's counts; the batch's kept samples have none there
        changed: dict[int, list[int]] = {g: [m, 0] for g, m in (extra or {}).items()}
        filled: list[int] = []
        for p, fp in self._moving.get(i, ()):
            batch = self._batch.get(fp)
            if not batch:
                continue
            crowded = int(self.fill[p] + len(batch) >= self.cap)
            if crowded:  # the batch filled it: its entries from the index count as crowded now
                filled += batch
                lo, hi = np.searchsorted(self._stored_pos, [p, p + 1])
                for g in self._stored_val[lo:hi].tolist():
                    d = changed.setdefault(g, [0, 0])
                    d[0] -= 1
                    d[1] += 1
            for g in batch:
                changed.setdefault(g, [0, 0])[crowded] += 1
        if not changed:
            return self._kept[a:min(b, a + self.cap)].tolist(), b - a > self.cap, []
        span = self._kept[a:b]
        found = np.flatnonzero(np.isin(span, np.fromiter(changed, np.int64, len(changed))))
        for k, g in zip(found.tolist(), span[found].tolist(), strict=True):
            changed[g][0] -= int(self._keys[0][a + k])
            changed[g][1] -= int(self._keys[1][a + k])
        rest = np.arange(a, min(b, a + self.cap + len(found)))
        rest = rest[~np.isin(rest - a, found)][: self.cap]  # the first unchanged ones keep their order
        keys = list(zip(*(x[rest].tolist() for x in self._keys), strict=True))
        keys += [(-c[0], -c[1], g) for g, c in changed.items()]
        keys.sort()
        return [g for _, _, g in keys[: self.cap]], b - a + len(changed) - len(found) > self.cap, filled

    def alone(self) -> npt.NDArray[np.bool_]:
        """Per sample: no candidate in the index, and no bucket with room that another sample of the batch shares,
        so ``ranked`` gives nothing whatever is kept before it, and keeping it changes no other sample's ranking."""
        out: npt.NDArray[np.bool_] = np.diff(self._offsets) == 0
        out[list(self._moving)] = False
        return out

    def keep(self, i: int, g: int) -> None:
        """Sample ``i`` is kept as kept number ``g``: its entries join the buckets of the batch that have room."""
        for p, fp in self._moving.get(i, ()):
            batch = self._batch.setdefault(fp, [])
            if self.fill[p] + len(batch) < self.cap:
                batch.append(g)


def jaccard(a: U32, b: U32) -> float:
    """True Jaccard similarity of two sorted sets of unique shingle hashes."""
    if len(a) == 0 and len(b) == 0:
        return 1.0
    inter = len(np.intersect1d(a, b, assume_unique=True))
    return inter / (len(a) + len(b) - inter)


def pair_jaccards(flat_a: U32, offsets_a: I64, rows: I64, flat_b: U32, offsets_b: I64) -> npt.NDArray[np.float64]:
    """``jaccard(A[rows[k]], B[k])`` for every set k of B, vectorised (set i of A is ``flat_a[offsets_a[i]:
    offsets_a[i+1]]``, likewise B): the same integer counts, divided once, so the same numbers."""
    sizes_a, sizes_b = np.diff(offsets_a), np.diff(offsets_b)
    row_of = np.repeat(np.arange(len(sizes_a), dtype=np.uint64), sizes_a)
    keys = (row_of << np.uint64(32)) | flat_a.astype(np.uint64)  # sorted: rows ascending, each set sorted
    query = (np.repeat(np.asarray(rows, dtype=np.uint64), sizes_b) << np.uint64(32)) | flat_b.astype(np.uint64)
    if len(keys):
        at = np.minimum(np.searchsorted(keys, query), len(keys) - 1)
        hits = np.concatenate([[0], np.cumsum(keys[at] == query)])
    else:
        hits = np.zeros(len(query) + 1, dtype=np.int64)
    inter = hits[offsets_b[1:]] - hits[offsets_b[:-1]]
    union = sizes_a[rows] + sizes_b - inter
    out: npt.NDArray[np.float64] = np.where(union > 0, inter / np.maximum(union, 1), 1.0)
    return out


def pack_strings(strings: Sequence[str]) -> tuple[npt.NDArray[np.uint8], I64]:
    """Strings as UTF-8 bytes plus offsets: exact, any length, and loadable without pickle."""
    encoded = [s.encode("utf-8", "surrogatepass") for s in strings]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum([len(e) for e in encoded], out=offsets[1:])
    return np.frombuffer(b"".join(encoded), dtype=np.uint8), offsets


def unpack_strings(data: npt.NDArray[np.uint8], offsets: I64) -> list[str]:
    raw, offs = np.asarray(data, dtype=np.uint8).tobytes(), np.asarray(offsets).tolist()
    return [raw[a:b].decode("utf-8", "surrogatepass") for a, b in itertools.pairwise(offs)]
