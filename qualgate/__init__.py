"""qualgate: decide which synthetic samples may enter a training set, and record why the rest may not."""

from qualgate.config import GateConfig, load_config
from qualgate.errors import ConfigError, InputError, QualgateError
from qualgate.findings import Decision, Finding
from qualgate.gate import Gate, Result
from qualgate.report import Report
from qualgate.sample import Sample

__version__ = "0.1.0"

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
