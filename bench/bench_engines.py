"""The local engine against the Ray engine on the same records, side by side, same machine.

    python bench/bench_engines.py ../shared/data/alpaca_data.json --pack instruct -j 2
    python bench/bench_engines.py ../shared/data/alpaca_data.json --records 100000 -j 2

Runs ``qualgate filter`` with ``--engine local`` and ``--engine ray`` (a local Ray instance started by the
run itself) as separate processes, timed wall to wall. Peak RSS is the whole process tree's (Ray's actors
and raylet are children; sampled every 0.2 s). Checks that both wrote the same accepted.jsonl and
rejected.jsonl, prints the Ray run's seconds per stage (from report.json) and a Markdown table for
bench/RESULTS.md.

``--records N`` beyond the file's size (Alpaca has 52,002) appends derived records, as synthetic data
has them: each is a random earlier record (seeded) copied exactly (1 in 4), or with 1-3 words of its output
dropped or swapped, or with a reworded instruction prefix. So the extra records load the near-duplicate
stage the way a generator that repeats itself does, instead of being exact doubles of the file.
"""

from __future__ import annotations

import argparse
import json
import random
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


def derived(records: list[dict[str, str]], n: int, seed: int = 0) -> list[dict[str, str]]:
    """``n`` records made from ``records`` the way a generator repeats itself (see the module docstring)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        rec = dict(rng.choice(records))
        kind = rng.random()
        words = rec.get("output", "").split()
        if kind < 0.25 or len(words) < 4:
            pass  # an exact copy
        elif kind < 0.55:
            for _ in range(rng.randint(1, 3)):
                words.pop(rng.randrange(len(words)))
            rec["output"] = " ".join(words)
        elif kind < 0.8:
            i = rng.randrange(len(words) - 1)
            words[i], words[i + 1] = words[i + 1], words[i]
            rec["output"] = " ".join(words)
        else:
            rec["instruction"] = rng.choice(["Please ", "Now, ", "Kindly "]) + rec.get("instruction", "")
        out.append(rec)
    return out


def prepare(data: Path, records: int | None, tmp: Path) -> Path:
    """The input file: ``data`` itself, or its records as JSONL, extended with derived ones to ``records``."""
    if records is None:
        return data
    items = json.loads(data.read_text()) if data.suffix == ".json" else \
        [json.loads(x) for x in data.read_text().splitlines() if x.strip()]
    items = items[:records] + derived(items, max(0, records - len(items)))
    path = tmp / f"input-{records}.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in items))
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", type=Path)
    ap.add_argument("--pack", default="instruct")
    ap.add_argument("-j", "--workers", type=int, default=2)
    ap.add_argument("--records", type=int, default=None, help="use (or extend the data to) this many records")
    args = ap.parse_args()
    qualgate = str(Path(sys.executable).parent / "qualgate")
    with tempfile.TemporaryDirectory() as tmp:
        data = prepare(args.data, args.records, Path(tmp))
        results = {}
        for engine in ("local", "ray"):
            out = Path(tmp) / engine
            results[engine] = run([qualgate, "filter", str(data), "-c", args.pack, "-o", str(out), "-q",
                                   "--no-cache", "--no-html", "-j", str(args.workers), "--engine", engine])
        same = all((Path(tmp) / "local" / f).read_bytes() == (Path(tmp) / "ray" / f).read_bytes()
                   for f in ("accepted.jsonl", "rejected.jsonl"))
        reports = {e: json.loads((Path(tmp) / e / "report.json").read_text()) for e in ("local", "ray")}
    info = reports["ray"]["run"].get("engine_info", {})
    by_check = reports["local"]["by_check"]
    print(f"records: {reports['local']['total']}, rejected {reports['local']['rejected']}; by check: "
          f"{ {k: v.get('rejected') for k, v in by_check.items()} }")
    print(f"ray stages (s): {info.get('stages_seconds')}; shuffle results: {info.get('shuffle_pairs')}")
    (lt, lm), (rt, rm) = results["local"], results["ray"]
    print(f"| engine | seconds | peak RSS (tree) |\n|---|---:|---:|\n| local -j {args.workers} | {lt:.1f} | "
          f"{lm:.0f} MiB |\n| ray -j {args.workers} | {rt:.1f} | {rm:.0f} MiB |\n\nray / local: {rt / lt:.2f}x "
          f"time, {rm / lm:.2f}x memory; identical outputs: {'yes' if same else 'NO'}")


if __name__ == "__main__":
    main()
