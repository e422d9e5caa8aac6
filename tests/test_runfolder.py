"""The run folder's rejected.jsonl line and its inverse: ``original_record(rejected_record(d))`` gives back the
record as the checks read it (key order included, a field of its own named ``qualgate`` back in its place), or
the raw bytes of input that could not be parsed."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from qualgate.findings import Decision, Finding
from qualgate.io import dumps_record, loads_strict
from qualgate.runfolder import QUALGATE_FIELD, original_record, rejected_record
from qualgate.sample import Sample, Source, unparseable_sample

FINDING = Finding("truncated", "dangling_ending", 1.0, 0, "text ends on 'and', as if cut off", {"last": "and"})
values = st.recursive(st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.text(max_size=20),
                      lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                                    max_size=3), max_leaves=8)
records = st.dictionaries(st.sampled_from(["instruction", "input", "output", QUALGATE_FIELD, "id", "meta"]),
                          values, max_size=6)


def _round_trip(d: Decision) -> tuple[dict[str, Any] | None, bytes | None]:
    line = dumps_record(rejected_record(d))  # as written to rejected.jsonl, then read back
    return original_record(loads_strict(line))


@settings(max_examples=200, deadline=None)
@given(records)
def test_original_record_inverts_rejected_record(record: dict[str, Any]) -> None:
    d = Decision(Sample("a1", record, "text", source=Source("in.jsonl", 3)), [FINDING])
    original, raw = _round_trip(d)
    assert raw is None
    assert original == record and list(original) == list(record)


def test_own_qualgate_field_keeps_its_place() -> None:
    record = {"instruction": "Name a colour.", "qualgate": {"score": 0.9}, "output": "Red."}
    d = Decision(Sample("a1", record, "Red."), [FINDING])
    line = rejected_record(d)
    assert line[QUALGATE_FIELD]["replaced_field"] == {"score": 0.9}
    original, _ = _round_trip(d)
    assert json.dumps(original) == json.dumps(record)


@given(st.binary(max_size=40))
def test_unparseable_input_gives_back_its_bytes(raw: bytes) -> None:
    sample = unparseable_sample("invalid_json", "not JSON", Source("in.jsonl", 7), raw)
    d = Decision(sample, [sample.problem] if sample.problem else [])
    assert _round_trip(d) == (None, raw)


def _same(a: list[Any], b: list[Any]) -> bool:
    """Equal lists, NaN equal to NaN."""
    return [("nan" if isinstance(x, float) and x != x else x) for x in a] == \
        [("nan" if isinstance(x, float) and x != x else x) for x in b]


COLUMNS = {"string": st.none() | st.text(max_size=12), "bool": st.none() | st.booleans(),
           "int64": st.none() | st.integers(-2**63, 2**63 - 1),
           "double": st.none() | st.floats() | st.integers(-2**53, 2**53)}


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(COLUMNS)).flatmap(lambda k: st.tuples(st.just(k), st.lists(COLUMNS[k], max_size=20))))
def test_arrow_column_holds_what_pa_array_would(case: tuple[str, list[Any]]) -> None:
    """scores.parquet's columns are built from buffers (``pa.array`` would import pandas): same values, nulls
    and type as ``pa.array`` gives, for every column type the run folder writes."""
    import pyarrow as pa

    from qualgate.runfolder import arrow_column

    kind = {"string": pa.string(), "bool": pa.bool_(), "int64": pa.int64(), "double": pa.float64()}[case[0]]
    ours, theirs = arrow_column(case[1], kind), pa.array(case[1], kind)
    ours.validate(full=True)
    assert ours.type == theirs.type and ours.null_count == theirs.null_count
    assert _same(ours.to_pylist(), theirs.to_pylist())
