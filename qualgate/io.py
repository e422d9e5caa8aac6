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
import itertools
import json
import math
import os
import re
import secrets
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
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
#: Default limit on a file read whole (``input.max_document_bytes``): a JSON document. Its bytes and its text
#: are held together for a moment (items are then parsed one at a time): a run needs about 2.5x this in memory.
MAX_DOCUMENT_BYTES = 1 << 30
#: Byte-order marks of encodings qualgate does not read (UTF-32 first: its LE mark starts with UTF-16's).
_FOREIGN_BOMS = ((b"\xff\xfe\x00\x00", "UTF-32"), (b"\x00\x00\xfe\xff", "UTF-32"), (b"\xff\xfe", "UTF-16"),
                 (b"\xfe\xff", "UTF-16"))


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


def read_records(paths: list[str], fmt: str | None = None, max_record_bytes: int = MAX_RECORD_BYTES,
                 max_document_bytes: int = MAX_DOCUMENT_BYTES) -> Iterator[RawRecord]:
    """All records of all inputs, in order. A record over ``max_record_bytes`` (a JSONL or CSV line, a JSON
    array item, a Parquet row's text) is a ``record_too_large`` record (rejected as malformed), not parsed; a
    JSON document over ``max_document_bytes`` is an InputError."""
    for path in paths:
        kind = fmt or detect_format(path)
        if path != "-" and not os.path.isfile(path):
            raise InputError("file not found" if not os.path.exists(path) else "not a regular file", file=path)
        if kind in ("csv", "tsv"):
            yield from read_csv(path, "\t" if kind == "tsv" else ",", max_record_bytes)
        elif kind == "jsonl":
            yield from read_jsonl(path, max_record_bytes)
        elif kind == "json":
            yield from read_json(path, max_record_bytes, max_document_bytes)
        else:
            yield from read_parquet(path, max_record_bytes=max_record_bytes)


def check_encoding(head: bytes, path: str) -> None:
    """A UTF-16/32 file (by its first bytes) would read as one invalid record per line: an InputError says so."""
    for bom, name in _FOREIGN_BOMS:
        if head.startswith(bom):
            raise InputError(f"file is {name} (it starts with a {name} byte-order mark); qualgate reads UTF-8: "
                             f"convert it first, e.g. iconv -f {name} -t UTF-8", file=path)


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


def oversized(line: bytes, limit: int, rest: Iterable[bytes] = ()) -> Oversized:
    """The summary of a line over ``limit``: ``line`` and then the ``rest`` of its chunks, hashed and counted
    as they stream by, so a line read in pieces is never held whole."""
    import hashlib

    digest, size, preview = hashlib.sha256(line), len(line), line[:PREVIEW_BYTES]
    for chunk in rest:
        digest.update(chunk)
        size += len(chunk)
        if len(preview) < PREVIEW_BYTES:
            preview += chunk[:PREVIEW_BYTES - len(preview)]
    return Oversized(preview, size, digest.hexdigest(), limit)


def _bounded_lines(fh: IO[bytes], limit: int) -> Iterator[bytes | Oversized]:
    """The lines of ``fh`` (LF-terminated, as file iteration gives them); a line over ``limit`` bytes is read
    on in 1 MiB chunks, hashed and counted, never held whole, so memory stays bounded whatever the input."""
    def rest() -> Iterator[bytes]:
        while chunk := fh.readline(1 << 20):
            yield chunk
            if chunk.endswith(b"\n"):
                return

    while line := fh.readline(limit + 1):
        yield line if len(line) <= limit or line.endswith(b"\n") else oversized(line, limit, rest())


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
    lines = iter(lines)
    first = next(lines, None)
    if first is None:
        return
    check_encoding(first.preview if isinstance(first, Oversized) else first, name)
    for n, line in jsonl_lines(itertools.chain([first], lines)):
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


def read_json(path: str, max_record_bytes: int = MAX_RECORD_BYTES,
              max_document_bytes: int = MAX_DOCUMENT_BYTES) -> Iterator[RawRecord]:
    """A JSON array of objects, a single object, or JSONL saved with a .json name.

    The document is read whole (up to ``max_document_bytes``) but an array's items are parsed one at a time,
    so memory is the text plus one item; an item longer than ``max_record_bytes`` is a ``record_too_large``
    record. A syntax error stops the file with an InputError naming its line and column (JSON cannot resume
    after one); items before it have been yielded.
    """
    name = "<stdin>" if path == "-" else path
    fh = _open_binary(path)
    try:
        data = _read_whole(fh, max_document_bytes)
    finally:
        if fh is not sys.stdin.buffer:
            fh.close()
    if data is None:
        raise InputError(f"JSON document is over input.max_document_bytes ({max_document_bytes:,} bytes): a JSON "
                         "document is read whole; convert it to JSON Lines (jq -c '.[]' FILE > FILE.jsonl), "
                         "which is streamed, or raise the limit", file=name)
    check_encoding(data, name)
    data = data.removeprefix(_BOM)
    if not data.strip(_JSON_WS):
        return
    head = data.lstrip(_JSON_WS)[:1]
    if head == b"[":
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InputError(f"file is {_utf8_error(exc)}", file=path) from None
        del data
        yield from _array_items(text, name, max_record_bytes)
        return
    if path == "-" and head == b"{":
        yield from _jsonl_lines(_document_lines(data, max_record_bytes), name)
        return
    try:
        value = loads_strict(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        if head == b"{":
            yield from _jsonl_lines(_document_lines(data, max_record_bytes), name)
            return
        raise InputError(f"file is {_utf8_error(exc)}", file=path) from None
    except (json.JSONDecodeError, _StrictJSONError) as exc:
        if head == b"{":  # JSON Lines saved with a .json name
            yield from _jsonl_lines(_document_lines(data, max_record_bytes), name)
            return
        if isinstance(exc, json.JSONDecodeError):
            raise InputError(f"invalid JSON: {exc.msg} (column {exc.colno})", file=name, line=exc.lineno) from None
        raise InputError(str(exc), file=name) from None
    except (RecursionError, ValueError) as exc:
        raise InputError(f"invalid JSON: {'nested too deeply' if isinstance(exc, RecursionError) else exc}",
                         file=name) from None
    src = Source(name, 1, "item")
    yield oversized(bytes(data), max_record_bytes).record(src) if len(data) > max_record_bytes and \
        isinstance(value, dict) else _item(value, src, None)


def _document_lines(data: bytes, limit: int) -> Iterator[bytes | Oversized]:
    """The lines of JSON Lines read as one document (.json, stdin): split at LF, CRLF or a lone CR."""
    for line in data.splitlines():
        yield oversized(line, limit) if len(line) > limit else line


def _read_whole(fh: IO[bytes], limit: int) -> bytes | None:
    """All of ``fh``, or None past ``limit`` bytes (read in 1 MiB pieces: ``read(limit)`` would allocate it all)."""
    buf = bytearray()
    while chunk := fh.read(1 << 20):
        buf += chunk
        if len(buf) > limit:
            return None
    return bytes(buf)


_WS = re.compile(r"[ \t\n\r]*")
_JSON_WS = b" \t\n\r"  # JSON's whitespace (bytes.strip() would also take form feeds and vertical tabs)


def _array_items(text: str, name: str, limit: int) -> Iterator[RawRecord]:
    """The items of the JSON array ``text``, parsed one at a time with the strict decoder."""
    def fail(msg: str, pos: int) -> InputError:
        err = json.JSONDecodeError(msg, text, pos)
        return InputError(f"invalid JSON: {err.msg} (column {err.colno})", file=name, line=err.lineno)

    pos = _WS.match(text, _WS.match(text).end() + 1).end()  # type: ignore[union-attr]  # after the "["
    n = 0
    if text.startswith("]", pos):
        pos += 1
    else:
        while True:
            n += 1
            src = Source(name, n, "item")
            try:
                value, end = _STRICT.raw_decode(text, pos)
            except json.JSONDecodeError as exc:
                raise fail(exc.msg, exc.pos) from None
            except _StrictJSONError as exc:
                raise InputError(f"{exc} (item {n})", file=name) from None
            except RecursionError:
                raise InputError(f"invalid JSON: item {n} is nested too deeply", file=name) from None
            except ValueError as exc:  # e.g. an integer longer than Python's int max str digits
                raise InputError(f"invalid JSON: item {n}: {exc}", file=name) from None
            if end - pos > limit // 4 and len(raw := text[pos:end].encode("utf-8", "surrogatepass")) > limit:
                yield oversized(raw, limit).record(src)  # parsed, but never shown to the checks
            else:
                yield _item(value, src, None)
            pos = _WS.match(text, end).end()  # type: ignore[union-attr]
            if text.startswith(",", pos):
                pos = _WS.match(text, pos + 1).end()  # type: ignore[union-attr]
                continue
            if not text.startswith("]", pos):
                raise fail("Expecting ',' delimiter", pos)
            pos += 1
            break
    if _WS.match(text, pos).end() != len(text):  # type: ignore[union-attr]
        raise fail("Extra data", _WS.match(text, pos).end())  # type: ignore[union-attr]


def _item(value: Any, src: Source, raw: bytes | None) -> RawRecord:
    if isinstance(value, dict):
        return RawRecord(src, value, raw)
    return RawRecord(src, None, dumps_record(value),
                     ("not_an_object", f"expected a JSON object, got {type(value).__name__}"))


class _OversizedRow(Exception):
    def __init__(self, line: Oversized) -> None:
        self.line = line


class _CsvLines:
    """The text lines the csv module parses, each at most ``limit`` characters long, counted. A longer line is
    read past in chunks (hashed and measured in its original bytes) and raised as ``_OversizedRow``: the csv
    reader drops the row it was building and starts afresh at the next line."""

    def __init__(self, text: IO[str], limit: int) -> None:
        self.text, self.limit, self.read = text, limit, 0
        #: a bounded read ended right after a CR, so the LF of its CRLF comes as a line of its own: "kept" (part
        #: of the line before: given to the csv reader, not counted) or "dropped" (with an oversized line)
        self._cut_crlf: str | None = None

    def __iter__(self) -> _CsvLines:
        return self

    def __next__(self) -> str:
        line = self.text.readline(self.limit + 1)
        cut, self._cut_crlf = self._cut_crlf, None
        if cut is not None and line == "\n":
            if cut == "kept":
                return line
            line = self.text.readline(self.limit + 1)
        if not line:
            raise StopIteration
        self.read += 1
        if len(line) <= self.limit or line.endswith(("\n", "\r")):
            if len(line) > self.limit and line.endswith("\r"):
                self._cut_crlf = "kept"
            return line
        raise _OversizedRow(oversized(line.encode("utf-8", "surrogateescape"), self.limit, self._rest()))

    def _rest(self) -> Iterator[bytes]:
        """The rest of an oversized line, in 1 MiB chunks of its original bytes."""
        while chunk := self.text.readline(1 << 20):
            yield chunk.encode("utf-8", "surrogateescape")
            if chunk.endswith(("\n", "\r")):
                if chunk.endswith("\r") and len(chunk) == 1 << 20:
                    self._cut_crlf = "dropped"
                return

    def next_row(self, reader: Iterator[list[str]]) -> list[str]:
        """The csv reader's next row with its field limit at ours (a quoted field can span many short lines):
        the limit is process-wide state of the csv module, so it is set for this call only."""
        previous = csv.field_size_limit(self.limit)
        try:
            return next(reader)
        finally:
            csv.field_size_limit(previous)


def read_csv(path: str, delimiter: str = ",", max_record_bytes: int = MAX_RECORD_BYTES) -> Iterator[RawRecord]:
    """CSV/TSV with a header row; values stay strings. Ragged rows and bad bytes become malformed; a line or a
    field longer than ``max_record_bytes`` characters is a ``record_too_large`` record (if it was inside a
    quoted field, the rest of that field is then read as rows of its own, which come out malformed or odd,
    never lost)."""
    fh = _open_binary(path)
    head = fh.peek(4)[:4] if hasattr(fh, "peek") else b""
    check_encoding(head, path)
    text = io.TextIOWrapper(fh, encoding="utf-8-sig", errors="surrogateescape", newline="")
    try:
        lines = _CsvLines(text, max_record_bytes)
        reader = csv.reader(lines, delimiter=delimiter)
        try:
            header = lines.next_row(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise InputError(f"cannot read the header: {exc}", file=path, line=1) from None
        except _OversizedRow as exc:
            raise InputError(f"the header line is {exc.line.size:,} bytes, over input.max_record_bytes",
                             file=path, line=1) from None
        start = lines.read + 1
        while True:
            try:
                row = lines.next_row(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                if "field larger than field limit" in str(exc):
                    yield RawRecord(Source(path, start), None, b"", (
                        "record_too_large", f"a field is over the limit of {max_record_bytes:,} characters "
                        "(input.max_record_bytes); the row is not parsed"))
                    start = lines.read + 1
                    continue
                raise InputError(f"CSV error: {exc}", file=path, line=lines.read) from None
            except _OversizedRow as exc:
                yield exc.line.record(Source(path, start))
                start = lines.read + 1
                continue
            src = Source(path, start)
            start = lines.read + 1
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


def read_parquet(path: str, batch_size: int = 2048, max_record_bytes: int = MAX_RECORD_BYTES) -> Iterator[RawRecord]:
    """Rows in order, a batch at a time (memory is bounded by the file's row groups, which its writer chose).
    A row whose string and binary values total over ``max_record_bytes`` is a ``record_too_large`` record."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"not a readable Parquet file: {exc}", file=path) from None
    row = 0
    try:
        for batch in pf.iter_batches(batch_size=batch_size):
            yield from parquet_rows(batch, path, row, max_record_bytes)
            row += batch.num_rows
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"Parquet read failed after row {row}: {exc}", file=path) from None


def parquet_rows(batch: Any, path: str, before: int, limit: int) -> Iterator[RawRecord]:
    """The records of one Arrow batch (rows ``before + 1``...); a row whose text is over ``limit`` bytes becomes
    ``record_too_large``. Shared with the Ray engine's reader."""
    sizes = _row_text_bytes(batch) if batch.nbytes > limit else None
    for i, rec in enumerate(batch.to_pylist()):
        src = Source(path, before + i + 1, "row")
        if sizes is not None and sizes[i] > limit:
            yield oversized(dumps_record(rec), limit).record(src)
        else:
            yield RawRecord(src, rec)


def _row_text_bytes(batch: Any) -> list[int]:
    """Per row, the bytes of its top-level string and binary values (plain, dictionary-encoded or views: what
    the checks read). Text nested in lists and structs is not counted."""
    import pyarrow as pa
    import pyarrow.compute as pc

    total = [0] * batch.num_rows
    for column in batch.columns:
        if pa.types.is_dictionary(column.type):  # e.g. a pandas categorical
            column = column.dictionary_decode()
        kind = column.type
        if hasattr(pa, "string_view") and kind.equals(pa.string_view()):
            column = column.cast(pa.large_string())
            kind = column.type
        if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_binary(kind) \
                or pa.types.is_large_binary(kind):
            lengths = pc.fill_null(pc.binary_length(column), 0).to_pylist()
            total = [a + b for a, b in zip(total, lengths, strict=True)]
    return total


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

    A crash leaves only hidden ``.NAME.PID.RANDOM.tmp`` files (``new_temp``), never a partial file under a
    final name; the next writer of NAME in the folder removes those its dead predecessors left. ``marker``
    (if given) is removed before the other files are renamed and is renamed last, so a folder whose marker
    exists holds one run's complete set of files, even when a crash comes in the middle of the renames.
    No file is opened by its final name: a symlink planted there is replaced, never written through.
    """

    def __init__(self, outdir: str | Path, marker: str | None = None) -> None:
        self.outdir = Path(outdir)
        self.outdir.mkdir(parents=True, exist_ok=True)
        self.marker = marker
        self._tmp: dict[str, Path] = {}

    def open(self, name: str) -> IO[bytes]:
        """A new temp file that becomes ``outdir/name`` on commit."""
        remove_dead_temps(self.outdir, f".{glob.escape(name)}.*.tmp")
        fd, tmp = new_temp(self.outdir, name)
        if name in self._tmp:  # written again: the earlier temp file is not committed
            self._tmp.pop(name).unlink(missing_ok=True)
        self._tmp[name] = tmp
        return os.fdopen(fd, "wb")

    def commit(self, stale: Iterable[str] = ()) -> None:
        """Rename every file into place (the marker last); ``stale``: final names this run did not write and
        an earlier run may have (removed, so the folder holds one run's files)."""
        for tmp in self._tmp.values():
            fd = os.open(tmp, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
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


_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)


def new_temp(folder: Path, name: str, mode: int = 0o666) -> tuple[int, Path]:
    """A new empty file ``folder/.NAME.PID.RANDOM.tmp`` open for writing (its descriptor), created with
    O_CREAT|O_EXCL|O_NOFOLLOW: whatever already has that name, a planted symlink included, is never opened,
    so nothing outside ``folder`` is written through a link. ``mode`` before the umask (``tempfile.mkstemp``
    would make every output 0600)."""
    for _ in range(100):
        tmp = folder / f".{name}.{os.getpid()}.{secrets.token_hex(6)}.tmp"
        try:
            return os.open(tmp, _NEW_FILE, mode), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temp file name for {name} in {folder}")


@contextmanager
def atomic_write(path: str | Path, mode: int = 0o666) -> Iterator[IO[bytes]]:
    """Write ``path`` whole or not at all: into a ``new_temp`` beside it, renamed over ``path`` on success
    (a symlink at ``path`` is replaced, not followed), removed on failure."""
    path = Path(path)
    fd, tmp = new_temp(path.parent, path.name, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


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


_TEMP_PID = re.compile(r"\.(\d+)(?:\.[^.]+)?\.tmp$")


def remove_dead_temps(folder: Path, pattern: str) -> None:
    """Remove the temp files matching ``pattern`` (named ``...NAME.PID.tmp`` or ``...NAME.PID.RANDOM.tmp``)
    whose writing process is gone: a killed run's leftovers. Others' files, still being written, stay."""
    for tmp in folder.glob(pattern) if folder.is_dir() else ():
        m = _TEMP_PID.search(tmp.name)
        if m and int(m.group(1)) != os.getpid() and not pid_alive(int(m.group(1))):
            tmp.unlink(missing_ok=True)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True
