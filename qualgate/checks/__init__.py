"""Check families. Importing this package registers every built-in check."""

from qualgate.checks import rules  # noqa: F401  (registers the rule checks)
from qualgate.checks.base import REGISTRY, Check, Measurement, Params, register

__all__ = ["REGISTRY", "Check", "Measurement", "Params", "register"]
