"""Near-duplicates: normalised shingles, MinHash in datasketch's ``affine32`` scheme, LSH, true Jaccard.

Everything per batch is vectorised in numpy: code points -> token hashes (a polynomial hash via prefix
sums) -> n-gram hashes -> 32-bit shingle hashes -> ``a * fmix32(h) + b`` over all permutations,
min-reduced per document. The permutations are datasketch's own (``MinHash(num_perm, seed)``), and
``shingle_hash`` is the same shingle hash as a plain Python function, so
``MinHash.bulk(shingles, hashfunc=shingle_hash)`` gives bit-identical signatures (tested).

LSH only proposes candidates; nothing is rejected until the true Jaccard of the two shingle sets
(32-bit shingle hashes) reaches the threshold. Keep-first: a sample is compared with the samples
kept before it (and the baseline), never with rejected ones, so duplicates cannot chain. An LSH
bucket holds at most ``max_candidates`` kept samples, so the variants of one template cost what other
samples cost (``index.BandCandidates`` has the rule, which both engines follow).
"""

from __future__ import annotations

import functools
import itertools
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import numpy as np
import numpy.typing as npt
import xxhash
from pydantic import Field, model_validator

from qualgate.checks.base import (
    Features,
    Measurement,
    Params,
    SetCheck,
    field_texts,
    pack_sources,
    register,
    source_tuple,
    unpack_sources,
)
from qualgate.findings import Finding
from qualgate.index import (
    I64,
    U32,
    U64,
    BandCandidates,
    KeyIndex,
    ShingleStore,
    csr_take,
    jaccard,
    pack_strings,
    pair_jaccards,
    ranges,
    unpack_strings,
)
from qualgate.preamble import Preamble, drop_field, given_field
from qualgate.sample import FieldProblem, Sample, Source

M64 = (1 << 64) - 1
_B = 0x9E3779B97F4A7C15  # odd: code-point polynomial base (invertible mod 2^64)
_B_INV = pow(_B, -1, 1 << 64)
_L = 0xC2B2AE3D27D4EB4F  # mixes token length / band number
_C = 0x165667B19E3779F9  # odd: n-gram polynomial base
_MAX_CACHED_POWERS = 1 << 22  # 32 MiB per cached table
_CHUNK_SHINGLES = 8192  # keeps (permutations x shingles) temporaries in cache (MODELS.md: ~10x otherwise)
_CHUNK_PAIRS = 4096  # candidate pairs verified at once: bounds the temporaries for long texts and big batches
_NONWORD = re.compile(r"[\W_]+")
_DIGIT = re.compile(r"\d")
_ASCII = bytes(c + 32 if 65 <= c <= 90 else c if (48 <= c <= 57 or 97 <= c <= 122) else 32 for c in range(256))
_ASCII_DIGITS = bytes(48 if 48 <= c <= 57 else b for c, b in enumerate(_ASCII))
VERSION = 3  # bump when hashing, normalisation or the index changes: invalidates cached baselines


# ------------------------------------------------------------------------------- scalar reference
def _fmix64(h: int) -> int:
    h ^= h >> 33
    h = (h * 0xFF51AFD7ED558CCD) & M64
    h ^= h >> 33
    h = (h * 0xC4CEB9FE1A85EC53) & M64
    return h ^ (h >> 33)


def token_hash(token: str) -> int:
    """64-bit hash of one token (a word, or one character for character shingles)."""
    h, p = 0, 1
    for ch in token:
        h = (h + ord(ch) * p) & M64
        p = (p * _B) & M64
    return _fmix64((h + len(token) * _L) & M64)


def shingle_hash(shingle: str | bytes | Sequence[str]) -> int:
    """32-bit hash of one shingle: a space-joined word n-gram (bytes or str) or a sequence of tokens.

    Usable as datasketch's ``hashfunc`` for word shingles: it is exactly what the vectorised path computes.
    """
    if isinstance(shingle, bytes):
        shingle = shingle.decode("utf-8")
    tokens = shingle.split(" ") if isinstance(shingle, str) else list(shingle)
    g, p = 0, 1
    for t in tokens:
        g = (g + token_hash(t) * p) & M64
        p = (p * _C) & M64
    return _fmix64((g + len(tokens)) & M64) >> 32


# ----------------------------------------------------------------------------------- vectorised
def _fmix64_np(h: U64) -> U64:
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xFF51AFD7ED558CCD)
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xC4CEB9FE1A85EC53)
    out: U64 = h ^ (h >> np.uint64(33))
    return out


def _fmix32_np(h: U32) -> U32:
    """datasketch's MurmurHash3 32-bit finalizer, applied to every input hash before permuting."""
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    out: U32 = h ^ (h >> np.uint32(16))
    return out


@functools.lru_cache(maxsize=8)
def _powers(base: int, n: int) -> U64:
    """base**0 .. base**(n-1) mod 2^64 (n rounded up to a power of two, so the cache is reused)."""
    out = np.full(n, base, dtype=np.uint64)
    out[0] = 1
    return np.multiply.accumulate(out)


def _pow_table(base: int, n: int) -> U64:
    size = 1 << max(10, (max(n, 1) - 1).bit_length())
    if size > _MAX_CACHED_POWERS:  # a batch of huge texts: compute, but do not keep 8 bytes per code point
        return _powers.__wrapped__(base, n)
    return _powers(base, size)[:n]


class Shingler:
    """Text -> normalised text -> sorted unique 32-bit shingle hashes."""

    def __init__(self, ngram: int = 5, unit: str = "word", normalize_digits: bool = False) -> None:
        self.ngram, self.unit, self.normalize_digits = ngram, unit, normalize_digits

    def normalize(self, text: str) -> str:
        """NFKC, casefold, optional digits -> 0, punctuation/symbols/whitespace folded to single spaces."""
        if text.isascii():  # same result, ~5x faster: one bytes.translate instead of NFKC + casefold + regex
            table = _ASCII_DIGITS if self.normalize_digits else _ASCII
            return b" ".join(text.encode("ascii").translate(table).split()).decode("ascii")
        t = unicodedata.normalize("NFKC", text).casefold()
        if self.normalize_digits:
            t = _DIGIT.sub("0", t)
        return _NONWORD.sub(" ", t).strip()

    def tokens(self, normalized: str) -> list[str]:
        if not normalized:
            return []
        return normalized.split(" ") if self.unit == "word" else list(normalized)

    def shingles(self, normalized: str) -> list[list[str]]:
        """Reference shingles as token lists; a text shorter than n tokens is one shingle of all of them."""
        toks = self.tokens(normalized)
        n = self.ngram
        if not toks:
            return []
        if len(toks) < n:
            return [toks]
        return [toks[i:i + n] for i in range(len(toks) - n + 1)]

    def hash_sets(self, normalized: Sequence[str]) -> list[U32]:
        """Sorted unique shingle hashes per text."""
        flat, offsets = self.hash_flat(normalized)
        return np.split(flat, offsets[1:-1]) if len(normalized) else []

    def hash_flat(self, normalized: Sequence[str]) -> tuple[U32, I64]:
        """Sorted unique shingle hashes of a whole batch at once: text i's are ``flat[offsets[i]:offsets[i+1]]``."""
        n_docs = len(normalized)
        offsets = np.zeros(n_docs + 1, dtype=np.int64)
        present = [i for i, t in enumerate(normalized) if t]
        if not present:
            return np.empty(0, np.uint32), offsets
        joined = " ".join(normalized[i] for i in present)
        cp = np.frombuffer(joined.encode("utf-32-le", "surrogatepass"), dtype=np.uint32).astype(np.uint64)
        if self.unit == "word":
            tok_hash, doc_tok_len = self._word_hashes(cp, [normalized[i] for i in present])
        else:
            is_sep = np.zeros(len(cp), dtype=bool)
            lengths = np.fromiter((len(normalized[i]) for i in present), np.int64, len(present))
            is_sep[np.cumsum(lengths + 1)[:-1] - 1] = True  # the joining spaces between documents
            tok_hash = _fmix64_np(cp[~is_sep] + np.uint64(_L))
            doc_tok_len = lengths
        shingle, doc_of = self._ngrams(tok_hash, doc_tok_len)
        keys = np.sort((doc_of.astype(np.uint64) << np.uint64(32)) | shingle.astype(np.uint64))
        if len(keys) > 1:
            keys = keys[np.concatenate([[True], keys[1:] != keys[:-1]])]
        bounds = np.searchsorted(keys >> np.uint64(32), np.arange(len(present) + 1, dtype=np.uint64))
        counts = np.zeros(n_docs, dtype=np.int64)
        counts[present] = np.diff(bounds)
        np.cumsum(counts, out=offsets[1:])
        return (keys & np.uint64(0xFFFFFFFF)).astype(np.uint32), offsets

    @staticmethod
    def _word_hashes(cp: U64, texts: list[str]) -> tuple[U64, I64]:
        n = len(cp)
        weighted = cp * _pow_table(_B, n)
        prefix = np.zeros(n + 1, dtype=np.uint64)
        np.cumsum(weighted, out=prefix[1:])
        space = np.flatnonzero(cp == 32)
        starts = np.concatenate([[0], space + 1]).astype(np.int64)
        ends = np.concatenate([space, [n]]).astype(np.int64)
        raw = (prefix[ends] - prefix[starts]) * _pow_table(_B_INV, n)[starts]
        lengths = (ends - starts).astype(np.uint64)
        words_per_doc = np.fromiter((t.count(" ") + 1 for t in texts), np.int64, len(texts))
        return _fmix64_np(raw + lengths * np.uint64(_L)), words_per_doc

    def _ngrams(self, tok: U64, doc_len: I64) -> tuple[U32, I64]:
        n = self.ngram
        doc_start = np.cumsum(doc_len) - doc_len
        short = np.flatnonzero(doc_len < n)
        g = tok.copy()
        short_vals = np.zeros(len(short), dtype=np.uint64)
        c_pow = 1
        for k in range(1, n + 1):
            if k > 1:
                c_pow = (c_pow * _C) & M64
                g = g[:-1] + tok[k - 1:] * np.uint64(c_pow)
            sel = doc_len[short] == k
            if sel.any():
                short_vals[sel] = g[doc_start[short[sel]]]
                short_vals[sel] += np.uint64(k)
        long_docs = np.flatnonzero(doc_len >= n)
        counts = doc_len[long_docs] - n + 1
        pos = ranges(doc_start[long_docs], counts)
        long_vals = g[pos] + np.uint64(n) if len(pos) else np.empty(0, np.uint64)
        vals = np.concatenate([long_vals, short_vals])
        docs = np.concatenate([np.repeat(long_docs, counts), short]).astype(np.int64)
        return (_fmix64_np(vals) >> np.uint64(32)).astype(np.uint32), docs


def permutations(num_perm: int, seed: int = 1) -> U32:
    """datasketch's affine32 permutation parameters ``(a, b)`` for ``MinHash(num_perm, seed)`` (tested equal).

    Computed here rather than read from a MinHash, because importing datasketch costs ~0.7 s (scipy).
    """
    gen = np.random.RandomState(seed)
    a = gen.randint(0, 1 << 31, num_perm, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
    b = gen.randint(0, 1 << 32, num_perm, dtype=np.uint32)
    return np.array([a, b])


def signatures(sets: Sequence[U32], perms: U32) -> U32:
    """MinHash signatures (len(sets) x num_perm) equal to datasketch's affine32 ``MinHash.bulk``."""
    offsets = np.zeros(len(sets) + 1, dtype=np.int64)
    np.cumsum([len(x) for x in sets], out=offsets[1:])
    flat = np.concatenate(sets).astype(np.uint32) if len(sets) else np.empty(0, np.uint32)
    return signatures_flat(flat, offsets, perms)


def signatures_flat(flat: U32, offsets: I64, perms: U32) -> U32:
    """``signatures`` for sets stored flat (set i is ``flat[offsets[i]:offsets[i+1]]``)."""
    a, b = perms[0][:, None], perms[1][:, None]
    out = np.full((len(offsets) - 1, perms.shape[1]), np.uint32(0xFFFFFFFF), dtype=np.uint32)
    lengths = np.diff(offsets)
    docs = np.flatnonzero(lengths)
    if len(docs) == 0:
        return out
    flat = _fmix32_np(flat)
    starts, ends = offsets[docs], offsets[docs + 1]
    first = 0
    while first < len(docs):  # chunks of whole documents with about _CHUNK_SHINGLES shingles
        last = max(first + 1, int(np.searchsorted(ends, starts[first] + _CHUNK_SHINGLES, side="right")))
        lo, hi = starts[first], ends[last - 1]
        if last == first + 1 and hi - lo > _CHUNK_SHINGLES:  # one huge document: bound the temporary
            row = out[docs[first]]
            for c in range(lo, hi, _CHUNK_SHINGLES):
                np.minimum(row, (a * flat[None, c:min(c + _CHUNK_SHINGLES, hi)] + b).min(axis=1), out=row)
        else:
            permuted = a * flat[None, lo:hi] + b
            out[docs[first:last]] = np.minimum.reduceat(permuted, starts[first:last] - lo, axis=1).T
        first = last
    return out


def optimal_bands(threshold: float, num_perm: int, recall: float = 0.995) -> tuple[int, int]:
    """Bands x rows whose candidate probability at ``threshold`` is at least ``recall``, with the least
    false-positive area below it (those candidates are verified by true Jaccard, so they only cost time).
    """
    lo = np.linspace(0.0, threshold, 257)
    best, best_fp, fallback, fallback_p = None, float("inf"), (num_perm, 1), -1.0
    for rows in range(1, num_perm + 1):
        bands = num_perm // rows
        p_at = 1 - (1 - threshold**rows) ** bands
        if p_at >= recall:
            fp = float(np.trapezoid(1 - (1 - lo**rows) ** bands, lo))
            if fp < best_fp:
                best, best_fp = (bands, rows), fp
        elif p_at > fallback_p:
            fallback, fallback_p = (bands, rows), p_at
    return best or fallback


# ------------------------------------------------------------------------------------------ check
def band_keys(sigs: U32, bands: int, rows: int) -> U64:
    """One 64-bit LSH key per (document, band): a hash of the band's ``rows`` signature values."""
    keys = np.empty((len(sigs), bands), dtype=np.uint64)
    weights = _pow_table(_C, rows)
    for band in range(bands):
        part = sigs[:, band * rows:(band + 1) * rows].astype(np.uint64)
        keys[:, band] = _fmix64_np((part * weights).sum(axis=1, dtype=np.uint64) + np.uint64((band + 1) * _L & M64))
    return keys


T = TypeVar("T")


def renumber_kept(ids: list[str], sources: list[T], first: int, keep: Sequence[bool]) -> dict[int, int]:
    """Drop the tentatively kept entries ``first + t`` with ``keep[t]`` False; returns old -> new numbers."""
    old_ids, old_sources = ids[first:], sources[first:]
    del ids[first:], sources[first:]
    remap: dict[int, int] = {}
    for t, k in enumerate(keep):
        if k:
            remap[first + t] = len(ids)
            ids.append(old_ids[t])
            sources.append(old_sources[t])
    return remap


#: A duplicate a keep-first check found in a batch: (its row, the kept sample's number, its id).
Found = tuple[int, int, str]


def count_found(clusters: Counter[int], members: dict[int, list[str]], found: Sequence[Found], rows: int,
                first: int, remap: Mapping[int, int] | None) -> None:
    """Count the duplicates a batch found in its first ``rows`` rows (``commit``; the rest are scored again)
    into ``clusters``, with up to 3 example ids each; kept numbers from the batch (``>= first``) are
    renumbered by ``remap`` (None: all were admitted)."""
    for row, g, member in found:
        if row >= rows:
            break
        if g >= first and remap is not None:
            if g not in remap:  # its kept sample was rejected after all (the gate redoes such rows)
                continue
            g = remap[g]
        clusters[g] += 1
        examples = members.setdefault(g, [])
        if len(examples) < 3:
            examples.append(member)


def relied_on(ranked: Sequence[int], best: int, cut: bool, first: int) -> list[int]:
    """The tentatively kept samples (numbers ``>= first``) a result relied on: the one it names, or, when the
    candidates were cut at ``max_candidates``, every one ranked (without it, another would have been)."""
    return [g for g in ranked if g >= first] if cut else [best] if best >= first else []


@dataclass
class MinhashFeatures(Features):
    """A batch's exact-text hashes, shingle sets (flat, with offsets) and LSH band keys: a few arrays,
    so they pickle cheaply between a worker and the main process."""

    exact: U64
    flat: U32
    offsets: I64
    bands: U64

    @classmethod
    def build(cls, exact: U64, sets: list[U32], bands: U64) -> MinhashFeatures:
        offsets = np.zeros(len(sets) + 1, dtype=np.int64)
        np.cumsum([len(x) for x in sets], out=offsets[1:])
        flat = np.concatenate(sets) if sets else np.empty(0, np.uint32)
        return cls(exact, flat.astype(np.uint32), offsets, bands)

    def sets(self) -> list[U32]:
        return np.split(self.flat, self.offsets[1:-1]) if len(self.exact) else []

    def take(self, rows: Sequence[int]) -> MinhashFeatures:
        idx = np.asarray(rows, dtype=np.int64)
        sets = self.sets()
        return MinhashFeatures.build(self.exact[idx], [sets[r] for r in rows], self.bands[idx])


@dataclass
class PairFeatures(Features):
    """A batch's candidates found by an engine's LSH shuffle instead of this process's index.

    Samples with the same normalised text have the same shingles and band keys, so candidates are kept per
    exact-text hash: row r (exact hash ``exact[r]``) has candidates ``offsets[r]:offsets[r+1]``, each another
    text (its exact hash) sharing a band fingerprint with it, ``shared`` = how many band matches (as the local
    index counts them) through buckets that cannot fill up, and the pair's true ``jaccard``. Which sample of a
    candidate text was kept, if any, is known only in order, so the check looks it up itself, and it replays
    the buckets that can fill (``big``: those of the row's ``bands`` in one) in its own capped index.
    """

    exact: U64
    offsets: I64
    candidate: U64
    shared: I64
    jaccard: npt.NDArray[np.float64]
    bands: U64
    big: npt.NDArray[np.bool_]

    def take(self, rows: Sequence[int]) -> PairFeatures:
        offsets, picked = csr_take(self.offsets, rows)
        idx = list(rows)
        return PairFeatures(self.exact[idx], offsets, self.candidate[picked], self.shared[picked],
                            self.jaccard[picked], self.bands[idx], self.big[idx])


class NearDuplicateParams(Params):
    field: str | None = Field(None, description="record field to hash; unset = the configured text view")
    threshold: float = Field(0.8, gt=0, le=1, description="true Jaccard at or above which a sample is a duplicate")
    ngram: int = Field(5, ge=1, le=64, description="shingle size in tokens (words, or characters)")
    unit: Literal["word", "char"] = Field("word", description="word shingles, or character shingles (CJK, short text)")
    normalize_digits: bool = Field(False, description="fold every digit to 0 before shingling")
    num_perm: int = Field(128, ge=8, le=1024, description="MinHash permutations")
    seed: int = Field(1, ge=0, description="permutation seed (datasketch's default is 1)")
    bands: int | None = Field(None, ge=1, description="LSH bands (default: derived from threshold and num_perm)")
    rows: int | None = Field(None, ge=1, description="LSH rows per band (set with bands)")
    max_candidates: int = Field(100, ge=1, description="candidates verified per sample, most shared bands first; "
                                "also the most kept samples one LSH bucket holds")
    max_cluster_size: int = Field(100, ge=1, description="warn when one kept sample absorbs more duplicates")
    drop_shared_prefix: bool = drop_field()
    shared_prefix: str | None = given_field()

    @model_validator(mode="after")
    def _bands(self) -> NearDuplicateParams:
        if (self.bands is None) != (self.rows is None):
            raise ValueError("set both bands and rows, or neither")
        if self.bands is not None and self.rows is not None and self.bands * self.rows > self.num_perm:
            raise ValueError(f"bands x rows ({self.bands} x {self.rows}) exceeds num_perm ({self.num_perm})")
        return self


@register
class NearDuplicate(SetCheck[NearDuplicateParams]):
    """Sample repeats a kept or baseline sample: same normalised text, or shingle Jaccard >= threshold."""

    kind = "near_duplicate"
    params_model = NearDuplicateParams
    score_names = ("exact", "jaccard")
    cost = 50
    has_features = True
    keeps_first = True

    def __init__(self, name: str, params: NearDuplicateParams) -> None:
        super().__init__(name, params)
        p = params
        self.shingler = Shingler(p.ngram, p.unit, p.normalize_digits)
        self.perms = permutations(p.num_perm, p.seed)
        self.bands, self.rows = (p.bands, p.rows) if p.bands and p.rows else optimal_bands(p.threshold, p.num_perm)
        self._exact = KeyIndex()
        self._lsh = KeyIndex(fingerprint=True, cap=p.max_candidates)
        self._store = ShingleStore()
        self.kept_ids: list[str] = []
        # plain tuples, not Source objects: the garbage collector untracks tuples of str/int,
        # so a million kept samples do not slow every collection down
        self.kept_sources: list[tuple[str, int, str] | None] = []
        self.n_baseline = 0
        self.clusters: Counter[int] = Counter()
        self.members: dict[int, list[str]] = {}
        #: the last batch's tentatively kept samples, admitted to the index by ``commit``
        self._pending: tuple[int, int, list[int], U64, list[U32], U64] | None = None
        #: with engine-found candidates (``PairFeatures``): the kept sample of each exact text (baseline
        #: first), and the last batch's tentatively kept (row, exact hash); no LSH index is needed
        self._by_exact: dict[int, int] | None = None
        self._exact_of: list[int] = []  # kept number -> exact hash, with ``_by_exact``
        self._pending_pairs: tuple[int, int, list[tuple[int, int]], PairFeatures] | None = None
        #: the last batch's duplicates, counted into ``clusters`` by ``commit``; its ``tentative_uses``
        self._found: list[Found] = []
        self._uses: dict[int, int] = {}
        #: the boilerplate prefix dropped before hashing (``qualgate.preamble``)
        self.preamble = Preamble(p.drop_shared_prefix, p.shared_prefix)

    # -------------------------------------------------------------------------------- hashing
    def _features(self, texts: Sequence[str]) -> MinhashFeatures:
        norm = [self.shingler.normalize(t) for t in texts]
        exact = np.fromiter((xxhash.xxh3_64_intdigest(t.encode("utf-8", "surrogatepass")) for t in norm),
                            dtype=np.uint64, count=len(norm))
        flat, offsets = self.shingler.hash_flat(norm)
        sigs = signatures_flat(flat, offsets, self.perms)
        return MinhashFeatures(exact, flat, offsets, band_keys(sigs, self.bands, self.rows))

    def _admit(self, exact: U64, sets: list[U32], bands: U64, first: int) -> None:
        """Add kept samples ``first, first+1, ...`` (ids already in ``kept_ids``) to the index."""
        globals_ = np.arange(first, first + len(sets), dtype=np.int64)
        self._exact.add(exact, globals_)
        self._lsh.add(bands.ravel(), np.repeat(globals_, self.bands))
        self._store.extend(sets)

    # ---------------------------------------------------------------------------------- scoring
    def _texts(self, samples: Sequence[Sample]) -> tuple[list[str], list[FieldProblem | None]]:
        return field_texts(samples, self.params.field)

    def feature_input(self, samples: Sequence[Sample]) -> list[str]:
        return self.preamble.strip_all(self._texts(samples)[0])

    def features_from(self, data: Any) -> MinhashFeatures:
        return self._features(data)

    def score_batch(self, samples: Sequence[Sample], eligible: Sequence[bool],
                    features: Features | None = None) -> list[Measurement | FieldProblem]:
        self._flush()
        self._found, self._uses = [], {}
        if isinstance(features, PairFeatures):
            return self._score_pairs(samples, eligible, features)
        texts, problems = self._texts(samples)
        feats = features if isinstance(features, MinhashFeatures) else \
            self.features_from(self.preamble.strip_all(texts))
        exact, sets, bands = feats.exact, feats.sets(), feats.bands
        results: list[Measurement | FieldProblem | None] = list(problems)
        exact_hit: dict[int, int] = {}
        for pos, val in zip(*(a.tolist() for a in self._exact.query(exact)), strict=True):
            exact_hit[pos] = min(val, exact_hit.get(pos, val))
        candidates = BandCandidates(self._lsh, bands, self.params.max_candidates)
        known = self._initial_jaccards(candidates, feats)
        first = len(self.kept_ids)
        batch_exact: dict[int, int] = {}
        batch_sets: dict[int, U32] = {}
        admitted: list[int] = []
        found, uses = self._found, self._uses
        for i, s in enumerate(samples):
            if results[i] is not None:
                continue
            key = int(exact[i])
            kept = exact_hit.get(i, batch_exact.get(key))
            if kept is not None:
                results[i] = self._measure(1.0, 1.0, kept)
                found.append((i, kept, s.id))
                if kept >= first:
                    uses.setdefault(admitted[kept - first], i)
                continue
            ranked, cut, filled = candidates.ranked(i)
            results[i], best, duplicate = self._judge(self._verify(sets[i], i, ranked, first, batch_sets, known))
            if duplicate:
                found.append((i, best, s.id))
            for g in relied_on(ranked, best, cut, first) + filled:
                uses.setdefault(admitted[g - first], i)
            if not duplicate and eligible[i]:
                g = len(self.kept_ids)
                self.kept_ids.append(s.id)
                self.kept_sources.append(source_tuple(s.source))
                admitted.append(i)
                batch_exact[key] = g
                batch_sets[g] = sets[i]
                candidates.keep(i, g)
        self._pending = (first, len(samples), admitted, exact, sets, bands)
        self._note_prefix(results, texts)
        return [r for r in results if r is not None]

    def _score_pairs(self, samples: Sequence[Sample], eligible: Sequence[bool],
                     f: PairFeatures) -> list[Measurement | FieldProblem]:
        """``score_batch`` on candidates an engine found (the Ray engine's LSH shuffle): the same keep-first
        rules, candidate order and ties as the index path, so the same decisions."""
        if self._by_exact is None:  # the baseline: every indexed text is kept
            keys, vals = self._exact.items()
            self._by_exact = dict(zip(keys.tolist(), vals.tolist(), strict=True))
            by_kept = np.empty(len(vals), dtype=np.uint64)
            by_kept[vals] = keys
            self._exact_of = by_kept.tolist()
        by_exact, exact_of = self._by_exact, self._exact_of
        candidates = BandCandidates(self._lsh, f.bands, self.params.max_candidates, f.big)
        texts, problems = self._texts(samples)
        results: list[Measurement | FieldProblem | None] = list(problems)
        first = len(self.kept_ids)
        admitted: list[tuple[int, int]] = []
        found, uses = self._found, self._uses
        offsets = f.offsets.tolist()
        for i, s in enumerate(samples):
            if results[i] is not None:
                continue
            key = int(f.exact[i])
            kept = by_exact.get(key)
            if kept is not None:
                results[i] = self._measure(1.0, 1.0, kept)
                found.append((i, kept, s.id))
                if kept >= first:
                    uses.setdefault(admitted[kept - first][0], i)
                continue
            a, b = offsets[i], offsets[i + 1]
            rows = list(zip(f.candidate[a:b].tolist(), f.shared[a:b].tolist(), f.jaccard[a:b].tolist(), strict=True))
            small = {g: n for e, n, _ in rows if n and (g := by_exact.get(e)) is not None}
            ranked, cut, filled = candidates.ranked(i, small)
            jac = {e: j for e, _, j in rows} if ranked else {}
            results[i], best, duplicate = self._judge((g, jac.get(exact_of[g], 0.0)) for g in ranked)
            if duplicate:
                found.append((i, best, s.id))
            for g in relied_on(ranked, best, cut, first) + filled:
                uses.setdefault(admitted[g - first][0], i)
            if not duplicate and eligible[i]:
                by_exact[key] = len(self.kept_ids)
                exact_of.append(key)
                candidates.keep(i, len(self.kept_ids))
                self.kept_ids.append(s.id)
                self.kept_sources.append(source_tuple(s.source))
                admitted.append((i, key))
        self._pending_pairs = (first, len(samples), admitted, f)
        self._note_prefix(results, texts)
        return [r for r in results if r is not None]

    def _note_prefix(self, results: Sequence[Measurement | FieldProblem | None], texts: Sequence[str]) -> None:
        """Duplicates whose text was compared without the shared prefix say so in their evidence."""
        if self.preamble.prefix is not None:
            for i, _, _ in self._found:
                m = results[i]
                if isinstance(m, Measurement):
                    self.preamble.note(m.evidence, texts[i])

    def _commit_pairs(self, accepted: Sequence[bool]) -> None:
        assert self._pending_pairs is not None and self._by_exact is not None
        first, _, admitted, f = self._pending_pairs
        self._pending_pairs = None
        flags = [i < len(accepted) and accepted[i] for i, _ in admitted]
        keep = [i for (i, _), k in zip(admitted, flags, strict=True) if k]
        # the buckets that can fill, replayed as the local index fills them (the others need no index)
        self._lsh.add(f.bands[keep][f.big[keep]], np.repeat(np.arange(first, first + len(keep)), f.big[keep].sum(1)))
        if all(flags):
            count_found(self.clusters, self.members, self._found, len(accepted), first, None)
            return
        remap = renumber_kept(self.kept_ids, self.kept_sources, first, flags)
        count_found(self.clusters, self.members, self._found, len(accepted), first, remap)
        del self._exact_of[first:]
        for t, (_, key) in enumerate(admitted):
            if flags[t]:
                self._by_exact[key] = remap[first + t]
                self._exact_of.append(key)
            else:
                del self._by_exact[key]

    def _flush(self) -> None:
        if self._pending is not None:
            self.commit([True] * self._pending[1])
        elif self._pending_pairs is not None:
            self.commit([True] * self._pending_pairs[1])

    def commit(self, accepted: Sequence[bool]) -> None:
        if self._pending_pairs is not None:
            self._commit_pairs(accepted)
            return
        if self._pending is None:
            return
        first, _, admitted, exact, sets, bands = self._pending
        self._pending = None
        flags = [i < len(accepted) and accepted[i] for i in admitted]
        keep = [i for i, f in zip(admitted, flags, strict=True) if f]
        remap = renumber_kept(self.kept_ids, self.kept_sources, first, flags) if len(keep) != len(admitted) else None
        count_found(self.clusters, self.members, self._found, len(accepted), first, remap)
        if keep:
            idx = np.asarray(keep, dtype=np.int64)
            self._admit(exact[idx], [sets[i] for i in keep], bands[idx], first)

    def tentative_uses(self) -> Mapping[int, int]:
        return self._uses

    def _initial_jaccards(self, candidates: BandCandidates, feats: MinhashFeatures) -> dict[int, dict[int, float]]:
        """Per sample, the true Jaccard with each of its first ranked candidates in the index, all at once."""
        rows, kept = candidates.initial()
        jac: list[float] = []
        for lo in range(0, len(rows), _CHUNK_PAIRS):
            flat, offsets = self._store.take(kept[lo:lo + _CHUNK_PAIRS])
            jac += pair_jaccards(feats.flat, feats.offsets, rows[lo:lo + _CHUNK_PAIRS], flat, offsets).tolist()
        bounds = np.searchsorted(rows, np.arange(len(feats.offsets))).tolist()
        kept_list = kept.tolist()
        return {r: dict(zip(kept_list[a:b], jac[a:b], strict=True))
                for r, (a, b) in enumerate(itertools.pairwise(bounds)) if b > a}

    def _verify(self, shingles: U32, i: int, ranked: list[int], first: int, batch_sets: Mapping[int, U32],
                known: Mapping[int, Mapping[int, float]]) -> list[tuple[int, float]]:
        """``(kept number, true Jaccard)`` of each of sample ``i``'s ranked candidates: ``known`` ones looked up,
        the rest (mostly the batch's own kept samples, a few) computed."""
        have = known.get(i, {})
        todo = [g for g in ranked if g not in have]
        if todo:
            have = {**have, **{g: jaccard(shingles, batch_sets[g]) for g in todo if g >= first}}
            indexed = [g for g in todo if g < first]
            if indexed:
                flat, offsets = self._store.take(indexed)
                jac = pair_jaccards(shingles, np.asarray([0, len(shingles)]), np.zeros(len(indexed), np.int64),
                                    flat, offsets)
                have.update(zip(indexed, jac.tolist(), strict=True))
        return [(g, have[g]) for g in ranked]

    def _judge(self, candidates: Iterable[tuple[int, float]]) -> tuple[Measurement, int, bool]:
        """The measurement from the ranked kept candidates' ``(kept number, Jaccard)``: the highest Jaccard
        wins, ties go to the earlier kept sample; its number (-1: none), and True when it reaches the
        threshold (a duplicate)."""
        best_j, best_g = 0.0, -1
        for g, j in candidates:
            if j > best_j or (j == best_j and 0 <= g < best_g):
                best_j, best_g = j, g
        if best_g >= 0 and best_j >= self.params.threshold:
            return self._measure(0.0, best_j, best_g), best_g, True
        evidence = {"nearest": self.kept_ids[best_g], "nearest_jaccard": round(best_j, 6)} if best_g >= 0 else {}
        return Measurement({"exact": 0.0, "jaccard": round(best_j, 6)}, evidence), best_g, False

    def _measure(self, exact: float, jac: float, kept: int) -> Measurement:
        ev: dict[str, Any] = {"duplicate_of": self.kept_ids[kept], "jaccard": round(jac, 6),
                              "in_baseline": kept < self.n_baseline}
        src = self.kept_sources[kept]
        if src is not None:
            ev["duplicate_source"] = Source(*src).to_dict()
        return Measurement({"exact": exact, "jaccard": round(jac, 6)}, ev)

    def score_limits(self) -> dict[str, list[float]]:
        return {"jaccard": [self.params.threshold]}

    def decide(self, m: Measurement) -> list[Finding]:
        ev = m.evidence
        if not ev.get("duplicate_of"):
            return []
        where = " in the baseline" if ev.get("in_baseline") else ""
        if dropped := ev.get("shared_prefix_dropped"):
            where += f", after dropping the shared {dropped['words']}-word prefix"
        if (m.values["exact"] or 0) >= 1:
            return [self.finding("exact_duplicate", 1.0, 1.0,
                                 f"same normalised text as kept sample {ev['duplicate_of']}{where}", **ev)]
        jac = m.values["jaccard"] or 0.0
        return [self.finding("near_duplicate", jac, self.params.threshold,
                             f"near-duplicate of kept sample {ev['duplicate_of']}{where} "
                             f"(Jaccard {jac:.2f} >= {self.params.threshold})", **ev)]

    # --------------------------------------------------------------------------------- baseline
    def add_baseline(self, samples: Sequence[Sample]) -> int:
        """Index baseline samples; returns how many were not indexed (field missing, or an exact copy of
        a baseline text already indexed: the first copy answers for all, and repeated keys would make
        long probe chains in the index)."""
        self._flush()
        texts, problems = self._texts(samples)
        usable = [i for i, p in enumerate(problems) if p is None]
        self.preamble.fit([texts[i] for i in usable], "baseline")
        feats = self._features(self.preamble.strip_all([texts[i] for i in usable]))
        exact, sets, bands = feats.exact, feats.sets(), feats.bands
        known = set(self._exact.query(exact)[0].tolist())
        rows, seen = [], set()
        for r, key in enumerate(exact.tolist()):
            if r not in known and key not in seen:
                seen.add(key)
                rows.append(r)
        idx = np.asarray(rows, dtype=np.int64)
        first = len(self.kept_ids)
        self.kept_ids.extend(samples[usable[r]].id for r in rows)
        self.kept_sources.extend(source_tuple(samples[usable[r]].source) for r in rows)
        self._admit(exact[idx], [sets[r] for r in rows], bands[idx], first)
        self.n_baseline = len(self.kept_ids)
        return len(samples) - len(rows)

    def cache_token(self) -> str:
        return f"minhash-v{VERSION}:{self.params.model_dump_json()}:{self.bands}x{self.rows}:{self.preamble.token()}"

    def export_state(self) -> dict[str, Any]:
        self._flush()
        flat, offsets = self._store.arrays()
        ids, id_offsets = pack_strings(self.kept_ids)
        tables = {f"{name}_{k}": v for name, idx in (("exact", self._exact), ("lsh", self._lsh))
                  for k, v in idx.state().items()}
        return {**tables, "shingles": flat, "offsets": offsets, "ids": ids, "id_offsets": id_offsets,
                **pack_sources(self.kept_sources), **self.preamble.state()}

    def import_state(self, arrays: Mapping[str, Any]) -> None:
        self._exact = KeyIndex.from_state({k: arrays[f"exact_{k}"] for k in ("keys", "vals", "n")})
        self._lsh = KeyIndex.from_state({k: arrays[f"lsh_{k}"] for k in ("keys", "vals", "n")})
        self._store = ShingleStore.from_arrays(arrays["shingles"], arrays["offsets"])
        self.kept_ids = unpack_strings(arrays["ids"], arrays["id_offsets"])
        self.kept_sources = unpack_sources(arrays)
        self.n_baseline = len(self.kept_ids)
        self.preamble.load(arrays)

    def report_section(self) -> dict[str, Any]:
        self._flush()
        top = sorted(self.clusters.items(), key=lambda kv: (-kv[1], kv[0]))[:10]
        largest = [{"kept": self.kept_ids[g], "in_baseline": g < self.n_baseline, "duplicates": n,
                    "examples": self.members.get(g, [])} for g, n in top]
        limit = self.params.max_cluster_size
        warnings = [f"kept sample {self.kept_ids[g]} absorbed {n} duplicates (more than max_cluster_size={limit}): "
                    "look for a template or a collapsed generator" for g, n in top if n > limit]
        prefix = self.preamble.section()
        return {"bands": self.bands, "rows": self.rows, "kept": len(self.kept_ids) - self.n_baseline,
                "baseline": self.n_baseline, "index_bytes": self._lsh.nbytes + self._exact.nbytes + self._store.nbytes,
                "largest_clusters": largest, "warnings": warnings, **({"shared_prefix": prefix} if prefix else {})}
