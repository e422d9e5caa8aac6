"""Check families. Importing this package registers every built-in check."""

from qualgate.checks import embedding, minhash, perplexity, rules  # noqa: F401  (registers the checks)
from qualgate.checks.base import REGISTRY, Check, Measurement, Params, SetCheck, register

__all__ = ["REGISTRY", "Check", "Measurement", "Params", "SetCheck", "register"]
