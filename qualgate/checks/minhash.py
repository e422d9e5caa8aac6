"""Near-duplicates: same normalised text, or true shingle Jaccard >= threshold with a kept sample.

Hashing (shingles, MinHash signatures, LSH band keys) lives in ``qualgate.minhashing``; this module is the
check. LSH only proposes candidates; nothing is rejected until the true Jaccard of the two shingle sets
(32-bit shingle hashes) reaches the threshold. Keep-first: a sample is compared with the samples
kept before it (and the baseline), never with rejected ones, so duplicates cannot chain. An LSH
bucket holds at most ``max_candidates`` kept samples, so the variants of one template cost what other
samples cost (``index.BandCandidates`` has the rule, which both engines follow).
"""

from __future__ import annotations

import itertools
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
from qualgate.minhashing import VERSION, Shingler, band_keys, optimal_bands, permutations, signatures_flat
from qualgate.preamble import Preamble, drop_field, given_field
from qualgate.sample import FieldProblem, Sample, Source

_CHUNK_PAIRS = 4096  # candidate pairs verified at once: bounds the temporaries for long texts and big batches


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
        #: the last batch's tentatively kept samples (and its features), admitted to the index by ``commit``
        self._pending: tuple[int, int, list[int], MinhashFeatures, I64] | None = None
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

    def _admit(self, feats: MinhashFeatures, rows: Sequence[int], first: int, fill: I64 | None = None) -> None:
        """Add the batch's ``rows`` as kept samples ``first, first+1, ...`` (ids already in ``kept_ids``) to the
        index; their shingle sets move as one flat array. ``fill``: the index's entries in each of the batch's
        buckets (``BandCandidates.fill``; the index has not changed since)."""
        idx = np.asarray(rows, dtype=np.int64)
        globals_ = np.arange(first, first + len(idx), dtype=np.int64)
        self._exact.add(feats.exact[idx], globals_)
        self._lsh.add(feats.bands[idx].ravel(), np.repeat(globals_, self.bands),
                      None if fill is None else fill.reshape(len(feats.exact), -1)[idx].ravel())
        lo, counts = feats.offsets[idx], np.diff(feats.offsets)[idx]
        offsets = np.zeros(len(idx) + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        self._store.extend_flat(feats.flat[ranges(lo, counts)], offsets)

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
        exact, offsets = feats.exact, feats.offsets
        results: list[Measurement | FieldProblem | None] = list(problems)
        exact_hit: dict[int, int] = {}
        for pos, val in zip(*(a.tolist() for a in self._exact.query(exact)), strict=True):
            exact_hit[pos] = min(val, exact_hit.get(pos, val))
        candidates = BandCandidates(self._lsh, feats.bands, self.params.max_candidates)
        # most samples have no candidate at all, in the index or in the batch: no ranking, no Jaccard to compute
        alone = candidates.alone().tolist()
        nothing = Measurement({"exact": 0.0, "jaccard": 0.0}, {})  # read only: the samples alone share it
        known = self._initial_jaccards(candidates, feats)
        first = len(self.kept_ids)
        batch_exact: dict[int, int] = {}
        batch_sets: dict[int, U32] = {}
        admitted: list[int] = []
        found, uses, kept_ids = self._found, self._uses, self.kept_ids
        # readable, eligible, alone and without an exact copy in the index (most samples): kept, unless an
        # earlier sample of the batch has the same exact text
        plain = [a and p is None and e and i not in exact_hit
                 for i, (a, p, e) in enumerate(zip(alone, problems, eligible, strict=True))]
        for i, (s, key) in enumerate(zip(samples, exact.tolist(), strict=True)):
            if plain[i] and key not in batch_exact:  # what the steps below give such a sample, without the look-ups
                results[i], duplicate = nothing, False
            else:
                if results[i] is not None:
                    continue
                kept = exact_hit.get(i, batch_exact.get(key))
                if kept is not None:
                    results[i] = self._measure(1.0, 1.0, kept)
                    found.append((i, kept, s.id))
                    if kept >= first:
                        uses.setdefault(admitted[kept - first], i)
                    continue
                if alone[i]:  # what _judge gives for no candidates
                    results[i], duplicate = nothing, False
                else:
                    ranked, cut, filled = candidates.ranked(i)
                    shingles = feats.flat[offsets[i]:offsets[i + 1]]
                    results[i], best, duplicate = self._judge(self._verify(shingles, i, ranked, first, batch_sets,
                                                                           known))
                    if duplicate:
                        found.append((i, best, s.id))
                    for g in relied_on(ranked, best, cut, first) + filled:
                        uses.setdefault(admitted[g - first], i)
            if not duplicate and eligible[i]:
                g = len(kept_ids)
                kept_ids.append(s.id)
                self.kept_sources.append(source_tuple(s.source))
                admitted.append(i)
                batch_exact[key] = g
                if not alone[i]:  # a sample alone has no later sample of the batch as a candidate either
                    batch_sets[g] = feats.flat[offsets[i]:offsets[i + 1]]
                    candidates.keep(i, g)
        self._pending = (first, len(samples), admitted, feats, candidates.fill)
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
        first, _, admitted, feats, fill = self._pending
        self._pending = None
        flags = [i < len(accepted) and accepted[i] for i in admitted]
        keep = [i for i, f in zip(admitted, flags, strict=True) if f]
        remap = renumber_kept(self.kept_ids, self.kept_sources, first, flags) if len(keep) != len(admitted) else None
        count_found(self.clusters, self.members, self._found, len(accepted), first, remap)
        if keep:
            self._admit(feats, keep, first, fill)

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
        exact = feats.exact
        known = set(self._exact.query(exact)[0].tolist())
        rows, seen = [], set()
        for r, key in enumerate(exact.tolist()):
            if r not in known and key not in seen:
                seen.add(key)
                rows.append(r)
        first = len(self.kept_ids)
        self.kept_ids.extend(samples[usable[r]].id for r in rows)
        self.kept_sources.extend(source_tuple(samples[usable[r]].source) for r in rows)
        self._admit(feats, rows, first)
        self.n_baseline = len(self.kept_ids)
        return len(samples) - len(rows)

    def stored_shingles(self) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
        """The shingle sets of every indexed text (baseline and kept), flat: hashes and offsets."""
        return self._store.arrays()

    def exact_keys(self) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
        """The exact-text hash of every indexed text, and the kept number it maps to."""
        return self._exact.items()

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
