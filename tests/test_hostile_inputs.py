"""Pathological inputs get a clear finding with bounded memory (issue 10, first part: oversized records)."""

from __future__ import annotations

import hashlib
import json
import tracemalloc
from pathlib import Path

from click.testing import CliRunner

from qualgate import Gate
from qualgate.cli import main
from qualgate.io import PREVIEW_BYTES, read_records


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


def test_sigint_stops_a_run_cleanly(tmp_path: Path) -> None:
    """Ctrl-C mid-run: exit code 130, a one-line message, and no output file under a final name."""
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
    job = subprocess.Popen([sys.executable, "-m", "qualgate", "filter", str(path), "-o", str(out), "-j", "1"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not any(out.glob(".*")) and job.poll() is None:
        time.sleep(0.1)  # until the writer has opened its temporary files: the run is under way
    assert job.poll() is None, "the run ended before it could be interrupted"
    os.kill(job.pid, signal.SIGINT)
    _, err = job.communicate(timeout=60)
    assert job.returncode == 130 and "interrupted after" in err and "Traceback" not in err
    assert not any((out / name).exists() for name in ("accepted.jsonl", "rejected.jsonl", "report.json"))
    assert not list(out.glob(".*")), "temporary files are removed"
