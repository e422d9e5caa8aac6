"""Benchmark contamination: samples that contain an evaluation set's items (word n-gram overlap)."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field

from qualgate.checks.base import Measurement, P, Params, SetCheck, field_texts, register
from qualgate.checks.common import FIELD_DOC, FieldName
from qualgate.decontam import DEFAULT_N, VERSION, Benchmark, BenchmarkIndex
from qualgate.findings import Finding
from qualgate.sample import FieldProblem, Sample


class ContaminationParams(Params):
    n: int = Field(DEFAULT_N, ge=5, le=50,
                   description="word n-gram size: 13 as GPT-3's decontamination, 8 (open-r1) catches shorter copies")
    benchmarks: list[str] = Field(default_factory=list,
                                  description="names of the benchmarks to compare with (--benchmark NAME=PATH); "
                                  "empty = every benchmark loaded")
    min_matches: int = Field(1, ge=1, description="distinct n-grams of one item a sample must contain for an n-gram "
                             "match (1: any shared n-gram, as GPT-3, open-r1 and datatrove decontaminate); whole "
                             "line / paragraph / text matches of short items are not held to it. It chooses which "
                             "item is matched, so changing it needs a re-run (not `qualgate tune`)")
    min_overlap: float = Field(0.0, ge=0, le=1,
                               description="share of the item's n-grams the sample must contain to be rejected "
                               "(0: any; 0.5 keeps samples that quote only part of an item)")
    short_min_words: int = Field(6, ge=1, description="a line of an item (or an item) shorter than n words is "
                                 "matched whole against each line, run of 2-3 lines, paragraph and the whole "
                                 "sample when it has at "
                                 "least this many words of 2+ characters, not all digits")
    short_inside: bool = Field(False, description="also find an item's short line inside a longer line of the "
                               "sample ('Quiz: <question> Answer: ...'), not only as a whole line; finds more, "
                               "and more common phrases")
    max_items_per_ngram: int = Field(10, ge=1, description="an n-gram that more items share is template text "
                                     "(answer formats, repeated instructions) and matches nothing")
    field: FieldName = Field(None, description=FIELD_DOC)


class BenchmarkCheck(SetCheck[P]):
    """A set check that compares with named benchmarks (``Gate.load_benchmark``) instead of a set of samples."""

    compares_with: ClassVar[str] = "benchmark"

    def wanted(self, loaded: Mapping[str, Benchmark]) -> list[Benchmark] | None:
        """The loaded benchmarks this check compares with (its ``benchmarks`` parameter; empty = all); None while
        one it names is not loaded."""
        names = getattr(self.params, "benchmarks", None) or list(loaded)
        if not names or any(b not in loaded for b in names):
            return None
        return [loaded[b] for b in names]

    @abstractmethod
    def use_benchmarks(self, benchmarks: Sequence[Benchmark], cache_dir: str | Path | None) -> None:
        """Build this check's index of ``benchmarks`` (cached in ``cache_dir`` where given)."""

    def how_to_load(self) -> str:
        names = getattr(self.params, "benchmarks", None)
        which = " ".join(f"--benchmark {b}=PATH" for b in names) if names else "--benchmark NAME=PATH"
        return (f"pass {which} (a JSONL/JSON/CSV/Parquet file or an index from `qualgate bench-index build`; "
                "library: gate.load_benchmark(NAME, PATH))")



@register
class Contamination(BenchmarkCheck[ContaminationParams]):
    """Sample contains a benchmark item: shares a word n-gram with it (per line and paragraph for short items).

    The benchmarks come from the command line (``--benchmark NAME=PATH``), never from the data or a pull request;
    the index holds hashes only. Any shared 13-gram rejects by default, as GPT-3 (and, with 8-grams, open-r1 and
    datatrove) decontaminate: a 13-word run of an evaluation item does not occur by chance, and a partial copy of
    an item still teaches its answer. ``min_overlap`` (share of the item's n-grams) and ``min_matches`` relax
    that for sets that quote famous passages. Evidence names the benchmark and item id, the sample's own
    matched span and the overlap; no benchmark text is written.
    """

    kind = "contamination"
    params_model = ContaminationParams
    score_names = ("overlap", "matched_ngrams")
    decision_params = frozenset({"min_overlap"})  # min_matches picks the item: scoring
    cost = 45  # cheap (hashing and one searchsorted): before the MinHash and embedding checks

    def __init__(self, name: str, params: ContaminationParams) -> None:
        super().__init__(name, params)
        self.index: BenchmarkIndex | None = None

    @property
    def n_baseline(self) -> int:
        return len(self.index) if self.index is not None else 0

    def use_benchmarks(self, benchmarks: Sequence[Benchmark], cache_dir: str | Path | None) -> None:
        """Index ``benchmarks`` (each cached by its content) for this check's n."""
        self.index = BenchmarkIndex.merge([b.index(self.params.n, cache_dir) for b in benchmarks])
        self.set_role = "benchmark"

    def add_baseline(self, samples: Sequence[Sample]) -> int:
        """Library use: index ``samples`` (their text views, named by their ids) as a benchmark called "samples"."""
        texts, problems = field_texts(samples, None)
        ok = [i for i, p in enumerate(problems) if p is None]
        part = BenchmarkIndex.build("samples", [texts[i] for i in ok], [samples[i].id for i in ok], self.params.n)
        self.index = part if self.index is None else BenchmarkIndex.merge([self.index, part])
        return len(samples) - len(ok)

    def cache_token(self) -> str:
        return f"{self.kind}-v{VERSION}:{self.params.n}"

    def export_state(self) -> dict[str, Any]:
        return self.index.arrays() if self.index is not None else {}

    def import_state(self, arrays: Mapping[str, Any]) -> None:
        self.index = BenchmarkIndex.from_arrays(arrays) if arrays else None
        self.set_role = "benchmark" if arrays else None

    def score_batch(self, samples: Sequence[Sample], eligible: Sequence[bool],
                    features: Any = None) -> list[Measurement | FieldProblem]:
        texts, problems = field_texts(samples, self.params.field)
        p = self.params
        matches = (self.index.match(texts, short_min_words=p.short_min_words,
                                    max_items_per_ngram=p.max_items_per_ngram, min_matches=p.min_matches,
                                    short_inside=p.short_inside)
                   if self.index is not None else [None] * len(texts))
        out: list[Measurement | FieldProblem] = []
        for problem, m in zip(problems, matches, strict=True):
            if problem is not None:
                out.append(problem)
            elif m is None:
                out.append(Measurement({"overlap": 0.0, "matched_ngrams": 0}))
            else:
                out.append(Measurement({"overlap": round(m.overlap, 6), "matched_ngrams": m.matched},
                                       m.evidence(p.n)))
        return out

    def decide(self, m: Measurement) -> list[Finding]:
        ev = m.evidence
        if "benchmark" not in ev:
            return []
        p = self.params
        if ev["overlap"] < p.min_overlap:  # min_matches was applied while scoring (n-gram matches only)
            return []
        if ev["match"] == "ngram":
            what = (f"{ev['matched_ngrams']} of its {ev['item_ngrams']} word {ev['n']}-grams "
                    f"({ev['overlap']:.0%})")
        else:
            part = "run of lines" if ev["match"] == "lines" else ev["match"]
            what = (f"a {part} of the sample is {'the whole item' if ev['overlap'] >= 1 else 'a line of it'} "
                    f"({ev['overlap']:.0%} of its words)")
        return [self.finding("contamination", ev["overlap"], p.min_overlap,
                             f"contains benchmark {ev['benchmark']} item {ev['item_id']}: {what}", **ev)]

    def restore_for_decide(self, section: dict[str, Any] | None) -> str | None:
        return None  # decided from the stored evidence alone

    def describe(self) -> dict[str, Any]:
        return self.index.describe() if self.index is not None else {"n": self.params.n, "benchmarks": []}

    def report_section(self) -> dict[str, Any]:
        return {**self.describe(), "warnings": []}
