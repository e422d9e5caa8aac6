"""Embedding checks: semantic duplicates, privacy leaks against a private set, outliers from a reference.

Paraphrased repeats pass MinHash (few shared word n-grams) but sit close together in a sentence
embedding space. Vectors are unit length, so inner product = cosine. The model is the packaged
all-MiniLM-L6-v2 unless ``model`` names a local folder; texts beyond the model's token limit
(256 for MiniLM) are embedded from their beginning only.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar

import numpy as np
from pydantic import Field, model_validator

from qualgate.checks.base import (
    Features,
    Measurement,
    Params,
    RunContext,
    SetCheck,
    field_texts,
    pack_sources,
    register,
    source_tuple,
    unpack_sources,
)
from qualgate.checks.minhash import Found, count_found
from qualgate.embed import F32, STATIC_MODEL, Embedder, check_model, shared_embedder
from qualgate.findings import Decision, Finding
from qualgate.index import BandCandidates, KeyIndex, ShingleStore, csr_take, jaccard, pack_strings, unpack_strings
from qualgate.minhashing import Shingler, band_keys, optimal_bands, permutations, signatures_flat
from qualgate.preamble import Preamble, drop_field, given_field
from qualgate.sample import FieldProblem, Sample, Source
from qualgate.vectors import VectorIndex

VERSION = 1  # bump when what is stored in cached set indexes changes


class EmbeddingParams(Params):
    field: str | None = Field(None, description="record field to embed; unset = the configured text view")
    model: str | None = Field(None, description="local sentence-transformers folder; unset = packaged "
                              f"all-MiniLM-L6-v2; '{STATIC_MODEL}' = the torch-free static embeddings of the "
                              "wordllama package (CPU-fast, coarser)")
    device: str = Field("auto", description="auto (CUDA when present), cpu, cuda, cuda:1, ...")
    batch_size: int = Field(64, ge=1, le=4096, description="texts per forward pass")
    window: int = Field(4096, ge=0, le=8192, description="samples read ahead and embedded together, sorted by "
                        "token count so a forward pass pads little (independent of the gate's batch size); 0 = "
                        "embed each gate batch on its own")
    index: Literal["auto", "flat", "hnsw"] = Field("auto", description="faiss index: exact, HNSW, or by size")
    exact_limit: int = Field(100_000, ge=1, description="with index=auto: exact search up to this many vectors")


E = TypeVar("E", bound=EmbeddingParams)


class EmbeddingFeatures(Features):
    """Embeddings computed by an engine's worker, one row per sample of the batch it was given."""

    def __init__(self, vecs: F32) -> None:
        self.vecs = vecs

    def take(self, rows: Sequence[int]) -> EmbeddingFeatures:
        return EmbeddingFeatures(self.vecs[list(rows)])


class _EmbeddingCheck(SetCheck[E], Generic[E]):
    """What every embedding check shares: the model (checked now, loaded at first use) and its index."""

    cost = 70  # after the rules and MinHash: embedding is the expensive part
    model_features = True
    #: a boilerplate prefix dropped before embedding (``qualgate.preamble``; semantic_duplicate only)
    preamble: Preamble | None = None

    def __init__(self, name: str, params: E) -> None:
        super().__init__(name, params)
        check_model(params.model, f"check '{name}' ({self.kind})")  # a wrong path fails before any work starts
        self.cache_dir: Path | None = None
        self._embedder: Embedder | None = None
        self.ids: list[str] = []
        self.sources: list[tuple[str, int, str] | None] = []
        self.n_set = 0
        self._index: VectorIndex | None = None

    def bind(self, context: RunContext) -> None:
        self.cache_dir = context.cache_dir
        self._embedder = None

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            p = self.params
            self._embedder = shared_embedder(p.model, p.device, p.batch_size, self.cache_dir)
        return self._embedder

    @property
    def index(self) -> VectorIndex:
        if self._index is None:
            p = self.params
            self._index = VectorIndex(self.embedder.dim, p.index, p.exact_limit)
        return self._index

    def _embed(self, samples: Sequence[Sample], features: Any = None) -> tuple[F32, list[FieldProblem | None]]:
        """Unit vectors of the samples' field (zeros where it is missing) and the problems; ``features``: the
        vectors an engine's worker already computed for exactly these samples."""
        if isinstance(features, EmbeddingFeatures):
            return features.vecs, field_texts(samples, self.params.field)[1]
        todo, ok, problems = self._to_embed(samples)
        return self.features_from((todo, ok, len(samples))).vecs, problems

    def _to_embed(self, samples: Sequence[Sample]) -> tuple[list[str], list[int], list[FieldProblem | None]]:
        """The texts to embed (the readable samples' field, shared preamble dropped), their positions, and every
        sample's problem."""
        texts, problems = field_texts(samples, self.params.field)
        if self.preamble is not None:
            texts = self.preamble.strip_all(texts)
        ok = [i for i, p in enumerate(problems) if p is None]
        return [texts[i] for i in ok], ok, problems

    def prefetch(self, samples: Sequence[Sample]) -> None:
        """Embed now what ``_embed`` will ask for in the coming batches (``read_ahead``): one call over a window of
        samples lets the embedder sort them by token count, and the vectors wait in its memory."""
        self.embedder.encode(self._to_embed(samples)[0])

    def feature_input(self, samples: Sequence[Sample]) -> Any | None:
        """Texts to embed, only where an engine asked for model work in its workers (``features_in_workers``:
        the Ray engine, whose actors may hold GPUs); the local engine embeds in this process."""
        if not self.features_in_workers:
            return None
        todo, ok, _ = self._to_embed(samples)
        return todo, ok, len(samples)

    def features_from(self, data: Any) -> EmbeddingFeatures:
        """Unit vectors of ``feature_input``'s texts at their positions, zeros for unreadable samples."""
        todo, ok, n = data
        vecs = np.zeros((n, self.embedder.dim), dtype=np.float32)
        if ok:
            vecs[ok] = self.embedder.encode(todo)
        return EmbeddingFeatures(vecs)

    def _remember(self, samples: Sequence[Sample]) -> None:
        self.ids.extend(s.id for s in samples)
        self.sources.extend(source_tuple(s.source) for s in samples)

    def cache_token(self) -> str:
        p = self.params
        return (f"{self.kind}-v{VERSION}:{self.embedder.fingerprint}:{p.field}:{p.index}:{p.exact_limit}:"
                f"{self._set_token()}")

    def _set_token(self) -> str:
        return ""

    def export_state(self) -> dict[str, Any]:
        ids, offsets = pack_strings(self.ids)
        return {**self.index.state("vec_"), "ids": ids, "id_offsets": offsets, **pack_sources(self.sources)}

    def import_state(self, arrays: Mapping[str, Any]) -> None:
        self.index.load_state(arrays, "vec_")
        self.ids = unpack_strings(arrays["ids"], arrays["id_offsets"])
        self.sources = unpack_sources(arrays)
        if not len(self.ids) == len(self.sources) == self.index.size:
            raise ValueError(f"{len(self.ids)} ids, {len(self.sources)} sources and {self.index.size} vectors")
        self.n_set = len(self.ids)

    @property
    def n_baseline(self) -> int:
        return self.n_set

    def describe(self) -> dict[str, Any]:
        return {"embedder": self.embedder.describe(), "index": self.index.describe()}


def read_ahead(batches: Iterator[Any], checks: Sequence[Any],
               all_findings: bool) -> Iterator[tuple[list[Decision], Any]]:
    """``batches`` (decisions after the per-sample checks, with any worker features) unchanged and in order, each
    ``window`` samples of them first shown to the embedding checks among ``checks`` (``prefetch``).

    A gate batch holds 512 samples, the survivors of the rules fewer: forward passes cut from so few texts mix
    lengths and pad the short ones up to the long ones. The Embedder sorts what it is given by token count, so
    a window of a few thousand gives passes of near-equal lengths (1,000 Alpaca texts: 0.74x the CPU time of one
    ``SentenceTransformer.encode`` over them, against 1.04x one call per gate batch; ``bench_embed.py grouping``).
    The vectors do not depend on which texts share a forward pass (beyond float rounding), so neither do decisions.
    Samples that a later set check of the same batch rejects (a MinHash near-duplicate) are embedded anyway.
    """
    from qualgate.engines.base import alive  # engines import the checks: not at module level

    wanting = [c for c in checks if isinstance(c, _EmbeddingCheck) and c.params.window and not c.features_in_workers]
    if not wanting:
        yield from batches
        return
    window = max(c.params.window for c in wanting)
    while True:
        held: list[tuple[list[Decision], Any]] = []
        n = 0
        for item in batches:
            held.append(item)
            n += len(item[0])
            if n >= window:
                break
        if not held:
            return
        seen = [d.sample for decisions, _ in held for d in decisions if alive(d, all_findings)]  # the next check's
        if seen:
            for check in wanting:
                check.prefetch(seen)
        yield from held


def _jaccard(a: Any, b: Any) -> float:
    """Jaccard of two shingle sets; 0 when either has no words (two symbol-only texts are not a copy)."""
    return jaccard(a, b) if len(a) and len(b) else 0.0


# ------------------------------------------------------------------------------ semantic duplicate
#: ``semantic_duplicate``'s threshold when none is given: per backend, measured on Alpaca (bench/RESULTS.md)
def default_of_model(data: Any, key: str, defaults: Mapping[str | None, float]) -> Any:
    """A params validator's body (mode "before"): ``key`` left unset takes the default of the configured ``model``
    (``defaults[None]`` for the packaged one), since each model's cosines sit on its own scale."""
    if isinstance(data, dict) and data.get(key) is None:
        return {**data, key: defaults.get(data.get("model"), defaults[None])}
    return data


DEFAULT_THRESHOLD = {None: 0.9, STATIC_MODEL: 0.92}


class SemanticDuplicateParams(EmbeddingParams):
    threshold: float = Field(DEFAULT_THRESHOLD[None], gt=0, le=1,
                             description="cosine at or above which a sample repeats a kept one; "
                             f"unset = {DEFAULT_THRESHOLD[None]}, with model {STATIC_MODEL} "
                             f"{DEFAULT_THRESHOLD[STATIC_MODEL]}")
    max_cluster_size: int = Field(100, ge=1, description="warn when one kept sample absorbs more duplicates")
    partitions: int = Field(0, ge=0, description="Ray engine: 0 = exact search; K > 0 = SemDeDup, K k-means "
                            "partitions searched independently (faster at scale, misses pairs split across "
                            "partitions); the local engine always searches exactly")
    max_neighbours: int = Field(100, ge=1, description="with partitions: earlier neighbours listed per sample")
    drop_shared_prefix: bool = drop_field()
    shared_prefix: str | None = given_field()

    @model_validator(mode="before")
    @classmethod
    def _threshold_of_model(cls, data: Any) -> Any:
        """The static model has its own default, the one that agreed best with MiniLM's decisions on Alpaca."""
        return default_of_model(data, "threshold", DEFAULT_THRESHOLD)


class NeighbourFeatures(Features):
    """A batch's neighbours found by an engine's partitioned search instead of this process's index.

    Per row: its global ``position`` (the set's records first, then the input in order) and, at
    ``offsets[r]:offsets[r+1]``, the earlier positions of its partition with cosine >= threshold, best first
    (highest cosine, then earliest). Which of them were kept is known only in order: the check looks it up.
    """

    def __init__(self, position: Any, offsets: Any, neighbour: Any, cosine: Any) -> None:
        self.position, self.offsets, self.neighbour, self.cosine = position, offsets, neighbour, cosine

    def take(self, rows: Sequence[int]) -> NeighbourFeatures:
        offsets, picked = csr_take(self.offsets, rows)
        return NeighbourFeatures(self.position[list(rows)], offsets, self.neighbour[picked], self.cosine[picked])


@register
class SemanticDuplicate(_EmbeddingCheck[SemanticDuplicateParams]):
    """Sample says what a kept or baseline sample already said: embedding cosine >= threshold."""

    kind = "semantic_duplicate"
    params_model = SemanticDuplicateParams
    score_names = ("cosine",)
    keeps_first = True

    def __init__(self, name: str, params: SemanticDuplicateParams) -> None:
        super().__init__(name, params)
        self.clusters: Counter[int] = Counter()
        self.members: dict[int, list[str]] = {}
        #: the last batch's tentatively kept samples: first number, batch size, their rows, vectors, samples
        self._pending: tuple[int, int, list[int], F32, list[Sample]] | None = None
        #: with engine-found neighbours (``NeighbourFeatures``): kept number by global position
        self._by_position: dict[int, int] | None = None
        self._pending_positions: list[int] = []
        #: the last batch's duplicates, counted into ``clusters`` by ``commit``; its ``tentative_uses``
        self._found: list[Found] = []
        self._uses: dict[int, int] = {}
        self.preamble = Preamble(params.drop_shared_prefix, params.shared_prefix)

    def _set_token(self) -> str:
        """The prefix rule changes what the baseline's vectors are of."""
        p = self.params
        return f"{p.drop_shared_prefix}:{p.shared_prefix!r}:{Preamble.token()}"

    def _note_prefix(self, out: Sequence[Measurement | FieldProblem], samples: Sequence[Sample]) -> None:
        """Duplicates whose text was embedded without the shared prefix say so in their evidence."""
        if self.preamble is not None and self.preamble.prefix is not None:
            texts, _ = field_texts([samples[i] for i, _, _ in self._found], self.params.field)
            for (i, _, _), text in zip(self._found, texts, strict=True):
                if isinstance(m := out[i], Measurement):
                    self.preamble.note(m.evidence, text)

    def _flush(self) -> None:
        if self._pending is not None:
            self.commit([True] * self._pending[1])

    def commit(self, accepted: Sequence[bool]) -> None:
        """Admit the last batch's tentatively kept samples that were finally accepted."""
        if self._pending is None:
            return
        first, _, rows_in_batch, vecs, kept = self._pending
        self._pending = None
        flags = [i < len(accepted) and accepted[i] for i in rows_in_batch]
        rows = [t for t, f in enumerate(flags) if f]
        remap = {first + t: first + k for k, t in enumerate(rows)}  # tentative number -> number once admitted
        count_found(self.clusters, self.members, self._found, len(accepted), first, remap)
        if self._by_position is not None:  # neighbours came from the engine: no vector index to grow
            for t, position in enumerate(self._pending_positions):
                if flags[t]:
                    self._by_position[position] = remap[first + t]
                else:
                    del self._by_position[position]
        else:
            self.index.add(vecs[rows])
        self._remember([kept[t] for t in rows])

    def tentative_uses(self) -> Mapping[int, int]:
        return self._uses

    def _score_neighbours(self, samples: Sequence[Sample], eligible: Sequence[bool],
                          f: NeighbourFeatures) -> list[Measurement | FieldProblem]:
        """``score_batch`` on an engine's partitioned search (SemDeDup): a sample repeats the first kept sample
        of its best-first neighbour list. Non-duplicates get no "nearest" evidence: the lists hold only
        neighbours at or above the threshold, and only from the sample's own partition."""
        if self._by_position is None:
            self._by_position = {g: g for g in range(self.n_set)}
        by_position = self._by_position
        _, problems = field_texts(samples, self.params.field)
        first = len(self.ids)
        admitted: list[int] = []
        self._pending_positions = []
        out: list[Measurement | FieldProblem] = []
        offsets = f.offsets.tolist()
        for i, s in enumerate(samples):
            problem = problems[i]
            if problem is not None:
                out.append(problem)
                continue
            a, b = offsets[i], offsets[i + 1]
            hit = next(((g, c) for p, c in zip(f.neighbour[a:b].tolist(), f.cosine[a:b].tolist(), strict=True)
                        if (g := by_position.get(p)) is not None), None)
            if hit is not None:  # the first kept one of the list: one kept after it would not change that
                g, sim = hit
                out.append(self._duplicate(sim, g, samples[admitted[g - first]] if g >= first else None))
                self._found.append((i, g, s.id))
                if g >= first:
                    self._uses.setdefault(admitted[g - first], i)
                continue
            out.append(Measurement({"cosine": None}, {}))
            if eligible[i]:
                by_position[int(f.position[i])] = first + len(admitted)
                self._pending_positions.append(int(f.position[i]))
                admitted.append(i)
        self._pending = (first, len(samples), admitted, np.empty((0, 0), np.float32), [samples[i] for i in admitted])
        self._note_prefix(out, samples)
        return out

    def score_batch(self, samples: Sequence[Sample], eligible: Sequence[bool],
                    features: Any = None) -> list[Measurement | FieldProblem]:
        self._flush()
        self._found, self._uses = [], {}
        if isinstance(features, NeighbourFeatures):
            return self._score_neighbours(samples, eligible, features)
        vecs, problems = self._embed(samples, features)
        best_sim, best_id = self.index.search(vecs, 1)
        first = self.index.size
        within = vecs @ vecs.T
        admitted: list[int] = []
        out: list[Measurement | FieldProblem] = []
        for i, s in enumerate(samples):
            problem = problems[i]
            if problem is not None:
                out.append(problem)
                continue
            sim, g = float(best_sim[i, 0]), int(best_id[i, 0])
            if admitted:  # kept earlier in this batch; ties go to the older (index) sample
                row = within[i, admitted]
                j = int(np.argmax(row))
                if float(row[j]) > sim:
                    sim, g = float(row[j]), first + j
                    # the result relies on this kept sample only: without any other, it would be the same
                    self._uses.setdefault(admitted[j], i)
            if g >= 0 and sim >= self.params.threshold:
                kept = samples[admitted[g - first]] if g >= first else None
                out.append(self._duplicate(sim, g, kept))
                self._found.append((i, g, s.id))
                continue
            evidence = {"nearest": self.ids[g] if g < first else samples[admitted[g - first]].id,
                        "nearest_cosine": round(sim, 6)} if g >= 0 else {}
            out.append(Measurement({"cosine": round(sim, 6) if g >= 0 else None}, evidence))
            if eligible[i]:
                admitted.append(i)
        self._pending = (first, len(samples), admitted, vecs[admitted], [samples[i] for i in admitted])
        self._note_prefix(out, samples)
        return out

    def _duplicate(self, sim: float, g: int, kept: Sample | None) -> Measurement:
        """``kept`` is the kept sample when it was admitted earlier in this batch (not yet in ``ids``)."""
        ev: dict[str, Any] = {"duplicate_of": kept.id if kept else self.ids[g], "cosine": round(sim, 6),
                              "in_baseline": g < self.n_set}
        src = source_tuple(kept.source) if kept else self.sources[g]
        if src is not None:
            ev["duplicate_source"] = Source(*src).to_dict()
        return Measurement({"cosine": round(sim, 6)}, ev)

    def score_limits(self) -> dict[str, list[float]]:
        return {"cosine": [self.params.threshold]}

    def decide(self, m: Measurement) -> list[Finding]:
        ev = m.evidence
        if "duplicate_of" not in ev:
            return []
        cos = m.values["cosine"] or 0.0
        where = " in the baseline" if ev.get("in_baseline") else ""
        if dropped := ev.get("shared_prefix_dropped"):
            where += f", after dropping the shared {dropped['words']}-word prefix"
        return [self.finding("semantic_duplicate", cos, self.params.threshold,
                             f"says the same as kept sample {ev['duplicate_of']}{where} "
                             f"(cosine {cos:.3f} >= {self.params.threshold})", **ev)]

    def add_baseline(self, samples: Sequence[Sample]) -> int:
        """Index baseline samples (every usable one; returns how many lacked the field)."""
        self._flush()
        if self.preamble is not None:
            texts, problems = field_texts(samples, self.params.field)
            self.preamble.fit([t for t, p in zip(texts, problems, strict=True) if p is None], "baseline")
        vecs, problems = self._embed(samples)
        ok = [i for i, p in enumerate(problems) if p is None]
        self.index.add(vecs[ok])
        self._remember([samples[i] for i in ok])
        self.n_set = len(self.ids)
        return len(samples) - len(ok)

    def export_state(self) -> dict[str, Any]:
        self._flush()
        return {**super().export_state(), **(self.preamble.state() if self.preamble else {})}

    def import_state(self, arrays: Mapping[str, Any]) -> None:
        super().import_state(arrays)
        if self.preamble is not None:
            self.preamble.load(arrays)

    def report_section(self) -> dict[str, Any]:
        self._flush()
        top = sorted(self.clusters.items(), key=lambda kv: (-kv[1], kv[0]))[:10]
        largest = [{"kept": self.ids[g], "in_baseline": g < self.n_set, "duplicates": n,
                    "examples": self.members.get(g, [])} for g, n in top if g < len(self.ids)]
        limit = self.params.max_cluster_size
        warnings = [f"kept sample {self.ids[g]} absorbed {n} semantic duplicates (more than max_cluster_size="
                    f"{limit}): the generator may circle one answer" for g, n in top if n > limit]
        if self.params.partitions and self._by_position is None:
            warnings.append(f"partitions: {self.params.partitions} applies to the Ray engine only: this run searched "
                            "exactly")
        search = f"SemDeDup, {self.params.partitions} partitions" if self._by_position is not None else "exact"
        prefix = self.preamble.section() if self.preamble else None
        return {**self.describe(), "search": search, "kept": len(self.ids) - self.n_set, "baseline": self.n_set,
                "largest_clusters": largest, "warnings": warnings, **({"shared_prefix": prefix} if prefix else {})}


# ------------------------------------------------------------------------------------ private leak
class PrivateLeakParams(EmbeddingParams):
    cosine: float = Field(0.9, gt=0, le=1, description="embedding cosine to a private record at which to reject")
    jaccard: float = Field(0.5, gt=0, le=1, description="word n-gram Jaccard to a private record at which to reject")
    ngram: int = Field(3, ge=1, le=16, description="word n-gram size for the Jaccard comparison")
    num_perm: int = Field(128, ge=16, le=1024, description="MinHash permutations for Jaccard candidates")
    k: int = Field(5, ge=1, le=100, description="nearest private records by cosine that are also compared by Jaccard")
    max_candidates: int = Field(100, ge=1, description="MinHash candidates verified per sample")


@register
class PrivateLeak(_EmbeddingCheck[PrivateLeakParams]):
    """Sample copies or closely paraphrases a record of the private set (cosine or word n-gram Jaccard).

    Only private records' ids and the two scores are ever written; their text stays out of every output. A
    private record without the id field is named by its content hash (xxh3-64 of its key-sorted JSON, as
    ``make_sample`` computes it), which identifies it without showing any of it.
    """

    kind = "private_leak"
    params_model = PrivateLeakParams
    score_names = ("cosine", "jaccard")
    compares_with = "private"

    def __init__(self, name: str, params: PrivateLeakParams) -> None:
        super().__init__(name, params)
        self.shingler = Shingler(params.ngram, "word")
        self.perms = permutations(params.num_perm, 1)
        self.bands, self.rows = optimal_bands(params.jaccard, params.num_perm)
        self._lsh = KeyIndex(fingerprint=True, cap=params.max_candidates)  # a template's bucket stays small
        self._store = ShingleStore()

    def _set_token(self) -> str:
        p = self.params
        return f"{p.ngram}:{p.num_perm}:{self.bands}x{self.rows}:{p.max_candidates}"

    def _shingles(self, samples: Sequence[Sample]) -> tuple[list[Any], Any]:
        texts = [self.shingler.normalize(t) for t in field_texts(samples, self.params.field)[0]]
        flat, offsets = self.shingler.hash_flat(texts)
        sets = np.split(flat, offsets[1:-1]) if len(texts) else []
        return sets, band_keys(signatures_flat(flat, offsets, self.perms), self.bands, self.rows)

    def add_baseline(self, samples: Sequence[Sample]) -> int:
        """Index private records (returns how many lacked the field and were left out)."""
        vecs, problems = self._embed(samples)
        ok = [i for i, p in enumerate(problems) if p is None]
        kept = [samples[i] for i in ok]
        sets, bands = self._shingles(kept)
        first = len(self.ids)
        self.index.add(vecs[ok])
        self._store.extend(sets)
        worded = np.asarray([t for t, x in enumerate(sets) if len(x)], dtype=np.int64)  # no words: no Jaccard
        self._lsh.add(bands[worded].ravel(), np.repeat(first + worded, self.bands))
        self._remember(kept)
        self.n_set = len(self.ids)
        return len(samples) - len(ok)

    def export_state(self) -> dict[str, Any]:
        flat, offsets = self._store.arrays()
        return {**super().export_state(), "shingles": flat, "offsets": offsets,
                **{f"lsh_{k}": v for k, v in self._lsh.state().items()}}

    def import_state(self, arrays: Mapping[str, Any]) -> None:
        super().import_state(arrays)
        self._store = ShingleStore.from_arrays(arrays["shingles"], arrays["offsets"])
        self._lsh = KeyIndex.from_state({k: arrays[f"lsh_{k}"] for k in ("keys", "vals", "n")})

    def score_batch(self, samples: Sequence[Sample], eligible: Sequence[bool],
                    features: Any = None) -> list[Measurement | FieldProblem]:
        p = self.params
        vecs, problems = self._embed(samples, features)
        _, near = self.index.search(vecs, p.k)
        sets, bands = self._shingles(samples)
        lsh = BandCandidates(self._lsh, bands, p.max_candidates)  # the near_duplicate rule, nothing kept here
        stored = self.index.vectors()
        out: list[Measurement | FieldProblem] = []
        for i in range(len(samples)):
            problem = problems[i]
            if problem is not None:
                out.append(problem)
                continue
            candidates = sorted({int(g) for g in near[i] if g >= 0} | set(lsh.ranked(i)[0]))
            if not candidates:
                out.append(Measurement({"cosine": None, "jaccard": None}))
                continue
            cos = stored[candidates] @ vecs[i]
            jac = [_jaccard(sets[i], self._store.get(g)) for g in candidates]
            # the record that comes closest to either threshold is the one to name
            closeness = [max(float(c) / p.cosine, j / p.jaccard) for c, j in zip(cos, jac, strict=True)]
            w = int(np.argmax(closeness))
            ev: dict[str, Any] = {"private_id": self.ids[candidates[w]], "cosine": round(float(cos[w]), 6),
                                  "jaccard": round(jac[w], 6)}
            out.append(Measurement({"cosine": round(float(cos.max()), 6), "jaccard": round(max(jac), 6)}, ev))
        return out

    def decide(self, m: Measurement) -> list[Finding]:
        ev = m.evidence
        if "private_id" not in ev:
            return []
        cos, jac = ev["cosine"], ev["jaccard"]
        if cos < self.params.cosine and jac < self.params.jaccard:
            return []
        by_cos = cos >= self.params.cosine
        score, threshold = (cos, self.params.cosine) if by_cos else (jac, self.params.jaccard)
        what = f"cosine {cos:.3f}" + (f" >= {self.params.cosine}" if by_cos else "") + f", Jaccard {jac:.2f}" + (
            "" if by_cos else f" >= {self.params.jaccard}")
        return [self.finding("private_leak", score, threshold,
                             f"too close to private record {ev['private_id']} ({what})", **ev)]

    def report_section(self) -> dict[str, Any]:
        return {**self.describe(), "private_records": self.n_set, "bands": self.bands, "rows": self.rows,
                "warnings": []}


# ----------------------------------------------------------------------------------------- outlier
class OutlierParams(EmbeddingParams):
    quantile: float = Field(0.99, gt=0.5, lt=1, description="reference's own nearest-neighbour distance quantile")
    margin: float = Field(0.0, ge=0, le=1, description="added to the reference quantile before rejecting")


@register
class Outlier(_EmbeddingCheck[OutlierParams]):
    """Sample lies farther from every reference sample than nearly all reference samples lie from each other."""

    kind = "outlier"
    params_model = OutlierParams
    score_names = ("distance",)
    compares_with = "reference"

    min_set_size = 2  # a reference sample needs a neighbour to measure the reference's own spread

    def __init__(self, name: str, params: OutlierParams) -> None:
        super().__init__(name, params)
        self._nn: Any = None  # the reference's own nearest-neighbour distances

    def add_baseline(self, samples: Sequence[Sample]) -> int:
        """Index reference samples (returns how many lacked the field)."""
        vecs, problems = self._embed(samples)
        ok = [i for i, p in enumerate(problems) if p is None]
        self.index.add(vecs[ok])
        self._remember([samples[i] for i in ok])
        self.n_set = len(self.ids)
        self._nn = None
        return len(samples) - len(ok)

    @property
    def nn_distances(self) -> Any:
        if self._nn is None:
            sims, ids = self.index.search(self.index.vectors(), 2)
            own = np.arange(self.index.size)
            self._nn = 1.0 - np.where(ids[:, 0] == own, sims[:, 1], sims[:, 0])  # skip the sample itself
        return self._nn

    @property
    def limit(self) -> float:
        """Cosine distance beyond which a sample is an outlier: the reference's own NN-distance quantile."""
        if self.index.size < 2:
            raise ValueError(f"check '{self.name}' needs at least 2 reference samples")
        return float(np.quantile(self.nn_distances, self.params.quantile)) + self.params.margin

    def export_state(self) -> dict[str, Any]:
        return {**super().export_state(), "nn": np.asarray(self.nn_distances, dtype=np.float64)}

    def import_state(self, arrays: Mapping[str, Any]) -> None:
        super().import_state(arrays)
        nn = np.asarray(arrays["nn"], dtype=np.float64)
        if nn.shape != (self.index.size,) or np.isnan(nn).any():  # inf is real: a one-sample reference
            raise ValueError("stored nearest-neighbour distances do not fit the stored vectors")
        self._nn = nn

    def score_batch(self, samples: Sequence[Sample], eligible: Sequence[bool],
                    features: Any = None) -> list[Measurement | FieldProblem]:
        vecs, problems = self._embed(samples, features)
        sims, ids = self.index.search(vecs, 1)
        limit = round(self.limit, 6)
        out: list[Measurement | FieldProblem] = []
        for i in range(len(samples)):
            problem = problems[i]
            if problem is not None:
                out.append(problem)
            elif ids[i, 0] < 0:
                out.append(Measurement({"distance": None}))
            else:
                dist = round(1.0 - float(sims[i, 0]), 6)
                out.append(Measurement({"distance": dist}, {"nearest_reference": self.ids[int(ids[i, 0])],
                                                            "distance": dist, "limit": limit}))
        return out

    def restore_for_decide(self, section: dict[str, Any] | None) -> str | None:
        return ("its limit is a quantile of the reference's nearest-neighbour distances, which a run does not "
                "store; re-run the gate to change it")

    def decide(self, m: Measurement) -> list[Finding]:
        dist = m.values["distance"]
        limit = self.limit
        if dist is None or dist <= limit:
            return []
        return [self.finding("outlier", dist, round(limit, 6),
                             f"farther from every reference sample (cosine distance {dist:.3f}) than "
                             f"{self.params.quantile:.0%} of the reference lies from its nearest neighbour "
                             f"({limit:.3f})", **m.evidence)]

    def report_section(self) -> dict[str, Any]:
        limit = round(self.limit, 6) if self.index.size >= 2 else None
        return {**self.describe(), "reference_records": self.n_set, "limit": limit, "warnings": []}
