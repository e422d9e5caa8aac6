"""Finding (why a check objected) and Decision (what happened to one sample)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from qualgate.sample import Sample

MALFORMED = "malformed"
#: The pseudo-check of a reviewer's rejection (``overrides``); like ``malformed``, it scores nothing.
OVERRIDE = "override"


@dataclass(frozen=True)
class Finding:
    """One objection: the check's name, a short reason code, the score and the threshold it crossed.

    ``score`` and ``threshold`` are ``None`` only for ``malformed`` and ``override`` findings, where nothing
    was scored.
    """

    check: str
    reason: str
    score: float | None
    threshold: float | None
    message: str
    evidence: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "reason": self.reason,
            "score": self.score,
            "threshold": self.threshold,
            "message": self.message,
            "evidence": self.evidence,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Finding:
        return cls(d["check"], d["reason"], d["score"], d["threshold"], d["message"], d.get("evidence", {}))


@dataclass(frozen=True)
class Override:
    """A human reviewer's decision on one sample, applied after every check: it wins over the findings,
    which stay recorded, so an overruled sample keeps its history."""

    decision: str  # "accept" or "reject"
    reviewer: str
    note: str = ""
    source: str = ""  # the overrides file and line it came from

    def to_dict(self) -> dict[str, Any]:
        return {"decision": self.decision, "reviewer": self.reviewer, "note": self.note, "from": self.source}


@dataclass
class Decision:
    """The gate's verdict on one sample: every finding, every score computed, the checks skipped, each
    check's evidence (kept so ``qualgate tune`` can re-decide and explain without recomputing), and a
    reviewer's override if one applies."""

    sample: Sample
    findings: list[Finding] = field(default_factory=list)
    scores: dict[str, float | None] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    evidence: dict[str, dict[str, Any]] = field(default_factory=dict)
    override: Override | None = None

    @property
    def id(self) -> str:
        return self.sample.id

    @property
    def accepted(self) -> bool:
        if self.override is not None:
            return self.override.decision == "accept"
        return not self.findings

    def qualgate_field(self) -> dict[str, Any]:
        """The ``qualgate`` value added to a rejected record."""
        from qualgate.overrides import content_sha256

        out: dict[str, Any] = {"id": self.sample.id, "sha256": content_sha256(self.sample),
                               "findings": [f.to_dict() for f in self.findings]}
        if self.sample.source is not None:
            out["source"] = self.sample.source.to_dict()
        if self.skipped:
            out["skipped"] = list(self.skipped)
        if self.override is not None:
            out["override"] = self.override.to_dict()
        return out
