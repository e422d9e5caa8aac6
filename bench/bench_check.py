"""`qualgate check` on a pull-request-sized change: 100 new records against a 50,000-record baseline.

    python bench/bench_check.py ../shared/data/alpaca_data.json [--pack default]

Makes a temporary git repository whose `data.jsonl` holds the first 50,000 Alpaca records (committed),
appends the next 100 records (staged), and times `qualgate check data.jsonl --base HEAD` as a
subprocess three times with one cache folder: the first run builds the baseline's MinHash index, the
later ones find it in the cache. Reports wall seconds and the exit code of each run.
"""

from __future__ import annotations

import argparse
import json
import os
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
        print("| run | cache | seconds | exit | added | rejected |\n|---|---|---:|---:|---:|---:|")
        for i in range(3):
            start = time.perf_counter()
            proc = subprocess.run(cmd, cwd=repo, capture_output=True, text=True, env={**os.environ})
            seconds = time.perf_counter() - start
            out = json.loads(proc.stdout) if proc.stdout.strip().startswith("{") else {}
            print(f"| {i + 1} | {'cold' if i == 0 else 'warm'} | {seconds:.2f} | {proc.returncode} | "
                  f"{out.get('added')} | {len(out.get('rejected', []))} |", flush=True)
            if not out:
                print(proc.stderr[-2000:], file=sys.stderr)


if __name__ == "__main__":
    main()
