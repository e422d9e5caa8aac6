"""The contract every registered check keeps, so a new check is covered the day it is registered.

``qualgate tune`` re-decides stored scores with new values of a check's ``decision_params`` without
scoring again. That is sound only if (a) those names are real parameters, (b) ``score`` never reads them
(the stored scores stay valid) while ``decide`` does, and ``score`` produces exactly ``score_names``;
findings must carry check, reason, score, threshold and message, with evidence that survives the JSON
written to ``rejected.jsonl`` (c); and ``qualgate rules`` shows a description for every parameter (d).
"""

from __future__ import annotations

import inspect
import json
import re
import types
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pydantic import ValidationError

from qualgate.checks import REGISTRY, Check, Measurement, SetCheck
from qualgate.errors import ConfigError
from qualgate.findings import Finding
from qualgate.sample import FieldProblem, Sample, TextSpec, make_sample
from tests.conftest import FIXTURES

#: The smallest valid parameters of the checks that have required ones (as in rules/*.yaml).
MINIMAL: dict[str, dict[str, Any]] = {
    "empty_field": {"fields": ["output"]},
    "flagged_words": {"words": ["damn", "crap"], "max_share": 0.01},
    "length": {"min_words": 3, "max_chars": 400, "min_chars": 5, "max_words": 60},
    "pattern": {"forbidden": [r"\bTODO\b"], "required": [r"\w"]},
    "perplexity": {"max": 400.0, "min": 3.0, "max_context_ratio": 3.0, "min_tokens": 5},
}

#: Checks that need a model this cheap test does not load.
MODEL_HEAVY = {
    "outlier": "needs a sentence-embedding model (embed extra); covered by tests/test_embedding.py",
    "private_leak": "needs a sentence-embedding model (embed extra); covered by tests/test_embedding.py",
    "semantic_duplicate": "needs a sentence-embedding model (embed extra); covered by tests/test_semdedup.py",
    "contamination_rephrase": "needs a sentence-embedding model (embed extra); see tests/test_decontam_recall.py",
}

PROSE = [json.loads(x)["text"] for x in (FIXTURES / "human_prose.jsonl").read_text().splitlines() if x]

#: Real-like records: a good answer, a refusal, a truncated one, a repetitive one, PII, a placeholder,
#: code (valid and not), a French answer, an answer to an unreadable link, an empty answer, broken JSON,
#: a prompt echo, a chat, a record whose answer is missing and a copy of a set record.
RECORDS: list[dict[str, Any]] = [
    {"instruction": "Explain why bread dough needs to rest.", "input": "", "output": PROSE[2]},
    {"instruction": "Write a poem about the sea.", "input": "",
     "output": "As an AI language model, I cannot write poems, but I can tell you about the sea."},
    {"instruction": "Describe a sunrise over the hills.", "input": "",
     "output": "The sun climbs slowly over the hills and the valley fills with a soft golden light, and the"},
    {"instruction": "List some fruits.", "input": "",
     "output": "Apples are red. Apples are red. Apples are red. Apples are red. Apples are red.\n" * 8},
    {"instruction": "Write a contact line.", "input": "",
     "output": "You can reach Maria at maria.lopez@example.com or call 555-867-5309 about the damn crap."},
    {"instruction": "Write a greeting letter.", "input": "<noinput>",
     "output": "Dear [insert name], thank you for your order. TODO: fill in the details."},
    {"instruction": "Write a Python function that adds two numbers.", "input": "",
     "output": "```python\ndef add(a, b):\n    return a + b\n```"},
    {"instruction": "Write a Python function that doubles a number.", "input": "",
     "output": "```python\ndef double(x)\n    return 2 * x\n```"},
    {"instruction": "Explain photosynthesis in one sentence.", "input": "",
     "output": "La photosynthèse est le processus par lequel les plantes vertes utilisent la lumière du soleil "
               "pour fabriquer leur nourriture."},
    {"instruction": "Summarise the article at this link.", "input": "https://example.com/news/123",
     "output": "The article explains that the city will open a new park next spring."},
    {"instruction": "Name a colour.", "input": "", "output": "   "},
    {"instruction": "Give the capital of France as JSON.", "input": "", "output": '{"capital": "Paris", }'},
    {"instruction": "Rewrite the sentence in the passive voice.", "input": "The cat chased the small mouse.",
     "output": "The cat chased the small mouse."},
    {"messages": [{"role": "user", "content": "How do I keep rice from burning?"},
                  {"role": "assistant", "content": PROSE[4]}]},
    {"instruction": "Summarise the text.", "input": "Some long text about rivers and their floods."},
    {"text": PROSE[12]},  # a copy of a baseline record
]


def samples() -> list[Sample]:
    spec = TextSpec("auto")
    return [make_sample(r, spec, None) for r in RECORDS]


def build(kind: str, params: dict[str, Any]) -> Check[Any]:
    """The check with these parameters, its set (if any) loaded from human prose, ready to score."""
    cls = REGISTRY[kind]
    check = cls(kind, cls.params_model.model_validate(params))
    if isinstance(check, SetCheck):
        spec = TextSpec("auto")
        check.add_baseline([make_sample({"text": t}, spec, None) for t in PROSE[10:40]])
    return check


def base_params(kind: str) -> dict[str, Any]:
    return dict(MINIMAL.get(kind, {}))


def measure(check: Check[Any]) -> list[Measurement | FieldProblem]:
    return check.score_batch(samples(), [True] * len(RECORDS))


def other_value(value: Any) -> Any:
    """A different valid-looking value for a parameter, or None when there is no obvious one."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 2
    if isinstance(value, float):
        return value * 0.5 if value else 0.05
    if isinstance(value, dict) and value and all(isinstance(v, (int, float)) for v in value.values()):
        return {k: v * 0.5 for k, v in value.items()}
    return None


def variants(kind: str, names: Iterator[str] | set[str] | frozenset[str]) -> Iterator[tuple[str, Any]]:
    """(parameter, changed value) for each named parameter that has an obvious other valid value."""
    params = REGISTRY[kind].params_model.model_validate(base_params(kind))
    for name in sorted(names):
        new = other_value(getattr(params, name))
        if new is None:
            continue
        try:
            REGISTRY[kind].params_model.model_validate({**base_params(kind), name: new})
        except ValidationError:
            continue
        yield name, new


def key(findings: list[Finding]) -> list[tuple[Any, ...]]:
    return [(f.check, f.reason, f.score, f.threshold) for f in findings]


def skip_heavy(kind: str) -> None:
    if kind in MODEL_HEAVY:
        pytest.skip(MODEL_HEAVY[kind])


def built(kind: str) -> Check[Any]:
    skip_heavy(kind)
    try:
        return build(kind, base_params(kind))
    except (ConfigError, ImportError) as exc:  # an optional backend is missing here
        pytest.skip(f"{kind}: {exc}")


KINDS = sorted(REGISTRY)


# ------------------------------------------------------------------------------------------------ (a), (d)
@pytest.mark.parametrize("kind", KINDS)
def test_decision_params_are_fields(kind: str) -> None:
    cls = REGISTRY[kind]
    assert cls.decision_params <= set(cls.params_model.model_fields), (
        f"{kind}: decision_params not in {cls.params_model.__name__}: "
        f"{sorted(cls.decision_params - set(cls.params_model.model_fields))}")


@pytest.mark.parametrize("kind", KINDS)
def test_every_parameter_has_a_description(kind: str) -> None:
    model = REGISTRY[kind].params_model
    assert [n for n, f in model.model_fields.items() if not (f.description or "").strip()] == []


@pytest.mark.parametrize("kind", KINDS)
def test_check_declares_kind_scores_and_a_doc(kind: str) -> None:
    cls = REGISTRY[kind]
    assert cls.kind == kind and cls.score_names and len(set(cls.score_names)) == len(cls.score_names)
    assert cls.doc(), f"{kind}: the class docstring's first line is what `qualgate rules` shows"


# ------------------------------------------------------------------------------------------------ (b)
def decide_sources(cls: type[Check[Any]]) -> str:
    """The source of ``decide`` and of every method or same-module function it calls, transitively."""
    module = inspect.getmodule(cls)
    seen: set[Callable[..., Any]] = set()
    todo: list[Callable[..., Any]] = [cls.decide]
    texts: list[str] = []
    while todo:
        fn = todo.pop()
        if fn in seen:
            continue
        seen.add(fn)
        try:
            texts.append(inspect.getsource(fn))
        except (OSError, TypeError):
            continue
        code = getattr(fn, "__code__", None)
        names = set(code.co_names) if code else set()
        if code:
            for const in code.co_consts:  # nested functions and comprehensions
                if isinstance(const, types.CodeType):
                    names |= set(const.co_names)
        for name in names:
            target = getattr(cls, name, None)
            if isinstance(target, property):
                target = target.fget
            if target is None and module is not None:
                target = getattr(module, name, None)
            home = getattr(target, "__module__", None) in (cls.__module__, "qualgate.checks.base")
            if inspect.isfunction(target) and home and name not in ("score", "score_batch"):
                todo.append(target)
    return "\n".join(texts)


@pytest.mark.parametrize("kind", KINDS)
def test_decide_reads_every_decision_param(kind: str) -> None:
    cls = REGISTRY[kind]
    source = decide_sources(cls)
    unread = [p for p in sorted(cls.decision_params) if not re.search(rf"\b{re.escape(p)}\b", source)]
    assert unread == [], f"{kind}: decide() never reads {unread}, so `qualgate tune` changing them does nothing"


@pytest.mark.parametrize("kind", KINDS)
def test_score_produces_exactly_score_names(kind: str) -> None:
    check = built(kind)
    results = measure(check)
    scored = [r for r in results if isinstance(r, Measurement)]
    assert scored, f"{kind}: no sample could be scored"
    for m in scored:
        assert set(m.values) == set(check.score_names), kind
        assert all(v is None or isinstance(v, (int, float)) for v in m.values.values()), m.values


@pytest.mark.parametrize("kind", KINDS)
def test_scores_do_not_depend_on_decision_params(kind: str) -> None:
    """What tune relies on: with a decision parameter changed, the stored scores re-decided give exactly what
    a fresh run with the new value would."""
    check = built(kind)
    stored = measure(check)
    changed = list(variants(kind, REGISTRY[kind].decision_params))
    if not changed:
        pytest.skip(f"{kind}: no decision parameters to change")
    for name, new in changed:
        other = build(kind, {**base_params(kind), name: new})
        fresh = measure(other)
        for old, now in zip(stored, fresh, strict=True):
            if isinstance(old, FieldProblem) or isinstance(now, FieldProblem):
                assert type(old) is type(now), (kind, name)
                continue
            assert now.values == old.values, f"{kind}: score() reads decision parameter {name}"
            assert key(other.decide(old)) == key(other.decide(now)), (kind, name)


@pytest.mark.parametrize("kind", KINDS)
def test_decide_reads_no_scoring_param(kind: str) -> None:
    """A parameter outside ``decision_params`` must not change what ``decide`` makes of the same scores
    (else tune refuses a change it could make, and the scores do not say what was decided)."""
    check = built(kind)
    stored = [m for m in measure(check) if isinstance(m, Measurement)]
    before = [key(check.decide(m)) for m in stored]
    cls = REGISTRY[kind]
    scoring = set(cls.params_model.model_fields) - cls.decision_params
    for name, new in variants(kind, scoring):
        try:
            other = build(kind, {**base_params(kind), name: new})
        except (ConfigError, ValueError):
            continue
        assert [key(other.decide(m)) for m in stored] == before, f"{kind}: decide() reads scoring parameter {name}"


# ------------------------------------------------------------------------------------------------ (c)
@pytest.mark.parametrize("kind", KINDS)
def test_findings_are_complete_and_json_safe(kind: str) -> None:
    check = built(kind)
    findings = [f for m in measure(check) if isinstance(m, Measurement) for f in check.decide(m)]
    for f in findings:
        assert f.check == kind and f.reason and f.message, f
        assert f.score is None or isinstance(f.score, (int, float)), f
        assert f.threshold is None or isinstance(f.threshold, (int, float)), f
        assert json.loads(json.dumps(f.evidence)) == f.evidence, f"{kind}/{f.reason}: evidence is not plain JSON"


def test_the_samples_make_every_check_object() -> None:
    """The records above are worth scoring: every cheap check finds something in them (a new check may need
    a record added above)."""
    silent = []
    for kind in KINDS:
        if kind in MODEL_HEAVY:
            continue
        try:
            check = build(kind, base_params(kind))
        except (ConfigError, ImportError):
            continue
        if not any(check.decide(m) for m in measure(check) if isinstance(m, Measurement)):
            silent.append(kind)
    assert silent == [], silent
