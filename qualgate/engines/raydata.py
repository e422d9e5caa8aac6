"""Inputs read through Ray Data: local paths, any URI pyarrow knows (s3://, gs://, hdfs://, abfs://, file://)
and any other fsspec URL (``protocol://...`` or chained ``a::b://...``, with that protocol's package installed).

Ray Data read tasks read the files (JSONL: whole files, split into lines in the tasks, ``.gz`` inflated
there; Parquet: row batches) and stream them to the driver in input order (``preserve_order``), where each line
is parsed exactly as the local reader parses it (``io.parse_line``): the same records, line numbers and
malformed findings, so the same decisions. JSON arrays and CSV/TSV are read by the local readers (local paths).
Unlike the local readers, a folder is read too (every file in it, in Ray Data's order, each named by its path).
"""

from __future__ import annotations

import gzip
import logging
import os
import re
from collections.abc import Iterable, Iterator
from functools import partial
from typing import Any

import numpy as np

from qualgate.errors import InputError
from qualgate.io import (
    MAX_DOCUMENT_BYTES,
    MAX_RECORD_BYTES,
    MAX_RECORD_VALUES,
    Oversized,
    RawRecord,
    check_encoding,
    detect_format,
    jsonl_lines,
    parquet_rows,
    parse_line,
    read_records,
    split_lines,
)
from qualgate.sample import Source

_ANSI = re.compile(r"\x1b\[[0-9;]*m")

#: URI schemes pyarrow (so Ray Data) resolves itself; any other ``scheme://`` goes through fsspec.
ARROW_SCHEMES = ("s3", "gs", "gcs", "hdfs", "viewfs", "abfs", "abfss", "file")


def is_remote(path: str) -> bool:
    return "://" in path or "::" in path


def filesystem(path: str) -> tuple[Any, str]:
    """``(filesystem or None, path for Ray)``: None lets Ray resolve the URI; fsspec URLs get a wrapped fsspec one."""
    scheme = path.split("://", 1)[0].lower() if "://" in path else ""
    if "::" not in path and (not scheme or scheme in ARROW_SCHEMES):
        return None, path
    try:
        import fsspec.core
        from pyarrow.fs import FSSpecHandler, PyFileSystem
    except ImportError:
        raise InputError(f"reading {scheme or path}:// paths needs fsspec: pip install fsspec", file=path) from None
    try:
        fs, inner = fsspec.core.url_to_fs(path)
    except (ImportError, ValueError) as exc:
        raise InputError(f"no filesystem for this URL: {exc}", file=path) from None
    return PyFileSystem(FSSpecHandler(fs)), inner


def _lines(batch: dict[str, Any], limit: int) -> dict[str, Any]:
    """A Ray Data task: files' bytes -> their non-blank lines (BOM and line ends removed) with 1-based numbers."""
    numbers: list[int] = []
    lines: list[bytes] = []
    files: list[str] = []
    sizes: list[int] = []
    digests: list[str] = []
    for data, path in zip(batch["bytes"], batch["path"], strict=True):
        raw = bytes(data)
        if str(path).lower().endswith(".gz") and raw[:2] == b"\x1f\x8b":  # unless the filesystem inflated it
            raw = gzip.decompress(raw)
        check_encoding(raw[:4], str(path))
        for n, line in jsonl_lines(split_lines(raw, limit)):  # as the local reader: the driver parses them
            numbers.append(n)
            files.append(str(path))
            if isinstance(line, Oversized):  # the driver gets only its summary
                lines.append(line.preview)
                sizes.append(line.size)
                digests.append(line.sha256)
            else:
                lines.append(line)
                sizes.append(0)
                digests.append("")
    return {"file": np.asarray(files, dtype=object), "line": np.asarray(numbers, dtype=np.int64),
            "raw": np.asarray(lines, dtype=object), "size": np.asarray(sizes, dtype=np.int64),
            "sha256": np.asarray(digests, dtype=object)}


def _last_line(exc: BaseException) -> str:
    """The gist of a (possibly remote, colour-coded, multi-line) error: its last non-empty line."""
    lines = [x for x in _ANSI.sub("", str(exc)).splitlines() if x.strip()]
    return lines[-1].strip() if lines else type(exc).__name__


def quiet_data() -> Any:
    """Ray Data's context with its progress bars and start-up logs off (qualgate reports its own progress)."""
    import ray.data as rd

    logging.getLogger("ray.data").setLevel(logging.ERROR)  # else it warns that we turned its progress bars off
    ctx = rd.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    return ctx


def read(paths: list[str], fmt: str | None = None, address: str | None = None, batch_size: int = 4096,
         max_record_bytes: int = MAX_RECORD_BYTES, max_document_bytes: int = MAX_DOCUMENT_BYTES,
         max_record_values: int = MAX_RECORD_VALUES) -> Iterator[RawRecord]:
    """All records of all inputs, in order, read by Ray Data on the cluster at ``address`` (see ``ray.connect``),
    under the same input limits as the local readers."""
    import ray.data as rd

    from qualgate.engines.ray import connect

    connect(address)
    quiet_data().execution_options.preserve_order = True  # decisions follow input order, so reading must too
    for path in paths:
        kind = fmt or detect_format(path.split("::")[0])
        if kind not in ("jsonl", "parquet") or path == "-":
            if is_remote(path):
                raise InputError(f"the Ray engine reads JSONL and Parquet from URLs; {kind} only from local paths",
                                 file=path)
            yield from read_records([path], kind, max_record_bytes, max_document_bytes, max_record_values)
            continue
        fs, target = filesystem(path)
        try:
            if kind == "jsonl":
                ds = rd.read_binary_files(target, filesystem=fs, include_paths=True).map_batches(
                    partial(_lines, limit=max_record_bytes), batch_format="numpy")
                named = {target, os.path.abspath(target), target.split("://", 1)[-1]}
                for batch in ds.iter_batches(batch_size=batch_size, batch_format="numpy"):
                    for file, n, raw, size, sha in zip(batch["file"], batch["line"].tolist(), batch["raw"],
                                                       batch["size"].tolist(), batch["sha256"], strict=True):
                        # a file named on the command line keeps that name; files of a folder their own
                        src = Source(path if file in named else str(file), n)
                        if size:
                            yield Oversized(bytes(raw), size, str(sha), max_record_bytes).record(src)
                        else:
                            yield parse_line(bytes(raw), src, max_record_values)
            else:
                row = 0
                # no hive partitioning: a folder named key=value must not add a column to every record
                tables: Iterable[Any] = rd.read_parquet(target, filesystem=fs, partitioning=None).iter_batches(
                    batch_size=batch_size, batch_format="pyarrow")
                for table in tables:
                    yield from parquet_rows(table, path, row, max_record_bytes, max_record_values)
                    row += table.num_rows
        except InputError:
            raise
        except Exception as exc:  # Ray wraps the reader's error (missing file, bad Parquet) with a remote traceback
            raise InputError(f"cannot read: {_last_line(exc)}", file=path) from None
