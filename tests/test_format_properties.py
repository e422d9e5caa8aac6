"""Property tests (hypothesis) for the readers: the same records written as JSONL, a JSON array, CSV, TSV and
Parquet get the same decisions; arbitrary bytes in any format give records or a documented InputError, and
every record read gets exactly one decision."""

from __future__ import annotations

import csv
import io
import json
import tempfile
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qualgate.errors import InputError
from qualgate.gate import Gate
from qualgate.io import FORMATS, read_records

GATE = Gate.from_config("instruct", cache_dir=None, workers=1)
#: texts as generators write them, plus the characters that break formats: quotes, separators, line ends, NUL
texts = st.text(st.characters(blacklist_categories=("Cs",)) | st.sampled_from(list('",\t\r\n\x00\\ ')),
                max_size=60) | st.sampled_from(["Hello there, how are you today?", "As an AI language model, I can't.",
                                                "The answer is 42 because six times seven is 42."])
records = st.lists(st.fixed_dictionaries({"instruction": texts, "input": texts, "output": texts}), max_size=12)


def _write(recs: list[dict[str, str]], fmt: str, folder: Path) -> Path:
    path = folder / f"in.{fmt}"
    if fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in recs), encoding="utf-8")
    elif fmt == "json":
        path.write_text(json.dumps(recs), encoding="utf-8")
    elif fmt in ("csv", "tsv"):
        buf = io.StringIO()
        writer = csv.writer(buf, delimiter="\t" if fmt == "tsv" else ",", lineterminator="\r\n")
        writer.writerow(["instruction", "input", "output"])
        writer.writerows([r["instruction"], r["input"], r["output"]] for r in recs)
        path.write_bytes(buf.getvalue().encode("utf-8"))
    else:
        pq.write_table(pa.table({k: pa.array([r[k] for r in recs], pa.string())
                                 for k in ("instruction", "input", "output")}), path)
    return path


def _decided(path: Path) -> list[tuple[str, bool, list[str]]]:
    raws = list(read_records([str(path)]))
    decisions = GATE.run(raws).decisions
    assert len(decisions) == len(raws)
    return [(d.id, d.accepted, [f.reason for f in d.findings]) for d in decisions]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(recs=records)
def test_every_format_gives_the_same_decisions(recs: list[dict[str, str]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        results = {fmt: _decided(_write(recs, fmt, Path(tmp))) for fmt in FORMATS}
    for fmt, got in results.items():
        assert got == results["jsonl"], fmt


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=st.binary(max_size=600) | st.builds(lambda r, junk: json.dumps(r).encode() + junk, records,
                                                st.binary(max_size=20)),
       fmt=st.sampled_from(FORMATS))
def test_arbitrary_bytes_give_records_or_an_input_error(body: bytes, fmt: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"in.{fmt}"
        path.write_bytes(body)
        try:
            raws: list[Any] = list(read_records([str(path)]))
        except InputError as exc:
            assert exc.file == str(path) and str(exc)
            return
        decisions = GATE.run(raws).decisions
    assert len(decisions) == len(raws)
    for d in decisions:
        assert d.accepted == (not d.findings)
        assert all(f.check and f.reason and f.message for f in d.findings)
