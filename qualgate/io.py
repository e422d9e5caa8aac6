"""Readers (JSONL, JSON array, CSV/TSV, Parquet, stdin) and atomic writers for run outputs.

Readers never raise on a bad record: each yields a RawRecord, with ``error`` set when the record
could not be parsed, so the gate can reject it as malformed and nothing is lost. Only a file that
cannot be opened at all, or a JSON array / Parquet file that is broken as a whole, is an InputError.
"""

from __future__ import annotations

import base64
import codecs
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
#: Default limit on the values one record holds (``input.max_record_values``), counted at every depth: object
#: members, array and list items, CSV fields, Parquet columns. A record under the byte limit can still hold a
#: million keys, or a 1 KB Parquet file a 30-million-item list; such a record is ``record_too_large`` too.
MAX_RECORD_VALUES = 1 << 16
#: Default limit on a file read whole (``input.max_document_bytes``): a JSON document. Its bytes and its text
#: are held together for a moment (items are then parsed one at a time): a run needs about 2.5x this in memory.
MAX_DOCUMENT_BYTES = 1 << 30
#: Byte-order marks of encodings qualgate does not read (UTF-32 first: its LE mark starts with UTF-16's).
_FOREIGN_BOMS = ((b"\xff\xfe\x00\x00", "UTF-32"), (b"\x00\x00\xfe\xff", "UTF-32"), (b"\xff\xfe", "UTF-16"),
                 (b"\xfe\xff", "UTF-16"))


@dataclass
class RawRecord:
    """One record as read. ``raw`` is the exact line for JSONL (written back verbatim when accepted).
    ``deferred``: a JSONL line not parsed yet (``read_records(defer=True)``); ``parsed()`` gives the record."""

    source: Source
    record: dict[str, Any] | None
    raw: bytes | None = None
    error: tuple[str, str] | None = None
    verbatim: bool = False
    deferred: bool = False

    def parsed(self, max_values: int = MAX_RECORD_VALUES) -> RawRecord:
        """This record parsed (``parse_line``) if it is ``deferred``, else itself."""
        return parse_line(self.raw or b"", self.source, max_values) if self.deferred else self


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
                 max_document_bytes: int = MAX_DOCUMENT_BYTES,
                 max_record_values: int = MAX_RECORD_VALUES, defer: bool = False) -> Iterator[RawRecord]:
    """All records of all inputs, in order. ``defer``: JSONL lines come unparsed (``RawRecord.deferred``), for
    worker processes to parse; oversized lines are still summarised here.

    A record over ``max_record_bytes`` (a JSONL or CSV line, a JSON
    array item, a Parquet row's values) or holding more than ``max_record_values`` values is a
    ``record_too_large`` record (rejected as malformed), never shown to the checks; a JSON document over
    ``max_document_bytes`` is an InputError."""
    for path in paths:
        kind = fmt or detect_format(path)
        if path != "-" and not os.path.isfile(path):
            raise InputError("file not found" if not os.path.exists(path) else "not a regular file", file=path)
        if kind in ("csv", "tsv"):
            yield from read_csv(path, "\t" if kind == "tsv" else ",", max_record_bytes, max_record_values)
        elif kind == "jsonl":
            yield from read_jsonl(path, max_record_bytes, max_record_values, defer)
        elif kind == "json":
            yield from read_json(path, max_record_bytes, max_document_bytes, max_record_values)
        else:
            yield from read_parquet(path, max_record_bytes=max_record_bytes, max_record_values=max_record_values)


def check_encoding(head: bytes, path: str) -> None:
    """A UTF-16/32 file (by its first bytes) would read as one invalid record per line: an InputError says so."""
    for bom, name in _FOREIGN_BOMS:
        if head.startswith(bom):
            raise InputError(f"file is {name} (it starts with a {name} byte-order mark); qualgate reads UTF-8: "
                             f"convert it first, e.g. iconv -f {name} -t UTF-8", file=path)


def open_binary(path: str) -> IO[bytes]:
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


def parse_line(line: bytes, source: Source, max_values: int = MAX_RECORD_VALUES) -> RawRecord:
    """One JSONL line -> RawRecord (with ``error`` for invalid UTF-8, invalid JSON, a non-object or more than
    ``max_values`` values)."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        return RawRecord(source, None, line, ("invalid_utf8", f"line is {_utf8_error(exc)}"))
    if _values_in(line, max_values) > max_values:  # before parsing: a million keys cost 2 s and 300 MB to parse
        return oversized(line, max_values, unit="values").record(source)
    try:
        value = loads_strict(text)
    except json.JSONDecodeError as exc:
        hint = "; the line holds a lone CR, which does not end a JSON Lines line (LF or CRLF does)" \
            if exc.msg == "Extra data" and "\r" in text else ""
        return RawRecord(source, None, line, ("invalid_json",
                                              f"invalid JSON: {exc.msg} (column {exc.colno}){hint}"))
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


_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_EMPTY_CONTAINER = re.compile(rb"[\[{][ \t\r\n]*[\]}]")
_OPEN_AT_END = re.compile(rb"[\[{][ \t\r\n]*\Z")


def _values_in(line: bytes, limit: int) -> int:
    """The values the JSON text ``line`` holds, as ``over_values`` counts them (the members of every object and
    array), without parsing it: commas outside strings plus non-empty containers. Exact for valid JSON; a line
    whose commas and brackets alone cannot pass ``limit`` is not scanned (that upper bound is returned). Scanned
    1 MiB at a time (a window that would cut a string ends at its quote; an opening bracket at a window's end
    waits for the next, which may close it empty), so memory stays small whatever the line holds."""
    bound = line.count(b",") + line.count(b"{") + line.count(b"[")
    if bound <= limit:
        return bound
    count, pos, n, carry = 0, 0, len(line), b""
    while pos < n:
        end = min(n, pos + (1 << 20))
        bare = _JSON_STRING.sub(b"0", line[pos:end])  # a placeholder: ["x"] must not look empty
        cut = bare.rfind(b'"')  # a string the window cuts: read again from its quote
        if cut > 0:
            end, bare = end - (len(bare) - cut), bare[:cut]
        elif cut == 0:  # a string longer than a window
            string = _JSON_STRING.match(line, pos)
            end, bare = (string.end() if string else n), b"0"
        bare, pos = carry + bare, end
        opening = _OPEN_AT_END.search(bare) if pos < n else None
        carry, bare = (bare[opening.start():], bare[:opening.start()]) if opening else (b"", bare)
        count += bare.count(b",") + bare.count(b"{") + bare.count(b"[") - len(_EMPTY_CONTAINER.findall(bare))
    return count


def over_values(value: Any, limit: int) -> bool:
    """Whether ``value`` holds more than ``limit`` values, counted at every depth (object members, array items).
    Counting stops at the limit, so the cost is bounded by it, whatever the record."""
    count, todo = 0, [value]
    while todo:
        item = todo.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        count += len(children)
        if count > limit:
            return True
        todo.extend(x for x in children if isinstance(x, (dict, list)))
    return False


def read_jsonl(path: str, max_record_bytes: int = MAX_RECORD_BYTES,
               max_record_values: int = MAX_RECORD_VALUES, defer: bool = False) -> Iterator[RawRecord]:
    name = "<stdin>" if path == "-" else path
    fh = open_binary(path)
    try:
        yield from _jsonl_lines(bounded_lines(fh, max_record_bytes), name, max_record_values, defer)
    finally:
        if fh is not sys.stdin.buffer:
            fh.close()


@dataclass(frozen=True)
class Oversized:
    """A record over a limit (``unit`` "bytes": ``input.max_record_bytes``; "values": ``input.max_record_values``):
    only its first bytes, its size and its hash are kept. ``what``: "line", or "row" (a Parquet row as JSON)."""

    preview: bytes
    size: int
    sha256: str
    limit: int
    unit: str = "bytes"
    what: str = "line"

    def record(self, source: Source) -> RawRecord:
        if self.unit == "values":
            why = f"{self.what} holds more than {self.limit:,} values (input.max_record_values); not checked; " \
                f"it is {self.size:,} bytes"
        else:
            why = f"{self.what} is {self.size:,} bytes, over the limit of {self.limit:,} (input.max_record_bytes); " \
                f"not {'checked' if self.what == 'row' else 'parsed'}"
        return RawRecord(source, None, self.preview, (
            "record_too_large", f"{why}; sha256 {self.sha256}; the output keeps its first {len(self.preview):,} "
            "bytes"))


def oversized(line: bytes, limit: int, rest: Iterable[bytes] = (), unit: str = "bytes",
              what: str = "line") -> Oversized:
    """The summary of a record over ``limit``: ``line`` and then the ``rest`` of its chunks, hashed and counted
    as they stream by, so a record read (or written) in pieces is never held whole."""
    import hashlib

    digest, size, preview = hashlib.sha256(line), len(line), line[:PREVIEW_BYTES]
    for chunk in rest:
        digest.update(chunk)
        size += len(chunk)
        if len(preview) < PREVIEW_BYTES:
            preview += chunk[:PREVIEW_BYTES - len(preview)]
    return Oversized(preview, size, digest.hexdigest(), limit, unit, what)


def bounded_lines(fh: IO[bytes], limit: int) -> Iterator[bytes | Oversized]:
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
    """The lines of a file held in memory, as ``bounded_lines`` gives them from an open file."""
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


def _jsonl_lines(lines: Iterable[bytes | Oversized], name: str, max_values: int,
                 defer: bool = False) -> Iterator[RawRecord]:
    lines = iter(lines)
    first = next(lines, None)
    if first is None:
        return
    check_encoding(first.preview if isinstance(first, Oversized) else first, name)
    for n, line in jsonl_lines(itertools.chain([first], lines)):
        src = Source(name, n)
        if isinstance(line, Oversized):
            yield line.record(src)
        else:
            yield RawRecord(src, None, line, deferred=True) if defer else parse_line(line, src, max_values)


def lines_at(path: str, wanted: set[int]) -> dict[int, bytes]:
    """Lines ``wanted`` (1-based) of a JSONL file, as ``read_jsonl`` sees them (no line end, no BOM), in one
    pass; lines past the end are missing from the result. Raises InputError when the file cannot be opened."""
    found: dict[int, bytes] = {}
    if not wanted or path == "-":  # stdin cannot be read again
        return found
    last = max(wanted)
    fh = open_binary(path)
    try:
        for n, line in enumerate(fh, start=1):
            if n in wanted:
                found[n] = (line.removeprefix(_BOM) if n == 1 else line).rstrip(b"\r\n")
            if n >= last:
                break
    finally:
        fh.close()
    return found


def read_json(path: str, max_record_bytes: int = MAX_RECORD_BYTES, max_document_bytes: int = MAX_DOCUMENT_BYTES,
              max_record_values: int = MAX_RECORD_VALUES) -> Iterator[RawRecord]:
    """A JSON array of objects, a single object, or JSONL saved with a .json name (read line by line exactly as
    a .jsonl file: lines end at LF, so the same bytes give the same records under either name).

    The document is read whole (up to ``max_document_bytes``) but an array's items are parsed one at a time,
    so memory is the text plus one item; an item longer than ``max_record_bytes`` or holding more than
    ``max_record_values`` values is a ``record_too_large`` record. A syntax error stops the file with an
    InputError naming its line and column (JSON cannot resume after one); items before it have been yielded.
    """
    name = "<stdin>" if path == "-" else path
    fh = open_binary(path)
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
        yield from _array_items(text, name, max_record_bytes, max_record_values)
        return
    if path == "-" and head == b"{":
        yield from _jsonl_lines(split_lines(data, max_record_bytes), name, max_record_values)
        return
    try:
        value = loads_strict(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        if head == b"{":
            yield from _jsonl_lines(split_lines(data, max_record_bytes), name, max_record_values)
            return
        raise InputError(f"file is {_utf8_error(exc)}", file=path) from None
    except (json.JSONDecodeError, _StrictJSONError) as exc:
        if head == b"{":  # JSON Lines saved with a .json name
            yield from _jsonl_lines(split_lines(data, max_record_bytes), name, max_record_values)
            return
        if isinstance(exc, json.JSONDecodeError):
            raise InputError(f"invalid JSON: {exc.msg} (column {exc.colno})", file=name, line=exc.lineno) from None
        raise InputError(str(exc), file=name) from None
    except (RecursionError, ValueError) as exc:
        raise InputError(f"invalid JSON: {'nested too deeply' if isinstance(exc, RecursionError) else exc}",
                         file=name) from None
    src = Source(name, 1, "item")
    if isinstance(value, dict) and len(data) > max_record_bytes:
        yield oversized(bytes(data), max_record_bytes).record(src)
    elif isinstance(value, dict) and over_values(value, max_record_values):
        yield oversized(bytes(data), max_record_values, unit="values").record(src)
    else:
        yield _item(value, src, None)


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


def _array_items(text: str, name: str, limit: int, max_values: int) -> Iterator[RawRecord]:
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
            elif isinstance(value, dict) and over_values(value, max_values):
                yield oversized(text[pos:end].encode("utf-8", "surrogatepass"), max_values, unit="values").record(src)
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


def read_csv(path: str, delimiter: str = ",", max_record_bytes: int = MAX_RECORD_BYTES,
             max_record_values: int = MAX_RECORD_VALUES) -> Iterator[RawRecord]:
    """CSV/TSV with a header row; values stay strings. Ragged rows and bad bytes become malformed; a line or a
    field longer than ``max_record_bytes`` characters, or a row of more than ``max_record_values`` fields, is a
    ``record_too_large`` record (if it was inside a quoted field, the rest of that field is then read as rows of
    its own, which come out malformed or odd, never lost).

    The header is checked once for the whole file (an InputError at line 1, naming the column): a name given
    twice would leave each record only one of its columns (pandas and ``datasets`` keep the other, so the text
    trained on would go unchecked), and a header over either limit would make every row too large. One empty
    name is a column like any other (its key is ""), e.g. after a trailing delimiter; two are a duplicate."""
    fh = open_binary(path)
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
        _check_header(header, path, max_record_values)
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
            if len(row) > max_record_values:
                yield oversized(raw, max_record_values, unit="values", what="row").record(src)
            elif any(_has_surrogate(v) for v in row):
                yield RawRecord(src, None, raw, ("invalid_utf8", "row is not valid UTF-8"))
            elif len(row) != len(header):
                yield RawRecord(src, None, raw, ("wrong_field_count",
                                                 f"row has {len(row)} fields, the header has {len(header)}"))
            else:
                yield RawRecord(src, dict(zip(header, row, strict=True)))
    finally:
        text.detach()
        fh.close()


def _check_header(header: list[str], path: str, max_values: int) -> None:
    """An InputError (line 1) for a header of more than ``max_values`` columns or with a name given twice."""
    if len(header) > max_values:
        raise InputError(f"the header has {len(header):,} columns, over input.max_record_values ({max_values:,})",
                         file=path, line=1)
    if (dup := _duplicate(header)) is not None:
        name, first, second = dup
        raise InputError(f"column {name!r} appears twice in the header (columns {first} and {second}): a record "
                         "holds one value per name, so one column would be silently lost; rename one",
                         file=path, line=1, key=name)


def _duplicate(names: list[str]) -> tuple[str, int, int] | None:
    """The first name given twice, with both 1-based positions, or None."""
    seen: dict[str, int] = {}
    for i, name in enumerate(names, start=1):
        if name in seen:
            return name, seen[name], i
        seen[name] = i
    return None


def _has_surrogate(s: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in s)


def _csv_row(row: list[str], delimiter: str) -> bytes:
    buf = io.StringIO()
    csv.writer(buf, delimiter=delimiter, lineterminator="").writerow(row)
    return buf.getvalue().encode("utf-8", "surrogateescape")


#: What one Parquet batch may decode (the file's metadata says how many values and bytes its row groups hold):
#: Arrow decodes a whole batch before any row can be measured, and 2,048 rows of 100,000-item lists took 4 GB.
_BATCH_VALUES = 1 << 20
_BATCH_BYTES = 1 << 26


def read_parquet(path: str, batch_size: int = 2048, max_record_bytes: int = MAX_RECORD_BYTES,
                 max_record_values: int = MAX_RECORD_VALUES) -> Iterator[RawRecord]:
    """Rows in order, a batch at a time: at most ``batch_size`` rows, fewer where a row group's metadata says its
    rows hold many values or bytes, so memory stays bounded by the budgets above and by the largest row. A row
    over ``max_record_bytes`` or ``max_record_values`` is ``record_too_large`` (see ``parquet_rows``); a column
    or struct field name given twice is an InputError (``check_columns``)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"not a readable Parquet file: {exc}", file=path) from None
    check_columns(pf.schema_arrow, path)
    row = 0
    try:
        for group in range(pf.metadata.num_row_groups):
            rows = _batch_rows(pf.metadata.row_group(group), batch_size)
            for batch in pf.iter_batches(batch_size=rows, row_groups=[group]):
                yield from parquet_rows(batch, path, row, max_record_bytes, max_record_values)
                row += batch.num_rows
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"Parquet read failed after row {row}: {exc}", file=path) from None


def _batch_rows(group: Any, most: int) -> int:
    """Rows per batch for one row group: ``most``, or fewer so a batch decodes about ``_BATCH_VALUES`` values
    (leaf values, empty lists and nulls, as the metadata counts them) and ``_BATCH_BYTES`` uncompressed bytes."""
    rows: int = group.num_rows
    values: int = sum(group.column(j).num_values for j in range(group.num_columns))
    fit: int = min(_BATCH_VALUES * rows // max(values, 1), _BATCH_BYTES * rows // max(group.total_byte_size, 1))
    return max(1, min(most, fit))


def check_columns(schema: Any, path: str) -> None:
    """An InputError for a column, or a field of a struct column (named by its dotted path), whose name appears
    twice: Arrow would hand each record only the last one, so the other's values would be lost unchecked."""
    import pyarrow as pa

    def walk(kind: Any, prefix: str) -> None:
        fields = [kind.field(k) for k in range(kind.num_fields)]
        if pa.types.is_struct(kind) and (dup := _duplicate([f.name for f in fields])) is not None:
            name, first, second = dup
            raise InputError(f"{'field' if prefix else 'column'} {prefix + name!r} appears twice (at {first} and "
                             f"{second}): a record holds one value per name, so one would be silently lost; "
                             "rename one", file=path, key=prefix + name)
        for f in fields:
            walk(f.type, f"{prefix}{f.name}." if pa.types.is_struct(kind) else prefix)

    walk(pa.struct(list(schema)), "")


def parquet_rows(batch: Any, path: str, before: int, limit: int,
                 max_values: int = MAX_RECORD_VALUES) -> Iterator[RawRecord]:
    """The records of one Arrow batch or table (rows ``before + 1``...). Every row is measured in Arrow first
    (``_span_sums``: its values at every depth, and their bytes), so a row over ``limit`` bytes or ``max_values``
    values becomes ``record_too_large`` without a Python object made of it: its message gives the size and
    sha256 of the row as JSON (what ``dumps_record`` would write), streamed in pieces. Shared with the Ray
    engine's reader."""
    import numpy as np
    import pyarrow as pa

    if isinstance(batch, pa.Table):
        for part in batch.to_batches():
            yield from parquet_rows(part, path, before, limit, max_values)
            before += part.num_rows
        return
    check_columns(batch.schema, path)
    n = batch.num_rows
    sizes, counts = np.zeros(n, np.int64), np.zeros(n, np.int64)
    rows = np.arange(n, dtype=np.int64)
    for column in batch.columns:
        b, v = _span_sums(column, rows, rows + 1)
        sizes += b
        counts += v
    over = np.flatnonzero((sizes > limit) | (counts > max_values)).tolist()
    done = 0
    for stop in [*over, n]:
        for i, rec in enumerate(batch.slice(done, stop - done).to_pylist(), start=done):
            yield RawRecord(Source(path, before + i + 1, "row"), rec)
        if stop < n:
            unit, most = ("values", max_values) if counts[stop] > max_values else ("bytes", limit)
            piece = _row_json(batch, stop)
            yield oversized(next(piece), most, piece, unit, "row").record(Source(path, before + stop + 1, "row"))
        done = stop + 1


def _plain(arr: Any) -> Any:
    """``arr`` without an extension wrapper, its view layouts as the plain large ones (what the code below reads)."""
    import pyarrow as pa

    if isinstance(arr, pa.ExtensionArray):
        arr = arr.storage
    kind = arr.type
    for view, plain in (("string_view", pa.large_string), ("binary_view", pa.large_binary)):
        if hasattr(pa, view) and kind.equals(getattr(pa, view)()):
            return arr.cast(plain())
    if getattr(pa.types, "is_list_view", lambda _: False)(kind) or \
            getattr(pa.types, "is_large_list_view", lambda _: False)(kind):
        return arr.cast(pa.large_list(kind.value_field))
    return arr


def _offsets(arr: Any) -> Any:
    """The offsets of a string/binary/list array as numpy (from its own offset, ``len + 1`` of them)."""
    import numpy as np
    import pyarrow as pa

    kind = arr.type
    wide = pa.types.is_large_string(kind) or pa.types.is_large_binary(kind) or pa.types.is_large_list(kind)
    return np.frombuffer(arr.buffers()[1], np.int64 if wide else np.int32)[arr.offset:arr.offset + len(arr) + 1]


def _span_sums(arr: Any, start: Any, end: Any) -> tuple[Any, Any]:
    """Per span ``[start[k], end[k])`` of ``arr``'s items: the values they hold at every depth (each item, list
    item, struct field and map key or value counts one), and their bytes as Arrow holds them (string and binary
    lengths, fixed widths) plus one per value. Vectorised: one pass per nesting level, no Python objects, and
    (dictionaries apart) no array longer than the spans."""
    import numpy as np
    import pyarrow as pa

    arr = _plain(arr)
    kind = arr.type
    count = (end - start).astype(np.int64)
    if len(arr) == 0 or pa.types.is_null(kind):
        return count, count.copy()
    if pa.types.is_dictionary(kind):  # measure the dictionary once, then each item by its index
        items = np.arange(len(arr.dictionary), dtype=np.int64)
        db, dv = _span_sums(arr.dictionary, items, items + 1)
        index = arr.indices.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
        ib = np.concatenate(([0], np.cumsum(db[index] if len(db) else np.ones(len(arr), np.int64))))
        iv = np.concatenate(([0], np.cumsum(dv[index] if len(dv) else np.ones(len(arr), np.int64))))
        return ib[end] - ib[start], iv[end] - iv[start]
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_binary(kind) \
            or pa.types.is_large_binary(kind):
        off = _offsets(arr)
        return off[end].astype(np.int64) - off[start] + count, count
    if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_map(kind):
        off = _offsets(arr)
        b, v = _span_sums(arr.values, off[start].astype(np.int64), off[end].astype(np.int64))
        return b + count, v + count
    if pa.types.is_fixed_size_list(kind):
        size = kind.list_size
        b, v = _span_sums(arr.values, (arr.offset + start) * size, (arr.offset + end) * size)
        return b + count, v + count
    if pa.types.is_struct(kind):
        b, v = count.copy(), count.copy()
        for k in range(kind.num_fields):
            fb, fv = _span_sums(arr.field(k), start, end)
            b += fb
            v += fv
        return b, v
    try:
        width = (kind.bit_width + 7) // 8
    except ValueError:  # no fixed width and none of the above (a union): its average width
        width = -(-arr.nbytes // len(arr))
    return count * (width + 1), count


# the row as JSON, in pieces: items go to Python objects a piece at a time, ints, bools and nulls not at all
_PIECE_VALUES = 1 << 16
_PIECE_BYTES = 1 << 20


def _row_json(batch: Any, i: int) -> Iterator[bytes]:
    """Row ``i`` of ``batch`` exactly as ``dumps_record(batch.to_pylist()[i])`` would write it, in pieces (the first
    one non-empty), so memory stays bounded whatever the row holds."""
    yield b"{"
    for j, name in enumerate(batch.schema.names):
        yield (b", " if j else b"") + dumps_record(name) + b": "
        yield from _value_json(batch.column(j), i)
    yield b"}"


def _value_json(arr: Any, i: int) -> Iterator[bytes]:
    """Item ``i`` of ``arr`` as JSON, in pieces: a small item whole, a large list, map, struct, string or binary
    value streamed."""
    import numpy as np
    import pyarrow as pa

    arr = _plain(arr)
    kind = arr.type
    if pa.types.is_dictionary(kind):
        arr, i = _plain(arr.slice(i, 1).dictionary_decode()), 0
        kind = arr.type
    span = np.array([i], np.int64)
    b, v = _span_sums(arr, span, span + 1)
    listed = pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind)
    if not arr[i].is_valid or (b[0] <= _PIECE_BYTES and v[0] <= _PIECE_VALUES
                               and not (listed and _arrow_formats(kind.value_type))):
        yield dumps_record(arr.slice(i, 1).to_pylist()[0])
    elif pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_map(kind):
        off = _offsets(arr)
        yield b"["
        yield from _items_json(arr.values, int(off[i]), int(off[i + 1]), pa.types.is_map(kind))
        yield b"]"
    elif pa.types.is_fixed_size_list(kind):
        size = kind.list_size
        yield b"["
        yield from _items_json(arr.values, (arr.offset + i) * size, (arr.offset + i + 1) * size, False)
        yield b"]"
    elif pa.types.is_struct(kind):
        for k in range(kind.num_fields):
            yield (b", " if k else b"{") + dumps_record(kind.field(k).name) + b": "
            yield from _value_json(arr.field(k), i)
        yield b"}"
    elif pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_binary(kind) \
            or pa.types.is_large_binary(kind):
        off, data = _offsets(arr), memoryview(arr.buffers()[2])
        text = pa.types.is_string(kind) or pa.types.is_large_string(kind)
        decode = codecs.getincrementaldecoder("utf-8")().decode
        step = 3 << 18  # a multiple of 3: base64 pieces join into the whole's base64
        yield b'"'
        for p in range(int(off[i]), int(off[i + 1]), step):
            chunk = data[p:min(int(off[i + 1]), p + step)]
            yield json.dumps(decode(chunk), ensure_ascii=False)[1:-1].encode("utf-8") if text \
                else base64.b64encode(chunk)
        yield b'"'
    else:
        yield dumps_record(arr.slice(i, 1).to_pylist()[0])


def _arrow_formats(kind: Any) -> bool:
    """Whether Arrow's cast to string writes this type's values as JSON does (ints, bools; nulls filled in)."""
    import pyarrow as pa

    return bool(pa.types.is_integer(kind) or pa.types.is_boolean(kind) or pa.types.is_null(kind))


def _items_json(arr: Any, start: int, end: int, pairs: bool) -> Iterator[bytes]:
    """Items ``[start, end)`` of ``arr`` as the inside of a JSON array, in pieces (``pairs``: map entries, written
    ``[key, value]``). Ints, bools and nulls are formatted by Arrow; other items go to Python a piece at a time,
    an item too large for a piece alone is streamed."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    arr = _plain(arr)
    fast = not pairs and _arrow_formats(arr.type)
    pos = start
    while pos < end:
        sep = b", " if pos > start else b""
        if fast:
            piece = pc.fill_null(arr.slice(pos, min(end - pos, 4 * _PIECE_VALUES)).cast(pa.string()), "null")
            lists = pa.ListArray.from_arrays(pa.array([0, len(piece)], pa.int32()), piece)
            yield sep
            yield pc.binary_join(lists, ", ")[0].as_buffer().to_pybytes()
            pos += len(piece)
            continue
        items = np.arange(pos, min(end, pos + _PIECE_VALUES), dtype=np.int64)
        b, v = _span_sums(arr, items, items + 1)
        take = int(np.count_nonzero((np.cumsum(b) <= _PIECE_BYTES) & (np.cumsum(v) <= _PIECE_VALUES)))
        if take == 0:  # one item too large for a piece
            yield sep
            if pairs:
                yield b"[" + dumps_record(arr.field(0).slice(pos, 1).to_pylist()[0]) + b", "
                yield from _value_json(arr.field(1), pos)
                yield b"]"
            else:
                yield from _value_json(arr, pos)
            pos += 1
            continue
        piece = arr.slice(pos, take)
        values = list(zip(piece.field(0).to_pylist(), piece.field(1).to_pylist(), strict=True)) if pairs \
            else piece.to_pylist()
        yield sep + dumps_record(values)[1:-1]
        pos += take


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


#: ``json.dumps(obj, ensure_ascii=False, allow_nan=False, default=_json_default)`` without building an encoder per
#: call: half the time of a short object such as a check's evidence, written for every record
_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, default=_json_default)


def dumps_record(obj: Any) -> bytes:
    """One strict JSON line (no newline). Lone surrogates are escaped, non-finite floats become strings."""
    try:
        return _ENCODER.encode(obj).encode("utf-8")
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

    def pending(self, name: str) -> Path:
        """The temp file that becomes ``outdir/name`` on commit (to read back what was written, once closed)."""
        return self._tmp[name]

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
