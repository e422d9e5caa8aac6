"""``qualgate explain``: everything a run recorded about one sample, and the kept sample beside a duplicate.

Reads only the run's outputs (``scores.parquet``, ``rejected.jsonl``) and, to show a kept sample, the
line of the input or baseline file its source names: nothing is recomputed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from qualgate.errors import InputError, QualgateError
from qualgate.runfolder import (
    EVIDENCE_PREFIX,
    OVERRIDE_COLUMN,
    QUALGATE_FIELD,
    REPAIRS_COLUMN,
    SCORES,
    SKIPPED,
    UNIT,
    read_rejected,
    score_columns,
)
from qualgate.untrusted import term


def _line(file: str, line: int, unit: str = "line") -> str | None:
    """The record at ``line`` (1-based; a file line, or the item/row of a JSON array, CSV or Parquet file) as
    JSON text, or None when the file or record is gone."""
    from qualgate.io import detect_format, dumps_record, lines_at, read_records

    try:
        if unit == "line" and detect_format(file) == "jsonl":
            raw = lines_at(file, {line}).get(line)
            return raw.decode("utf-8", "replace") if raw is not None else None
        for rec in read_records([file]):
            if rec.source.line == line:
                return dumps_record(rec.record).decode("utf-8") if rec.record is not None else None
    except (OSError, QualgateError):
        return None
    return None


def _position(src: dict[str, Any]) -> tuple[Any, Any]:
    """(file, position) of a source dict, whatever unit it counts in."""
    return src.get("file"), src.get("line", src.get("item", src.get("row")))


def explain(run_dir: str | Path, sample_id: str) -> dict[str, Any]:
    """The sample's decision, every score (None: not computed, e.g. skipped after an earlier finding), every
    finding, and for each duplicate finding the kept sample's record."""
    import pyarrow.parquet as pq

    run = Path(run_dir)
    if not (run / SCORES).is_file():
        raise InputError(f"not a qualgate run folder (no {SCORES})", file=str(run))
    parquet = pq.read_table(run / SCORES)
    columns = score_columns(parquet.column_names)
    table = parquet.to_pylist()
    rows = [r for r in table if r["id"] == sample_id]
    if not rows:
        raise InputError(f"no sample with id {sample_id!r} in this run", file=str(run / SCORES))
    by_id = {r["id"]: r for r in table}
    out: dict[str, Any] = {"id": sample_id, "occurrences": []}
    rejected = {}
    for line in read_rejected(run):
        q = line.get(QUALGATE_FIELD, {})
        if q.get("id") == sample_id:
            rejected[_position(q.get("source") or {})] = line
    for row in rows:
        where = (row["file"], row["line"])
        scores = {k: row[k] for k in columns}
        occ: dict[str, Any] = {"file": row["file"], "line": row["line"], "accepted": row["accepted"],
                               "scores": {k: v for k, v in scores.items() if v is not None},
                               "not_scored": sorted(k for k, v in scores.items() if v is None)}
        if row.get(SKIPPED):
            occ["skipped"] = row[SKIPPED].split(",")
        evidence = {k.removeprefix(EVIDENCE_PREFIX): json.loads(v) for k, v in row.items()
                    if k.startswith(EVIDENCE_PREFIX) and v}
        if evidence:
            occ["evidence"] = evidence
        if row.get(OVERRIDE_COLUMN):
            occ["override"] = json.loads(row[OVERRIDE_COLUMN])
        if row.get(REPAIRS_COLUMN):
            occ["repairs"] = json.loads(row[REPAIRS_COLUMN])
        rec = rejected.get(where)
        if rec is None and not row["accepted"] and len(rejected) == 1:
            rec = next(iter(rejected.values()))
        if rec is not None:
            occ["findings"] = rec[QUALGATE_FIELD].get("findings", [])
            for f in occ["findings"]:
                kept_id: str | None = (f.get("evidence") or {}).get("duplicate_of")
                if not kept_id:
                    continue
                source = (f.get("evidence") or {}).get("duplicate_source")
                kept_row = by_id.get(kept_id)
                if source is None and kept_row is not None:
                    source = {"file": kept_row["file"], "line": kept_row["line"]}
                file, where = _position(source or {})
                unit = next((u for u in ("item", "row") if u in (source or {})), "line")
                if kept_row is not None and source is not None and "line" in source and kept_row.get(UNIT):
                    unit = kept_row[UNIT]
                kept_text = _line(file, where, unit) if file and where else None
                f["kept_sample"] = {"id": kept_id, "source": source, "record": kept_text}
        elif row["file"] and row["line"]:
            occ["record"] = _line(row["file"], row["line"], row.get(UNIT) or "line")
        out["occurrences"].append(occ)
    return out


def render(info: dict[str, Any]) -> str:
    """Plain text for a terminal; every value from the run passes through ``term`` (no escape sequence,
    carriage return or bidi control from the data reaches the terminal)."""
    lines = [f"sample {term(info['id'])}"]
    for occ in info["occurrences"]:
        lines.append(f"\n{term(occ['file'])}:{term(occ['line'])}: {'ACCEPTED' if occ['accepted'] else 'REJECTED'}")
        ov = occ.get("override")
        if ov:
            note = f": {term(ov['note'])}" if ov["note"] else ""
            lines.append(f"  overridden: {term(ov['decision'])} by {term(ov['reviewer'])}{note} "
                         "(the findings below stay recorded)")
        for rep in occ.get("repairs", []):  # made before the checks; "before" is the value as read
            lines.append(f"  repaired {term(rep['field'])} ({term(', '.join(rep['steps']))}), was: "
                         f"{term(json.dumps(rep['before'], ensure_ascii=False)[:200])}")
        for f in occ.get("findings", []):
            lines.append(f"  {term(f['check'])} / {term(f['reason'])}: {term(f['message'])}")
            lines.append(f"    score {term(f.get('score'))} vs threshold {term(f.get('threshold'))}")
            kept = f.get("kept_sample")
            if kept:
                src = kept["source"] or {}
                lines.append(f"    kept sample {term(kept['id'])} ({term(src.get('file'))}:{term(src.get('line'))}):")
                lines.append(f"      {term((kept['record'] or '(not available)')[:500])}")
        if occ["scores"]:
            lines.append("  scores:")
            lines += [f"    {term(k)} = {term(v)}" for k, v in occ["scores"].items()]
        for check, ev in occ.get("evidence", {}).items():
            lines.append(f"  evidence of {term(check)}: {term(json.dumps(ev, ensure_ascii=False, default=str)[:300])}")
        if occ.get("skipped"):
            lines.append(f"  skipped after an earlier finding: {term(', '.join(occ['skipped']))}")
        if occ["not_scored"]:
            lines.append(f"  not scored (skipped after an earlier finding, or not applicable): "
                         f"{term(', '.join(occ['not_scored']))}")
    return "\n".join(lines) + "\n"
