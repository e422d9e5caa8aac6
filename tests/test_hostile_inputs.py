"""Pathological inputs (oversized records in every format, deep nesting, NUL bytes, lone surrogates, foreign and
mixed encodings, a million-word record) each get a clear finding or error, with bounded memory."""

from __future__ import annotations

import hashlib
import json
import tracemalloc
from pathlib import Path

import pytest
from click.testing import CliRunner

from qualgate import Gate
from qualgate.cli import main
from qualgate.errors import InputError
from qualgate.io import PREVIEW_BYTES, read_records
from tests.conftest import FIXTURES

LIMIT = 4096  # a small max_record_bytes for the tests below


def _reasons(path: Path, limit: int = LIMIT) -> list[tuple[int, str | None]]:
    """(line or item or row, error reason or None) of every record read from ``path``."""
    return [(r.source.line, r.error[0] if r.error else None) for r in read_records([str(path)], None, limit)]


def test_a_100_mb_line_is_a_finding_read_in_bounded_memory(tmp_path: Path) -> None:
    """A 100 MB JSONL line is not parsed (it would cost several copies of 100 MB): it becomes a malformed
    ``record_too_large`` sample whose message gives its size and sha256, read past in 1 MiB chunks; the
    records around it are read as usual."""
    huge = b'{"output": "' + b"a" * (100 << 20) + b'"}\n'
    path = tmp_path / "big.jsonl"
    path.write_bytes(b'{"output": "before"}\n' + huge + b'{"output": "after"}\n')
    tracemalloc.start()
    records = list(read_records([str(path)]))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 40 << 20  # the default 16 MiB limit, read once, plus the preview; never the 100 MB line
    assert [r.source.line for r in records] == [1, 2, 3]
    assert [r.record for r in records] == [{"output": "before"}, None, {"output": "after"}]
    big = records[1]
    assert big.error is not None and big.error[0] == "record_too_large"
    assert f"{len(huge):,} bytes" in big.error[1] and hashlib.sha256(huge).hexdigest() in big.error[1]
    assert big.raw == huge[:PREVIEW_BYTES]


def test_the_record_limit_is_configurable_and_nothing_is_lost(tmp_path: Path) -> None:
    lines = [json.dumps({"instruction": "Say hi.", "input": "", "output": "Hello there, how are you today?"}),
             json.dumps({"instruction": "Long one.", "input": "", "output": "word " * 2000}),
             json.dumps({"instruction": "Say bye.", "input": "", "output": "Goodbye, see you again soon."})]
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(lines) + "\n")
    config = tmp_path / "small_records.yaml"
    config.write_text("version: 1\nextends: instruct\ninput: {max_record_bytes: 4096}\n")
    res = CliRunner().invoke(main, ["filter", str(path), "-c", str(config), "-o", str(tmp_path / "out"), "-q",
                                    "--no-html"])
    assert res.exit_code in (0, 1), res.output
    accepted = (tmp_path / "out" / "accepted.jsonl").read_text().splitlines()
    rejected = [json.loads(x) for x in (tmp_path / "out" / "rejected.jsonl").read_text().splitlines()]
    assert len(accepted) + len(rejected) == 3
    too_large = [r for r in rejected if r["qualgate"]["findings"][0]["reason"] == "record_too_large"]
    assert len(too_large) == 1 and too_large[0]["qualgate"]["source"]["line"] == 2
    assert too_large[0]["qualgate"]["raw"] == lines[1][:PREVIEW_BYTES]
    default = Gate.from_config("instruct").config.input.max_record_bytes
    assert default == 16 << 20


@pytest.mark.parametrize("delay", [0.0, 0.4])
def test_sigint_stops_a_run_cleanly(tmp_path: Path, delay: float) -> None:
    """Ctrl-C mid-run: exit code 130, a one-line message, and no output file under a final name; also at the
    moment the writer has just opened its files (once, under CI load, that fell outside the handler and click
    turned it into exit 1)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from tests.conftest import FIXTURES

    lines = [x for x in (FIXTURES / "instruct_sample.jsonl").read_text().splitlines() if x.strip().endswith("}")]
    body = "".join(f'{{"n": {i}, {line.lstrip()[1:]}\n' for i in range(40) for line in lines)
    path = tmp_path / "in.jsonl"
    path.write_text(body * 40)  # tens of thousands of records: seconds of work
    out = tmp_path / "out"
    # SIGINT as a terminal delivers it: a test runner started in the background (``cmd &`` in a script) ignores
    # SIGINT, its children inherit that, and Python then installs no KeyboardInterrupt handler at all
    job = subprocess.Popen([sys.executable, "-m", "qualgate", "filter", str(path), "-o", str(out), "-j", "1"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not any(out.glob(".*")) and job.poll() is None:
        time.sleep(0.01)  # until the writer has opened its temporary files: the run is under way
    time.sleep(delay)
    assert job.poll() is None, "the run ended before it could be interrupted"
    os.kill(job.pid, signal.SIGINT)
    _, err = job.communicate(timeout=60)
    assert job.returncode == 130 and "interrupted after" in err and "Traceback" not in err, err[-3000:]
    assert not any((out / name).exists() for name in ("accepted.jsonl", "rejected.jsonl", "report.json"))
    assert not list(out.glob(".*")), "temporary files are removed"


def test_every_format_rejects_an_oversized_record_and_reads_on(tmp_path: Path) -> None:
    """A record over max_record_bytes is record_too_large in JSONL, CSV, TSV, a JSON array and Parquet alike; the
    records after it are read with their own line, item or row numbers."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"output": "first"}, {"output": "x" * 10_000}, {"output": "third"}]
    (tmp_path / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "a.json").write_text(json.dumps(rows, indent=1))
    (tmp_path / "a.csv").write_text("output\r\n" + "".join(r["output"] + "\r\n" for r in rows))
    (tmp_path / "a.tsv").write_text("output\n" + "".join(r["output"] + "\n" for r in rows))
    pq.write_table(pa.table({"output": [r["output"] for r in rows]}), tmp_path / "a.parquet")
    for name, numbers in (("a.jsonl", [1, 2, 3]), ("a.json", [1, 2, 3]), ("a.csv", [2, 3, 4]), ("a.tsv", [2, 3, 4]),
                          ("a.parquet", [1, 2, 3])):
        assert _reasons(tmp_path / name) == list(zip(numbers, [None, "record_too_large", None], strict=True)), name
        big = list(read_records([str(tmp_path / name)], None, LIMIT))[1]
        assert big.error is not None and "over the limit of 4,096" in big.error[1]
        assert big.raw is not None and len(big.raw) == PREVIEW_BYTES


def test_a_csv_line_over_the_limit_is_read_past_in_bounded_memory(tmp_path: Path) -> None:
    """A 50 MB CSV line (one field) is never held whole: read in 1 MiB chunks, hashed, rejected; the rows around
    it are read. A header over the limit is an input error naming line 1."""
    path = tmp_path / "big.csv"
    with path.open("w") as fh:
        fh.write("instruction,output\nSay hi.,Hello!\nLong.,")
        for _ in range(50):
            fh.write("y" * (1 << 20))
        fh.write("\nSay bye.,Goodbye!\n")
    tracemalloc.start()
    records = list(read_records([str(path)]))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 45 << 20  # a 16 MiB line as text and as bytes, never the 50 MB one
    assert [(r.source.line, r.error[0] if r.error else None) for r in records] == [
        (2, None), (3, "record_too_large"), (4, None)]
    assert records[1].error is not None and f"{(50 << 20) + 7:,} bytes" in records[1].error[1]
    wide = tmp_path / "wide.csv"
    wide.write_text("h" * 5000 + "\nx\n")
    with pytest.raises(InputError, match=r"header line .* over input.max_record_bytes") as err:
        list(read_records([str(wide)], None, LIMIT))
    assert err.value.line == 1


def test_a_json_document_over_its_limit_is_an_error_and_its_items_are_parsed_one_at_a_time(tmp_path: Path) -> None:
    """A JSON array is parsed item by item (memory: its bytes and text, then the text plus one item); a
    document over input.max_document_bytes is refused with a message saying how to stream it instead."""
    items = [{"instruction": f"Question {i}?", "output": "An answer. " * 20} for i in range(20_000)]
    path = tmp_path / "many.json"
    path.write_text(json.dumps(items))
    size = path.stat().st_size
    tracemalloc.start()
    count = sum(1 for _ in read_records([str(path)]))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert count == 20_000 and peak < 3 * size  # the bytes and the text, briefly (reading 1 MiB at a time)
    config = tmp_path / "small_docs.yaml"
    config.write_text("version: 1\nextends: instruct\ninput: {max_document_bytes: 100000}\n")
    res = CliRunner().invoke(main, ["filter", str(path), "-c", str(config), "-o", str(tmp_path / "out"), "-q"])
    assert res.exit_code == 2 and str(path) in res.output and "max_document_bytes" in res.output
    assert "jq -c" in res.output and not (tmp_path / "out" / "accepted.jsonl").exists()


@pytest.mark.parametrize("shape", ["jsonl", "json"])
def test_deeply_nested_json_is_a_finding_or_an_error_never_a_crash(tmp_path: Path, shape: str) -> None:
    """20,000 nested arrays: in JSONL the line is malformed (nested too deeply) and the next is read; in a JSON
    array (which cannot resume after it) the file is an input error naming the item. (200,000 levels hold more
    values than input.max_record_values: in JSONL that line is record_too_large, counted before parsing.)"""
    deep = "[" * 20_000 + "]" * 20_000
    if shape == "jsonl":
        path = tmp_path / "deep.jsonl"
        path.write_text(json.dumps({"output": "fine"}) + "\n" + '{"output": "x", "meta": ' + deep + "}\n"
                        + json.dumps({"output": "also fine"}) + "\n")
        records = list(read_records([str(path)]))
        assert [r.error[0] if r.error else None for r in records] == [None, "invalid_json", None]
        assert records[1].error is not None and "nested too deeply" in records[1].error[1]
    else:
        path = tmp_path / "deep.json"
        path.write_text("[" + json.dumps({"output": "fine"}) + ", " + deep + "]")
        with pytest.raises(InputError, match="item 2 is nested too deeply"):
            list(read_records([str(path)]))


@pytest.mark.parametrize("name,encoding", [("a.jsonl", "utf-16"), ("a.json", "utf-16"), ("a.csv", "utf-16"),
                                           ("a.jsonl", "utf-32")])
def test_a_utf16_or_utf32_file_is_named_as_such(tmp_path: Path, name: str, encoding: str) -> None:
    """A UTF-16/32 file (with its byte-order mark) would read as one invalid line per line: one clear error
    names the encoding and the fix instead."""
    path = tmp_path / name
    body = "output\nhello\n" if name.endswith(".csv") else json.dumps({"output": "hello"}) + "\n"
    path.write_bytes(body.encode(encoding))
    with pytest.raises(InputError, match=f"file is {encoding.upper()}.*iconv") as err:
        list(read_records([str(path)]))
    assert err.value.file == str(path)


def test_nul_bytes_surrogates_and_mixed_encodings_are_findings_not_crashes(tmp_path: Path) -> None:
    """Through the whole instruct pack: a raw NUL byte (not JSON), escaped NULs and lone surrogates in the text,
    a Latin-1 line among UTF-8 ones, and CP1252 quotes: every record gets one decision, the broken ones a named
    reason, and the well-formed text with odd characters is judged like any other."""
    lines = [json.dumps({"instruction": "Say hi.", "input": "", "output": "Hello there, how are you today?"}).encode(),
             b'{"instruction": "Raw NUL.", "input": "", "output": "a\x00b"}',
             json.dumps({"instruction": "Escaped NUL.", "input": "", "output": "Hello\u0000 there friend, "
                         "how are you doing on this fine morning?"}).encode(),
             b'{"instruction": "Lone surrogate.", "input": "", "output": "Hello \\ud800 there, how are you today?"}',
             '{"instruction": "Latin-1.", "input": "", "output": "Caf\u00e9 au lait, s\u2019il vous pla\u00eet."}'
             .encode("utf-8"),
             '{"instruction": "Latin-1 bytes.", "input": "", "output": "Caf\u00e9 cr\u00e8me"}'.encode("latin-1"),
             b'{"instruction": "CP1252 quotes.", "input": "", "output": "\x93quoted\x94"}']
    path = tmp_path / "odd.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    result = Gate.from_config("instruct", cache_dir=None).run(read_records([str(path)]))
    assert len(result.decisions) == len(lines)
    reasons = [d.findings[0].reason if d.findings else None for d in result.decisions]
    assert reasons[1] == "invalid_json" and reasons[5] == "invalid_utf8" and reasons[6] == "invalid_utf8"
    assert reasons[0] is None and reasons[4] is None
    for d in result.decisions:
        assert d.accepted == (not d.findings)
        for f in d.findings:
            assert f.check and f.reason and f.message


def _run_measured(args: list[str]) -> tuple[int, int, str]:
    """Run the CLI in a fresh process: (exit code, its own peak memory in KiB, stderr). The peak is VmHWM of the
    process's address space, read at exit: getrusage would report pytest's peak, which a child inherits."""
    import subprocess
    import sys

    code = ("import sys\nfrom qualgate.cli import main\ntry:\n    main(sys.argv[1:])\nfinally:\n"
            "    print('VmHWM', open('/proc/self/status').read().split('VmHWM:')[1].split()[0], file=sys.stderr)")
    res = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=600)
    peak = int(res.stderr.rsplit("VmHWM", 1)[1].split()[0])
    return res.returncode, peak, res.stderr


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads VmHWM from /proc (Linux)")
def test_a_million_word_record_is_judged_with_bounded_memory(tmp_path: Path) -> None:
    """A record of a million words (5.5 MB, under the 16 MiB limit) goes through every check of the embed pack
    (the default pack's rules and MinHash, semantic duplicates, the diversity report; --all-findings, so none
    is skipped) with bounded memory: the embedder cuts the text before tokenising (before, this one record
    cost 800 MB more). Times for every pack are in bench/RESULTS.md."""
    import random

    rng = random.Random(3)
    prose = " ".join(json.loads(x)["text"] for x in (FIXTURES / "human_prose.jsonl").read_text().splitlines() if x)
    words = prose.split()
    text = " ".join(rng.choice(words) for _ in range(1_000_000))
    path = tmp_path / "million.jsonl"
    path.write_text(json.dumps({"instruction": "Write.", "input": "", "output": "A short answer."}) + "\n"
                    + json.dumps({"instruction": "Write at length.", "input": "", "output": text}) + "\n")
    code, peak, err = _run_measured(["filter", str(path), "-c", "embed", "-o", str(tmp_path / "out"), "-q",
                                     "--no-html", "--no-cache", "-j", "1", "--all-findings"])
    assert code in (0, 1), err
    # KiB. The model (torch + MiniLM, ~0.6 GB) is loaded when the read-ahead window is embedded, before MinHash
    # shingles the million words (~0.2 GB for a moment): 0.92-1.04 GB measured (0.69 GB when the model loaded
    # after MinHash, as it did before the window; any run with more than one batch loads it first anyway). Uncut,
    # the embedder alone took 0.8 GB more.
    assert peak < 1300 << 10, peak
    rejected = (tmp_path / "out" / "rejected.jsonl").read_text().splitlines()
    assert len(rejected) + len((tmp_path / "out" / "accepted.jsonl").read_text().splitlines()) == 2


def test_csv_line_numbers_hold_when_a_bounded_read_cuts_a_crlf(tmp_path: Path) -> None:
    """A line of exactly max_record_bytes characters, or an oversized one whose CRLF falls on a 1 MiB chunk
    boundary, is read in pieces that end at the CR: its LF is not a line of its own (line numbers stay)."""
    exact = tmp_path / "exact.csv"
    exact.write_bytes(b"id,text\r\n1," + b"a" * (LIMIT - 2) + b"\r\n2,b\r\n3,c\r\n")
    assert _reasons(exact) == [(2, None), (3, None), (4, None)]
    assert [r.record for r in read_records([str(exact)], None, LIMIT)][1:] == [{"id": "2", "text": "b"},
                                                                              {"id": "3", "text": "c"}]
    boundary = tmp_path / "boundary.csv"  # the first read takes LIMIT + 1 characters, then 1 MiB chunks
    boundary.write_bytes(b"id,text\r\n1," + b"a" * (LIMIT + 1 + (1 << 20) - 1 - 2) + b"\r\n2,b\r\n3,c\r\n")
    assert _reasons(boundary) == [(2, "record_too_large"), (3, None), (4, None)]


def test_a_quoted_csv_field_of_many_short_lines_is_limited_too(tmp_path: Path) -> None:
    """A quoted field spanning 3,000 short lines (33,000 characters) is over a 4 KiB limit although no line
    is: the row is record_too_large instead of one huge field (an unclosed quote would otherwise read the
    rest of the file into it); every record read gets a decision."""
    path = tmp_path / "multi.csv"
    path.write_text('id,text\n1,fine\n2,"' + "ten chars\n" * 3000 + 'end"\n3,after\n')
    records = list(read_records([str(path)], None, LIMIT))
    assert (records[0].record, records[1].error and records[1].error[0]) == ({"id": "1", "text": "fine"},
                                                                           "record_too_large")
    assert records[1].source.line == 3
    assert len(Gate.from_config("instruct", cache_dir=None).run(records).decisions) == len(records)


def test_parquet_text_is_measured_whatever_its_arrow_type(tmp_path: Path) -> None:
    """Dictionary-encoded (a pandas categorical) and large strings count toward the row limit like plain ones."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    values = ["short", "x" * 5000, "short too"]
    for name, column in (("dict", pa.array(values).dictionary_encode()), ("large", pa.array(values, pa.large_string())),
                         ("plain", pa.array(values))):
        path = tmp_path / f"{name}.parquet"
        pq.write_table(pa.table({"output": column}), path)
        assert _reasons(path) == [(1, None), (2, "record_too_large"), (3, None)], name


def test_json_documents_keep_their_old_edges(tmp_path: Path) -> None:
    """JSON Lines saved as .json split at LF only, as a .jsonl file is read (tests/test_reader_integrity.py): a
    lone CR does not end a line, so the line is malformed and says why; a single top-level object over the limit
    is record_too_large like an array item; a form feed before '[' is not JSON whitespace."""
    lone_cr = tmp_path / "cr.json"
    lone_cr.write_bytes(b'{"text": "a b c."}\r{"text": "d e f."}\r')
    [record] = read_records([str(lone_cr)])
    assert record.error is not None and record.error[0] == "invalid_json" and "lone CR" in record.error[1]
    single = tmp_path / "one.json"
    single.write_text(json.dumps({"output": "y" * 5000}))
    assert _reasons(single) == [(1, "record_too_large")]
    feed = tmp_path / "feed.json"
    feed.write_bytes(b'\x0c[{"output": "x"}]')
    with pytest.raises(InputError, match="invalid JSON"):
        list(read_records([str(feed)]))
