"""`qualgate tune` against re-running the gate, side by side on real data.

    python bench/bench_tune.py ../shared/data/alpaca_data.json --pack instruct

Runs ``qualgate filter`` once (the run tune reads), then for each setting: ``qualgate tune`` (counts only),
``qualgate tune -o`` (writes a full run folder, reports included) and a full ``qualgate filter`` re-run with
the changed config. Each is a separate process, timed wall to wall, with its peak RSS; the re-run's counts
are compared with tune's (equal unless tune flags samples it cannot know). Prints a Markdown table for
bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

QUALGATE = [str(Path(sys.executable).parent / "qualgate")]
SETTINGS = [
    ["truncated.min_words=6"],
    ["prompt_echo.max_overlap=0.5"],
    ["language.min_prob=0.5"],
    ["repetition.max_top_ngram_frac={2: 0.15, 3: 0.12, 4: 0.10}", "length.min_words=3"],
]


def timed(cmd: list[str]) -> tuple[float, float, str]:
    """(seconds, peak RSS MiB of this child, stdout) of one command."""
    start = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    if proc.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(cmd)} failed:\n{stdout}\n{stderr}")
    return elapsed, usage.ru_maxrss / 1024, stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", type=Path)
    ap.add_argument("--pack", default="instruct")
    ap.add_argument("--all-findings", action="store_true")
    args = ap.parse_args()
    extra = ["--all-findings"] if args.all_findings else []
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        secs, rss, _ = timed([*QUALGATE, "filter", str(args.data), "-c", args.pack, "-o", str(run), "-q",
                              "--no-cache", *extra])
        report = json.loads((run / "report.json").read_text())
        sizes = {p.name: p.stat().st_size for p in run.iterdir()}
        print(f"{args.pack} on {args.data.name}{' --all-findings' if extra else ''}: {report['total']} records, "
              f"{report['rejected']} rejected; first run {secs:.1f} s, peak {rss:.0f} MiB; scores.parquet "
              f"{sizes['scores.parquet'] / 2**20:.1f} MiB, report.html {sizes.get('report.html', 0) / 2**10:.0f} KiB\n")
        print("| setting | rejected before -> after | tune | tune -o (writes run) | full re-run | speed-up "
              "(tune / tune -o) | counts equal | flagged |")
        print("|---|---|---:|---:|---:|---:|---|---:|")
        for settings in SETTINGS:
            sets = [x for s in settings for x in ("--set", s)]
            t_secs, t_rss, out = timed([*QUALGATE, "tune", "--run", str(run), *sets, "--format", "json"])
            tuned: dict[str, Any] = json.loads(out)
            w_secs, _, _ = timed([*QUALGATE, "tune", "--run", str(run), *sets, "-o", str(Path(tmp) / "tuned")])
            cfg = copy.deepcopy(report["config"]["resolved"])
            for s in settings:
                key, value = s.split("=", 1)
                name, param = key.rsplit(".", 1)
                next(c for c in cfg["checks"] if c["name"] == name)[param] = yaml.safe_load(value)
            cfg_path = Path(tmp) / "c.yaml"
            cfg_path.write_text(yaml.safe_dump(cfg))
            r_secs, r_rss, _ = timed([*QUALGATE, "filter", str(args.data), "-c", str(cfg_path), "-o",
                                      str(Path(tmp) / "rerun"), "-q", "--no-cache", *extra])
            again = json.loads((Path(tmp) / "rerun" / "report.json").read_text())
            tuned_counts = {n: c["after"] for n, c in tuned["by_check"].items() if c["after"]}
            rerun_counts = {n: c["rejected"] for n, c in again["by_check"].items() if c["rejected"]}
            equal = tuned_counts == rerun_counts and tuned["accepted"]["after"] == again["accepted"]
            flagged = tuned["needs_scores"]["samples"] + tuned["order_dependent"]["samples"]
            diff = "" if equal else f" (differs: tune {tuned_counts}, re-run {rerun_counts})"
            print(f"| `{' '.join(settings)}` | {tuned['rejected']['before']} -> {tuned['rejected']['after']} | "
                  f"{t_secs:.2f} s ({t_rss:.0f} MiB) | {w_secs:.2f} s | {r_secs:.1f} s ({r_rss:.0f} MiB) | "
                  f"{r_secs / t_secs:.0f}x / {r_secs / w_secs:.0f}x | {'yes' if equal else 'no'}{diff} | {flagged} |")


if __name__ == "__main__":
    main()
