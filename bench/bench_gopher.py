"""qualgate's `default` pack against datatrove's Gopher pipeline, on the same records, in one interleaved run.

    .bench-venv/bin/python bench/bench_gopher.py ../shared/data/alpaca_data.json [--limit N] [--repeats 3]
                                                 [--workers 1 2]

Run it from the benchmark environment (datatrove, spaCy for its English word tokenizer, psutil: peers only, never
qualgate dependencies). From an Alpaca-style JSON array it writes, in a temporary folder:

- ``records.jsonl``: the records as they are (instruction, input, output); qualgate's default view joins them;
- ``text/0.jsonl``, ``text/1.jsonl`` ...: ``{"id", "text"}`` with the same join (instruction, the input when not
  empty, the output, one newline between them, as qualgate's auto view does), in as many shards as the most
  workers asked for, because datatrove gives each task whole files.

Then, for each repeat and each worker count, one after the other (A, B, A, B ...; each a subprocess, so start-up,
reading and writing count; the RSS of the whole process tree sampled every 50 ms):

- (a) ``qualgate filter -c default records.jsonl -j W --no-html --no-cache -q``: all its outputs (accepted and
  rejected JSONL with the findings, scores.parquet, report.json/.md);
- (b) datatrove as its docs put a Gopher pipeline together: ``JsonlReader -> GopherRepetitionFilter ->
  GopherQualityFilter -> JsonlWriter`` (the paper's thresholds, the filters' defaults) under
  ``LocalPipelineExecutor(tasks=W, workers=W)``. datatrove's ``LanguageFilter`` is left out: its model (lid.176.bin)
  is downloaded on first use, and this benchmark runs offline.

Reports the median wall time of the repeats, docs/s, peak RSS, how many records each rejected (and why), and the
ratio qualgate / datatrove at each worker count. Wall times on a shared machine are noisy: read the ratios, which
come from runs taken turn about.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psutil
from bench_filter import tree_rss  # peak RSS of the whole process tree


def timed(cmd: list[str]) -> tuple[float, int]:
    """Wall seconds and peak RSS (bytes, whole process tree) of ``cmd``."""
    start = time.perf_counter()
    proc = psutil.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, tree_rss(proc))
        time.sleep(0.05)
    wall = time.perf_counter() - start
    err = proc.stderr.read().decode("utf-8", "replace") if proc.stderr else ""
    if proc.returncode not in (0, 1):  # qualgate exits 1 when the gate fails
        raise SystemExit(f"{' '.join(cmd[:4])} ... exited {proc.returncode}:\n{err[-3000:]}")
    return wall, peak


def view(record: dict[str, Any]) -> str:
    """qualgate's auto view of an instruction record: instruction, the input when not empty, the output."""
    parts = [record["instruction"], *([record["input"]] if record.get("input") else []), record["output"]]
    return "\n".join(parts)


def prepare(data: Path, limit: int | None, shards: int, folder: Path) -> int:
    records = json.loads(data.read_text())[:limit]
    with (folder / "records.jsonl").open("w") as fh:
        fh.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    text = folder / "text"
    text.mkdir()
    files = [(text / f"{i}.jsonl").open("w") for i in range(shards)]
    per = -(-len(records) // shards)
    for i, r in enumerate(records):
        files[i // per].write(json.dumps({"id": str(i), "text": view(r)}, ensure_ascii=False) + "\n")
    for fh in files:
        fh.close()
    return len(records)


def fresh(*paths: Path) -> None:
    """Remove what an earlier repeat left (datatrove's executor skips tasks its logging folder says are done)."""
    for path in paths:
        shutil.rmtree(path, ignore_errors=True)


def run_qualgate(folder: Path, workers: int) -> dict[str, Any]:
    out = folder / f"qg_{workers}"
    fresh(out)
    cmd = [sys.executable, "-m", "qualgate.cli", "filter", "-c", "default", str(folder / "records.jsonl"),
           "-o", str(out), "-q", "--no-html", "--no-cache", "-j", str(workers)]
    wall, peak = timed(cmd)
    report = json.loads((out / "report.json").read_text())
    reasons = {k: v["rejected"] for k, v in report["by_check"].items() if v["rejected"]}
    return {"wall": wall, "peak": peak, "rejected": report["rejected"], "reasons": reasons}


def run_datatrove(folder: Path, workers: int) -> dict[str, Any]:
    out, logs = folder / f"dt_{workers}", folder / f"dt_{workers}_logs"
    fresh(out, logs)
    cmd = [sys.executable, __file__, "_datatrove", str(folder / "text"), str(out), str(logs), str(workers)]
    wall, peak = timed(cmd)
    kept = 0
    for f in out.glob("*.jsonl*"):
        opener = gzip.open if f.suffix == ".gz" else open
        with opener(f, "rt") as fh:
            kept += sum(1 for _ in fh)
    reasons: Counter[str] = Counter()
    for stats in logs.glob("stats/*.json"):
        for step in json.loads(stats.read_text()):
            for key, value in step.get("stats", {}).items():
                if key.startswith("dropped_"):
                    reasons[f"{step['name'].split()[-1].lower()}:{key[8:]}"] += int(value)
    return {"wall": wall, "peak": peak, "kept": kept, "reasons": dict(reasons.most_common())}


def datatrove_pipeline(text: str, out: str, logs: str, workers: int) -> None:
    """The pipeline (b), run in its own process."""
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.filters import GopherQualityFilter, GopherRepetitionFilter
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import JsonlWriter

    LocalPipelineExecutor(
        pipeline=[JsonlReader(text), GopherRepetitionFilter(), GopherQualityFilter(), JsonlWriter(out)],
        tasks=workers, workers=workers, logging_dir=logs,
    ).run()


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_datatrove":
        datatrove_pipeline(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", type=Path, help="a JSON array of instruction/input/output records (Alpaca)")
    ap.add_argument("--limit", type=int, default=None, help="first N records (default: all)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        n = prepare(args.data, args.limit, max(args.workers), folder)
        runs: dict[tuple[str, int], list[dict[str, Any]]] = {}
        for rep in range(args.repeats):
            for w in args.workers:
                for tool, fn in (("qualgate", run_qualgate), ("datatrove", run_datatrove)):
                    r = fn(folder, w)
                    runs.setdefault((tool, w), []).append(r)
                    print(f"# repeat {rep + 1} {tool} j={w}: {r['wall']:.1f} s", file=sys.stderr, flush=True)
    print(f"{n:,} records of {args.data.name}; median of {args.repeats} interleaved runs; "
          f"{psutil.cpu_count()} cpus, python {platform.python_version()}, load at end {os.getloadavg()[0]:.1f}\n")
    print("| tool | workers | rejected | wall s (median) | docs/s | peak RSS (tree) MiB | qualgate speed-up |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for w in args.workers:
        qg, dt = runs["qualgate", w], runs["datatrove", w]
        wq, wd = statistics.median(r["wall"] for r in qg), statistics.median(r["wall"] for r in dt)
        for tool, rs, wall in (("qualgate default", qg, wq), ("datatrove Gopher", dt, wd)):
            rejected = rs[0]["rejected"] if tool.startswith("qualgate") else n - rs[0]["kept"]
            print(f"| {tool} | {w} | {rejected:,} | {wall:.1f} | {n / wall:,.0f} | "
                  f"{max(r['peak'] for r in rs) / 2**20:.0f} | {wd / wq if tool.startswith('qualgate') else 1:.2f}x |")
    print("\nqualgate rejections by check:", json.dumps(runs["qualgate", args.workers[0]][0]["reasons"]))
    print("datatrove rejections by filter and reason:", json.dumps(runs["datatrove", args.workers[0]][0]["reasons"]))


if __name__ == "__main__":
    main()
