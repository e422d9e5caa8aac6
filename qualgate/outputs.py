"""Writes a run's outputs atomically: accepted.jsonl, rejected.jsonl, scores.parquet, report.json/.md/.junit.xml."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qualgate.findings import Decision
from qualgate.gate import rejected_record
from qualgate.io import AtomicFiles, dumps_record
from qualgate.report import Report

_ROWS_PER_GROUP = 8192


class RunWriter:
    """Streams decisions to files under temporary names; ``close`` writes the report and renames all."""

    def __init__(self, outdir: str | Path, score_columns: list[str]) -> None:
        import pyarrow as pa

        self.files = AtomicFiles(outdir)
        self.accepted = self.files.open("accepted.jsonl")
        self.rejected = self.files.open("rejected.jsonl")
        self.columns = score_columns
        fields = [pa.field("id", pa.string()), pa.field("accepted", pa.bool_()), pa.field("file", pa.string()),
                  pa.field("line", pa.int64())] + [pa.field(c, pa.float64()) for c in score_columns]
        self.schema = pa.schema(fields)
        self._rows: dict[str, list[Any]] = {f.name: [] for f in fields}
        self._parquet: Any = None
        self._parquet_path = self.files.path("scores.parquet")

    def write(self, d: Decision) -> None:
        s, accepted = d.sample, not d.findings
        if accepted:
            line = s.raw if s.raw is not None else dumps_record(s.record)
            self.accepted.write(line + b"\n")
        else:
            self.rejected.write(dumps_record(rejected_record(d)) + b"\n")
        rows, src, scores = self._rows, s.source, d.scores
        rows["id"].append(s.id)
        rows["accepted"].append(accepted)
        rows["file"].append(src.file if src else None)
        rows["line"].append(src.line if src else None)
        for c in self.columns:
            rows[c].append(scores.get(c))
        if len(rows["id"]) >= _ROWS_PER_GROUP:
            self._flush()

    def _flush(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        created = self._parquet is None
        if created:
            self._parquet = pq.ParquetWriter(self._parquet_path, self.schema)
        if self._rows["id"] or created:
            self._parquet.write_table(pa.table(self._rows, schema=self.schema))
        self._rows = {k: [] for k in self._rows}

    def close(self, report: Report) -> None:
        self._flush()
        self._parquet.close()
        self.accepted.close()
        self.rejected.close()
        with self.files.open("report.json") as fh:
            fh.write(report.to_json().encode("utf-8"))
        with self.files.open("report.md") as fh:
            fh.write(report.to_markdown().encode("utf-8"))
        with self.files.open("report.junit.xml") as fh:
            fh.write(report.to_junit().encode("utf-8"))
        self.files.commit()

    def abort(self) -> None:
        for fh in (self.accepted, self.rejected):
            fh.close()
        if self._parquet is not None:
            self._parquet.close()
        self.files.abort()
