"""Check: one named test that first scores a sample, then decides by thresholds.

Scoring and deciding are separate so scores can be stored (``scores.parquet``) and re-decided later
with other thresholds without recomputing. A check declares the score names it produces; the gate
stores them as ``<check name>.<score name>`` columns.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict

from qualgate.findings import Finding
from qualgate.sample import Sample


class Params(BaseModel):
    """Base of every check's parameters: unknown keys are errors, values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


P = TypeVar("P", bound=Params)


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
    #: Lower runs earlier. Rules ~10, set-aware checks ~50, model checks ~80.
    cost: ClassVar[int] = 10
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

    def score_batch(self, samples: Sequence[Sample]) -> list[Measurement]:
        """Score many samples; batched checks (models, indexes) override this."""
        return [self.score(s) for s in samples]

    def finding(self, reason: str, score: float | None, threshold: float | None, message: str,
                **evidence: Any) -> Finding:
        return Finding(self.name, reason, score, threshold, message, evidence)

    @classmethod
    def doc(cls) -> str:
        """First line of the class docstring: shown by ``qualgate rules``."""
        return (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""


REGISTRY: dict[str, type[Check[Any]]] = {}

C = TypeVar("C", bound=type[Check[Any]])


def register(cls: C) -> C:
    """Class decorator: make a check available to configs under its ``kind``."""
    if cls.kind in REGISTRY:
        raise ValueError(f"check kind {cls.kind!r} registered twice")
    REGISTRY[cls.kind] = cls
    return cls
