"""The readers give the checks every value a trainer would read, and nothing unbounded (issue 18, items 3, 12, 15):
a column named twice is an input error, not a silently dropped column; every value of a record counts toward
its limits (a Parquet list, a million JSON keys, a million CSV fields), measured before Python objects are made;
the same bytes give the same records as .jsonl, as .json and through the Ray engine's line splitter."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qualgate import Gate, io
from qualgate.cli import main
from qualgate.engines.raydata import _lines
from qualgate.errors import InputError
from qualgate.io import MAX_RECORD_VALUES, PREVIEW_BYTES, dumps_record, over_values, parse_line, read_records
from qualgate.sample import Source

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")


def _reasons(path: Path, **limits: int) -> list[tuple[int, str | None]]:
    return [(r.source.line, r.error[0] if r.error else None) for r in _read(path, **limits)]


def _read(path: Path, max_record_bytes: int = io.MAX_RECORD_BYTES, max_record_values: int = MAX_RECORD_VALUES) -> list[
        io.RawRecord]:
    return list(read_records([str(path)], None, max_record_bytes, io.MAX_DOCUMENT_BYTES, max_record_values))


# ------------------------------------------------------------------------------- item 3: duplicate columns
@pytest.mark.parametrize(("name", "sep"), [("a.csv", ","), ("a.tsv", "\t")])
def test_a_column_named_twice_in_a_csv_header_is_an_input_error(tmp_path: Path, name: str, sep: str) -> None:
    """pandas and ``datasets`` read the first 'output', a dict keeps the last: the first was trained on unchecked."""
    path = tmp_path / name
    path.write_text(sep.join(["instruction", "output", "output"]) + "\n"
                    + sep.join(["Say hi.", "As an AI language model, I cannot.", "Hello there!"]) + "\n")
    with pytest.raises(InputError) as err:
        _read(path)
    assert (err.value.file, err.value.line, err.value.key) == (str(path), 1, "output")
    assert "'output' appears twice in the header (columns 2 and 3)" in str(err.value)
    res = CliRunner().invoke(main, ["filter", str(path), "-o", str(tmp_path / "out"), "-q", "--no-html"])
    assert res.exit_code == 2 and f"{path}:1 at 'output'" in res.output
    assert not (tmp_path / "out" / "accepted.jsonl").exists()


def test_one_empty_header_name_is_a_column_two_are_a_duplicate(tmp_path: Path) -> None:
    """A trailing delimiter gives one column named "" (kept, like any other); a second "" would drop values."""
    one = tmp_path / "one.csv"
    one.write_text("instruction,output,\nSay hi.,Hello there!,\n")
    assert [r.record for r in _read(one)] == [{"instruction": "Say hi.", "output": "Hello there!", "": ""}]
    two = tmp_path / "two.csv"
    two.write_text("instruction,,output,\nSay hi.,x,Hello there!,y\n")
    with pytest.raises(InputError, match=r"column '' appears twice in the header \(columns 2 and 4\)") as err:
        _read(two)
    assert (err.value.line, err.value.key) == (1, "")


def test_check_refuses_a_pull_request_that_duplicates_a_column(tmp_path: Path) -> None:
    """The attack of item 3: the PR adds a first 'output' column (what pandas trains on) and keeps the old one
    last, so every record as a dict is unchanged and the gate saw "no records added". Now: exit 2, named."""
    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q", "-b", "main")
    git("config", "user.email", "t@example.org")
    git("config", "user.name", "t")
    data = tmp_path / "data.csv"
    data.write_text("instruction,output\nSay hi.,Hello there! Nice to meet you.\n")
    git("add", "data.csv")
    git("commit", "-q", "-m", "base")
    data.write_text("instruction,output,output\nSay hi.,As an AI language model I cannot greet you.,"
                    "Hello there! Nice to meet you.\n")
    res = CliRunner().invoke(main, ["check", str(data), "--base", "HEAD"])
    assert res.exit_code == 2, res.output
    assert "data.csv:1 at 'output'" in res.output and "appears twice" in res.output


def test_a_parquet_column_or_struct_field_named_twice_is_an_input_error(tmp_path: Path) -> None:
    top = tmp_path / "top.parquet"
    pq.write_table(pa.Table.from_arrays([pa.array(["bad"]), pa.array(["good"])], names=["output", "output"]), top)
    with pytest.raises(InputError, match=r"column 'output' appears twice \(at 1 and 2\)") as err:
        _read(top)
    assert (err.value.file, err.value.key) == (str(top), "output")
    meta = pa.StructArray.from_arrays([pa.array(["a"]), pa.array(["b"])], names=["x", "x"])
    nested = tmp_path / "nested.parquet"
    pq.write_table(pa.table({"output": ["fine"], "meta": pa.array([[{"x": "a", "x2": "b"}]]).cast(
        pa.list_(pa.struct([("x", pa.string()), ("x2", pa.string())]))), "m": meta}), nested)
    with pytest.raises(InputError, match=r"field 'm\.x' appears twice") as err:
        _read(nested)
    assert err.value.key == "m.x"
    # the Ray engine's reader hands Arrow tables to the same function
    with pytest.raises(InputError, match="appears twice"):
        list(io.parquet_rows(pq.ParquetFile(top).read(), str(top), 0, io.MAX_RECORD_BYTES))


# ------------------------------------------------------------------------ item 12: every value counts
def test_a_long_parquet_list_is_record_too_large_without_python_objects(tmp_path: Path) -> None:
    """A few KB of Parquet holding a 3-million-item list: measured in Arrow, rejected with the size and sha256
    of the row as JSON, which is streamed in pieces: Python memory stays far below the row's 24 MB of objects."""
    path = tmp_path / "long.parquet"
    ids = pa.ListArray.from_arrays(pa.array([0, 0, 3_000_000, 3_000_000], pa.int32()),
                                   pa.array(np.full(3_000_000, 7, np.int8)))
    pq.write_table(pa.table({"output": ["before", "Hello there!", "after"], "ids": ids}), path,
                   compression="zstd")
    assert path.stat().st_size < 10_000
    tracemalloc.start()
    records = _read(path)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 8 << 20
    assert [(r.source.line, r.record) for r in records] == [(1, {"output": "before", "ids": []}), (2, None),
                                                            (3, {"output": "after", "ids": []})]
    big = records[1]
    assert big.error is not None and big.error[0] == "record_too_large"
    assert f"row holds more than {MAX_RECORD_VALUES:,} values (input.max_record_values)" in big.error[1]
    whole = dumps_record({"output": "Hello there!", "ids": [7] * 3_000_000})
    assert f"it is {len(whole):,} bytes" in big.error[1] and hashlib.sha256(whole).hexdigest() in big.error[1]
    assert big.raw == whole[:PREVIEW_BYTES]


def test_every_parquet_value_counts_toward_the_byte_limit(tmp_path: Path) -> None:
    """Values that are not top-level text count too, each at least one byte: a list of nulls (no Arrow data),
    numbers in a struct, a map's entries, a dictionary-encoded column."""
    n = 5000
    cases = {
        "nulls": pa.array([[], [None] * n, []], pa.list_(pa.null())),
        "struct": pa.array([{"a": [1]}, {"a": list(range(n))}, {"a": []}]),
        "map": pa.array([[], [(f"k{i}", i) for i in range(n)], [("k", 1)]], pa.map_(pa.string(), pa.int64())),
        "nested": pa.array([[[1]], [[1, 2]] * n, [[]]]),
        "dictionary": pa.array(["short", "x" * n, "short"]).dictionary_encode(),
        "binary": pa.array([b"", b"\x00" * n, b"x"]),
    }
    for name, column in cases.items():
        path = tmp_path / f"{name}.parquet"
        pq.write_table(pa.table({"output": ["a", "b", "c"], "v": column}), path)
        assert _reasons(path, max_record_bytes=4096) == [(1, None), (2, "record_too_large"), (3, None)], name
        big = _read(path, max_record_bytes=4096)[1]
        whole = dumps_record(pq.read_table(path).slice(1, 1).to_pylist()[0])
        assert big.error is not None and "over the limit of 4,096 (input.max_record_bytes)" in big.error[1], name
        assert hashlib.sha256(whole).hexdigest() in big.error[1] and big.raw == whole[:PREVIEW_BYTES], name


def test_a_streamed_row_is_byte_for_byte_dumps_record(monkeypatch: pytest.MonkeyPatch) -> None:
    """With tiny pieces every streaming branch runs (lists, maps, structs, long strings and binaries, nested
    lists, nulls, NaN): the pieces join into exactly what ``dumps_record`` writes for the row."""
    monkeypatch.setattr(io, "_PIECE_VALUES", 3)
    monkeypatch.setattr(io, "_PIECE_BYTES", 20)
    table = pa.table({
        "s": pa.array(['héllo "q" \n\u2028' * 5, None, "x"]),
        "b": pa.array([b"\x00\x01\xff" * 20, b"", None]),
        "l": pa.array([[1, None, 3] * 5, [], None], pa.list_(pa.int64())),
        "ll": pa.array([[[1.5, float("nan")], [], None] * 3, [[2.0]], None]),
        "st": pa.array([{"x": "abc" * 10, "y": [1, 2, 3, 4]}, None, {"x": "", "y": []}]),
        "m": pa.array([[("k" * 30, [1, 2, 3, 4, 5]), ("b", None)], None, []],
                      pa.map_(pa.string(), pa.list_(pa.int8()))),
        "d": pa.array(["aaaa" * 10, "b", "aaaa" * 10]).dictionary_encode(),
        "f": pa.array([[1, 2], [3, 4], None], pa.list_(pa.int32(), 2)),
        "ls": pa.array([["a" * 30, "b"] * 3, None, ["c"]], pa.large_list(pa.large_string())),
        "ts": pa.array([1, 2, None], pa.timestamp("s")),
        "bo": pa.array([[True, False, None] * 3, [], None]),
    })
    for batch in (table.to_batches()[0], table.to_batches()[0].slice(1)):
        for i, record in enumerate(batch.to_pylist()):
            assert b"".join(io._row_json(batch, i)) == dumps_record(record)


def test_parquet_batches_shrink_for_rows_of_many_values(tmp_path: Path) -> None:
    """128 rows of 100,000-item lists in 1.5 KB: read 2,048 rows at a time, Arrow decoded all 12.8M values at
    once (194 MiB; 2,048 such rows, 3 GiB). The row group's metadata now sizes batches to about 1M values."""
    path = tmp_path / "wide.parquet"
    rows, width = 128, 100_000
    ids = pa.ListArray.from_arrays(pa.array(np.arange(rows + 1, dtype=np.int32) * width),
                                   pa.array(np.zeros(rows * width, np.int64)))
    pq.write_table(pa.table({"output": ["x"] * rows, "ids": ids}), path, compression="zstd")
    assert io._batch_rows(pq.ParquetFile(path).metadata.row_group(0), 2048) == 10
    code = ("import sys, pyarrow as pa\nfrom qualgate.io import read_records\n"
            "n = sum(1 for r in read_records([sys.argv[1]]) if r.error)\n"
            "print(n, pa.default_memory_pool().max_memory())")
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True)
    rejected, peak = map(int, out.stdout.split())
    assert rejected == rows and peak < 48 << 20  # 10 rows of 800 KB at a time, not 128


def test_a_json_record_of_many_values_is_record_too_large(tmp_path: Path) -> None:
    """100,000 keys in one line (1.3 MB, well under the byte limit), or as many array items at any depth, in
    JSONL, a JSON array item and a single .json object: record_too_large, with the line's size and sha256."""
    keys = {f"k{i}": 0 for i in range(100_000)}
    wide = json.dumps({"output": "wide", **keys}).encode()
    deep = json.dumps({"output": "deep", "m": [{"a": [[0] * 40_000]}, [0] * 30_000]}).encode()
    path = tmp_path / "a.jsonl"
    path.write_bytes(b'{"output": "first"}\n' + wide + b"\n" + deep + b"\n" + b'{"output": "last"}\n')
    records = _read(path)
    assert [(r.source.line, r.error[0] if r.error else None) for r in records] == [
        (1, None), (2, "record_too_large"), (3, "record_too_large"), (4, None)]
    assert records[1].error is not None and f"it is {len(wide):,} bytes" in records[1].error[1]
    assert hashlib.sha256(wide).hexdigest() in records[1].error[1] and records[1].raw == wide[:PREVIEW_BYTES]
    array = tmp_path / "a.json"
    array.write_text(json.dumps([{"output": "first"}, {"output": "wide", **keys}]))
    assert _reasons(array) == [(1, None), (2, "record_too_large")]
    single = tmp_path / "one.json"
    single.write_bytes(wide)
    assert _reasons(single) == [(1, "record_too_large")]
    assert not over_values({"a": [0] * MAX_RECORD_VALUES}, MAX_RECORD_VALUES + 1)
    assert over_values({"a": [0] * MAX_RECORD_VALUES}, MAX_RECORD_VALUES)
    # counted exactly before parsing, across the 1 MiB windows of the count, commas in strings left out
    src = Source("a.jsonl", 1)
    assert parse_line(wide, src, 100_001).record is not None and parse_line(wide, src, 100_000).record is None
    commas = json.dumps({"output": "a,b,[" * 500_000, "n": [0] * 10, "e": [], "s": ["x,"] * 3}).encode()
    assert parse_line(commas, src, 17).record is not None and parse_line(commas, src, 16).record is None


def test_a_csv_row_or_header_of_many_fields(tmp_path: Path) -> None:
    fields = 100_000
    row = tmp_path / "row.csv"
    row.write_text("instruction,output\nSay hi.,Hello!\n" + ",".join(["0"] * fields) + "\nBye.,Goodbye!\n")
    records = _read(row)
    assert [(r.source.line, r.error[0] if r.error else None) for r in records] == [
        (2, None), (3, "record_too_large"), (4, None)]
    assert records[1].error is not None and "row holds more than 65,536 values" in records[1].error[1]
    header = tmp_path / "header.csv"
    header.write_text(",".join(f"c{i}" for i in range(fields)) + "\n" + ",".join(["0"] * fields) + "\n")
    with pytest.raises(InputError, match=r"header has 100,000 columns, over input\.max_record_values") as err:
        _read(header)
    assert err.value.line == 1


def test_the_value_limit_is_configurable(tmp_path: Path) -> None:
    assert Gate.from_config("instruct", cache_dir=None).config.input.max_record_values == 65_536
    path = tmp_path / "in.jsonl"
    path.write_text(json.dumps({"instruction": "Say hi.", "input": "", "output": "Hello there, how are you?"}) + "\n"
                    + json.dumps({"instruction": "Count.", "input": "", "output": "Here.", "n": list(range(200))})
                    + "\n")
    config = tmp_path / "few.yaml"
    config.write_text("version: 1\nextends: instruct\ninput: {max_record_values: 100}\n")
    res = CliRunner().invoke(main, ["filter", str(path), "-c", str(config), "-o", str(tmp_path / "out"), "-q",
                                    "--no-html"])
    assert res.exit_code in (0, 1), res.output
    rejected = [json.loads(x) for x in (tmp_path / "out" / "rejected.jsonl").read_text().splitlines()]
    assert [(r["qualgate"]["source"]["line"], r["qualgate"]["findings"][0]["reason"]) for r in rejected] == [
        (2, "record_too_large")]


# ------------------------------------------------------------------------ item 15: one line-end rule
def _ray_records(data: bytes, name: str) -> list[tuple[Any, str | None]]:
    """What the Ray engine's JSONL path yields for ``data`` (its task, then the driver's parse), without Ray."""
    out = _lines({"bytes": [data], "path": [name]}, io.MAX_RECORD_BYTES)
    return [(r.record, r.error[0] if r.error else None)
            for r in (parse_line(bytes(raw), Source(name, n)) for n, raw in zip(out["line"], out["raw"], strict=True))]


lines = st.lists(st.one_of(
    st.dictionaries(st.sampled_from(["text", "output", "id"]), st.text(max_size=8) | st.integers(), max_size=3)
    .map(lambda d: json.dumps(d).encode()),
    st.sampled_from([b"", b"  ", b"not json", b'{"a": 1', b'{"a": 1} {"b": 2}', b'{"a":\r1}', b"[1]"])),
    min_size=1, max_size=6)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=lines, ends=st.lists(st.sampled_from([b"\n", b"\r\n", b"\r", b"\r\r\n", b"\n\r"]), min_size=6,
                                  max_size=6), bom=st.booleans(), last=st.booleans())
def test_the_same_bytes_give_the_same_records_as_jsonl_json_and_on_ray(tmp_path: Path, lines: list[bytes],
                                                                       ends: list[bytes], bom: bool,
                                                                       last: bool) -> None:
    """Lines end at LF (CRLF included) for every reader: a lone CR is not a line end in .jsonl, in JSON Lines
    saved as .json (which split at it before), nor in the Ray engine's reader."""
    data = (b"\xef\xbb\xbf" if bom else b"") + b"".join(line + end for line, end in zip(lines, ends, strict=False))
    if not last:
        data = data.rstrip(b"\r\n")
    (tmp_path / "a.jsonl").write_bytes(data)
    as_jsonl = [(r.record, r.error[0] if r.error else None) for r in _read(tmp_path / "a.jsonl")]
    assert _ray_records(data, "a.jsonl") == as_jsonl
    if data.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] == b"{":  # else .json reads one JSON document, as it should
        (tmp_path / "a.json").write_bytes(data)
        assert [(r.record, r.error[0] if r.error else None) for r in _read(tmp_path / "a.json")] == as_jsonl


def test_a_lone_cr_line_says_why_it_is_malformed(tmp_path: Path) -> None:
    data = b'{"text": "a b c."}\r{"text": "d e f."}\r\n{"text": "g."}\n'
    for name in ("a.jsonl", "a.json"):
        (tmp_path / name).write_bytes(data)
        records = _read(tmp_path / name)
        assert [r.source.line for r in records] == [1, 2], name
        assert records[0].error is not None and "lone CR" in records[0].error[1], name
        assert records[1].record == {"text": "g."}, name


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet='a,[]{}"\\\n\u2028é', max_size=4),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(alphabet='k,[{"\\', max_size=3), inner,
                                                                max_size=4), max_leaves=25)


@settings(max_examples=500, deadline=None)
@given(value=st.dictionaries(st.text(max_size=2), json_values, max_size=4), limit=st.integers(0, 30),
       compact=st.booleans())
def test_a_line_is_counted_before_parsing_exactly_as_after(value: dict[str, Any], limit: int, compact: bool) -> None:
    """A JSONL line is measured before it is parsed (a million keys cost 2 s and 300 MB to parse): the count is
    the one the parsed record has, whatever its strings hold (commas, brackets, quotes, escapes)."""
    line = json.dumps(value, separators=(",", ":") if compact else None, ensure_ascii=compact).encode()
    record = parse_line(line, Source("a.jsonl", 1), limit)
    assert (record.error is not None and record.error[0] == "record_too_large") == over_values(value, limit)
