"""Check families. Importing this package registers every built-in check."""

from qualgate.checks import (  # noqa: F401  (registers the checks)
    answers,
    chat,
    code,
    embedding,
    json_format,
    language,
    minhash,
    perplexity,
    rules,
    text_quality,
    vocabulary,
)
from qualgate.checks.base import REGISTRY, Check, Measurement, Params, SetCheck, register

__all__ = ["REGISTRY", "Check", "Measurement", "Params", "SetCheck", "register"]
