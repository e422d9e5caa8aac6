"""The order and skip rule of a gate, written once: the gate applies it while it scores a batch
(``engines.base.apply_checks``), ``qualgate tune`` when it re-decides a stored run from its scores (``tune._redecide``).

Checks decide in order, cheapest first. A sample that already has a finding skips every later check unless the
run asks for all findings, and a sample that could not be read skips every check (there is nothing sound to
score). A skipped check is recorded in the sample's ``skipped`` list: the report counts skips from it, and tune
knows from it which scores a run never computed.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

from qualgate.findings import MALFORMED, Finding


class Pending(Protocol):
    """A sample on its way through the checks: its findings so far and the checks it skipped."""

    findings: list[Finding]
    skipped: list[str]


P = TypeVar("P", bound=Pending)


def takes_next(findings: Sequence[Finding], all_findings: bool) -> bool:
    """Whether a readable sample with ``findings`` so far goes on to the next check."""
    return all_findings or not findings


def decide_in_order(order: Sequence[str], pending: Sequence[P], all_findings: bool,
                    decide: Callable[[int, list[int]], object], readable: Callable[[P], bool] | None = None) -> None:
    """Each check of ``order`` in turn decides the pending samples that take it (``takes_next``, and
    ``readable`` when given): ``decide(k, positions)`` runs check ``order[k]`` on the samples at ``positions``
    and adds their findings in place; every other sample records ``order[k]`` as skipped. A check that no
    sample takes is not called."""
    for k, name in enumerate(order):
        positions: list[int] = []
        for i, p in enumerate(pending):
            if (all_findings or not p.findings) and (readable is None or readable(p)):
                positions.append(i)
            else:
                p.skipped.append(name)
        if positions:
            decide(k, positions)


def owning_check(f: Finding) -> str | None:
    """The check a ``malformed`` finding came from (its field was missing or of the wrong type), in whose place
    in the order it counts; None when the record itself could not be read."""
    if f.check != MALFORMED:
        return None
    owner = f.evidence.get("from_check")
    if owner is None:  # runs before from_check was recorded: the message names the check
        m = re.search(r"check '([^']+)': ", f.message)
        owner = m.group(1) if m else None
    return str(owner) if owner is not None else None
