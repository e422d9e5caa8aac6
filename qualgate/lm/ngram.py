"""Interpolated modified Kneser–Ney n-gram language model in numpy, stored in ARPA's backoff form.

Why built in: no installable package trains an n-gram model offline at usable speed (KenLM's ``lmplz``
ships on no wheel), and a model trained on the user's own human reference text in a fraction of a
second is what makes "too far from human text" measurable without downloading anything.

Layout: one table per order. Order 1 is indexed by word id (0 ``<unk>``, 1 ``<s>``, 2 ``</s>``). An
n-gram of order n >= 2 is the int64 key ``row of its first n-1 words in the order n-1 table * V + id
of its last word``; keys are sorted, so lookups are ``searchsorted`` and a table's row number is the
n-gram's identity for the next order. Each row holds log10 p(w | h) (already interpolated with every
lower order) and, below the top order, the log10 backoff weight of the n-gram as a context. That is
exactly ARPA's content, so ARPA files written here load in KenLM and give the same scores, and ARPA
files from KenLM (``lmplz``) load here.

Training follows Chen & Goodman (1998) as KenLM does: highest order on raw counts, lower orders on
continuation counts (distinct left extensions, raw counts for n-grams that start with ``<s>``), three
discounts per order from the counts of counts, and unigrams interpolated with the uniform distribution
over the vocabulary (``<unk>`` included), so every context's distribution sums to one.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import numpy.typing as npt

from qualgate.lm.text import tokenizer

UNK, BOS, EOS = "<unk>", "<s>", "</s>"
SPECIALS = (UNK, BOS, EOS)
LN10 = math.log(10.0)
NO_PROB = -99.0  # log10 "probability" ARPA gives <s>, which is never predicted
_FALLBACK_DISCOUNTS = (0.5, 1.0, 1.5)  # when a tiny corpus has no usable counts of counts

I64 = npt.NDArray[np.int64]
F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]


class ArpaError(ValueError):
    """An ARPA file that cannot be read; the message names the line."""


def discounts(adjusted: npt.NDArray[Any]) -> tuple[float, float, float]:
    """Modified Kneser–Ney discounts D1, D2, D3+ from counts of counts (Chen & Goodman, eq. 26)."""
    n = [int(np.count_nonzero(adjusted == k)) for k in (1, 2, 3, 4)]
    if min(n) == 0:
        return _FALLBACK_DISCOUNTS
    y = n[0] / (n[0] + 2 * n[1])
    d = (1 - 2 * y * n[1] / n[0], 2 - 3 * y * n[2] / n[1], 3 - 4 * y * n[3] / n[2])
    if not all(0 < dk < k for k, dk in zip((1, 2, 3), d, strict=True)):
        return _FALLBACK_DISCOUNTS
    return d


def _discount_of(a: npt.NDArray[Any], d: tuple[float, float, float]) -> F64:
    """The amount taken from each count: D(a), never more than the count itself."""
    table = np.asarray([0.0, d[0], d[1], d[2]])
    out: F64 = np.minimum(table[np.minimum(a, 3)], a).astype(np.float64)
    return out


@dataclass
class NgramModel:
    """An n-gram model in backoff form: ``logp[n-1]``/``bow[n-1]`` are log10 values of order n."""

    words: list[str]
    keys: list[I64]
    logp: list[F32]
    bow: list[F32]
    normalize: str = "v1"
    meta: dict[str, str] = field(default_factory=dict)
    _ids: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._ids = {w: i for i, w in enumerate(self.words)}
        if self.words[:3] != list(SPECIALS):
            raise ValueError("the first three words must be <unk>, <s>, </s>")

    @property
    def order(self) -> int:
        return len(self.keys)

    @property
    def vocab_size(self) -> int:
        return len(self.words)

    def counts(self) -> list[int]:
        return [len(k) for k in self.keys]

    def nbytes(self) -> int:
        return sum(k.nbytes for k in self.keys) + sum(p.nbytes for p in self.logp) + sum(b.nbytes for b in self.bow)

    # ------------------------------------------------------------------------------------ training
    @classmethod
    def train(cls, sentences: Iterable[Sequence[str]], order: int = 3, normalize: str = "v1") -> NgramModel:
        """Fit on token sequences (each one text; ``<s>``/``</s>`` are added here)."""
        vocab = Vocabulary()
        seqs = [vocab.encode(s) for s in sentences]
        return cls.fit(seqs, vocab.words, order, normalize)

    @classmethod
    def fit(cls, seqs: Sequence[npt.NDArray[np.int64]], words: Sequence[str], order: int = 3,
            normalize: str = "v1") -> NgramModel:
        """Fit on id sequences over ``words`` (ids as ``Vocabulary`` gives them); unused words are dropped."""
        if not 1 <= order <= 6:
            raise ValueError(f"order must be between 1 and 6, got {order}")
        body = np.concatenate(seqs) if seqs else np.zeros(0, dtype=np.int64)
        used = np.union1d(np.asarray([0, 1, 2], dtype=np.int64), body)
        remap = np.full(len(words), -1, dtype=np.int64)
        remap[used] = np.arange(len(used))
        kept = [words[i] for i in used.tolist()]
        v = len(kept)
        lengths = np.asarray([len(s) for s in seqs], dtype=np.int64)
        total = int(lengths.sum() + 2 * len(seqs))
        starts = (np.cumsum(lengths + 2) - (lengths + 2)).astype(np.int64)  # empty when there are no texts
        seq = np.full(total, 2, dtype=np.int64)  # </s> everywhere, then <s> and the words
        seq[starts] = 1
        inner = np.ones(total, dtype=bool)
        inner[starts] = False
        inner[starts + lengths + 1] = False
        seq[inner] = remap[body]
        pos = np.arange(total, dtype=np.int64) - np.repeat(starts, lengths + 2)

        # rows[n-1][i]: row of the order-n gram ending at position i (-1 where it would cross a text start)
        rows: list[I64] = [seq]
        keys: list[I64] = [np.arange(v, dtype=np.int64)]
        first: list[I64] = [np.zeros(v, dtype=np.int64)]
        raw: list[I64] = [np.bincount(seq[pos >= 1], minlength=v).astype(np.int64)]
        for n in range(2, order + 1):
            at = np.nonzero(pos >= n - 1)[0]
            key = rows[-1][at - 1] * v + seq[at]
            uniq, first_idx, inv = np.unique(key, return_index=True, return_inverse=True)
            row = np.full(total, -1, dtype=np.int64)
            row[at] = inv
            rows.append(row)
            keys.append(uniq.astype(np.int64))
            first.append(at[first_idx])
            raw.append(np.bincount(inv, minlength=len(uniq)).astype(np.int64))

        adjusted: list[I64] = []
        for n in range(1, order + 1):
            if n == order:
                adjusted.append(raw[n - 1])
                continue
            suffix = rows[n - 1][first[n]]  # each (n+1)-gram's last n words
            left = np.bincount(suffix, minlength=len(keys[n - 1])).astype(np.int64)
            bos = pos[first[n - 1]] == n - 1 if n > 1 else np.zeros(v, dtype=bool)
            adjusted.append(np.where(bos, raw[n - 1], left))

        logp: list[F32] = []
        bow: list[F32] = []
        # unigrams: interpolate with the uniform distribution over every word but <s>
        a = adjusted[0].copy()
        a[1] = 0
        d = discounts(a[a > 0])
        cut = _discount_of(a, d)
        total_a = float(a.sum())
        if total_a > 0:
            gamma = float(cut.sum()) / total_a
            p = (a - cut) / total_a + gamma / (v - 1)
        else:
            p = np.full(v, 1.0 / (v - 1))
        p[1] = 0.0
        prob = p
        logp.append(_log10(p, bos_row=True))
        for n in range(2, order + 1):
            a = adjusted[n - 1]
            d = discounts(a)
            cut = _discount_of(a, d)
            ctx = keys[n - 1] // v
            n_ctx = len(keys[n - 2])
            mass = np.bincount(ctx, weights=a, minlength=n_ctx)
            taken = np.bincount(ctx, weights=cut, minlength=n_ctx)
            gamma_ctx = np.divide(taken, mass, out=np.ones(n_ctx), where=mass > 0)
            lower = prob[rows[n - 2][first[n - 1]]]  # p of the n-gram's last n-1 words
            prob = (a - cut) / mass[ctx] + gamma_ctx[ctx] * lower
            bow.append(np.log10(gamma_ctx).astype(np.float32))
            logp.append(_log10(prob))
        return cls(kept, keys, logp, bow, normalize)

    # ------------------------------------------------------------------------------------- scoring
    def ids(self, tokens: Sequence[str], unknown: dict[str, int] | None = None) -> I64:
        """Word ids; an unknown word is 0 (``<unk>``), or, given ``unknown``, its own id from V upwards
        (equal strings, equal ids), which ``log10_probs_ids`` treats as ``<unk>``."""
        get = self._ids.get
        if unknown is None:
            return np.fromiter((get(t, 0) for t in tokens), dtype=np.int64, count=len(tokens))
        v = self.vocab_size

        def one(t: str) -> int:
            i = get(t)
            return i if i is not None else unknown.setdefault(t, v + len(unknown))
        return np.fromiter((one(t) for t in tokens), dtype=np.int64, count=len(tokens))

    def log10_probs(self, token_lists: Sequence[Sequence[str]]) -> list[F64]:
        """log10 p of every token of every text and of its end (``</s>``), given ``<s>`` before it."""
        lengths = np.asarray([len(t) for t in token_lists], dtype=np.int64)
        flat = self.ids([t for toks in token_lists for t in toks])
        out = self.log10_probs_ids(flat, lengths)
        return np.split(out, np.cumsum(lengths + 1)[:-1]) if len(lengths) else []

    def log10_probs_ids(self, flat: I64, lengths: I64) -> F64:
        """``log10_probs`` for word ids of texts laid end to end (``lengths`` each; ids >= V are unknown),
        concatenated: ``lengths[i] + 1`` values per text."""
        n_txt = len(lengths)
        if not n_txt:
            return np.zeros(0, dtype=np.float64)
        total = int(lengths.sum()) + 2 * n_txt
        starts = (np.cumsum(lengths + 2) - (lengths + 2)).astype(np.int64)
        seq = np.full(total, 2, dtype=np.int64)
        seq[starts] = 1
        inner = np.ones(total, dtype=bool)
        inner[starts] = False
        inner[starts + lengths + 1] = False
        seq[inner] = np.where(flat >= self.vocab_size, 0, flat)
        pos = np.arange(total, dtype=np.int64) - np.repeat(starts, lengths + 2)
        return self._score(seq, pos)[pos >= 1]

    def _score(self, seq: I64, pos: I64) -> F64:
        v = self.vocab_size
        rows: list[I64] = [seq]
        for n in range(2, self.order + 1):
            prev = np.concatenate([[-1], rows[-1][:-1]])
            ok = (prev >= 0) & (pos >= n - 1)
            key = np.where(ok, prev * v + seq, -1)
            table = self.keys[n - 1]
            at = np.minimum(np.searchsorted(table, key), len(table) - 1) if len(table) else np.zeros_like(key)
            hit = ok & (table[at] == key) if len(table) else np.zeros_like(ok)
            rows.append(np.where(hit, at, -1))
        result = np.zeros(len(seq), dtype=np.float64)
        backoff = np.zeros(len(seq), dtype=np.float64)
        done = np.zeros(len(seq), dtype=bool)
        for n in range(self.order, 0, -1):
            row = rows[n - 1]
            now = ~done & (row >= 0)
            result[now] = backoff[now] + self.logp[n - 1][row[now]]
            done |= now
            if n > 1:  # not found at order n: add the backoff weight of its (n-1)-word context
                ctx = np.concatenate([[-1], rows[n - 2][:-1]])
                use = ~done & (ctx >= 0)
                backoff[use] += self.bow[n - 2][ctx[use]]
        return result

    # ----------------------------------------------------------------------------------------- ARPA
    def ngram_words(self, n: int) -> I64:
        """Word ids of every n-gram of order n, one row each, in table order."""
        if n == 1:
            return self.keys[0].reshape(-1, 1)
        prefix = self.ngram_words(n - 1)
        k = self.keys[n - 1]
        return np.column_stack([prefix[k // self.vocab_size], k % self.vocab_size])

    def write_arpa(self, path: str | Path) -> None:
        """Write the model as an ARPA file (with a ``# qualgate`` header KenLM skips)."""
        import io

        from qualgate.io import atomic_write

        with atomic_write(path) as raw, io.TextIOWrapper(raw, encoding="utf-8", newline="\n") as fh:
            self._write_arpa(fh)

    def _write_arpa(self, fh: IO[str]) -> None:
        fh.write(f"# qualgate normalize={self.normalize} order={self.order}\n")
        for name, val in sorted(self.meta.items()):
            fh.write(f"# qualgate {name}={val}\n")
        fh.write("\n\\data\\\n")
        for n, k in enumerate(self.keys, start=1):
            fh.write(f"ngram {n}={len(k)}\n")
        words = self.words
        for n in range(1, self.order + 1):
            fh.write(f"\n\\{n}-grams:\n")
            grams = self.ngram_words(n).tolist()
            probs = self.logp[n - 1].tolist()
            bows = self.bow[n - 1].tolist() if n < self.order else None
            for i, g in enumerate(grams):
                text = " ".join(words[w] for w in g)
                if bows is None:
                    fh.write(f"{probs[i]:.9g}\t{text}\n")
                else:
                    fh.write(f"{probs[i]:.9g}\t{text}\t{bows[i]:.9g}\n")
        fh.write("\n\\end\\\n")

    @classmethod
    def read_arpa(cls, path: str | Path, normalize: str | None = None) -> NgramModel:
        """Load an ARPA file. ``normalize`` is the scheme when the file's header does not name one."""
        with open(path, encoding="utf-8") as fh:
            return _read_arpa(fh, str(path), normalize)


def _log10(p: F64, bos_row: bool = False) -> F32:
    with np.errstate(divide="ignore"):
        out = np.log10(p)
    if bos_row:
        out[1] = NO_PROB
    return np.maximum(out, NO_PROB).astype(np.float32)


class Vocabulary:
    """Word -> id, growing as texts are added; ids 0-2 are ``<unk>``, ``<s>``, ``</s>``."""

    def __init__(self) -> None:
        self.words: list[str] = list(SPECIALS)
        self._ids: dict[str, int] = {w: i for i, w in enumerate(SPECIALS)}

    def encode(self, tokens: Sequence[str]) -> I64:
        ids = self._ids
        words = self.words
        out = np.empty(len(tokens), dtype=np.int64)
        for i, t in enumerate(tokens):
            j = ids.get(t)
            if j is None:
                j = ids[t] = len(words)
                words.append(t)
            out[i] = j
        return out


_HEADER = re.compile(r"^# qualgate (\w+)=(\S+)")
_COUNT = re.compile(r"^ngram (\d+)=(\d+)$")


def _read_arpa(fh: IO[str], name: str, normalize: str | None) -> NgramModel:
    meta: dict[str, str] = {}
    lineno = 0

    def fail(msg: str) -> ArpaError:
        return ArpaError(f"{name}:{lineno}: {msg}")

    line = ""
    for line in fh:
        lineno += 1
        s = line.strip()
        if s == "\\data\\":
            break
        if m := _HEADER.match(s):
            meta[m.group(1)] = m.group(2)
    else:
        raise fail("no \\data\\ section: not an ARPA file")
    expected: list[int] = []
    for line in fh:
        lineno += 1
        s = line.strip()
        if not s:
            if expected:
                break
            continue
        m = _COUNT.match(s)
        if not m or int(m.group(1)) != len(expected) + 1:
            raise fail(f"expected 'ngram {len(expected) + 1}=COUNT', got {s[:60]!r}")
        expected.append(int(m.group(2)))
    order = len(expected)
    if order == 0:
        raise fail("no n-gram counts after \\data\\")
    grams: list[list[list[str]]] = []
    probs: list[list[float]] = []
    bows: list[list[float]] = []
    for n in range(1, order + 1):
        for line in fh:
            lineno += 1
            s = line.strip()
            if s:
                break
        if s != f"\\{n}-grams:":
            raise fail(f"expected \\{n}-grams:, got {s[:60]!r}")
        g: list[list[str]] = []
        p: list[float] = []
        b: list[float] = []
        for _ in range(expected[n - 1]):
            line = fh.readline()
            lineno += 1
            parts = line.split()
            if len(parts) not in (n + 1, n + 2):
                raise fail(f"expected a log probability, {n} word(s) and an optional backoff, "
                           f"got {line.strip()[:60]!r}")
            try:
                p.append(float(parts[0]))
                b.append(float(parts[n + 1]) if len(parts) == n + 2 else 0.0)
            except ValueError:
                raise fail(f"not a number in {line.strip()[:60]!r}") from None
            g.append(parts[1:n + 1])
        grams.append(g)
        probs.append(p)
        bows.append(b)
    words = list(SPECIALS)
    ids = {w: i for i, w in enumerate(words)}
    for (w,) in grams[0]:
        if w not in ids:
            ids[w] = len(words)
            words.append(w)
    v = len(words)
    uni_p = np.full(v, -100.0, dtype=np.float32)  # KenLM's log10 p(<unk>) when a file has none
    uni_b = np.zeros(v, dtype=np.float32)
    uni_p[1] = NO_PROB
    for (w,), pr, bo in zip(grams[0], probs[0], bows[0], strict=True):
        uni_p[ids[w]], uni_b[ids[w]] = pr, bo
    keys: list[I64] = [np.arange(v, dtype=np.int64)]
    logp: list[F32] = [uni_p]
    bow: list[F32] = [uni_b]
    for n in range(2, order + 1):
        try:
            mat = np.asarray([[ids[w] for w in g] for g in grams[n - 1]], dtype=np.int64).reshape(-1, n)
        except KeyError as exc:
            raise ArpaError(f"{name}: {n}-gram uses the word {exc.args[0]!r}, which has no unigram") from None
        row = mat[:, 0]
        for j in range(1, n - 1):  # walk the prefix down the tables
            key = row * v + mat[:, j]
            at = np.searchsorted(keys[j], key)
            if (at >= len(keys[j])).any() or (keys[j][np.minimum(at, len(keys[j]) - 1)] != key).any():
                raise ArpaError(f"{name}: some {n}-gram's first {j + 1} words are not a {j + 1}-gram")
            row = at
        key = row * v + mat[:, n - 1]
        order_idx = np.argsort(key, kind="stable")
        keys.append(key[order_idx])
        logp.append(np.asarray(probs[n - 1], dtype=np.float32)[order_idx])
        bow.append(np.asarray(bows[n - 1], dtype=np.float32)[order_idx])
    return NgramModel(words, keys, logp, bow[:-1], meta.get("normalize") or normalize or "v1",
                      {k: v_ for k, v_ in meta.items() if k not in ("normalize", "order")})


def arpa_header(path: str | Path) -> dict[str, str]:
    """The ``# qualgate KEY=VALUE`` lines at the top of an ARPA file (empty for a binary or foreign file)."""
    meta: dict[str, str] = {}
    try:
        with open(path, encoding="utf-8") as fh:
            for _ in range(32):
                line = fh.readline()
                if not line or line.strip() == "\\data\\":
                    break
                if m := _HEADER.match(line.strip()):
                    meta[m.group(1)] = m.group(2)
    except (UnicodeDecodeError, OSError):
        return {}
    return meta


def perplexity(log10_probs: F64) -> float:
    """Per-token perplexity from log10 probabilities."""
    return float(10 ** (-log10_probs.mean())) if len(log10_probs) else float("nan")


def train_texts(texts: Iterable[str], order: int = 3, normalize: str = "v1") -> NgramModel:
    """Normalise ``texts`` with ``normalize`` and fit a model on them."""
    tok = tokenizer(normalize)
    return NgramModel.train((tok(t) for t in texts), order, normalize)
