"""The local engine against the Ray engine on the same records, side by side, same machine.

    python bench/bench_engines.py ../shared/data/alpaca_data.json --pack instruct -j 2

Runs ``qualgate filter`` with ``--engine local`` and ``--engine ray`` (a local Ray instance started by the
run itself) as separate processes, timed wall to wall. Peak RSS is the whole process tree's (Ray's actors
and raylet are children; sampled every 0.2 s). Checks that both wrote the same accepted.jsonl and
rejected.jsonl, and prints a Markdown table for bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def tree_rss(pid: int) -> int:
    """Resident memory (bytes) of a process and all its descendants, from /proc."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/status") as fh:
                total += next(int(x.split()[1]) * 1024 for x in fh if x.startswith("VmRSS:"))
            with open(f"/proc/{p}/task/{p}/children") as fh:
                todo.extend(int(c) for c in fh.read().split())
        except (OSError, StopIteration):
            continue
    return total


def run(cmd: list[str]) -> tuple[float, float]:
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, tree_rss(proc.pid))
        time.sleep(0.2)
    elapsed = time.perf_counter() - start
    if proc.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(cmd)} failed: {proc.stderr.read().decode() if proc.stderr else ''}")
    return elapsed, peak / 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", type=Path)
    ap.add_argument("--pack", default="instruct")
    ap.add_argument("-j", "--workers", type=int, default=2)
    args = ap.parse_args()
    qualgate = str(Path(sys.executable).parent / "qualgate")
    with tempfile.TemporaryDirectory() as tmp:
        results = {}
        for engine in ("local", "ray"):
            out = Path(tmp) / engine
            results[engine] = run([qualgate, "filter", str(args.data), "-c", args.pack, "-o", str(out), "-q",
                                   "--no-cache", "--no-html", "-j", str(args.workers), "--engine", engine])
        same = all((Path(tmp) / "local" / f).read_bytes() == (Path(tmp) / "ray" / f).read_bytes()
                   for f in ("accepted.jsonl", "rejected.jsonl"))
    (lt, lm), (rt, rm) = results["local"], results["ray"]
    print(f"| engine | seconds | peak RSS (tree) |\n|---|---:|---:|\n| local -j {args.workers} | {lt:.1f} | "
          f"{lm:.0f} MiB |\n| ray -j {args.workers} | {rt:.1f} | {rm:.0f} MiB |\n\nray / local: {rt / lt:.2f}x "
          f"time, {rm / lm:.2f}x memory; identical outputs: {'yes' if same else 'NO'}")


if __name__ == "__main__":
    main()
