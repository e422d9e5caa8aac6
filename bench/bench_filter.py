"""Benchmark: a rule pack over a real synthetic dataset, end to end through the CLI.

Runs ``qualgate filter`` as a subprocess (so start-up, reading, writing and the worker pool all
count), samples the RSS of the whole process tree (main + workers) every 50 ms, and reports
samples/s and peak memory for each worker setting side by side.

    python bench/bench_filter.py ../shared/data/alpaca_data.json --pack default --workers 1 2

Needs ``psutil`` in the benchmark environment (not a qualgate dependency).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import psutil


def tree_rss(proc: psutil.Process) -> int:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            total += p.memory_info().rss
    return total


def run(data: str, pack: str, workers: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, "-m", "qualgate.cli", "filter", data, "-c", pack, "-o", out, "-q", "-j", str(workers)]
        start = time.perf_counter()
        proc = psutil.Popen(cmd)
        peak = 0
        while proc.poll() is None:
            peak = max(peak, tree_rss(proc))
            time.sleep(0.05)
        wall = time.perf_counter() - start
        if proc.returncode not in (0, 1):
            raise SystemExit(f"qualgate exited {proc.returncode}")
        report = json.loads((Path(out) / "report.json").read_text())
    return {"workers": workers, "records": report["total"], "rejected": report["rejected"], "wall_s": wall,
            "samples_per_s": report["total"] / wall, "peak_rss_mib": peak / 2**20,
            "by_check": {k: v["rejected"] for k, v in report["by_check"].items()}}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("data")
    ap.add_argument("--pack", default="default")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = ap.parse_args()
    rows = [run(args.data, args.pack, w) for w in args.workers]
    print(f"pack={args.pack} data={args.data} cpus={psutil.cpu_count()} python={platform.python_version()}")
    print("| workers | records | rejected | wall s | samples/s | peak RSS (tree) MiB | speed-up |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['workers']} | {r['records']} | {r['rejected']} | {r['wall_s']:.1f} | {r['samples_per_s']:.0f} | "
              f"{r['peak_rss_mib']:.0f} | {rows[0]['wall_s'] / r['wall_s']:.2f}x |")
    print("rejections by check:", json.dumps(rows[-1]["by_check"]))


if __name__ == "__main__":
    main()
