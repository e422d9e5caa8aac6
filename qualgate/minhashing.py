"""MinHash library for near-duplicates: normalised shingles, signatures in datasketch's ``affine32`` scheme, LSH keys.

Everything per batch is vectorised in numpy: code points -> token hashes (a polynomial hash via prefix
sums) -> n-gram hashes -> 32-bit shingle hashes -> ``a * fmix32(h) + b`` over all permutations,
min-reduced per document. The permutations are datasketch's own (``MinHash(num_perm, seed)``), and
``shingle_hash`` is the same shingle hash as a plain Python function, so
``MinHash.bulk(shingles, hashfunc=shingle_hash)`` gives bit-identical signatures (tested).
The check that uses them (keep-first, index, verification) is ``qualgate.checks.minhash``.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Sequence

import numpy as np

from qualgate.index import I64, U32, U64, ranges

M64 = (1 << 64) - 1
_B = 0x9E3779B97F4A7C15  # odd: code-point polynomial base (invertible mod 2^64)
_B_INV = pow(_B, -1, 1 << 64)
_L = 0xC2B2AE3D27D4EB4F  # mixes token length / band number
_C = 0x165667B19E3779F9  # odd: n-gram polynomial base
_MAX_CACHED_POWERS = 1 << 22  # 32 MiB per cached table
_CHUNK_SHINGLES = 8192  # keeps (permutations x shingles) temporaries in cache (MODELS.md: ~10x otherwise)
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
def fmix64_np(h: U64) -> U64:
    """MurmurHash3's 64-bit finalizer on every element: spreads polynomial hashes over all 64 bits."""
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


def pow_table(base: int, n: int) -> U64:
    """At least ``n`` powers of ``base`` mod 2^64 (cached by size): the weights of polynomial rolling hashes."""
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
            tok_hash, doc_tok_len = self.word_hashes(cp, [normalized[i] for i in present])
        else:
            is_sep = np.zeros(len(cp), dtype=bool)
            lengths = np.fromiter((len(normalized[i]) for i in present), np.int64, len(present))
            is_sep[np.cumsum(lengths + 1)[:-1] - 1] = True  # the joining spaces between documents
            tok_hash = fmix64_np(cp[~is_sep] + np.uint64(_L))
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
    def word_hashes(cp: U64, texts: list[str]) -> tuple[U64, I64]:
        """64-bit hashes of the space-separated words of ``cp`` (the code points of ``texts`` joined by spaces)."""
        n = len(cp)
        weighted = cp * pow_table(_B, n)
        prefix = np.zeros(n + 1, dtype=np.uint64)
        np.cumsum(weighted, out=prefix[1:])
        space = np.flatnonzero(cp == 32)
        starts = np.concatenate([[0], space + 1]).astype(np.int64)
        ends = np.concatenate([space, [n]]).astype(np.int64)
        raw = (prefix[ends] - prefix[starts]) * pow_table(_B_INV, n)[starts]
        lengths = (ends - starts).astype(np.uint64)
        words_per_doc = np.fromiter((t.count(" ") + 1 for t in texts), np.int64, len(texts))
        return fmix64_np(raw + lengths * np.uint64(_L)), words_per_doc

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
        return (fmix64_np(vals) >> np.uint64(32)).astype(np.uint32), docs


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


# ----------------------------------------------------------------------------------------- LSH keys
def band_keys(sigs: U32, bands: int, rows: int) -> U64:
    """One 64-bit LSH key per (document, band): a hash of the band's ``rows`` signature values."""
    keys = np.empty((len(sigs), bands), dtype=np.uint64)
    weights = pow_table(_C, rows)
    for band in range(bands):
        part = sigs[:, band * rows:(band + 1) * rows].astype(np.uint64)
        keys[:, band] = fmix64_np((part * weights).sum(axis=1, dtype=np.uint64) + np.uint64((band + 1) * _L & M64))
    return keys
