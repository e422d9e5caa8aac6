"""Readers (JSONL, JSON array, CSV/TSV, Parquet, stdin) and atomic writers for run outputs.

Readers never raise on a bad record: each yields a RawRecord, with ``error`` set when the record
could not be parsed, so the gate can reject it as malformed and nothing is lost. Only a file that
cannot be opened at all, or a JSON array / Parquet file that is broken as a whole, is an InputError.
"""

from __future__ import annotations

import base64
import csv
import datetime as _dt
import decimal
import gzip
import io
import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from qualgate.errors import InputError
from qualgate.sample import Source

FORMATS = ("jsonl", "json", "csv", "tsv", "parquet")
_EXT = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv", ".tsv": "tsv",
        ".parquet": "parquet", ".pq": "parquet"}
_BOM = b"\xef\xbb\xbf"


@dataclass
class RawRecord:
    """One record as read. ``raw`` is the exact line for JSONL (written back verbatim when accepted)."""

    source: Source
    record: dict[str, Any] | None
    raw: bytes | None = None
    error: tuple[str, str] | None = None
    verbatim: bool = False


def detect_format(path: str) -> str:
    if path == "-":
        return "jsonl"
    name = path.lower().removesuffix(".gz")
    fmt = _EXT.get(os.path.splitext(name)[1])
    if fmt is None:
        raise InputError(f"cannot tell the format from the extension; use --format ({', '.join(FORMATS)})",
                         file=path)
    return fmt


def read_records(paths: list[str], fmt: str | None = None) -> Iterator[RawRecord]:
    """All records of all inputs, in order."""
    for path in paths:
        kind = fmt or detect_format(path)
        if path != "-" and not os.path.isfile(path):
            raise InputError("file not found" if not os.path.exists(path) else "not a regular file", file=path)
        if kind in ("csv", "tsv"):
            yield from read_csv(path, delimiter="\t" if kind == "tsv" else ",")
        else:
            yield from {"jsonl": read_jsonl, "json": read_json, "parquet": read_parquet}[kind](path)


def _open_binary(path: str) -> IO[bytes]:
    if path == "-":
        return sys.stdin.buffer
    try:
        if path.endswith(".gz"):
            return gzip.open(path, "rb")  # type: ignore[return-value]
        return open(path, "rb")
    except OSError as exc:
        raise InputError(f"cannot open: {exc.strerror}", file=path) from None


def _utf8_error(exc: UnicodeDecodeError) -> str:
    bad = exc.object[exc.start:exc.start + 1].hex()
    return f"not valid UTF-8 (byte 0x{bad} at offset {exc.start})"


def parse_line(line: bytes, source: Source) -> RawRecord:
    """One JSONL line -> RawRecord (with ``error`` for invalid UTF-8, invalid JSON or a non-object)."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        return RawRecord(source, None, line, ("invalid_utf8", f"line is {_utf8_error(exc)}"))
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        return RawRecord(source, None, line, ("invalid_json", f"invalid JSON: {exc.msg} (column {exc.colno})"))
    except RecursionError:
        return RawRecord(source, None, line, ("invalid_json", "invalid JSON: nested too deeply"))
    if not isinstance(value, dict):
        return RawRecord(source, None, line,
                         ("not_an_object", f"expected a JSON object, got {type(value).__name__}"))
    return RawRecord(source, value, line, None, verbatim=True)


def read_jsonl(path: str) -> Iterator[RawRecord]:
    name = "<stdin>" if path == "-" else path
    fh = _open_binary(path)
    try:
        for n, line in enumerate(fh, start=1):
            if n == 1 and line.startswith(_BOM):
                line = line[len(_BOM):]
            line = line.rstrip(b"\r\n")
            if not line.strip():
                continue
            yield parse_line(line, Source(name, n))
    finally:
        if fh is not sys.stdin.buffer:
            fh.close()


def read_json(path: str) -> Iterator[RawRecord]:
    """A JSON array of objects, a single object, or JSONL saved with a .json name."""
    with _open_binary(path) as fh:
        data = fh.read().removeprefix(_BOM)
    if not data.strip():
        return
    try:
        value = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        if data.lstrip()[:1] == b"{":
            yield from read_jsonl(path)
            return
        raise InputError(f"file is {_utf8_error(exc)}", file=path) from None
    except json.JSONDecodeError as exc:
        if data.lstrip()[:1] == b"{":  # JSON Lines saved with a .json name
            yield from read_jsonl(path)
            return
        raise InputError(f"invalid JSON: {exc.msg} (column {exc.colno})", file=path, line=exc.lineno) from None
    except RecursionError:
        raise InputError("invalid JSON: nested too deeply", file=path) from None
    items = value if isinstance(value, list) else [value]
    for i, item in enumerate(items, start=1):
        src = Source(path, i, "item")
        if isinstance(item, dict):
            yield RawRecord(src, item)
        else:
            yield RawRecord(src, None, dumps_record(item),
                            ("not_an_object", f"expected a JSON object, got {type(item).__name__}"))


def read_csv(path: str, delimiter: str = ",") -> Iterator[RawRecord]:
    """CSV/TSV with a header row; values stay strings. Ragged rows and bad bytes become malformed."""
    fh = _open_binary(path)
    text = io.TextIOWrapper(fh, encoding="utf-8-sig", errors="surrogateescape", newline="")
    try:
        reader = csv.reader(text, delimiter=delimiter)
        try:
            header = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise InputError(f"cannot read the header: {exc}", file=path, line=1) from None
        start = reader.line_num + 1
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                raise InputError(f"CSV error: {exc}", file=path, line=reader.line_num) from None
            src = Source(path, start)
            start = reader.line_num + 1
            if not row:
                continue
            raw = _csv_row(row, delimiter)
            if any(_has_surrogate(v) for v in row):
                yield RawRecord(src, None, raw, ("invalid_utf8", "row is not valid UTF-8"))
            elif len(row) != len(header):
                yield RawRecord(src, None, raw, ("wrong_field_count",
                                                 f"row has {len(row)} fields, the header has {len(header)}"))
            else:
                yield RawRecord(src, dict(zip(header, row, strict=True)))
    finally:
        text.detach()
        fh.close()


def _has_surrogate(s: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in s)


def _csv_row(row: list[str], delimiter: str) -> bytes:
    buf = io.StringIO()
    csv.writer(buf, delimiter=delimiter, lineterminator="").writerow(row)
    return buf.getvalue().encode("utf-8", "surrogateescape")


def read_parquet(path: str, batch_size: int = 2048) -> Iterator[RawRecord]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"not a readable Parquet file: {exc}", file=path) from None
    row = 0
    try:
        for batch in pf.iter_batches(batch_size=batch_size):
            for rec in batch.to_pylist():
                row += 1
                yield RawRecord(Source(path, row, "row"), rec)
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"Parquet read failed after row {row}: {exc}", file=path) from None


# ------------------------------------------------------------------------------------------ writing
def _json_default(obj: Any) -> Any:
    if isinstance(obj, bytes):
        return base64.b64encode(obj).decode("ascii")
    if isinstance(obj, (_dt.date, _dt.datetime, _dt.time)):
        return obj.isoformat()
    if isinstance(obj, decimal.Decimal):
        return str(obj)
    if hasattr(obj, "item"):
        return obj.item()
    return str(obj)


def dumps_record(obj: Any) -> bytes:
    """One JSON line (no newline). Strings with lone surrogates are escaped rather than lost."""
    try:
        return json.dumps(obj, ensure_ascii=False, default=_json_default).encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(obj, ensure_ascii=True, default=_json_default).encode("ascii")


class AtomicFiles:
    """Output files written under temporary names and renamed into place together on ``commit``.

    A crash leaves only hidden ``.*.tmp`` files, never a partial file under a final name.
    """

    def __init__(self, outdir: str | Path) -> None:
        self.outdir = Path(outdir)
        self.outdir.mkdir(parents=True, exist_ok=True)
        self._tmp: dict[str, Path] = {}

    def path(self, name: str) -> Path:
        """A temporary path that becomes ``outdir/name`` on commit."""
        tmp = self.outdir / f".{name}.{os.getpid()}.tmp"
        self._tmp[name] = tmp
        return tmp

    def open(self, name: str) -> IO[bytes]:
        return open(self.path(name), "wb")

    def commit(self) -> None:
        for tmp in self._tmp.values():
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        for name, tmp in self._tmp.items():
            os.replace(tmp, self.outdir / name)
        self._tmp.clear()

    def abort(self) -> None:
        for tmp in self._tmp.values():
            tmp.unlink(missing_ok=True)
        self._tmp.clear()
