"""Rephrased benchmark items: the embedding stage of benchmark decontamination.

Word n-grams (``contamination``) find a benchmark item copied, re-wrapped or lightly edited; a paraphrase
shares few of them. Here every benchmark item (its text as the benchmark template renders it) is embedded
once, and each sample is compared by cosine with all of them: the whole sample, and its passages, because a
contaminated sample usually carries the question inside a longer answer, where it weighs little in the whole
text's vector. Passages are the sample's paragraphs and each run of 2 and of 3 consecutive sentences (lines
of a paragraph are joined and list markers dropped first, so re-wrapped text reads as prose).

Only benchmark names, item ids, the cosine and the offsets of the sample's own passage are written: no
benchmark text. The items' vectors go through the embedder's disk cache (keyed by model and text) and the
gate keeps the index like any other set's. Cosine measures "about the same thing", not "copied": a sample on
the same topic as an item (photosynthesis, the planets) comes close too, which is why the default threshold
sits high and recall on paraphrases is partial (bench/RESULTS.md).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from pydantic import Field, model_validator

from qualgate.checks.base import Measurement, field_texts, register
from qualgate.checks.contamination import BenchmarkCheck
from qualgate.checks.embedding import EmbeddingParams, _EmbeddingCheck, default_of_model
from qualgate.decontam import Benchmark
from qualgate.embed import STATIC_MODEL
from qualgate.findings import Finding
from qualgate.index import pack_strings, unpack_strings
from qualgate.sample import FieldProblem, Sample

#: the threshold when none is given, per backend (bench/bench_decontam.py, bench/RESULTS.md). MiniLM: above the
#: highest cosine of 2,300 random clean Alpaca records to our 60 items (0.75), where answers that restate a trivia
#: item begin (0.81-0.86); it finds 50 of 60 hand-written paraphrases (0.75: 58). wordllama: 15 of 52k Alpaca
#: records (12 of them same-topic only), a third of the paraphrases.
DEFAULT_COSINE = {None: 0.8, STATIC_MODEL: 0.85}

_PARAGRAPH = re.compile(r"\n[ \t]*\n\s*")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_MARKER = re.compile(r"(?m)^[ \t]*(?:[-*\u2022]|\d{1,3}[.)])[ \t]+")
_SPACE = re.compile(r"\s+")


def _flat(text: str) -> str:
    """A passage as the model reads it: list markers dropped, lines joined."""
    return _SPACE.sub(" ", _MARKER.sub("", text)).strip()


def passages(text: str, sizes: Sequence[int], min_words: int, limit: int) -> list[tuple[int, int, str]]:
    """The units a sample is compared by: (start, end, what) in ``text``; the whole text first, then its
    paragraphs (when there are several) and every run of ``sizes`` consecutive sentences (when there are more
    sentences than that), at least ``min_words`` words each, from the first ``limit`` paragraphs and sentences."""
    out = [(0, len(text), "text")]
    paras, at = [], 0
    for m in [*_PARAGRAPH.finditer(text), None]:
        end = m.start() if m is not None else len(text)
        if text[at:end].strip():
            paras.append((at, end))
        at = m.end() if m is not None else at
    paras = paras[:limit]
    if len(paras) > 1:
        out += [(s, e, "paragraph") for s, e in paras]
    sentences: list[tuple[int, int]] = []
    for s, e in paras:
        at = s
        for m in _SENTENCE_END.finditer(text, s, e):
            if m.start() > at:
                sentences.append((at, m.start()))
            at = m.end()
        if at < e:
            sentences.append((at, e))
    sentences = sentences[:limit]
    for size in sizes:
        if len(sentences) > size:
            out += [(sentences[i][0], sentences[i + size - 1][1], "sentences")
                    for i in range(len(sentences) - size + 1)]
    seen: set[tuple[int, int]] = set()
    kept = []
    for s, e, what in out:
        if (s, e) in seen or (what != "text" and len(text[s:e].split()) < min_words):
            continue
        seen.add((s, e))
        kept.append((s, e, what))
    return kept


class ContaminationRephraseParams(EmbeddingParams):
    cosine: float = Field(DEFAULT_COSINE[None], gt=0, le=1,
                          description="cosine to a benchmark item at or above which a sample is rejected; unset = "
                          f"{DEFAULT_COSINE[None]}, with model {STATIC_MODEL} {DEFAULT_COSINE[STATIC_MODEL]}")
    benchmarks: list[str] = Field(default_factory=list, description="names of the loaded benchmarks (--benchmark "
                                  "NAME=PATH) to compare with; empty = all of them")
    sentences: list[Annotated[int, Field(ge=1, le=20)]] = Field(
        [2, 3], max_length=5, description="sizes of the runs of consecutive sentences compared besides the whole "
        "sample and its paragraphs; [] = whole sample and paragraphs only")
    min_words: int = Field(8, ge=1, description="passages shorter than this many words are not compared (the whole "
                           "sample always is)")
    max_sentences: int = Field(200, ge=1, description="sentences (and paragraphs) of a sample cut into passages; "
                               "later ones are only seen in the whole sample's vector (from its beginning: the "
                               "model reads 256 tokens)")
    window: int = Field(0, ge=0, le=0, description="not used: passages are embedded per gate batch (a batch's "
                        "thousands of passages sort into even forward passes already)")

    @model_validator(mode="before")
    @classmethod
    def _cosine_of_model(cls, data: Any) -> Any:
        """The static model's cosines run higher for unrelated texts: it has its own default."""
        return default_of_model(data, "cosine", DEFAULT_COSINE)


@register
class ContaminationRephrase(_EmbeddingCheck[ContaminationRephraseParams],
                            BenchmarkCheck[ContaminationRephraseParams]):
    """Sample (or a passage of it) says what a benchmark item says: embedding cosine >= threshold."""

    kind = "contamination_rephrase"
    params_model = ContaminationRephraseParams
    score_names = ("cosine",)
    decision_params = frozenset({"cosine"})
    model_features = False  # passages, not one vector per sample: scored here, not in an engine's workers

    def __init__(self, name: str, params: ContaminationRephraseParams) -> None:
        super().__init__(name, params)
        self.bench_names: list[str] = []
        self.item_bench = np.zeros(0, dtype=np.int32)

    def _set_token(self) -> str:
        return ",".join(self.params.benchmarks)

    def use_benchmarks(self, benchmarks: Sequence[Benchmark], cache_dir: str | Path | None) -> None:
        """Embed the items of ``benchmarks`` (their texts as the benchmark's template renders them) into the index;
        with ``cache_dir``, through the embedder's disk cache there (vectors keyed by model and text)."""
        if cache_dir is not None and self.cache_dir is None:
            self.cache_dir, self._embedder = Path(cache_dir), None
        for bench in benchmarks:
            texts, ids = bench.items()
            self._add(bench.name, self.embedder.encode(texts), ids)

    def add_baseline(self, samples: Sequence[Sample]) -> int:
        """Library use: embed ``samples`` (their field, named by their ids) as a benchmark called "samples"."""
        vecs, problems = self._embed(samples)
        ok = [i for i, p in enumerate(problems) if p is None]
        self._add("samples", vecs[ok], [samples[i].id for i in ok])
        return len(samples) - len(ok)

    def _add(self, name: str, vecs: Any, ids: Sequence[str]) -> None:
        self.index.add(vecs)
        if name not in self.bench_names:
            self.bench_names.append(name)
        label = np.full(len(ids), self.bench_names.index(name), dtype=np.int32)
        self.item_bench = np.concatenate([self.item_bench, label])
        self.ids.extend(str(i) for i in ids)
        self.sources.extend([None] * len(ids))
        self.n_set = len(self.ids)

    def export_state(self) -> dict[str, Any]:
        names, offsets = pack_strings(self.bench_names)
        return {**super().export_state(), "bench_names": names, "bench_offsets": offsets,
                "item_bench": self.item_bench}

    def import_state(self, arrays: Mapping[str, Any]) -> None:
        super().import_state(arrays)
        self.bench_names = unpack_strings(arrays["bench_names"], arrays["bench_offsets"])
        self.item_bench = np.asarray(arrays["item_bench"], dtype=np.int32)
        if len(self.item_bench) != self.n_set:
            raise ValueError(f"{len(self.item_bench)} benchmark labels for {self.n_set} items")

    def prefetch(self, samples: Sequence[Sample]) -> None:
        """Nothing to read ahead (``window`` is 0): a batch's passages are embedded together in ``score_batch``."""

    def score_batch(self, samples: Sequence[Sample], eligible: Sequence[bool],
                    features: Any = None) -> list[Measurement | FieldProblem]:
        p = self.params
        texts, problems = field_texts(samples, p.field)
        units: list[tuple[int, int, int, str]] = []  # sample, start, end, what
        for i, (text, problem) in enumerate(zip(texts, problems, strict=True)):
            if problem is None:
                units += [(i, s, e, what) for s, e, what in passages(text, p.sentences, p.min_words, p.max_sentences)]
        best: dict[int, tuple[float, int, int]] = {}  # sample -> cosine, item, unit
        if units and self.index.size:
            vecs = self.embedder.encode([_flat(texts[i][s:e]) or texts[i][s:e] for i, s, e, _ in units])
            sims, near = self.index.search(vecs, 1)
            for u, (i, *_rest) in enumerate(units):
                g = int(near[u, 0])
                if g >= 0 and (i not in best or sims[u, 0] > best[i][0]):
                    best[i] = (float(sims[u, 0]), g, u)
        out: list[Measurement | FieldProblem] = []
        for i, problem in enumerate(problems):
            if problem is not None:
                out.append(problem)
                continue
            if i not in best:
                out.append(Measurement({"cosine": None}))
                continue
            cos, g, u = best[i]
            _, start, end, what = units[u]
            cos = round(cos, 6)
            out.append(Measurement({"cosine": cos}, {
                "benchmark": self.bench_names[int(self.item_bench[g])], "item_id": self.ids[g], "cosine": cos,
                "part": what, "start": start, "end": end}))
        return out

    def score_limits(self) -> dict[str, list[float]]:
        return {"cosine": [self.params.cosine]}

    def decide(self, m: Measurement) -> list[Finding]:
        cos = m.values["cosine"]
        if cos is None or cos < self.params.cosine:
            return []
        ev = m.evidence
        part = {"paragraph": "a paragraph", "sentences": "a run of sentences"}.get(ev["part"])
        where = f" ({part} of it, characters {ev['start']}-{ev['end']})" if part else ""
        return [self.finding("contamination_rephrase", cos, self.params.cosine,
                             f"says what item {ev['item_id']} of benchmark {ev['benchmark']} says{where}: "
                             f"cosine {cos:.3f} >= {self.params.cosine}", **ev)]

    def restore_for_decide(self, section: dict[str, Any] | None) -> str | None:
        return None  # the stored cosine and its evidence are all a decision needs

    def report_section(self) -> dict[str, Any]:
        counts = np.bincount(self.item_bench, minlength=len(self.bench_names)).tolist()
        return {**self.describe(), "benchmarks": [{"name": name, "items": n}  # the shape contamination's has
                                                  for name, n in zip(self.bench_names, counts, strict=True)],
                "warnings": []}
