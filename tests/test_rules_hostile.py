"""Hostile inputs found by a review of the rule checks: each becomes a finding (or nothing), never a crash or a
run that takes minutes. Time limits are generous guards against quadratic or exponential regressions."""

from __future__ import annotations

import time
from typing import Any

from qualgate import Gate


def run(check: dict[str, Any], view: str, value: str) -> tuple[float, list[str]]:
    gate = Gate.from_config({"version": 1, "input": {"text": view}, "checks": [check]}, cache_dir=None)
    start = time.perf_counter()
    result = gate.run([{view: value}])
    return time.perf_counter() - start, [f.reason for f in result.decisions[0].findings]


def test_json_with_a_huge_integer_is_invalid_not_a_crash() -> None:
    assert run({"check": "json_valid"}, "output", "1" * 5000)[1] == ["invalid_json"]


def test_recursive_schema_on_deep_nesting_is_a_violation_not_a_crash() -> None:
    check = {"check": "json_valid", "schema": {"type": "array", "items": {"$ref": "#"}}}
    assert run(check, "output", "[" * 400 + "]" * 400)[1] == ["schema_violation"]


def test_pii_stays_linear_on_many_candidates() -> None:
    seconds, reasons = run({"check": "pii"}, "text", "8.8.8.8 " * 40_000)
    assert reasons == ["pii"] and seconds < 10  # was 28 s (pairwise overlap test)
    seconds, _ = run({"check": "pii"}, "text", ("+1" + "1" * 30 + "x ") * 4000)
    assert seconds < 10  # was 15 s (backtracking phone pattern)


def test_code_checks_stay_linear_on_quotes_and_signatures() -> None:
    assert run({"check": "code_valid", "raw": True}, "output", "'\\" * 20_000)[0] < 10  # was 7 s, quadratic
    assert run({"check": "code_valid", "raw": True}, "output", "def f(" + ")->" * 16_000)[0] < 10  # was minutes
