"""Check families. Importing this package registers every built-in check."""

from qualgate.checks import (  # noqa: F401  (registers the checks)
    answers,
    embedding,
    language,
    minhash,
    perplexity,
    rules,
    structure,
    text_quality,
)
from qualgate.checks.base import REGISTRY, Check, Measurement, Params, SetCheck, register

__all__ = ["REGISTRY", "Check", "Measurement", "Params", "SetCheck", "register"]
