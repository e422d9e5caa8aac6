"""Check: one named test that first scores a sample, then decides by thresholds.

Scoring and deciding are separate so scores can be stored (``scores.parquet``) and re-decided later
with other thresholds without recomputing. A check declares the score names it produces; the gate
stores them as ``<check name>.<score name>`` columns.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict

from qualgate.findings import Finding
from qualgate.sample import FieldProblem, Sample, Source


class Params(BaseModel):
    """Base of every check's parameters: unknown keys are errors, values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


P = TypeVar("P", bound=Params)


@dataclass(frozen=True)
class RunContext:
    """Settings a gate hands to its checks: where caches live (``None``: no disk cache)."""

    cache_dir: Path | None = None


@dataclass
class Measurement:
    """What scoring produced: named numeric scores (``None`` = not applicable) and supporting evidence."""

    values: dict[str, float | None]
    evidence: dict[str, Any] = field(default_factory=dict)


class Check(ABC, Generic[P]):
    """Base class. Subclasses set ``kind``, ``params_model``, ``score_names``, and implement both steps."""

    kind: ClassVar[str]
    params_model: ClassVar[type[Params]]
    score_names: ClassVar[tuple[str, ...]]
    #: Lower runs earlier. Rules ~10, set-aware checks ~50, model checks ~80 (an instance may set its own).
    cost: int = 10
    #: Parameters only ``decide`` reads (thresholds): ``qualgate tune`` can change these from stored scores;
    #: any other parameter changes the scores themselves, which needs a re-run.
    decision_params: ClassVar[frozenset[str]] = frozenset()
    #: True when scoring one sample needs nothing but the sample (safe to run in worker processes).
    per_sample: ClassVar[bool] = True

    def __init__(self, name: str, params: P) -> None:
        self.name = name
        self.params = params

    @abstractmethod
    def score(self, sample: Sample) -> Measurement:
        """Compute this check's scores for one sample. May raise ``FieldProblem``."""

    @abstractmethod
    def decide(self, m: Measurement) -> list[Finding]:
        """Turn scores into findings (empty list: no objection)."""

    def score_batch(self, samples: Sequence[Sample], eligible: Sequence[bool]) -> list[Measurement | FieldProblem]:
        """Score many samples; batched checks (models, indexes) override this.

        ``eligible[i]`` is False when sample ``i`` already has a finding (it is scored only because of
        ``--all-findings``): a set-aware check must not admit it to its index.
        """
        out: list[Measurement | FieldProblem] = []
        for s in samples:
            try:
                out.append(self.score(s))
            except FieldProblem as exc:
                out.append(exc)
        return out

    def bind(self, context: RunContext) -> None:
        """Receive run settings (cache folder, ...) from the gate before any scoring. Default: nothing."""

    def describe(self) -> dict[str, Any] | None:
        """What the report should say about how this check ran (model, device, index); None = nothing."""
        return None

    def finding(self, reason: str, score: float | None, threshold: float | None, message: str,
                **evidence: Any) -> Finding:
        return Finding(self.name, reason, score, threshold, message, evidence)

    def score_limits(self) -> dict[str, list[float]]:
        """The configured limits per score name, for drawing on the report's histograms. By convention a
        parameter ``max_<score>`` or ``min_<score>`` (or one named like the score) limits that score; a
        dict-valued one such as ``max_top_ngram_frac: {2: 0.2}`` limits ``top_2gram_frac``. Checks whose
        names do not follow it override this."""
        params = self.params.model_dump()
        out: dict[str, list[float]] = {}
        for score in self.score_names:
            for key in (f"max_{score}", f"min_{score}", score):
                value = params.get(key)
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    out.setdefault(score, []).append(float(value))
        for key, value in params.items():
            if isinstance(value, dict) and key.startswith(("max_", "min_")):
                stem = key[4:]
                for n, limit in value.items():
                    score = stem.replace("ngram", f"{n}gram", 1)
                    if score in self.score_names and isinstance(limit, (int, float)):
                        out.setdefault(score, []).append(float(limit))
        return out

    @classmethod
    def doc(cls) -> str:
        """First line of the class docstring: shown by ``qualgate rules``."""
        return (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""


def field_texts(samples: Sequence[Sample], field: str | None) -> tuple[list[str], list[FieldProblem | None]]:
    """Each sample's ``field`` (None: the text view), "" where it is missing, and the problem if any."""
    texts: list[str] = []
    problems: list[FieldProblem | None] = []
    for s in samples:
        try:
            texts.append(s.view(field))
            problems.append(None)
        except FieldProblem as exc:
            texts.append("")
            problems.append(exc)
    return texts, problems


def source_tuple(src: Source | None) -> tuple[str, int, str] | None:
    """A Source as a plain tuple: the garbage collector untracks tuples of str/int, so millions of kept
    samples' sources do not slow every collection down."""
    return (src.file, src.line, src.unit) if src is not None else None


def pack_sources(sources: Sequence[tuple[str, int, str] | None]) -> dict[str, Any]:
    """Sources as plain arrays for ``np.savez`` (file names once, then an index per sample)."""
    import numpy as np

    files = sorted({s[0] for s in sources if s is not None})
    where = {f: i for i, f in enumerate(files)}
    return {"files": np.asarray(files, dtype=str),
            "file_idx": np.asarray([where[s[0]] if s else -1 for s in sources], dtype=np.int64),
            "lines": np.asarray([s[1] if s else 0 for s in sources], dtype=np.int64),
            "units": np.asarray([s[2] if s else "" for s in sources], dtype=str)}


def unpack_sources(arrays: Mapping[str, Any]) -> list[tuple[str, int, str] | None]:
    files = [str(f) for f in arrays["files"].tolist()]
    return [(files[f], int(line), str(u)) if f >= 0 else None
            for f, line, u in zip(arrays["file_idx"].tolist(), arrays["lines"].tolist(),
                                  arrays["units"].tolist(), strict=True)]


class Features(ABC):
    """Precomputed per-sample data of a batch, picklable, in the order of the samples it was made from."""

    @abstractmethod
    def take(self, rows: Sequence[int]) -> Features:
        """The features of a subset of the samples, in the given order."""


class SetCheck(Check[P]):
    """A check that compares each sample with an Index of kept samples (and an optional baseline).

    It runs in the main process, in input order, so keep-first decisions are deterministic.
    """

    per_sample = False
    cost = 50
    #: Which loaded set this check indexes before a run: the dataset the inputs join ("baseline"),
    #: a private set they must not copy ("private"), or a human reference ("reference").
    compares_with: ClassVar[str] = "baseline"
    #: Fewest records of that set the check needs (checked before a run; baselines may be empty).
    min_set_size: ClassVar[int] = 1
    #: True when ``feature_input``/``features_from`` let workers do the index-free part of scoring.
    has_features: ClassVar[bool] = False
    #: True when, without its set, the check can fit on the input itself (``Gate.fit_input``), which
    #: then has to be read twice.
    fits_on_input: ClassVar[bool] = False
    #: True when the features need a model (embeddings, an ``hf`` language model): workers compute them only
    #: when an engine asks (``features_in_workers``: the Ray engine, whose actors may hold GPUs); else
    #: ``score_batch`` does. Per instance: it can depend on the parameters.
    model_features: bool = False
    features_in_workers: bool = False
    #: Which set ``add_baseline`` received: ``compares_with``, or "input" when fitted on the input itself.
    set_role: str | None = None
    #: True for keep-first checks: a sample's result depends on the samples admitted before it, including
    #: those admitted tentatively earlier in its batch (``commit``, ``tentative_uses``). Other set checks'
    #: results depend on the sample and their set alone, so the gate may keep them across passes.
    keeps_first: ClassVar[bool] = False

    def needs_set(self) -> bool:
        """False when this instance can run without its set (e.g. a given model and absolute thresholds)."""
        return True

    def how_to_load(self) -> str:
        """What a user does to give this check its set (the refusal to run without it says so)."""
        role = self.compares_with
        return f"pass --{role} PATH (library: gate.load_set('{role}', paths))"

    def score(self, sample: Sample) -> Measurement:
        result = self.score_batch([sample], [True])[0]
        if isinstance(result, FieldProblem):
            raise result
        return result

    def feature_input(self, samples: Sequence[Sample]) -> Any | None:
        """What a worker needs to compute ``features`` (small and picklable, e.g. the texts).

        None (the default) means the check computes everything in ``score_batch``.
        """
        return None

    def features_from(self, data: Any) -> Features:
        """The per-sample, index-free part of scoring (e.g. signatures), from ``feature_input``'s result."""
        raise NotImplementedError

    def features(self, samples: Sequence[Sample]) -> Features | None:
        data = self.feature_input(samples)
        return None if data is None else self.features_from(data)

    @abstractmethod
    def score_batch(self, samples: Sequence[Sample], eligible: Sequence[bool],
                    features: Features | None = None) -> list[Measurement | FieldProblem]:
        """Compare with the index, then admit the eligible samples that are not duplicates.

        ``features``, when given, is what ``features(samples)`` returned for exactly these samples.
        """

    def commit(self, accepted: Sequence[bool]) -> None:
        """Keep-first checks: called once every check has run on the batch last passed to ``score_batch``;
        ``accepted[i]`` says whether its sample ``i`` was finally accepted. Only those are admitted to the
        index, so a sample that a later check rejected never becomes the "kept" sample later ones are named
        duplicates of. ``accepted`` may cover only the first samples of that batch: the results of the rest
        are forgotten (they will be scored again). A check scored again without a commit treats its pending
        samples as accepted."""

    def tentative_uses(self) -> Mapping[int, int]:
        """Keep-first checks, for the batch last passed to ``score_batch``: each sample admitted tentatively
        that a later sample's result relied on (named it, or would have differed without it) -> the first
        such later sample. If a later check rejects the former, the latter must be scored again."""
        return {}

    @abstractmethod
    def add_baseline(self, samples: Sequence[Sample]) -> int:
        """Index samples of the set named by ``compares_with``: never rejected, always compared with.

        Returns how many of them were not indexed (and why is the check's to document)."""

    @abstractmethod
    def cache_token(self) -> str:
        """Everything besides the baseline's content that its cached index depends on."""

    @abstractmethod
    def export_state(self) -> dict[str, Any]:
        """The index as plain numpy arrays (saved with ``np.savez``, loaded without pickle)."""

    @abstractmethod
    def import_state(self, arrays: Mapping[str, Any]) -> None:
        """Restore what ``export_state`` returned."""

    def report_section(self) -> dict[str, Any] | None:
        """Extra report content (e.g. the largest duplicate clusters)."""
        return None

    def tuned_section(self, section: dict[str, Any]) -> dict[str, Any]:
        """This check's report section after ``qualgate tune`` changed its parameters (default: as it was)."""
        return section

    def restore_for_decide(self, section: dict[str, Any] | None) -> str | None:
        """Make ``decide`` work from stored scores and evidence alone (``qualgate tune``), given this check's
        ``report_section`` of the original run. Returns None when it can, else why it cannot (the default:
        keep-first checks decide by which samples were kept before, which stored scores do not say)."""
        return ("which sample is kept depends on which samples were accepted before it; re-run the gate "
                "to change this check")


REGISTRY: dict[str, type[Check[Any]]] = {}

C = TypeVar("C", bound=type[Check[Any]])


def register(cls: C) -> C:
    """Class decorator: make a check available to configs under its ``kind``."""
    if cls.kind in REGISTRY:
        raise ValueError(f"check kind {cls.kind!r} registered twice")
    REGISTRY[cls.kind] = cls
    return cls
