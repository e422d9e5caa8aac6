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
import glob
import gzip
import io
import json
import math
import os
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from qualgate.errors import InputError
from qualgate.sample import Source

FORMATS = ("jsonl", "json", "csv", "tsv", "parquet")
_EXT = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv", ".tsv": "tsv",
        ".parquet": "parquet", ".pq": "parquet"}
_BOM = b"\xef\xbb\xbf"
#: Default limit on one JSONL line (``input.max_record_bytes``): a longer line becomes a ``record_too_large``
#: finding, read past in chunks, so a 100 MB line costs time but not 100 MB of memory per copy.
MAX_RECORD_BYTES = 16 << 20
PREVIEW_BYTES = 4096  # what rejected.jsonl keeps of an oversized line (with its size and sha256)
_MAX_CSV_FIELD = 2**31 - 1  # csv's default 128 KiB field limit would stop a run on one long answer


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


def read_records(paths: list[str], fmt: str | None = None,
                 max_record_bytes: int = MAX_RECORD_BYTES) -> Iterator[RawRecord]:
    """All records of all inputs, in order. A JSONL line over ``max_record_bytes`` is a ``record_too_large``
    record (rejected as malformed), not parsed."""
    for path in paths:
        kind = fmt or detect_format(path)
        if path != "-" and not os.path.isfile(path):
            raise InputError("file not found" if not os.path.exists(path) else "not a regular file", file=path)
        if kind in ("csv", "tsv"):
            yield from read_csv(path, delimiter="\t" if kind == "tsv" else ",")
        elif kind == "jsonl":
            yield from read_jsonl(path, max_record_bytes)
        else:
            yield from {"json": read_json, "parquet": read_parquet}[kind](path)


def _open_binary(path: str) -> IO[bytes]:
    if path == "-":
        return sys.stdin.buffer
    try:
        if path.lower().endswith(".gz"):
            return gzip.open(path, "rb")  # type: ignore[return-value]
        return open(path, "rb")
    except OSError as exc:
        raise InputError(f"cannot open: {exc.strerror}", file=path) from None


def _utf8_error(exc: UnicodeDecodeError) -> str:
    bad = exc.object[exc.start:exc.start + 1].hex()
    return f"not valid UTF-8 (byte 0x{bad} at offset {exc.start})"


class _StrictJSONError(ValueError):
    """Valid for Python's json module, but not strict JSON or not representable without loss."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def _no_constants(name: str) -> Any:
    raise _StrictJSONError("invalid_json", f"invalid JSON: {name} is not a JSON value")


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise _StrictJSONError("invalid_json", f"number {text[:40]} is out of range for a 64-bit float")
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        dup = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        raise _StrictJSONError("duplicate_key", f"key {dup!r} appears twice in one object")
    return obj


_STRICT = json.JSONDecoder(parse_constant=_no_constants, parse_float=_finite_float, object_pairs_hook=_unique_keys)


def loads_strict(text: str | bytes) -> Any:
    """json.loads that refuses NaN/Infinity, overflowing numbers and duplicate keys (they would lose data).

    One shared decoder: ``json.loads`` with options builds a new decoder on every call.
    """
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    return _STRICT.decode(text)


def parse_line(line: bytes, source: Source) -> RawRecord:
    """One JSONL line -> RawRecord (with ``error`` for invalid UTF-8, invalid JSON or a non-object)."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        return RawRecord(source, None, line, ("invalid_utf8", f"line is {_utf8_error(exc)}"))
    try:
        value = loads_strict(text)
    except json.JSONDecodeError as exc:
        return RawRecord(source, None, line, ("invalid_json", f"invalid JSON: {exc.msg} (column {exc.colno})"))
    except _StrictJSONError as exc:
        return RawRecord(source, None, line, (exc.reason, str(exc)))
    except RecursionError:
        return RawRecord(source, None, line, ("invalid_json", "invalid JSON: nested too deeply"))
    except ValueError as exc:  # e.g. an integer longer than Python's int max str digits
        return RawRecord(source, None, line, ("invalid_json", f"invalid JSON: {exc}"))
    if not isinstance(value, dict):
        return RawRecord(source, None, line,
                         ("not_an_object", f"expected a JSON object, got {type(value).__name__}"))
    return RawRecord(source, value, line, None, verbatim=True)


def read_jsonl(path: str, max_record_bytes: int = MAX_RECORD_BYTES) -> Iterator[RawRecord]:
    name = "<stdin>" if path == "-" else path
    fh = _open_binary(path)
    try:
        yield from _jsonl_lines(_bounded_lines(fh, max_record_bytes), name)
    finally:
        if fh is not sys.stdin.buffer:
            fh.close()


@dataclass(frozen=True)
class Oversized:
    """A line longer than the record limit: only its first bytes, its size and its hash are kept."""

    preview: bytes
    size: int
    sha256: str
    limit: int

    def record(self, source: Source) -> RawRecord:
        return RawRecord(source, None, self.preview, (
            "record_too_large", f"line is {self.size:,} bytes, over the limit of {self.limit:,} "
            f"(input.max_record_bytes); not parsed; sha256 {self.sha256}; the output keeps its first "
            f"{len(self.preview):,} bytes"))


def oversized(line: bytes, limit: int) -> Oversized:
    import hashlib

    return Oversized(line[:PREVIEW_BYTES], len(line), hashlib.sha256(line).hexdigest(), limit)


def _bounded_lines(fh: IO[bytes], limit: int) -> Iterator[bytes | Oversized]:
    """The lines of ``fh`` (LF-terminated, as file iteration gives them); a line over ``limit`` bytes is read
    on in 1 MiB chunks, hashed and counted, never held whole, so memory stays bounded whatever the input."""
    import hashlib

    while line := fh.readline(limit + 1):
        if len(line) <= limit or line.endswith(b"\n"):
            yield line
            continue
        digest, size, preview = hashlib.sha256(line), len(line), line[:PREVIEW_BYTES]
        while chunk := fh.readline(1 << 20):
            digest.update(chunk)
            size += len(chunk)
            if len(preview) < PREVIEW_BYTES:
                preview += chunk[:PREVIEW_BYTES - len(preview)]
            if chunk.endswith(b"\n"):
                break
        yield Oversized(preview, size, digest.hexdigest(), limit)


def split_lines(data: bytes, limit: int) -> Iterator[bytes | Oversized]:
    """The lines of a file held in memory, as ``_bounded_lines`` gives them from an open file."""
    for line in io.BytesIO(data):  # lines end at LF only, as file iteration does
        yield oversized(line, limit) if len(line.removesuffix(b"\n")) > limit else line


def jsonl_lines(lines: Iterable[bytes | Oversized]) -> Iterator[tuple[int, bytes | Oversized]]:
    """The numbered lines a JSONL reader parses: a BOM and the line end removed, blank lines skipped, an
    oversized line as its summary. Shared by ``read_jsonl`` and the Ray engine's reader, so both read alike."""
    for n, line in enumerate(lines, start=1):
        if isinstance(line, Oversized):
            yield n, line
            continue
        if n == 1 and line.startswith(_BOM):
            line = line[len(_BOM):]
        line = line.rstrip(b"\r\n")
        if line.strip():
            yield n, line


def _jsonl_lines(lines: Iterable[bytes | Oversized], name: str) -> Iterator[RawRecord]:
    for n, line in jsonl_lines(lines):
        src = Source(name, n)
        yield line.record(src) if isinstance(line, Oversized) else parse_line(line, src)


def lines_at(path: str, wanted: set[int]) -> dict[int, bytes]:
    """Lines ``wanted`` (1-based) of a JSONL file, as ``read_jsonl`` sees them (no line end, no BOM), in one
    pass; lines past the end are missing from the result. Raises InputError when the file cannot be opened."""
    found: dict[int, bytes] = {}
    if not wanted or path == "-":  # stdin cannot be read again
        return found
    last = max(wanted)
    fh = _open_binary(path)
    try:
        for n, line in enumerate(fh, start=1):
            if n in wanted:
                found[n] = (line.removeprefix(_BOM) if n == 1 else line).rstrip(b"\r\n")
            if n >= last:
                break
    finally:
        fh.close()
    return found


def read_json(path: str) -> Iterator[RawRecord]:
    """A JSON array of objects, a single object, or JSONL saved with a .json name."""
    name = "<stdin>" if path == "-" else path
    fh = _open_binary(path)
    try:
        data = fh.read().removeprefix(_BOM)
    finally:
        if fh is not sys.stdin.buffer:
            fh.close()
    if not data.strip():
        return
    if path == "-" and data.lstrip()[:1] == b"{":
        yield from _jsonl_lines(data.splitlines(), name)
        return
    try:
        value = loads_strict(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        if data.lstrip()[:1] == b"{":
            yield from read_jsonl(path)
            return
        raise InputError(f"file is {_utf8_error(exc)}", file=path) from None
    except (json.JSONDecodeError, _StrictJSONError) as exc:
        if data.lstrip()[:1] == b"{":  # JSON Lines saved with a .json name
            yield from _jsonl_lines(data.splitlines(), name)
            return
        if isinstance(exc, json.JSONDecodeError):
            raise InputError(f"invalid JSON: {exc.msg} (column {exc.colno})", file=name, line=exc.lineno) from None
        raise InputError(str(exc), file=name) from None
    except (RecursionError, ValueError) as exc:
        raise InputError(f"invalid JSON: {'nested too deeply' if isinstance(exc, RecursionError) else exc}",
                         file=name) from None
    items = value if isinstance(value, list) else [value]
    for i, item in enumerate(items, start=1):
        src = Source(name, i, "item")
        if isinstance(item, dict):
            yield RawRecord(src, item)
        else:
            yield RawRecord(src, None, dumps_record(item),
                            ("not_an_object", f"expected a JSON object, got {type(item).__name__}"))


def read_csv(path: str, delimiter: str = ",") -> Iterator[RawRecord]:
    """CSV/TSV with a header row; values stay strings. Ragged rows and bad bytes become malformed."""
    csv.field_size_limit(max(csv.field_size_limit(), _MAX_CSV_FIELD))
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
    """One strict JSON line (no newline). Lone surrogates are escaped, non-finite floats become strings."""
    try:
        return json.dumps(obj, ensure_ascii=False, allow_nan=False, default=_json_default).encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(obj, ensure_ascii=True, allow_nan=False, default=_json_default).encode("ascii")
    except ValueError:
        return dumps_record(_finite(obj))


def _finite(obj: Any) -> Any:
    """A copy with NaN/Infinity floats replaced by their names (only reachable from library input)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


class AtomicFiles:
    """Output files written under temporary names and renamed into place together on ``commit``.

    A crash leaves only hidden ``.NAME.PID.tmp`` files, never a partial file under a final name; the next
    writer of NAME in the folder removes those its dead predecessors left. ``marker`` (if given) is removed
    before the other files are renamed and is renamed last, so a folder whose marker exists holds one
    run's complete set of files, even when a crash comes in the middle of the renames.
    """

    def __init__(self, outdir: str | Path, marker: str | None = None) -> None:
        self.outdir = Path(outdir)
        self.outdir.mkdir(parents=True, exist_ok=True)
        self.marker = marker
        self._tmp: dict[str, Path] = {}

    def path(self, name: str) -> Path:
        """A temporary path that becomes ``outdir/name`` on commit."""
        _remove_dead_temps(self.outdir, name)
        tmp = self.outdir / f".{name}.{os.getpid()}.tmp"
        self._tmp[name] = tmp
        return tmp

    def open(self, name: str) -> IO[bytes]:
        return open(self.path(name), "wb")

    def commit(self, stale: Iterable[str] = ()) -> None:
        """Rename every file into place (the marker last); ``stale``: final names this run did not write and
        an earlier run may have (removed, so the folder holds one run's files)."""
        for tmp in self._tmp.values():
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        if self.marker is not None:
            (self.outdir / self.marker).unlink(missing_ok=True)
        for name in stale:
            if name not in self._tmp:
                (self.outdir / name).unlink(missing_ok=True)
        last = [self.marker] if self.marker in self._tmp else []
        for name in [n for n in self._tmp if n != self.marker] + last:
            os.replace(self._tmp[name], self.outdir / name)
        _fsync_dir(self.outdir)
        self._tmp.clear()

    def abort(self) -> None:
        for tmp in self._tmp.values():
            tmp.unlink(missing_ok=True)
        self._tmp.clear()


def _fsync_dir(path: Path) -> None:
    """Make the renames in ``path`` durable (a no-op where directories cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _remove_dead_temps(outdir: Path, name: str) -> None:
    """Remove ``.NAME.PID.tmp`` files whose writer is gone (a killed run's leftovers)."""
    for tmp in outdir.glob(f".{glob.escape(name)}.*.tmp"):
        pid = tmp.name[len(name) + 2:-len(".tmp")]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            tmp.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True
