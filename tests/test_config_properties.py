"""Property tests (hypothesis) for what strangers write in a pull request besides data: configs and text templates.
Any YAML document, and any one-value change to a shipped pack, loads or is a ConfigError naming the file;
any template either is refused when the config loads or substitutes top-level fields only."""

from __future__ import annotations

import copy
import string
import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qualgate.config import GateConfig, load_config
from qualgate.errors import ConfigError
from qualgate.gate import Gate

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
scalars = st.none() | st.booleans() | st.integers(-(10**6), 10**6) | st.floats(allow_nan=True) | st.text(max_size=12)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                                           max_size=4), max_leaves=12)
KEYS = ["version", "extends", "input", "checks", "gate", "diversity", "description", "text", "id", "check", "name",
        "field", "enabled", "threshold", "min_words", "max_words", "patterns", "max_record_bytes", "allowed"]
configs = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(KEYS),
                                                                                            inner, max_size=5),
                       max_leaves=16)
PACK = load_config("instruct").to_dict()


def _load(doc: Any) -> GateConfig | None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "c.yaml"
        path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
        try:
            return load_config(str(path))
        except ConfigError as exc:
            assert exc.file == str(path) and str(exc)
            return None


@SETTINGS
@given(doc=configs | values)
def test_any_yaml_document_loads_or_is_a_config_error(doc: Any) -> None:
    _load(doc)


def _leaves(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(node, dict):
        return [p for k, v in node.items() for p in _leaves(v, (*path, k))] or [path]
    if isinstance(node, list):
        return [p for i, v in enumerate(node) for p in _leaves(v, (*path, i))] or [path]
    return [path]


@SETTINGS
@given(data=st.data(), value=values)
def test_one_changed_value_in_a_shipped_pack_loads_or_is_a_config_error(data: st.DataObject, value: Any) -> None:
    doc = copy.deepcopy(PACK)
    where = data.draw(st.sampled_from([p for p in _leaves(doc) if p]))
    node = doc
    for key in where[:-1]:
        node = node[key]
    node[where[-1]] = value
    config = _load(doc)
    if config is not None:  # a config that loads builds a gate that decides
        result = Gate(config, cache_dir=None).run([{"instruction": "Say hi.", "input": "", "output": "Hello there!"}])
        assert len(result.decisions) == 1


template_text = st.lists(st.sampled_from([*string.ascii_letters[:6], *"{}[]!:.0 _\n", "__class__"]),
                         max_size=16).map("".join)


@SETTINGS
@given(template=template_text)
def test_a_template_is_refused_at_load_or_reads_top_level_fields_only(template: str) -> None:
    record = {"a": "alpha", "b": "beta", "c": 3, "d": {"x": "nested"}}
    try:
        gate = Gate.from_config("default", text=template or "{a}", cache_dir=None)
    except ConfigError as exc:
        assert "input.text" in str(exc) or "template" in str(exc).lower()
        return
    # what was accepted reads top-level fields only: no attribute, index, positional field, conversion or spec
    # (a literal like '__class__}}' is text, not a field)
    for _, name, spec, conversion in string.Formatter().parse(template or "{a}"):
        if name is not None:
            assert name and not any(c in name for c in ".[") and not name.isdigit(), template
            assert not spec and conversion is None, template
    decision = gate.run([record]).decisions[0]
    text = decision.sample.text if decision.sample.problem is None else None
    if text is not None:
        assert "<" not in text and "object at 0x" not in text  # never an object's repr
