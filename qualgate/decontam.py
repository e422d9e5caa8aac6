"""Benchmark decontamination: hashed word n-gram indexes of evaluation sets, and the lookup of a batch of samples.

A benchmark item (a question, a coding task, ...) is normalised as ``minhashing.Shingler`` does (NFKC, casefold,
every non-word character, line breaks included, folded to one space; digits kept), its words are hashed to 64
bits and every word n-gram (13 by default, as GPT-3's decontamination) becomes a 64-bit hash. Since line breaks
are spaces after normalisation, a sample that re-wraps an item into short lines still has the same n-grams.
Text shorter than n words has no n-gram: so each line of an item shorter than n words (a trivia question above
its answer) and each whole item shorter than n words is hashed as a whole, and compared with each line, each
run of 2-3 lines, paragraph and the whole text of a sample shorter than n words (normalised the same way).

A ``BenchmarkIndex`` holds only those hashes, the items' ids and counts: no benchmark text, so an index can be
shipped or cached, and nothing of a benchmark reaches an output beyond the sample's own matched span. Looking a
batch up is one ``np.searchsorted`` over the sorted n-gram hashes; only samples with a hit are examined further.
The check that uses it is ``qualgate.checks.contamination``; ``qualgate bench-index`` builds index files.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from qualgate.errors import ConfigError, InputError
from qualgate.hashing import sha256_file
from qualgate.index import I64, U64, ranges
from qualgate.minhashing import Shingler, fmix64_np, pow_table
from qualgate.npz import load_npz

#: Bump when normalisation, hashing or the index layout changes: cached indexes are rebuilt and index files
#: built by another version are refused (they would silently match nothing).
VERSION = 3  # 2: line-leading list markers dropped before hashing; 3: format characters (Cf) deleted
DEFAULT_N = 13
#: Fields a benchmark file's item id is read from, in order (else the item's 0-based row: "row 12")
ID_FIELDS = ("id", "task_id", "question_id", "qid", "_id", "uid", "idx")
SPAN_CHARS = 200  # a matched span in the evidence is cut to this many characters
_C2 = 0x9FB21C651E98DF25  # odd: word polynomial base of a segment (an n-gram or a whole line)
_C2_INV = pow(_C2, -1, 1 << 64)
_LEN = 0xD6E8FEB86659FD93  # mixes a segment's word count
_SHINGLER = Shingler(DEFAULT_N, "word")
_PROBE = "The quick brown fox jumps over the lazy dog, 12 times; Ünïcode ﬁne."
_ASCII_WORD = re.compile(r"[A-Za-z0-9]+")
_WORD = re.compile(r"[^\W_]+")


#: A list marker at the start of a line ("1. ", "2) ", "b. ", "- ", "• "): dropped before hashing, on the item side
#: and the sample side alike, else a benchmark item re-wrapped into a numbered list has a number between every
#: few words and no 13-gram survives
_MARKER = re.compile(r"(?m)^[ \t]*(?:[-*\u2022]|\d{1,3}[.)]|[A-Za-z][.)])[ \t]+")


#: Unicode format characters (category Cf, as of Unicode 14, fixed here so the hashes do not move with Python's
#: Unicode tables): zero-width space and joiners, soft hyphen, word joiner, BOM, bidi controls, tag characters.
#: Invisible, so a sample can put one inside a word ("ques\u200btion") to split it and dodge every n-gram: they
#: are deleted before normalising (here only; other checks' shingles are unchanged).
_FORMAT = re.compile("[\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u180e\u200b-\u200f"
                     "\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb\U000110bd\U000110cd"
                     "\U00013430-\U00013438\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0001"
                     "\U000e0020-\U000e007f]")


def unmarked(text: str) -> str:
    """``text`` with every line's leading list marker blanked out (same length, so character offsets hold)."""
    return _MARKER.sub(lambda m: " " * len(m.group()), text)


def normalize(text: str) -> str:
    """Format characters deleted (zero-width space, soft hyphen: ``_FORMAT``), list markers dropped (``unmarked``),
    then NFKC, casefold, punctuation / symbols / whitespace / line breaks folded to single spaces (digits kept).
    Look-alike letters of other scripts (a Cyrillic "о" in an English word) are not folded: such a word differs."""
    if not text.isascii():
        text = _FORMAT.sub("", text)
    return _SHINGLER.normalize(unmarked(text))


# ------------------------------------------------------------------------------------------ hashing
@dataclass
class Tokens:
    """64-bit word hashes of a batch of normalised texts: text i's words are ``hashes[starts[i]:starts[i]+counts[i]]``,
    with prefix sums that hash any run of words (an n-gram, a line) in O(1) and count its wordy words (two or more
    characters, not all digits)."""

    hashes: U64
    starts: I64
    counts: I64
    prefix: U64
    wordy: I64

    @classmethod
    def of(cls, normalized: Sequence[str]) -> Tokens:
        counts = np.fromiter((t.count(" ") + 1 if t else 0 for t in normalized), np.int64, len(normalized))
        starts = np.cumsum(counts) - counts
        present = [t for t in normalized if t]
        if present:
            joined = " ".join(present)
            cp = np.frombuffer(joined.encode("utf-32-le", "surrogatepass"), dtype=np.uint32).astype(np.uint64)
            hashes, _ = Shingler.word_hashes(cp, present)
            space = cp == 32
            token = np.cumsum(space)[~space]  # each non-space character's word
            length = np.bincount(token, minlength=len(hashes))
            digits = np.bincount(token, weights=((cp >= 48) & (cp <= 57))[~space], minlength=len(hashes))
            wordy = (length >= 2) & (digits < length)
        else:
            hashes, wordy = np.empty(0, np.uint64), np.empty(0, bool)
        prefix = np.zeros(len(hashes) + 1, dtype=np.uint64)
        np.cumsum(hashes * pow_table(_C2, len(hashes)), out=prefix[1:])
        wordy_prefix = np.zeros(len(hashes) + 1, dtype=np.int64)
        np.cumsum(wordy, out=wordy_prefix[1:])
        return cls(hashes, starts.astype(np.int64), counts, prefix, wordy_prefix)

    def wordy_words(self, starts: I64, lengths: I64) -> I64:
        """How many words of each run have two or more characters, not all digits (not "1 2 3", "a b c")."""
        out: I64 = self.wordy[starts + lengths] - self.wordy[starts]
        return out

    def segments(self, starts: I64, lengths: I64) -> U64:
        """The hash of each run of ``lengths[j]`` words from flat word position ``starts[j]`` (independent of where
        the run sits: the same words give the same hash in any text)."""
        if len(starts) == 0:
            return np.empty(0, np.uint64)
        raw = (self.prefix[starts + lengths] - self.prefix[starts]) * pow_table(_C2_INV, len(self.hashes))[starts]
        return fmix64_np(raw + lengths.astype(np.uint64) * np.uint64(_LEN))

    def ngrams(self, n: int) -> tuple[U64, I64, I64]:
        """Every word n-gram's hash, with the text it is in and its first word's position in that text."""
        long = np.flatnonzero(self.counts >= n)
        per = self.counts[long] - n + 1
        flat = ranges(self.starts[long], per)
        doc = np.repeat(long, per)
        return self.segments(flat, np.full(len(flat), n, np.int64)), doc, flat - self.starts[doc]


@functools.cache
def probe() -> int:
    """A fixed text's 13-gram hash: stored in every index, so a file hashed another way is refused, not missed."""
    tok = Tokens.of([normalize(_PROBE)])
    return int(tok.ngrams(DEFAULT_N)[0][0])


def _unique_per_doc(hashes: U64, doc: I64) -> tuple[U64, I64, I64]:
    """Distinct (doc, hash) pairs and where each first occurred (index into the inputs)."""
    order = np.lexsort((hashes, doc))
    h, d = hashes[order], doc[order]
    keep = np.ones(len(h), dtype=bool)
    keep[1:] = (h[1:] != h[:-1]) | (d[1:] != d[:-1])
    return h[keep], d[keep], order[keep]


# ------------------------------------------------------------------------------------------- index
@dataclass
class Match:
    """The benchmark item a sample overlaps most: ``overlap`` = share of the item's n-grams found in the sample
    (1.0 for a short item matched whole), ``span`` = the sample's own matched text, cut to ``SPAN_CHARS``."""

    benchmark: str
    item_id: str
    overlap: float
    matched: int
    item_ngrams: int
    how: str
    span: str
    start: int
    end: int
    also: list[dict[str, Any]] = field(default_factory=list)

    def evidence(self, n: int) -> dict[str, Any]:
        ev: dict[str, Any] = {"benchmark": self.benchmark, "item_id": self.item_id, "span": self.span,
                              "overlap": round(self.overlap, 6), "matched_ngrams": self.matched,
                              "item_ngrams": self.item_ngrams, "match": self.how, "n": n}
        if self.also:
            ev["also"] = self.also
        return ev


class BenchmarkIndex:
    """Sorted 64-bit n-gram hashes of benchmark items -> item; whole hashes of the items' lines (and items) shorter
    than n words -> item, with their word counts. Holds ids and counts, never text."""

    def __init__(self, *, n: int, names: list[str], item_ids: Any, item_bench: Any, item_ngrams: Any,
                 item_words: Any, ngrams: U64, ngram_item: Any, short: U64, short_item: Any, short_words: Any,
                 meta: dict[str, Any] | None = None) -> None:
        self.n, self.names = n, names
        self.item_ids = np.asarray(item_ids, dtype=str)
        self.item_bench = np.asarray(item_bench, dtype=np.int32)
        self.item_ngrams = np.asarray(item_ngrams, dtype=np.int32)
        self.item_words = np.asarray(item_words, dtype=np.int32)
        self.ngrams, self.ngram_item = np.asarray(ngrams, np.uint64), np.asarray(ngram_item, np.int32)
        self.short, self.short_item = np.asarray(short, np.uint64), np.asarray(short_item, np.int32)
        self.short_words = np.asarray(short_words, np.int32)
        self.meta = meta or {}

    def __len__(self) -> int:
        return len(self.item_ids)

    # ------------------------------------------------------------------------------------ building
    @classmethod
    def build(cls, name: str, texts: Sequence[str], ids: Sequence[str], n: int = DEFAULT_N,
              meta: dict[str, Any] | None = None) -> BenchmarkIndex:
        """The index of one benchmark's item ``texts`` (named by ``ids``)."""
        normalized, line_words = split_lines(texts)
        tok = Tokens.of(normalized)
        h, doc, _ = tok.ngrams(n)
        h, doc, _ = _unique_per_doc(h, doc)
        order = np.argsort(h, kind="stable")
        per_item = np.bincount(doc, minlength=len(texts)).astype(np.int32)
        segs = [(d, first, k) for d, words in enumerate(line_words)
                for first, k, _ in _segments(words, int(tok.counts[d]), n, paragraphs=False)]
        s_doc = np.asarray([x[0] for x in segs], np.int64)
        s_len = np.asarray([x[2] for x in segs], np.int64)
        short = tok.segments(tok.starts[s_doc] + np.asarray([x[1] for x in segs], np.int64), s_len)
        short, s_doc, first = _unique_per_doc(short, s_doc)
        s_order = np.argsort(short, kind="stable")
        info = {"version": VERSION, "probe": str(probe()), "n": n, "items": len(texts),
                "short_items": int(((tok.counts > 0) & (tok.counts < n)).sum()), "short_lines": len(short),
                "empty_items": int((tok.counts == 0).sum()), **(meta or {})}
        return cls(n=n, names=[name], item_ids=list(ids), item_bench=np.zeros(len(texts), np.int32),
                   item_ngrams=per_item, item_words=tok.counts.astype(np.int32), ngrams=h[order],
                   ngram_item=doc[order], short=short[s_order], short_item=s_doc[s_order],
                   short_words=s_len[first][s_order], meta={"benchmarks": {name: info}})

    @classmethod
    def merge(cls, parts: Sequence[BenchmarkIndex]) -> BenchmarkIndex:
        """One index over several (each benchmark keeps its name; items are renumbered)."""
        if not parts:
            raise ValueError("nothing to merge")
        if len({p.n for p in parts}) != 1:
            raise ValueError(f"indexes of different n: {sorted({p.n for p in parts})}")
        if len(parts) == 1:
            return parts[0]
        names: list[str] = []
        item_off, bench_off = 0, 0
        cols: dict[str, list[Any]] = {k: [] for k in ("ids", "bench", "ng", "words", "h", "hi", "s", "si", "sw")}
        meta: dict[str, Any] = {"benchmarks": {}}
        for p in parts:
            names += p.names
            cols["ids"].append(p.item_ids)
            cols["bench"].append(p.item_bench + bench_off)
            cols["ng"].append(p.item_ngrams)
            cols["words"].append(p.item_words)
            cols["h"].append(p.ngrams)
            cols["hi"].append(p.ngram_item + item_off)
            cols["s"].append(p.short)
            cols["si"].append(p.short_item + item_off)
            cols["sw"].append(p.short_words)
            meta["benchmarks"].update(p.meta.get("benchmarks", {}))
            item_off += len(p)
            bench_off += len(p.names)
        h, hi = np.concatenate(cols["h"]), np.concatenate(cols["hi"])
        s, si = np.concatenate(cols["s"]), np.concatenate(cols["si"])
        o, so = np.argsort(h, kind="stable"), np.argsort(s, kind="stable")
        return cls(n=parts[0].n, names=names, item_ids=np.concatenate(cols["ids"]),
                   item_bench=np.concatenate(cols["bench"]), item_ngrams=np.concatenate(cols["ng"]),
                   item_words=np.concatenate(cols["words"]), ngrams=h[o], ngram_item=hi[o], short=s[so],
                   short_item=si[so], short_words=np.concatenate(cols["sw"])[so], meta=meta)

    @classmethod
    def merge_files(cls, name: str, parts: Sequence[BenchmarkIndex]) -> BenchmarkIndex:
        """One benchmark ``name`` from the indexes of its several files (each built as ``name``): one set of
        items, the files' sources listed together."""
        if len(parts) == 1:
            return parts[0]
        infos = [p.meta["benchmarks"][name] for p in parts]
        merged = cls.merge([p.renamed(f"{name}#{k}") for k, p in enumerate(parts)])
        info = {**infos[0], "items": len(merged), "short_items": sum(i["short_items"] for i in infos),
                "empty_items": sum(i["empty_items"] for i in infos),
                "sources": [s for i in infos for s in i["sources"]]}
        return merged._with(names=[name], item_bench=np.zeros(len(merged), np.int32),
                            meta={"benchmarks": {name: info}})

    def _with(self, **changes: Any) -> BenchmarkIndex:
        """A copy with some fields replaced (the arrays are shared, not copied)."""
        fields = {"n": self.n, "names": self.names, "item_ids": self.item_ids, "item_bench": self.item_bench,
                  "item_ngrams": self.item_ngrams, "item_words": self.item_words, "ngrams": self.ngrams,
                  "ngram_item": self.ngram_item, "short": self.short, "short_item": self.short_item,
                  "short_words": self.short_words, "meta": self.meta}
        return BenchmarkIndex(**{**fields, **changes})

    def renamed(self, name: str) -> BenchmarkIndex:
        """This (single-benchmark) index under another name."""
        if len(self.names) != 1:
            raise ValueError("only a single-benchmark index can be renamed")
        info = dict(self.meta.get("benchmarks", {}).get(self.names[0], {}))
        if self.names[0] != name:
            info["built_as"] = self.names[0]
        return self._with(names=[name], meta={"benchmarks": {name: info}})

    # --------------------------------------------------------------------------------- (de)serialising
    def arrays(self) -> dict[str, Any]:
        """Plain arrays for ``np.savez`` (loaded with ``allow_pickle=False``)."""
        return {"decontam_version": np.asarray(VERSION), "n": np.asarray(self.n),
                "names": np.asarray(self.names, dtype=str), "item_ids": self.item_ids, "item_bench": self.item_bench,
                "item_ngrams": self.item_ngrams, "item_words": self.item_words, "ngrams": self.ngrams,
                "ngram_item": self.ngram_item, "short": self.short, "short_item": self.short_item,
                "short_words": self.short_words,
                "meta": np.asarray(json.dumps(self.meta, sort_keys=True))}

    @classmethod
    def from_arrays(cls, a: Any, where: str = "<index>") -> BenchmarkIndex:
        try:
            version = int(a["decontam_version"])
            meta = json.loads(str(a["meta"]))
            index = cls(n=int(a["n"]), names=[str(x) for x in a["names"].tolist()], item_ids=a["item_ids"],
                        item_bench=a["item_bench"], item_ngrams=a["item_ngrams"], item_words=a["item_words"],
                        ngrams=a["ngrams"], ngram_item=a["ngram_item"], short=a["short"],
                        short_item=a["short_item"], short_words=a["short_words"], meta=meta)
        except (KeyError, ValueError, TypeError) as exc:
            raise InputError(f"not a qualgate benchmark index ({type(exc).__name__}: {exc})", file=where) from None
        if (problem := index._problem()) is not None:
            raise InputError(f"damaged benchmark index: {problem}", file=where)
        if version != VERSION:
            raise InputError(f"benchmark index version {version}, this qualgate reads version {VERSION}: rebuild "
                             "it with `qualgate bench-index build`", file=where)
        probes = {b.get("probe") for b in meta.get("benchmarks", {}).values()}
        if probes - {str(probe())}:
            raise InputError("benchmark index hashed differently from this qualgate's hashing: rebuild it with "
                             "`qualgate bench-index build`", file=where)
        return index

    def _problem(self) -> str | None:
        """What makes these arrays unusable (lengths, item numbers out of range, unsorted hashes), or None."""
        items = len(self.item_ids)
        if not isinstance(self.meta, dict) or not isinstance(self.meta.get("benchmarks", {}), dict):
            return "meta is not an object"
        if not 1 <= self.n <= 1000 or self.item_ids.ndim != 1:
            return f"n = {self.n}"
        if not len(self.item_bench) == len(self.item_ngrams) == len(self.item_words) == items:
            return "item arrays of different lengths"
        if len(self.ngrams) != len(self.ngram_item) or not len(self.short) == len(self.short_item) == len(
                self.short_words):
            return "hash and item arrays of different lengths"
        for name, values, top in (("item_bench", self.item_bench, len(self.names)), ("ngram_item", self.ngram_item,
                                  items), ("short_item", self.short_item, items)):
            if len(values) and (values.min() < 0 or values.max() >= top):
                return f"{name} out of range"
        for name, hashes in (("ngrams", self.ngrams), ("short", self.short)):
            if len(hashes) > 1 and bool((hashes[1:] < hashes[:-1]).any()):
                return f"{name} not sorted"
        return None

    def save(self, path: str | Path) -> None:
        from qualgate.npz import save_npz

        save_npz(Path(path), self.arrays())

    @classmethod
    def load(cls, path: str | Path) -> BenchmarkIndex:
        import zipfile

        if not zipfile.is_zipfile(path):
            raise InputError("cannot read benchmark index: not an .npz index (from `qualgate bench-index build`)",
                             file=str(path))
        try:
            arrays = load_npz(path)
        except (OSError, ValueError, EOFError) as exc:
            raise InputError(f"cannot read benchmark index: {exc}", file=str(path)) from None
        return cls.from_arrays(arrays, str(path))

    # ------------------------------------------------------------------------------------- matching
    def match(self, texts: Sequence[str], *, short_min_words: int = 6, max_items_per_ngram: int = 10,
              min_matches: int = 1, short_inside: bool = False) -> list[Match | None]:
        """Per text: the item it overlaps most (highest share of the item's n-grams, then most n-grams), or None.

        Only items with at least ``min_matches`` distinct n-grams in the text count as n-gram matches (a whole-line,
        paragraph or text match of a short item is one match however long, and is not held to it).

        An n-gram that more than ``max_items_per_ngram`` items share is template text (answer formats,
        instructions repeated by every item) and matches nothing. Where no n-gram matched, each line, run of 2-3
        lines (a short item re-wrapped), paragraph and the whole text of a sample shorter than n words and at
        least ``short_min_words`` long is looked up among the items' short lines (and short items) whole; with
        ``short_inside``, every run of words of a short line's length anywhere in the sample is ("Quiz: which
        planet ... day? Answer: ...")."""
        n = self.n
        lines = len(self.short) > 0
        normalized, line_words = split_lines(texts) if lines else ([normalize(t) for t in texts], [])
        tok = Tokens.of(normalized)
        out: list[Match | None] = [None] * len(texts)
        found: dict[int, dict[int, list[tuple[int, int]]]] = {}  # doc -> item -> (word position, hash) of hits
        if len(self.ngrams):
            h, doc, pos = tok.ngrams(n)
            lo = np.searchsorted(self.ngrams, h, side="left")
            hit = lo < len(self.ngrams)
            hit[hit] = self.ngrams[lo[hit]] == h[hit]
            if hit.any():  # an n-gram mostly of numbers and letters ("0 1 2 ... 9 a b c d e f") matches nothing
                at = np.flatnonzero(hit)
                hit[at] = tok.wordy_words(tok.starts[doc[at]] + pos[at], np.full(len(at), n, np.int64)) * 2 >= n
            if hit.any():
                hi = np.searchsorted(self.ngrams, h[hit], side="right")
                for d, p, g, a, b in zip(doc[hit].tolist(), pos[hit].tolist(), h[hit].tolist(), lo[hit].tolist(),
                                         hi.tolist(), strict=True):
                    if b - a > max_items_per_ngram:
                        continue
                    for item in self.ngram_item[a:b].tolist():
                        found.setdefault(d, {}).setdefault(item, []).append((p, g))
        for d, items in found.items():
            scored = []
            for item, hits in items.items():
                matched = len({g for _, g in hits})  # distinct n-grams of the item, not repeats
                scored.append((matched / max(int(self.item_ngrams[item]), 1), matched, item, [p for p, _ in hits]))
            scored = [s for s in scored if s[1] >= min_matches]  # fewer: no n-gram match (a short line may be)
            if not scored:
                continue
            scored.sort(key=lambda s: (-s[0], -s[1], s[2]))
            overlap, matched, item, positions = scored[0]
            start_w, end_w = _longest_run(sorted(set(positions)), n)
            out[d] = self._match(texts[d], normalized[d], item, overlap, matched, "ngram", start_w, end_w,
                                 [self._also(s[2], s[0]) for s in scored[1:5]])
        if lines:
            self._match_short(texts, normalized, line_words, tok, out, short_min_words, max_items_per_ngram,
                              short_inside)
        return out

    def _match_short(self, texts: Sequence[str], normalized: list[str], line_words: list[list[int]], tok: Tokens,
                     out: list[Match | None], short_min_words: int, max_items: int, inside: bool) -> None:
        """Whole matches of the items' short lines against each line, paragraph and whole text of the samples
        without an n-gram match (``inside``: against every run of as many words)."""
        if inside:
            todo = np.asarray([d for d in range(len(out)) if out[d] is None], np.int64)
            parts = []
            for k in np.unique(self.short_words[self.short_words >= short_min_words]).tolist():
                docs = todo[tok.counts[todo] >= k]
                per = tok.counts[docs] - k + 1
                parts.append((np.repeat(docs, per), ranges(np.zeros(len(docs), np.int64), per), k))
            doc = np.concatenate([p[0] for p in parts] or [np.empty(0, np.int64)])
            first = np.concatenate([p[1] for p in parts] or [np.empty(0, np.int64)])
            length = np.concatenate([np.full(len(p[0]), p[2], np.int64) for p in parts] or [np.empty(0, np.int64)])
            hows = ["inside"]
            how = np.zeros(len(doc), np.int64)
        else:
            segs = [(d, f, k, h) for d, words in enumerate(line_words) if out[d] is None
                    for f, k, h in _segments(words, int(tok.counts[d]), self.n, paragraphs=True)
                    if k >= short_min_words]
            hows = ["line", "lines", "paragraph", "text"]
            doc = np.asarray([x[0] for x in segs], np.int64)
            first = np.asarray([x[1] for x in segs], np.int64)
            length = np.asarray([x[2] for x in segs], np.int64)
            how = np.asarray([hows.index(x[3]) for x in segs], np.int64)
        flat = tok.starts[doc] + first
        # enough wordy words: not a line of numbers ("1, 2, 3, 4, 5, 6") or a bare signature
        keep = np.flatnonzero(tok.wordy_words(flat, length) >= short_min_words)
        if not len(keep):
            return
        h = tok.segments(flat[keep], length[keep])
        lo = np.searchsorted(self.short, h, side="left")
        hit = lo < len(self.short)
        hit[hit] = self.short[lo[hit]] == h[hit]
        if not hit.any():
            return
        hi = np.searchsorted(self.short, h, side="right")
        best: dict[int, tuple[float, int, int]] = {}  # text -> (overlap, segment, item): the most of an item wins
        for j in np.flatnonzero(hit).tolist():
            if hi[j] - lo[j] > max_items:
                continue
            s, d = int(keep[j]), int(doc[keep[j]])
            for item in self.short_item[lo[j]:hi[j]].tolist():
                overlap = int(length[s]) / max(int(self.item_words[item]), 1)
                if d not in best or overlap > best[d][0]:
                    best[d] = (overlap, s, item)
        for d, (overlap, s, item) in best.items():
            f, k = int(first[s]), int(length[s])
            out[d] = self._match(texts[d], normalized[d], item, overlap, 1, hows[int(how[s])], f, f + k, [])

    def _also(self, item: int, overlap: float) -> dict[str, Any]:
        return {"benchmark": self.names[int(self.item_bench[item])], "item_id": str(self.item_ids[item]),
                "overlap": round(overlap, 6)}

    def _match(self, text: str, normalized: str, item: int, overlap: float, matched: int, how: str, start_w: int,
               end_w: int, also: list[dict[str, Any]]) -> Match:
        start, end, span = _span(text, normalized, start_w, end_w)
        return Match(self.names[int(self.item_bench[item])], str(self.item_ids[item]), overlap, matched,
                     int(self.item_ngrams[item]), how, span, start, end, also)

    def describe(self) -> dict[str, Any]:
        """Counts and provenance (no text): what ``bench-index show`` prints and the report records."""
        k = len(self.names)  # per benchmark, counted in one pass each (not one scan of the index per benchmark)
        items = np.bincount(self.item_bench, minlength=k)
        ngrams = np.bincount(self.item_bench[self.ngram_item], minlength=k)
        short = np.bincount(self.item_bench[self.short_item], minlength=k)
        per = []
        for b, name in enumerate(self.names):
            info = self.meta.get("benchmarks", {}).get(name, {})
            per.append({"name": name, "items": int(items[b]), "ngrams": int(ngrams[b]), "short_lines": int(short[b]),
                        **{k: v for k, v in info.items() if k not in ("probe", "items", "short_lines")}})
        return {"n": self.n, "version": VERSION, "items": len(self), "ngrams": len(self.ngrams),
                "benchmarks": per}


def split_lines(texts: Sequence[str]) -> tuple[list[str], list[list[int]]]:
    """Each text normalised (as ``normalize`` does the whole) and the word count of each of its lines."""
    normalized: list[str] = []
    line_words: list[list[int]] = []
    for t in texts:
        norm = [normalize(x) for x in t.split("\n")]
        line_words.append([x.count(" ") + 1 if x else 0 for x in norm])
        normalized.append(" ".join(x for x in norm if x))
    return normalized, line_words


def _segments(line_words: list[int], total: int, n: int, paragraphs: bool) -> list[tuple[int, int, str]]:
    """(first word, words, how) of each line shorter than n words and, with ``paragraphs`` (the sample side), of
    each run of 2 or 3 consecutive lines (a short item re-wrapped inside a longer paragraph) and each paragraph
    (runs of lines between empty ones), and of the whole text, where shorter than n words."""
    out: dict[tuple[int, int], str] = {}  # a run that is the whole paragraph or text is named so (written later)
    w, para_start, para_lines = 0, 0, 0
    recent: list[tuple[int, int]] = []  # (first word, words) of the current paragraph's last lines
    for k in [*line_words, 0]:
        if k and k < n:
            out[(w, k)] = "line"
        if k:
            para_start, para_lines = (w, 1) if para_lines == 0 else (para_start, para_lines + 1)
            if paragraphs:
                recent = [*recent[-2:], (w, k)]
                for r in (2, 3):
                    if len(recent) >= r and w + k - recent[-r][0] < n:
                        out[(recent[-r][0], w + k - recent[-r][0])] = "lines"
        else:
            if paragraphs and para_lines > 1 and w - para_start < n and w - para_start < total:
                out[(para_start, w - para_start)] = "paragraph"
            para_lines = 0
            recent = []
        w += k
    if 0 < total < n and sum(1 for k in line_words if k) > 1:
        out[(0, total)] = "text"
    return [(first, k, how) for (first, k), how in out.items()]


def _longest_run(positions: list[int], n: int) -> tuple[int, int]:
    """Words [start, end) covered by the longest run of overlapping matched n-grams."""
    best = (positions[0], positions[0] + n)
    run_start = prev = positions[0]
    for p in [*positions[1:], None]:
        if p is not None and p < prev + n:
            prev = p
            continue
        if prev + n - run_start > best[1] - best[0]:
            best = (run_start, prev + n)
        if p is not None:
            run_start = prev = p
    return best


def _span(text: str, normalized: str, start_w: int, end_w: int) -> tuple[int, int, str]:
    """Character offsets and text of words [start_w, end_w) of ``text`` (its own words, as written)."""
    words = list((_ASCII_WORD if text.isascii() else _WORD).finditer(unmarked(text)))
    total = normalized.count(" ") + 1 if normalized else 0
    if len(words) == total and end_w <= total:
        start, end = words[start_w].start(), words[end_w - 1].end()
        span = text[start:end]
    else:  # NFKC changed the word count (ligatures, fractions): the normalised words instead
        start, end = -1, -1
        span = " ".join(normalized.split(" ")[start_w:end_w])
    if len(span) > SPAN_CHARS:
        span = span[:SPAN_CHARS - 1] + "…"
    return start, end, span


# ------------------------------------------------------------------------------------- benchmark files
@dataclass
class Benchmark:
    """One named benchmark: a data file the user has (items read with a text view), or an index file built by
    ``qualgate bench-index build`` / shipped in rules/benchmarks (hashes only: no text, so no embedding stage)."""

    name: str
    path: Path
    sha256: str
    text: str = "auto"
    id: str | None = None
    fmt: str | None = None
    is_index: bool = False
    shipped: bool = False
    _built: dict[int, BenchmarkIndex] = field(default_factory=dict, repr=False)

    def items(self) -> tuple[list[str], list[str]]:
        """The item texts and ids (see ``ID_FIELDS``). An index file holds no text: ConfigError."""
        if self.is_index:
            raise ConfigError(f"benchmark '{self.name}' is a hashed index ({self.path}): it holds no text; pass "
                              f"the benchmark's data file as --benchmark {self.name}=PATH", key="benchmark")
        return read_items(self.path, self.text, self.id, self.fmt, self.name)

    def index(self, n: int, cache_dir: str | Path | None = None) -> BenchmarkIndex:
        """The n-gram index (cached in ``cache_dir`` under a key of the file's content, n, text view and id)."""
        if n in self._built:
            return self._built[n]
        if self.is_index:
            path = self.path
            if self.shipped:
                path = self.path.with_name(f"{self.name}-{n}.npz")
                if not path.is_file():
                    have = sorted(p.stem for p in self.path.parent.glob(f"{self.name}-*.npz"))
                    raise ConfigError(f"benchmark '{self.name}' ships as {', '.join(have)}, not for n={n}: build one "
                                      f"from the data file with `qualgate bench-index build {self.name} FILE -n {n}`",
                                      key="benchmark")
            whole = BenchmarkIndex.load(path)
            if len(whole.names) != 1:
                raise ConfigError(f"benchmark '{self.name}': index {path} holds {len(whole.names)} benchmarks "
                                  f"({', '.join(whole.names)}); pass an index of one benchmark, built by "
                                  "`qualgate bench-index build NAME FILES`", key="--benchmark")
            index = whole.renamed(self.name)
            index.meta["benchmarks"][self.name].update(
                {"file": path.name, "sha256": self.sha256 if path == self.path else sha256_file(path)})
            if index.n != n:
                raise ConfigError(f"benchmark index {path} holds {index.n}-grams, the check uses n={n}: rebuild it "
                                  f"with `qualgate bench-index build {self.name} FILES -n {n}`", key="benchmark")
        else:
            cached = self._cache_path(n, cache_dir)
            loaded: BenchmarkIndex | None = None
            if cached is not None and cached.is_file():
                try:
                    loaded = BenchmarkIndex.load(cached)
                except InputError:
                    loaded = None  # damaged: rebuilt below
            if loaded is None:
                texts, ids = self.items()
                loaded = BenchmarkIndex.build(self.name, texts, ids, n, self.provenance())
                if cached is not None:
                    loaded.save(cached)
            index = loaded.renamed(self.name)
            info = index.meta["benchmarks"][self.name]
            info.pop("built_as", None)  # a cached index was built from the same content under any name
            info.update({**self.provenance(), "file": self.path.name, "sha256": self.sha256})  # not the cache's
        self._built[n] = index
        return index

    def _cache_path(self, n: int, cache_dir: str | Path | None) -> Path | None:
        if cache_dir is None:
            return None
        import xxhash

        key = xxhash.xxh3_128_hexdigest(f"{self.sha256}|{n}|{self.text}|{self.id}|{self.fmt}|{VERSION}".encode())
        return Path(cache_dir) / f"benchmark-{key}.npz"

    def provenance(self) -> dict[str, Any]:
        return {"sources": [{"file": self.path.name, "sha256": self.sha256}], "text": self.text, "id": self.id}


def shipped_dir() -> Path:
    from qualgate.packs import rules_dir

    return rules_dir() / "benchmarks"


def shipped_names() -> list[str]:
    folder = shipped_dir()
    return sorted({p.stem.rsplit("-", 1)[0] for p in folder.glob("*-*.npz")}) if folder.is_dir() else []


def open_benchmark(name: str, path: str | Path | None = None, *, text: str | None = None, id: str | None = None,
                   fmt: str | None = None) -> Benchmark:
    """A benchmark by name: ``path`` is a data file (JSONL/JSON/CSV/Parquet) or an index ``.npz``; no path = an
    index shipped in rules/benchmarks."""
    if not name or not re.fullmatch(r"[A-Za-z0-9_.\-]+", name):
        raise ConfigError(f"benchmark name {name!r}: use letters, digits, '_', '-', '.'", key="--benchmark")
    if path is None:
        folder = shipped_dir()
        found = sorted(folder.glob(f"{name}-*.npz")) if folder.is_dir() else []
        if not found:
            have = ", ".join(shipped_names()) or "none"
            raise ConfigError(f"no shipped benchmark index named '{name}' (shipped: {have}); pass the benchmark's "
                              f"file as --benchmark {name}=PATH", key="--benchmark")
        return Benchmark(name, found[0], sha256_file(found[0]), is_index=True, shipped=True)
    p = Path(path)
    if p.is_dir():
        raise InputError(f"benchmark '{name}' is a directory: pass a data or index file", file=str(path))
    if not p.is_file():
        raise InputError(f"benchmark '{name}' file not found", file=str(path))
    is_index = p.suffix == ".npz"
    if is_index and text is not None:
        raise ConfigError(f"benchmark '{name}' is an index file ({p}): a text view applies to data files only",
                          key="--benchmark-text")
    view = (text or "auto").replace("\\n", "\n")  # a shell's '{question}\n{answer}': the newline meant
    return Benchmark(name, p, sha256_file(p), view, id, fmt, is_index=is_index)


def read_items(path: Path, text: str, id_field: str | None, fmt: str | None,
               name: str) -> tuple[list[str], list[str]]:
    """A benchmark file's item texts and ids. ``text``: "auto" (as the input's auto view: text, messages,
    instruction/output, question/answer, ...), a field, or a template.

    Read strictly, as trusted data must be: an unreadable record (bad JSON, invalid UTF-8) or an item without
    text is an InputError naming the file and line, and an empty file is refused, never a benchmark of no items
    that matches nothing."""
    from qualgate.io import read_records
    from qualgate.sample import FieldProblem, TextSpec

    spec = TextSpec(text)
    texts: list[str] = []
    ids: list[str] = []
    for row, raw in enumerate(read_records([str(path)], fmt)):
        record = raw.record
        file, line = raw.source.file, raw.source.line if raw.source.unit == "line" else None
        at = "" if raw.source.unit == "line" else f" ({raw.source.unit} {raw.source.line})"
        if record is None:
            why = raw.error[1] if raw.error else "unreadable record"
            raise InputError(f"benchmark '{name}': {why}{at}; a benchmark is read strictly: fix the file",
                             file=file, line=line)
        key = id_field or next((k for k in ID_FIELDS if isinstance(record.get(k), (str, int))), None)
        value = record.get(key) if key else None
        item_id = str(value) if isinstance(value, (str, int)) and not isinstance(value, bool) else f"row {row}"
        try:
            item = spec.render(record)[0]
        except FieldProblem as exc:
            # auto and no known layout: joining every string field would hash solutions and tests with the items
            fields = ", ".join(k for k, v in record.items() if isinstance(v, str) and k != key)
            why = "no known text layout for the auto text view" if spec.kind == "auto" else str(exc)
            raise InputError(f"benchmark '{name}' item {item_id}{at}: {why}; name the fields an item's text is in "
                             f"(it has: {fields or 'none'}) with --benchmark-text {name}=TEMPLATE (bench-index "
                             "build: --text TEMPLATE), e.g. "
                             f"'{{{fields.split(', ')[0] if fields else 'text'}}}'", file=file, line=line) from None
        if not normalize(item):
            raise InputError(f"benchmark '{name}' item {item_id}{at} has no text (text view {text!r}); pass "
                             f"--benchmark-text {name}=TEMPLATE with the fields its items have", file=file, line=line)
        texts.append(item)
        ids.append(item_id)
    if not texts:
        raise InputError(f"benchmark '{name}' file is empty", file=str(path))
    return texts, ids
