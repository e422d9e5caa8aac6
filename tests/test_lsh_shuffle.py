"""The pieces of the Ray engine's LSH shuffle, without Ray: rows, buckets, match counts, candidate lookup."""

from __future__ import annotations

import random
from collections import defaultdict

import numpy as np
import pytest

from qualgate.checks.minhash import NearDuplicate, NearDuplicateParams
from qualgate.engines.lsh import MAX_BUCKET, PairTable, _tables, bucket_pairs
from qualgate.index import KeyIndex, fingerprints

WORDS = [f"w{i}" for i in range(400)]


def _texts(seed: int, n: int = 300) -> list[str]:
    rng = random.Random(seed)
    base = [" ".join(rng.sample(WORDS, rng.randrange(3, 60))) for _ in range(n // 3)]
    out = []
    for _ in range(n):
        t = rng.choice(base).split()
        if rng.random() < 0.5 and len(t) > 3:  # a near copy
            t[rng.randrange(len(t))] = rng.choice(WORDS)
        out.append(" ".join(t) if rng.random() > 0.05 else "!!!")  # some texts without shingles
    return out


def _shuffle_in_python(band_rows: dict[str, np.ndarray]) -> dict[tuple[int, int], int]:
    """What Ray Data does with the rows: group by fingerprint, pair each group, add the matches per pair."""
    groups: dict[int, list[int]] = defaultdict(list)
    for r, fp in enumerate(band_rows["fp"].tolist()):
        groups[fp].append(r)
    total: dict[tuple[int, int], int] = defaultdict(int)
    for rows in groups.values():
        idx = np.asarray(rows)
        out = bucket_pairs({c: band_rows[c][idx] for c in ("fp", "exact", "band")})
        for a, b, n in zip(out["a"].tolist(), out["b"].tolist(), out["n"].tolist(), strict=True):
            total[a, b] += n
    return dict(total)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_bucket_pairs_count_the_band_matches_the_local_index_counts(seed: int) -> None:
    check = NearDuplicate("nd", NearDuplicateParams(threshold=0.5))
    texts = _texts(seed)
    f = check._features(texts)
    bands, sets = _tables(f.exact, f.bands, f.flat, f.offsets)
    rows = {c: bands.column(c).to_numpy() for c in ("fp", "exact", "band")}
    got = _shuffle_in_python(rows)
    whole = bucket_pairs(rows)  # one call for every bucket, as one shuffle partition gets them
    summed: dict[tuple[int, int], int] = defaultdict(int)
    for a, b, n in zip(whole["a"].tolist(), whole["b"].tolist(), whole["n"].tolist(), strict=True):
        summed[a, b] += n
    assert dict(summed) == got
    # the local index: every band of every text stored under its fingerprint, every band of each text looked up
    first = {}
    for i, e in enumerate(f.exact.tolist()):
        if len(f.sets()[i]):
            first.setdefault(e, i)
    rows = sorted(first.values())
    index = KeyIndex(fingerprint=True)
    index.add(f.bands[rows].ravel(), np.repeat(np.arange(len(rows)), check.bands))
    want: dict[tuple[int, int], int] = defaultdict(int)
    for qi, r in enumerate(rows):
        _, val = index.query(f.bands[r])
        for v in val.tolist():
            a, b = int(f.exact[r]), int(f.exact[rows[v]])
            if v != qi and a < b:
                want[a, b] += 1
    assert got == dict(want) and len(got) > 20
    assert sets.num_rows == len(rows)  # one set row per distinct text with shingles


def test_equal_fingerprints_match_in_the_index_and_share_a_bucket() -> None:
    """Two different band keys with the same 32-bit fingerprint: the local index matches them, so the
    shuffle (which buckets by fingerprint) must pair them too."""
    golden_inv = pow(0x9E3779B97F4A7C15, -1, 1 << 64)
    k1 = 0x0123456789ABCDEF
    k2 = (k1 + golden_inv) % (1 << 64)  # k2 * G = k1 * G + 1: the same top 32 bits
    keys = np.asarray([k1, k2], dtype=np.uint64)
    assert k1 != k2 and fingerprints(keys)[0] == fingerprints(keys)[1]
    index = KeyIndex(fingerprint=True)
    index.add(keys[:1], np.asarray([0]))
    assert index.query(keys[1:])[1].tolist() == [0]


def test_pair_table_gives_each_text_its_candidates_both_ways() -> None:
    a = np.asarray([5, 5, 9], dtype=np.uint64)
    b = np.asarray([7, 9, 11], dtype=np.uint64)
    bands = np.arange(8, dtype=np.uint64).reshape(4, 2)
    table = PairTable.from_pairs(a, b, np.asarray([3, 1, 2]), np.asarray([0.9, 0.2, 0.5]), fingerprints(bands[2]))
    f = table.features(np.asarray([9, 1, 5, 11], dtype=np.uint64), bands)
    per_row = [sorted(zip(f.candidate[f.offsets[i]:f.offsets[i + 1]].tolist(),
                          f.shared[f.offsets[i]:f.offsets[i + 1]].tolist(),
                          f.jaccard[f.offsets[i]:f.offsets[i + 1]].tolist(), strict=True)) for i in range(4)]
    assert per_row == [[(5, 1, 0.2), (11, 2, 0.5)], [], [(7, 3, 0.9), (9, 1, 0.2)], [(9, 2, 0.5)]]
    sub = f.take([2, 0])
    assert sub.exact.tolist() == [5, 9] and sub.offsets.tolist() == [0, 2, 4]
    assert f.big.tolist() == [[False, False], [False, False], [True, True], [False, False]]  # bands in big buckets
    assert sub.bands.tolist() == bands[[2, 0]].tolist() and sub.big.tolist() == [[True, True], [False, False]]
    assert sorted(sub.candidate[:2].tolist()) == [7, 9] and sorted(sub.candidate[2:].tolist()) == [5, 11]


def test_a_giant_bucket_is_refused_with_the_reason() -> None:
    n = MAX_BUCKET + 1
    rows = {"fp": np.full(n, 7, dtype=np.uint32), "exact": np.arange(n, dtype=np.uint64),
            "band": np.zeros(n, dtype=np.int16)}
    with pytest.raises(RuntimeError, match="distinct texts"):
        bucket_pairs(rows)
