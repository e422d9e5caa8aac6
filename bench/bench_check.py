"""`qualgate check` on a pull-request-sized change: 100 new records against a 50,000-record baseline.

    python bench/bench_check.py ../shared/data/alpaca_data.json [--pack default]

Makes a temporary git repository whose `data.jsonl` holds the first 50,000 Alpaca records (committed),
appends the next 100 records (staged), and times `qualgate check data.jsonl --base HEAD` as a
subprocess `--runs` times (default 6) with one cache folder: the first run builds the baseline's MinHash
index and the base's line hashes, the later ones find them in the cache. Reports wall and CPU seconds
(the command and its git subprocesses), the exit code, and how many lines of the changed file and of its
base version were parsed (a warm run parses only the lines the base lacks), then the median of the warm runs.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", type=Path)
    ap.add_argument("--pack", default="default")
    ap.add_argument("--baseline", type=int, default=50_000)
    ap.add_argument("--added", type=int, default=100)
    ap.add_argument("--runs", type=int, default=6, help="runs in all; the first is cold")
    args = ap.parse_args()
    records = json.loads(args.data.read_text())
    with tempfile.TemporaryDirectory() as tmp:
        repo, cache = Path(tmp) / "repo", Path(tmp) / "cache"
        repo.mkdir()
        run = {"cwd": repo, "check": True, "capture_output": True}
        subprocess.run(["git", "init", "-q", "-b", "main"], **run)  # type: ignore[call-overload]
        subprocess.run(["git", "config", "user.email", "b@example.org"], **run)  # type: ignore[call-overload]
        subprocess.run(["git", "config", "user.name", "b"], **run)  # type: ignore[call-overload]
        data = repo / "data.jsonl"
        data.write_text("".join(json.dumps(r) + "\n" for r in records[: args.baseline]))
        subprocess.run(["git", "add", "data.jsonl"], **run)  # type: ignore[call-overload]
        subprocess.run(["git", "commit", "-q", "-m", "base"], **run)  # type: ignore[call-overload]
        with data.open("a") as fh:
            for r in records[args.baseline: args.baseline + args.added]:
                fh.write(json.dumps(r) + "\n")
        subprocess.run(["git", "add", "data.jsonl"], **run)  # type: ignore[call-overload]
        cmd = [sys.executable, "-m", "qualgate.cli", "check", "data.jsonl", "--base", "HEAD", "-c", args.pack,
               "--cache-dir", str(cache), "--format", "json"]
        print(f"{args.added} added records vs {args.baseline} baseline, pack {args.pack}, 2 cores\n")
        print("| run | cache | seconds | CPU seconds | exit | added | rejected | lines parsed | base lines parsed |\n"
              "|---|---|---:|---:|---:|---:|---:|---:|---:|")
        warm: list[tuple[float, float]] = []
        for i in range(args.runs):
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            start = time.perf_counter()
            proc = subprocess.run(cmd, cwd=repo, capture_output=True, text=True, env={**os.environ})
            seconds = time.perf_counter() - start
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
            out = json.loads(proc.stdout) if proc.stdout.strip().startswith("{") else {}
            files = out.get("files", [{}])
            print(f"| {i + 1} | {'cold' if i == 0 else 'warm'} | {seconds:.2f} | {cpu:.2f} | {proc.returncode} | "
                  f"{out.get('added')} | {len(out.get('rejected', []))} | {sum(f.get('parsed', 0) for f in files)} | "
                  f"{sum(f.get('base_parsed', 0) for f in files)} |", flush=True)
            if not out:
                print(proc.stderr[-2000:], file=sys.stderr)
            if i:
                warm.append((seconds, cpu))
        if warm:
            print(f"\nwarm median: {statistics.median(w for w, _ in warm):.2f} s wall, "
                  f"{statistics.median(c for _, c in warm):.2f} s CPU ({len(warm)} runs)")


if __name__ == "__main__":
    main()
