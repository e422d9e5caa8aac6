"""A run folder: the files one ``qualgate filter`` (or ``qualgate tune --output``) writes, their names and
columns, the writer and the reader, so that filter, check, explain, tune and labels agree on one layout.

Written atomically (``RunWriter``): accepted.jsonl, rejected.jsonl, scores.parquet, overrides.jsonl (when a
reviewer overruled any sample), report.json/.md/.html/.junit.xml. A rejected.jsonl line is the record plus a
``qualgate`` field (``rejected_record``); ``original_record`` is its inverse.

``scores.parquet`` holds, per sample in input order, its final decision, every score, the checks it skipped,
each check's evidence (JSON, a column per check), any override and the repairs made before the checks (JSON of
``repair.Repaired.repairs``, with each changed field's value as read; accepted records too): what
``qualgate tune`` and ``qualgate explain`` read back (``load_run``, ``read_rejected``).
"""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qualgate.errors import InputError
from qualgate.findings import Decision, Finding
from qualgate.io import AtomicFiles, dumps_record, loads_strict
from qualgate.repair import Repaired, repairs_of
from qualgate.sample import Sample, Source, TextSpec, make_sample

if TYPE_CHECKING:
    from qualgate.config import GateConfig
    from qualgate.report import Report

ACCEPTED, REJECTED, SCORES, OVERRIDES = "accepted.jsonl", "rejected.jsonl", "scores.parquet", "overrides.jsonl"
REPORT_JSON = "report.json"
#: Every file a run may write; report.json is written last and means the folder holds one complete run.
#: card.json and CARD.md are its provenance card (``qualgate.card``).
OUTPUT_NAMES = (ACCEPTED, REJECTED, SCORES, OVERRIDES, REPORT_JSON, "report.md", "report.html", "report.junit.xml",
                "card.json", "CARD.md")
#: The field a rejected.jsonl line adds to the record: id, findings, source, skipped (``Decision.qualgate_field``).
QUALGATE_FIELD = "qualgate"

_ROWS_PER_GROUP = 8192
#: The first columns of scores.parquet: the sample's id, its final decision and where it was read.
FIXED_COLUMNS = ("id", "accepted", "file", "line")
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


def _utf8_all(texts: list[str | None]) -> list[str | None]:
    """``_utf8`` of each text (None stays None), testing them all at once: nearly always all are valid."""
    try:
        "".join([t for t in texts if t is not None]).encode("utf-8")
    except UnicodeEncodeError:
        return [_utf8(t) if t is not None else None for t in texts]
    return texts


def arrow_column(values: list[Any], kind: Any) -> Any:
    """``values`` (None: null) as an Arrow array of ``kind``: string, bool, int64 or float64.

    Built from its buffers because ``pa.array`` and ``pa.table`` import pandas, when it is installed, to ask
    whether the values are a pandas object: 0.25 s, a third of a 100-record rules-only run.
    """
    import numpy as np
    import pyarrow as pa

    n, nulls, validity = len(values), values.count(None), None
    if nulls:
        present = np.array([v is not None for v in values], dtype=bool)
        validity = pa.py_buffer(np.packbits(present, bitorder="little"))
    if pa.types.is_string(kind):
        encoded = [v.encode("utf-8") if v is not None else b"" for v in values]
        joined = b"".join(encoded)
        if len(joined) >= 1 << 31:  # past 32-bit offsets: pa.array splits it into chunks
            return pa.array(values, kind)
        offsets = np.zeros(n + 1, dtype=np.int32)
        np.cumsum(np.fromiter(map(len, encoded), dtype=np.int64, count=n), out=offsets[1:])
        return pa.Array.from_buffers(kind, n, [validity, pa.py_buffer(offsets), pa.py_buffer(joined)], nulls)
    if pa.types.is_boolean(kind):
        data = np.packbits(np.array(values, dtype=bool), bitorder="little")  # a null is False under its bit
    elif pa.types.is_float64(kind):
        data = np.array(values, dtype=np.float64)  # a null is NaN under its bit
    elif pa.types.is_int64(kind):
        data = np.array([0 if v is None else v for v in values], dtype=np.int64)
    else:
        raise TypeError(f"no column of type {kind}")
    return pa.Array.from_buffers(kind, n, [validity, pa.py_buffer(data)], nulls)


def check_names(score_columns: list[str]) -> list[str]:
    """The checks behind ``<check>.<score>`` columns, in order."""
    return list(dict.fromkeys(c.split(".", 1)[0] for c in score_columns))


def score_columns(names: list[str]) -> list[str]:
    """The ``<check>.<score>`` columns among scores.parquet's column ``names``, in order."""
    return [c for c in names if c not in FIXED_COLUMNS and c not in TRACE_COLUMNS and c != REPAIRS_COLUMN
            and not c.startswith(EVIDENCE_PREFIX)]


# ------------------------------------------------------------------------------------- rejected records
def rejected_record(d: Decision) -> dict[str, Any]:
    """The record's own fields plus ``qualgate`` (id, findings, source). Unparseable input keeps its raw text."""
    q = d.qualgate_field()
    rec = d.sample.record
    if rec is None:
        raw = d.sample.raw or b""
        try:
            q["raw"] = raw.decode("utf-8")
        except UnicodeDecodeError:
            q["raw"] = raw.decode("utf-8", "replace")
            q["raw_base64"] = base64.b64encode(raw).decode("ascii")
        return {QUALGATE_FIELD: q}
    out = dict(rec)
    if QUALGATE_FIELD in out:
        q["replaced_field"] = out[QUALGATE_FIELD]
    if repairs := repairs_of(rec):  # the record as the checks read it; ``repair.restore`` gives back the input
        q["repairs"] = repairs
    out[QUALGATE_FIELD] = q
    return out


def original_record(rec: Mapping[str, Any]) -> tuple[dict[str, Any] | None, bytes | None]:
    """The inverse of ``rejected_record``: (the record without the ``qualgate`` field, a field of that name the
    record had itself back in its place; None) or, for input that could not be parsed, (None, its raw bytes).
    The record is as the checks read it: repairs (``qualgate.repairs``) are not undone (``repair.restore`` does)."""
    q = rec.get(QUALGATE_FIELD)
    if not isinstance(q, Mapping):  # not a rejected.jsonl line
        q = {}
    if "raw" in q:
        return None, base64.b64decode(q["raw_base64"]) if "raw_base64" in q else q["raw"].encode("utf-8")
    if "replaced_field" in q:
        return {k: q["replaced_field"] if k == QUALGATE_FIELD else v for k, v in rec.items()}, None
    return {k: v for k, v in rec.items() if k != QUALGATE_FIELD}, None


class RunWriter:
    """Streams decisions to files under temporary names; ``close`` writes the report and renames all."""

    def __init__(self, outdir: str | Path, score_columns: list[str], *, html: bool = True) -> None:
        """``html``: also write report.html (matplotlib; about 0.3 s a run, 1 s with the import)."""
        import pyarrow as pa

        self.files = AtomicFiles(outdir, marker=REPORT_JSON)
        self._overrides: Any = None
        self._parquet: Any = None
        self.accepted: Any = None
        self.rejected: Any = None
        self._parquet_file: Any = None
        try:  # interrupted while opening (Ctrl-C), the files opened so far are removed
            self.accepted = self.files.open(ACCEPTED)
            self.rejected = self.files.open(REJECTED)
            self._parquet_file = self.files.open(SCORES)
        except BaseException:
            self.abort()
            raise
        self.columns = score_columns
        self.html = html
        self.checks = check_names(score_columns)
        fixed = dict(zip(FIXED_COLUMNS, (pa.string(), pa.bool_(), pa.string(), pa.int64()), strict=True))
        fields = ([pa.field(c, t) for c, t in fixed.items()] + [pa.field(c, pa.float64()) for c in score_columns]
                  + [pa.field(c, pa.string()) for c in (*TRACE_COLUMNS, REPAIRS_COLUMN)]
                  + [pa.field(EVIDENCE_PREFIX + n, pa.string()) for n in self.checks])
        self.schema = pa.schema(fields)
        self._rows: dict[str, list[Any]] = {f.name: [] for f in fields}

    def write(self, d: Decision, stored_evidence: Mapping[str, str | None] | None = None) -> None:
        """``stored_evidence``: evidence already as JSON text per check (``qualgate tune`` passes on what it
        read instead of decoding and encoding it again)."""
        self.write_all([d], None if stored_evidence is None else [stored_evidence])

    def write_all(self, decisions: Sequence[Decision],
                  stored_evidence: Sequence[Mapping[str, str | None]] | None = None) -> None:
        """``write`` each of ``decisions``, in order: a batch's accepted lines go out in one write, its rejected
        ones in another, and each column is filled in one pass (written record by record, a 100k-record
        near-duplicate run spent 1.8 of its 7.8 CPU s here)."""
        accepted = [d.accepted for d in decisions]
        lines = [s.raw if s.raw is not None else dumps_record(s.record)
                 for s, a in zip([d.sample for d in decisions], accepted, strict=True) if a]
        if lines:
            lines.append(b"")
            self.accepted.write(b"\n".join(lines))
        if not all(accepted):
            self.rejected.write(b"".join([dumps_record(rejected_record(d)) + b"\n"
                                          for d, a in zip(decisions, accepted, strict=True) if not a]))
        start = 0
        while start < len(decisions):  # row groups of _ROWS_PER_GROUP rows, wherever the batches end
            end = start + _ROWS_PER_GROUP - len(self._rows["id"])
            self._add_rows(decisions[start:end], accepted[start:end],
                           None if stored_evidence is None else stored_evidence[start:end])
            start = end
            if len(self._rows["id"]) >= _ROWS_PER_GROUP:
                self._flush()

    def _add_rows(self, part: Sequence[Decision], accepted: list[bool],
                  stored_evidence: Sequence[Mapping[str, str | None]] | None) -> None:
        """The scores.parquet rows of ``part`` (and its overrides.jsonl lines), column by column."""
        rows, samples = self._rows, [d.sample for d in part]
        sources = [s.source for s in samples]
        rows["id"] += _utf8_all([s.id for s in samples])
        rows["accepted"] += accepted
        rows["file"] += _utf8_all([src.file if src is not None else None for src in sources])
        rows["line"] += [src.line if src is not None else None for src in sources]
        for c in self.columns:
            rows[c] += [d.scores.get(c) for d in part]
        rows[SKIPPED] += [",".join(d.skipped) if d.skipped else None for d in part]
        rows[UNIT] += [src.unit if src is not None and src.unit != "line" else None for src in sources]
        for name in self.checks:
            if stored_evidence is not None:
                rows[EVIDENCE_PREFIX + name] += [stored.get(name) for stored in stored_evidence]
            else:
                rows[EVIDENCE_PREFIX + name] += [dumps_record(ev).decode("utf-8") if (ev := d.evidence.get(name))
                                                 else None for d in part]
        rows[OVERRIDE_COLUMN] += [dumps_record(d.override.to_dict()).decode("utf-8") if d.override else None
                                  for d in part]
        if any(isinstance(s.record, Repaired) for s in samples):
            rows[REPAIRS_COLUMN] += [_utf8(dumps_record(repairs).decode("utf-8"))
                                     if (repairs := repairs_of(s.record)) else None for s in samples]
        else:
            rows[REPAIRS_COLUMN] += [None] * len(samples)
        for d in part:
            if d.override is not None:
                if self._overrides is None:
                    self._overrides = self.files.open(OVERRIDES)
                src = d.sample.source
                self._overrides.write(dumps_record({"id": d.sample.id, "source": src.to_dict() if src else None,
                                                    **d.override.to_dict(),
                                                    "findings": [f.to_dict() for f in d.findings]}) + b"\n")

    def _flush(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        created = self._parquet is None
        if created:
            self._parquet = pq.ParquetWriter(self._parquet_file, self.schema)  # our handle: never reopened by name
        if self._rows["id"] or created:
            columns = [arrow_column(self._rows[f.name], f.type) for f in self.schema]
            self._parquet.write_table(pa.Table.from_arrays(columns, schema=self.schema))
        self._rows = {k: [] for k in self._rows}

    def close(self, report: Report) -> None:
        self._flush()
        self._parquet.close()
        self._parquet_file.close()
        self.accepted.close()
        self.rejected.close()
        if self._overrides is not None:
            self._overrides.close()
        with self.files.open(REPORT_JSON) as fh:
            fh.write(report.to_json().encode("utf-8"))
        with self.files.open("report.md") as fh:
            fh.write(report.to_markdown().encode("utf-8"))
        if self.html:
            from qualgate.html import render_html  # imports matplotlib: only when a run writes its report

            with self.files.open("report.html") as fh:
                fh.write(render_html(report.data).encode("utf-8"))
        with self.files.open("report.junit.xml") as fh:
            fh.write(report.to_junit().encode("utf-8"))
        from qualgate.card import build_card, card_files, tally_files

        card = build_card(report.data, tally_files(self.files.pending(SCORES), self.files.pending(REJECTED)))
        for name, blob in card_files(card):
            with self.files.open(name) as fh:
                fh.write(blob)
        self.files.commit(stale=OUTPUT_NAMES)

    def abort(self) -> None:
        if self._parquet is not None:
            self._parquet.close()
        for fh in (self.accepted, self.rejected, self._overrides, self._parquet_file):
            if fh is not None:
                fh.close()
        self.files.abort()


# ------------------------------------------------------------------------------------------ reading back
@dataclass
class Row:
    """One sample of the stored run (scores and evidence of the checks that were loaded)."""

    id: str
    file: str | None
    line: int | None
    unit: str  # what ``line`` counts: "line", "item" (JSON array) or "row" (CSV, Parquet)
    accepted: bool
    scores: dict[str, float | None]
    skipped: list[str]
    evidence: dict[str, str | None]  # check -> its evidence as stored (JSON text), decoded when needed
    override: dict[str, Any] | None
    findings: list[Finding]
    record: Any = None  # the rejected.jsonl object, or the accepted.jsonl line (bytes) when loaded
    repairs: list[dict[str, Any]] | None = None  # the repairs made before the checks (``qualgate.repair``)


@dataclass
class StoredRun:
    """A run folder read back: its report, config and rows in input order."""

    path: Path
    report: dict[str, Any]
    config: GateConfig
    rows: list[Row]
    score_columns: list[str]

    @property
    def check_order(self) -> list[str]:
        order = self.report.get("run", {}).get("check_order")
        return list(order) if order else [c.name for c in self.config.checks]

    @property
    def all_findings(self) -> bool:
        return bool(self.report.get("run", {}).get("all_findings"))


def read_report(run_dir: str | Path) -> tuple[Path, dict[str, Any], GateConfig]:
    """A run folder's path, report.json and the config it ran with (resolved, as report.json records it)."""
    from qualgate.config import load_config  # imports the check registry: only when a run is read back

    run = Path(run_dir)
    for name in (SCORES, REPORT_JSON):
        if not (run / name).is_file():
            raise InputError(f"not a qualgate run folder (no {name})", file=str(run))
    report = json.loads((run / REPORT_JSON).read_text(encoding="utf-8"))
    resolved = report.get("config", {}).get("resolved")
    if resolved is None:
        raise InputError("report.json has no resolved config (written by an older qualgate): run the gate again",
                         file=str(run / REPORT_JSON))
    config = load_config(copy.deepcopy(resolved))
    config.source = str(report.get("config", {}).get("source") or config.source)
    return run, report, config


def load_run(run_dir: str | Path, *, checks: set[str] | None = None, records: bool = False) -> StoredRun:
    """Read a run back: ``scores.parquet`` (the score and evidence columns of ``checks`` only; None = all),
    ``report.json``, every finding, and (``records``) the records themselves."""
    import pyarrow.parquet as pq

    run, report, config = read_report(run_dir)
    parquet = pq.ParquetFile(run / SCORES)
    names = parquet.schema_arrow.names
    missing = [c for c in TRACE_COLUMNS if c not in names]
    if missing:
        raise InputError(f"scores.parquet lacks {', '.join(missing)} (written by an older qualgate): run the gate "
                         "again", file=str(run / SCORES))
    all_scores = score_columns(names)
    wanted = [c for c in all_scores if checks is None or c.split(".", 1)[0] in checks]
    evidence_cols = [c for c in names if c.startswith(EVIDENCE_PREFIX)
                     and (checks is None or c.removeprefix(EVIDENCE_PREFIX) in checks)]
    repaired = [REPAIRS_COLUMN] if records and REPAIRS_COLUMN in names else []  # a written run keeps them
    table = parquet.read(columns=[*FIXED_COLUMNS, *TRACE_COLUMNS, *wanted, *evidence_cols, *repaired])
    cols = {c: table.column(c).to_pylist() for c in table.column_names}
    flags = cols["accepted"]
    n_accepted = sum(bool(a) for a in flags)
    n_overridden = sum(1 for o in cols[OVERRIDE_COLUMN] if o)
    rejected = read_rejected(run, len(flags) - n_accepted)
    overridden = _read_jsonl(run / OVERRIDES, n_overridden)
    accepted_lines = _read_lines(run / ACCEPTED, n_accepted) if records else None
    rows: list[Row] = []
    rej_i = ov_i = acc_i = 0
    score_cols = [(c, cols[c]) for c in wanted]
    ev_cols = [(c.removeprefix(EVIDENCE_PREFIX), cols[c]) for c in evidence_cols]
    for i, sid in enumerate(cols["id"]):
        accepted = bool(cols["accepted"][i])
        override = json.loads(cols[OVERRIDE_COLUMN][i]) if cols[OVERRIDE_COLUMN][i] else None
        findings: list[Finding] = []
        record: Any = None
        if not accepted:
            record = rejected[rej_i]
            rej_i += 1
            findings = [Finding.from_dict(f) for f in record.get(QUALGATE_FIELD, {}).get("findings", [])]
        else:
            if accepted_lines is not None:
                record = accepted_lines[acc_i]
                acc_i += 1
            if override is not None:
                findings = [Finding.from_dict(f) for f in overridden[ov_i].get("findings", [])]
        if override is not None:
            ov_i += 1
        skipped = cols[SKIPPED][i].split(",") if cols[SKIPPED][i] else []
        repairs = json.loads(cols[REPAIRS_COLUMN][i]) if repaired and cols[REPAIRS_COLUMN][i] else None
        rows.append(Row(sid, cols["file"][i], cols["line"][i], cols[UNIT][i] or "line", accepted,
                        {c: v[i] for c, v in score_cols}, skipped, {n: v[i] for n, v in ev_cols}, override,
                        findings, record, repairs))
    return StoredRun(run, report, config, rows, all_scores)


def row_sample(row: Row, spec: TextSpec | None = None, id_field: str | None = None,
               fields: dict[str, str] | None = None) -> Sample:
    """The row's sample: its record (when loaded) and, with ``spec``, its text view; for writing the run again
    (``qualgate tune --output``) and the report's examples."""
    source = Source(row.file, row.line, row.unit) if row.file is not None and row.line is not None else None
    rec = row.record
    if isinstance(rec, bytes):  # an accepted.jsonl line: the record as it was read (and repaired)
        record = _with_repairs(loads_strict(rec), row.repairs)
        return Sample(row.id, record, _text(record, spec, id_field, fields), source=source, raw=rec)
    if isinstance(rec, dict):
        original, raw = original_record(rec)
        if original is None:  # unparseable input: its raw text goes back out as it came
            assert raw is not None
            return Sample(row.id, None, raw.decode("utf-8", "replace")[:400], source=source, raw=raw)
        original = _with_repairs(original, row.repairs)
        return Sample(row.id, original, _text(original, spec, id_field, fields), source=source)
    return Sample(row.id, None, source=source)


def _text(record: dict[str, Any], spec: TextSpec | None, id_field: str | None,
          fields: dict[str, str] | None = None) -> str:
    if spec is None:
        return ""
    return make_sample(record, spec, id_field, fields=fields).text


def _with_repairs(record: dict[str, Any], repairs: list[dict[str, Any]] | None) -> dict[str, Any]:
    """A repaired record carries its repairs on, so the tuned run records them as the original did."""
    if not repairs:
        return record
    out = Repaired(record)
    out.repairs = repairs
    return out


def read_rejected(run_dir: str | Path, expected: int | None = None) -> list[dict[str, Any]]:
    """The rejected.jsonl records of a run, in order; ``expected``: as many as scores.parquet says (None: any
    number, and a missing file is none)."""
    return _read_jsonl(Path(run_dir) / REJECTED, expected)


def _read_lines(path: Path, expected: int | None) -> list[bytes]:
    """The non-empty lines of a run's output file, which must be as many as scores.parquet says."""
    if not path.is_file():
        if not expected:
            return []
        raise InputError(f"missing: scores.parquet says it holds {expected} record(s)", file=str(path))
    with open(path, "rb") as fh:
        lines = [line.rstrip(b"\n") for line in fh if line.strip()]
    if expected is not None and len(lines) != expected:
        raise InputError(f"holds {len(lines)} record(s), scores.parquet says {expected}: the run folder is "
                         "inconsistent", file=str(path))
    return lines


def _read_jsonl(path: Path, expected: int | None) -> list[dict[str, Any]]:
    out = []
    for n, line in enumerate(_read_lines(path, expected), start=1):
        try:
            out.append(loads_strict(line))
        except ValueError as exc:
            raise InputError(f"not valid JSON: {exc}", file=str(path), line=n) from None
    return out
