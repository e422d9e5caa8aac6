"""qualgate: decide which synthetic samples may enter a training set, and record why the rest may not.

The public names load on first use (PEP 562): ``qualgate --help`` and other commands that need no checks do
not pay for importing numpy, the check registry and the gate.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from qualgate.config import GateConfig, load_config
    from qualgate.errors import ConfigError, InputError, QualgateError
    from qualgate.findings import Decision, Finding
    from qualgate.gate import Gate, Result
    from qualgate.report import Report
    from qualgate.sample import Sample

__version__ = "0.1.0"

#: public name -> the module that defines it
_WHERE = {
    "ConfigError": "qualgate.errors", "InputError": "qualgate.errors", "QualgateError": "qualgate.errors",
    "Decision": "qualgate.findings", "Finding": "qualgate.findings", "Gate": "qualgate.gate",
    "Result": "qualgate.gate", "GateConfig": "qualgate.config", "load_config": "qualgate.config",
    "Report": "qualgate.report", "Sample": "qualgate.sample",
}

__all__ = [
    "ConfigError",
    "Decision",
    "Finding",
    "Gate",
    "GateConfig",
    "InputError",
    "QualgateError",
    "Report",
    "Result",
    "Sample",
    "__version__",
    "load_config",
]


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        value = getattr(import_module(_WHERE[name]), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module 'qualgate' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
