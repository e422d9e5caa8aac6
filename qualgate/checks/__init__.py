"""Check families. ``REGISTRY`` maps every check kind to its class, importing a family's module the first time
one of its kinds is looked up: a run of rule checks never imports numpy, datasketch or the embedding stack."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from importlib import import_module
from typing import Any

from qualgate.checks import base
from qualgate.checks.base import Check, Measurement, Params, SetCheck, register

#: built-in kind -> the module (under qualgate.checks) that defines and registers it. A new built-in check is
#: added here; tests/test_cli.py checks that the table and the modules agree.
BUILTIN: dict[str, str] = {
    "length": "rules", "pattern": "rules", "boilerplate": "rules", "empty_field": "rules",
    "placeholder": "rules", "truncated": "rules",
    "refusal": "answers", "unanswerable": "answers", "prompt_echo": "answers",
    "repetition": "text_quality", "quality_heuristics": "text_quality", "flagged_words": "text_quality",
    "pii": "text_quality",
    "language": "language",
    "chat_structure": "chat", "code_valid": "code", "json_valid": "json_format", "vocabulary": "vocabulary",
    "near_duplicate": "minhash",
    "semantic_duplicate": "embedding", "private_leak": "embedding", "outlier": "embedding",
    "perplexity": "perplexity",
    "contamination": "contamination",
    "contamination_rephrase": "contamination_rephrase",
}


class Registry(Mapping[str, type[Check[Any]]]):
    """The built-in kinds (imported on first look-up) and any kind a library user ``register``-ed. Listing the
    kinds (``sorted(REGISTRY)``, ``kind in REGISTRY``) imports nothing; ``values()``/``items()`` import all."""

    def __getitem__(self, kind: str) -> type[Check[Any]]:
        module = BUILTIN.get(kind)
        if module is not None and kind not in base.REGISTRY:
            import_module(f"qualgate.checks.{module}")
        cls = base.REGISTRY[kind]  # KeyError: no such kind
        if module is not None and cls.__module__ != f"qualgate.checks.{module}":
            raise ValueError(f"check kind {kind!r} registered twice: by {cls.__module__} and by "
                             f"qualgate.checks.{module}")
        return cls

    def __iter__(self) -> Iterator[str]:
        yield from BUILTIN
        yield from (k for k in base.REGISTRY if k not in BUILTIN)

    def __len__(self) -> int:
        return len(BUILTIN) + sum(k not in BUILTIN for k in base.REGISTRY)

    def __contains__(self, kind: object) -> bool:
        return kind in BUILTIN or kind in base.REGISTRY


REGISTRY = Registry()

__all__ = ["BUILTIN", "REGISTRY", "Check", "Measurement", "Params", "Registry", "SetCheck", "register"]
