"""Near-duplicate candidates at scale: LSH band keys grouped by Ray Data, candidate pairs verified in parallel.

The local ``NearDuplicate`` check asks an in-memory LSH index, sample by sample, for kept samples sharing a
band. Here the work is a dataflow: each scored batch emits one row per (text, band) with the band's 32-bit
fingerprint; Ray Data groups the rows by fingerprint (the shuffle, by hash partition); each bucket yields the pairs of
distinct texts in it with how many band matches they share; a second group-by adds the matches up per pair; two joins
bring both texts' shingle sets, and ``map_batches`` computes the pair's true Jaccard. The driver then holds,
per text, its candidate texts with their match counts and Jaccard (``PairTable``) and the check resolves
keep-first in input order from them (``minhash.PairFeatures``): the same candidates, order and ties as the
local index, hence the same decisions.

Why this is exact: buckets are the index's own fingerprints (``index.fingerprints``), so a fingerprint
collision proposes the same extra candidate on both engines, and the match count per pair is the one the
index computes. Pairs are made between distinct normalised texts: samples with the same text have the same
shingles and bands, and the check decides between them by the exact-text hash. Texts without shingles
(nothing but punctuation) share no band with any other text, so they are left out.

A bucket holds at most ``max_candidates`` kept samples' entries (``index.BandCandidates``), and which ones
depends on the keep-first order, known only when deciding. So a bucket with that many rows or more ("big": it
could fill up) adds nothing to the match counts here; the shuffle reports its fingerprint, and the driver
replays just those buckets the way the local index fills them. The others can never fill, and for them the
counts here are the index's.

The cost that can blow up is a bucket of many distinct texts (a template with thousands of variants): its
pairs grow with the square. ``MAX_BUCKET`` bounds it with a clear error rather than an out-of-memory kill.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from qualgate.checks.minhash import MinhashFeatures, NearDuplicate, PairFeatures
from qualgate.index import I64, U32, U64, csr_find, fingerprints, jaccard, ranges
from qualgate.minhashing import band_keys, signatures_flat

if TYPE_CHECKING:
    import pyarrow as pa

#: Distinct texts in one LSH bucket beyond which pairing them all (~n^2/2 pairs) is refused.
MAX_BUCKET = 20_000


def _arrow() -> Any:
    import pyarrow as pa

    return pa


def _tables(exact: U64, bands: U64, flat: U32, offsets: I64) -> tuple[pa.Table, pa.Table]:
    """Band rows ``(fp, exact, band)`` and set rows ``(exact, shingles)``, one per distinct text with shingles."""
    pa = _arrow()
    lengths = np.diff(offsets)
    _, first = np.unique(exact, return_index=True)
    rows = np.sort(first[lengths[first] > 0])
    fps = fingerprints(bands[rows]) if len(rows) else np.empty((0, bands.shape[1]), np.uint32)
    n_bands = bands.shape[1]
    band_rows = pa.table({"fp": pa.array(fps.ravel(), pa.uint32()),
                          "exact": pa.array(np.repeat(exact[rows], n_bands), pa.uint64()),
                          "band": pa.array(np.tile(np.arange(n_bands, dtype=np.int16), len(rows)), pa.int16())})
    starts, ends = offsets[rows], offsets[rows + 1]
    sub_offsets = np.zeros(len(rows) + 1, dtype=np.int32)
    np.cumsum(ends - starts, out=sub_offsets[1:])
    values = flat[ranges(starts, ends - starts)] if len(rows) else np.empty(0, np.uint32)
    shingles = pa.ListArray.from_arrays(pa.array(sub_offsets, pa.int32()), pa.array(values, pa.uint32()))
    set_rows = pa.table({"exact": pa.array(exact[rows], pa.uint64()), "shingles": shingles})
    return band_rows, set_rows


def batch_tables(features: Mapping[str, tuple[list[int], Any]], name: str) -> tuple[pa.Table, pa.Table]:
    """The rows one scored batch contributes to check ``name``'s shuffle (its live samples' features)."""
    if name not in features:
        return _tables(np.empty(0, np.uint64), np.empty((0, 1), np.uint64), np.empty(0, np.uint32),
                       np.zeros(1, np.int64))
    _, f = features[name]
    assert isinstance(f, MinhashFeatures)
    return _tables(f.exact, f.bands, f.flat, f.offsets)


def baseline_tables(check: NearDuplicate) -> tuple[pa.Table, pa.Table]:
    """The same rows for the check's baseline: texts and bands rebuilt from the stored shingle sets."""
    flat, offsets = check.stored_shingles()
    keys, kept = check.exact_keys()
    exact = np.empty(len(offsets) - 1, dtype=np.uint64)
    exact[kept] = keys
    bands = band_keys(signatures_flat(flat, offsets, check.perms), check.bands, check.rows)
    return _tables(exact, bands, flat, offsets)


def with_part(rows: pa.Table, column: str, parts: int) -> pa.Table:
    """Add the shuffle partition of each row: its ``column`` (a hash already) modulo ``parts``."""
    pa = _arrow()
    return rows.append_column("part", pa.array(rows.column(column).to_numpy() % np.uint64(parts), pa.uint64()))


def bucket_pairs(rows: dict[str, npt.NDArray[Any]], cap: int | None = None) -> dict[str, npt.NDArray[Any]]:
    """The rows of any number of fingerprints -> per fingerprint, its pairs of distinct texts ``a < b`` with
    ``n`` band matches between them (one call per shuffle partition, vectorised but for multi-text buckets).

    A text with k of its bands in a bucket matches each of another text's j bands there: k * j matches, as the
    local index counts (it looks up every band of a sample and counts every stored hit). A bucket of ``cap``
    rows or more is big: its pairs come with ``n = 0`` (they are needed for their Jaccard), and one row
    ``a = b = fingerprint`` marks it (no pair has ``a = b``).
    """
    fp, exact, band = (np.asarray(rows[c]).astype(np.uint64) for c in ("fp", "exact", "band"))
    order = np.lexsort((band, exact, fp))
    fp, exact, band = fp[order], exact[order], band[order]
    new = np.ones(len(fp), dtype=bool)
    new[1:] = (fp[1:] != fp[:-1]) | (exact[1:] != exact[:-1]) | (band[1:] != band[:-1])
    fp, exact = fp[new], exact[new]  # one row per (fingerprint, text, band): a text's copies count once
    bucket_rows = np.diff(np.append(np.flatnonzero(np.concatenate([[True], fp[1:] != fp[:-1]])), len(fp)))
    starts = np.flatnonzero(np.concatenate([[True], (fp[1:] != fp[:-1]) | (exact[1:] != exact[:-1])]))
    per_text = np.diff(np.append(starts, len(fp))).astype(np.int64)
    fp, exact = fp[starts], exact[starts]  # one row per (fingerprint, text), texts ascending per fingerprint
    first = np.flatnonzero(np.concatenate([[True], fp[1:] != fp[:-1]]))
    sizes = np.diff(np.append(first, len(fp)))
    big = bucket_rows >= cap if cap is not None else np.zeros(len(first), dtype=bool)
    out_a: list[npt.NDArray[np.uint64]] = [fp[first[big]]]
    out_b: list[npt.NDArray[np.uint64]] = [fp[first[big]]]
    out_n: list[npt.NDArray[np.int64]] = [np.zeros(int(big.sum()), np.int64)]
    for s, m, is_big in zip(first[sizes > 1].tolist(), sizes[sizes > 1].tolist(), big[sizes > 1].tolist(),
                            strict=True):
        if m > MAX_BUCKET:
            raise RuntimeError(f"an LSH bucket holds {m} distinct texts (more than {MAX_BUCKET}): pairing them all "
                               "would take ~n^2/2 comparisons. A template repeated with small variations is the "
                               "usual cause; run the local engine, or raise the near_duplicate threshold")
        a, b = np.triu_indices(m, 1)
        out_a.append(exact[s + a])
        out_b.append(exact[s + b])
        out_n.append(np.zeros(len(a), np.int64) if is_big else per_text[s + a] * per_text[s + b])
    return {"a": np.concatenate(out_a), "b": np.concatenate(out_b), "n": np.concatenate(out_n)}


def first_per_text(rows: pa.Table) -> pa.Table:
    """One set row per text (the same text can come from several batches)."""
    _, idx = np.unique(rows.column("exact").to_numpy(), return_index=True)
    return rows.take(idx)


def verify(rows: pa.Table) -> pa.Table:
    """True Jaccard of each candidate pair's shingle sets."""
    pa = _arrow()
    out = np.empty(rows.num_rows, dtype=np.float64)
    sides = []
    for col in ("sa", "sb"):
        arr = rows.column(col).combine_chunks()
        sides.append((arr.values.to_numpy(zero_copy_only=False), arr.offsets.to_numpy()))
    (va, oa), (vb, ob) = sides
    for r in range(rows.num_rows):
        out[r] = jaccard(va[oa[r]:oa[r + 1]], vb[ob[r]:ob[r + 1]])
    return pa.table({"a": rows.column("a"), "b": rows.column("b"), "n": rows.column("n"), "j": pa.array(out)})


@dataclass
class PairTable:
    """Every verified candidate pair, both ways round, sorted by text, and the big buckets' fingerprints
    (sorted): ``PairFeatures`` for any batch."""

    text: U64
    other: U64
    shared: I64
    jaccard: npt.NDArray[np.float64]
    big: U32

    @classmethod
    def from_pairs(cls, a: U64, b: U64, n: I64, j: npt.NDArray[np.float64], big: U32 | None = None) -> PairTable:
        text, other = np.concatenate([a, b]), np.concatenate([b, a])
        order = np.argsort(text, kind="stable")
        return cls(text[order], other[order], np.concatenate([n, n])[order], np.concatenate([j, j])[order],
                   np.unique(big if big is not None else np.empty(0, np.uint32)).astype(np.uint32))

    def __len__(self) -> int:
        return len(self.text) // 2

    def features(self, exact: U64, bands: U64) -> PairFeatures:
        offsets, picked = csr_find(self.text, exact)
        return PairFeatures(exact, offsets, self.other[picked], self.shared[picked], self.jaccard[picked], bands,
                            np.isin(fingerprints(bands), self.big))


def _split(rows: dict[str, npt.NDArray[Any]], big: bool) -> dict[str, npt.NDArray[Any]]:
    """The pair rows, or (``big``) the rows marking big buckets."""
    keep = (rows["a"] == rows["b"]) == big
    return {c: v[keep] for c, v in rows.items()}


def candidates(band_refs: Sequence[Any], set_refs: Sequence[Any], partitions: int, cap: int) -> PairTable:
    """Run the shuffle over the rows (Arrow table refs) of every batch and the baseline: the verified pairs,
    and the buckets of ``cap`` rows or more."""
    import ray
    import ray.data as rd

    from qualgate.engines.raydata import quiet_data

    quiet_data()
    pa = _arrow()
    # group by a hash partition of the key, not the key itself: one call per partition handles all of its
    # buckets (or texts) vectorised, where one call per key costs ~0.1 ms a million times over
    empty = PairTable.from_pairs(np.empty(0, np.uint64), np.empty(0, np.uint64), np.empty(0, np.int64),
                                 np.empty(0, np.float64))
    rows = rd.from_arrow_refs(list(band_refs))
    if rows.count() == 0:  # nothing to pair (no live text with shingles): Ray Data cannot group a schema-less set
        return empty
    bands = rows.map_batches(partial(with_part, column="fp", parts=partitions), batch_format="pyarrow")
    bucketed = bands.groupby("part", num_partitions=partitions).map_groups(partial(bucket_pairs, cap=cap),
                                                                            batch_format="numpy")
    bucketed = bucketed.materialize()
    marks = bucketed.map_batches(partial(_split, big=True), batch_format="numpy").iter_batches(batch_format="numpy")
    big = np.concatenate([np.empty(0, np.uint32), *(m["a"].astype(np.uint32) for m in marks)])
    bucketed = bucketed.map_batches(partial(_split, big=False), batch_format="numpy").materialize()
    if bucketed.count() == 0:  # no two texts share a band
        return PairTable.from_pairs(empty.text, empty.other, empty.shared, empty.jaccard, big)
    pairs = bucketed.groupby(["a", "b"], num_partitions=partitions).sum("n").rename_columns({"sum(n)": "n"})
    sets = (rd.from_arrow_refs(list(set_refs))
            .map_batches(partial(with_part, column="exact", parts=partitions), batch_format="pyarrow")
            .groupby("part", num_partitions=partitions).map_groups(first_per_text, batch_format="pyarrow")
            .drop_columns(["part"]))
    joined = (pairs.join(sets.rename_columns({"exact": "a", "shingles": "sa"}), "inner", partitions, on=("a",))
              .join(sets.rename_columns({"exact": "b", "shingles": "sb"}), "inner", partitions, on=("b",)))
    tables = [t for t in ray.get(joined.map_batches(verify, batch_format="pyarrow").to_arrow_refs()) if t.num_rows]
    if not tables:
        return PairTable.from_pairs(empty.text, empty.other, empty.shared, empty.jaccard, big)
    t = pa.concat_tables(tables)
    return PairTable.from_pairs(t.column("a").to_numpy(), t.column("b").to_numpy(),
                                t.column("n").to_numpy().astype(np.int64), t.column("j").to_numpy(), big)
