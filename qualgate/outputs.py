"""Writes a run's outputs atomically: accepted.jsonl, rejected.jsonl, scores.parquet, overrides.jsonl (when a
reviewer overruled any sample), report.json/.md/.html/.junit.xml.

``scores.parquet`` holds, per sample in input order, its final decision, every score, the checks it skipped,
each check's evidence (JSON, a column per check), any override and the repairs made before the checks (JSON of
``repair.Repaired.repairs``, with each changed field's value as read; accepted records too): what
``qualgate tune`` and ``qualgate explain`` read back.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from qualgate.findings import Decision
from qualgate.gate import rejected_record
from qualgate.io import AtomicFiles, dumps_record
from qualgate.repair import repairs_of
from qualgate.report import Report

_ROWS_PER_GROUP = 8192
#: Every file a run may write; report.json is written last and means the folder holds one complete run.
OUTPUT_NAMES = ("accepted.jsonl", "rejected.jsonl", "scores.parquet", "overrides.jsonl", "report.json",
                "report.md", "report.html", "report.junit.xml")
SKIPPED, OVERRIDE_COLUMN, UNIT = "skipped", "override", "unit"
#: Columns of scores.parquet besides id/accepted/file/line, the scores and the evidence: comma-joined
#: skipped checks, JSON of the override, and what ``line`` counts when it is not a file line ("item" of a
#: JSON array, "row" of CSV/Parquet; null = line).
TRACE_COLUMNS = (SKIPPED, OVERRIDE_COLUMN, UNIT)
#: One column per check, ``evidence:<check>``: the JSON of its evidence (one column each, so a reader
#: such as ``qualgate tune`` decodes only the checks it needs).
EVIDENCE_PREFIX = "evidence:"
#: JSON of the repairs made to the record before the checks (null: none); not in TRACE_COLUMNS, so runs written
#: before repairs existed are still read.
REPAIRS_COLUMN = "repairs"


def _utf8(text: str) -> str:
    """Parquet strings must be valid UTF-8: a lone surrogate (from a JSON escape) is written as its escape."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def check_names(score_columns: list[str]) -> list[str]:
    """The checks behind ``<check>.<score>`` columns, in order."""
    return list(dict.fromkeys(c.split(".", 1)[0] for c in score_columns))


class RunWriter:
    """Streams decisions to files under temporary names; ``close`` writes the report and renames all."""

    def __init__(self, outdir: str | Path, score_columns: list[str], *, html: bool = True) -> None:
        """``html``: also write report.html (matplotlib; about 0.3 s a run, 1 s with the import)."""
        import pyarrow as pa

        self.files = AtomicFiles(outdir, marker="report.json")
        self._overrides: Any = None
        self._parquet: Any = None
        self.accepted: Any = None
        self.rejected: Any = None
        self._parquet_file: Any = None
        try:  # interrupted while opening (Ctrl-C), the files opened so far are removed
            self.accepted = self.files.open("accepted.jsonl")
            self.rejected = self.files.open("rejected.jsonl")
            self._parquet_file = self.files.open("scores.parquet")
        except BaseException:
            self.abort()
            raise
        self.columns = score_columns
        self.html = html
        self.checks = check_names(score_columns)
        fields = ([pa.field("id", pa.string()), pa.field("accepted", pa.bool_()), pa.field("file", pa.string()),
                   pa.field("line", pa.int64())] + [pa.field(c, pa.float64()) for c in score_columns]
                  + [pa.field(c, pa.string()) for c in (*TRACE_COLUMNS, REPAIRS_COLUMN)]
                  + [pa.field(EVIDENCE_PREFIX + n, pa.string()) for n in self.checks])
        self.schema = pa.schema(fields)
        self._rows: dict[str, list[Any]] = {f.name: [] for f in fields}

    def write(self, d: Decision, stored_evidence: Mapping[str, str | None] | None = None) -> None:
        """``stored_evidence``: evidence already as JSON text per check (``qualgate tune`` passes on what it
        read instead of decoding and encoding it again)."""
        s, accepted = d.sample, d.accepted
        if accepted:
            line = s.raw if s.raw is not None else dumps_record(s.record)
            self.accepted.write(line + b"\n")
        else:
            self.rejected.write(dumps_record(rejected_record(d)) + b"\n")
        rows, src, scores = self._rows, s.source, d.scores
        rows["id"].append(_utf8(s.id))
        rows["accepted"].append(accepted)
        rows["file"].append(_utf8(src.file) if src else None)
        rows["line"].append(src.line if src else None)
        for c in self.columns:
            rows[c].append(scores.get(c))
        rows[SKIPPED].append(",".join(d.skipped) if d.skipped else None)
        rows[UNIT].append(src.unit if src is not None and src.unit != "line" else None)
        if stored_evidence is not None:
            for name in self.checks:
                rows[EVIDENCE_PREFIX + name].append(stored_evidence.get(name))
        else:
            evidence = d.evidence
            for name in self.checks:
                ev = evidence.get(name)
                rows[EVIDENCE_PREFIX + name].append(dumps_record(ev).decode("utf-8") if ev else None)
        rows[OVERRIDE_COLUMN].append(dumps_record(d.override.to_dict()).decode("utf-8") if d.override else None)
        repairs = repairs_of(s.record)
        rows[REPAIRS_COLUMN].append(_utf8(dumps_record(repairs).decode("utf-8")) if repairs else None)
        if d.override is not None:
            if self._overrides is None:
                self._overrides = self.files.open("overrides.jsonl")
            self._overrides.write(dumps_record({"id": s.id, "source": src.to_dict() if src else None,
                                                **d.override.to_dict(),
                                                "findings": [f.to_dict() for f in d.findings]}) + b"\n")
        if len(rows["id"]) >= _ROWS_PER_GROUP:
            self._flush()

    def _flush(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        created = self._parquet is None
        if created:
            self._parquet = pq.ParquetWriter(self._parquet_file, self.schema)  # our handle: never reopened by name
        if self._rows["id"] or created:
            self._parquet.write_table(pa.table(self._rows, schema=self.schema))
        self._rows = {k: [] for k in self._rows}

    def close(self, report: Report) -> None:
        self._flush()
        self._parquet.close()
        self._parquet_file.close()
        self.accepted.close()
        self.rejected.close()
        if self._overrides is not None:
            self._overrides.close()
        with self.files.open("report.json") as fh:
            fh.write(report.to_json().encode("utf-8"))
        with self.files.open("report.md") as fh:
            fh.write(report.to_markdown().encode("utf-8"))
        if self.html:
            from qualgate.html import render_html  # imports matplotlib: only when a run writes its report

            with self.files.open("report.html") as fh:
                fh.write(render_html(report.data).encode("utf-8"))
        with self.files.open("report.junit.xml") as fh:
            fh.write(report.to_junit().encode("utf-8"))
        self.files.commit(stale=OUTPUT_NAMES)

    def abort(self) -> None:
        if self._parquet is not None:
            self._parquet.close()
        for fh in (self.accepted, self.rejected, self._overrides, self._parquet_file):
            if fh is not None:
                fh.close()
        self.files.abort()
