"""Every shipped pack on every real dataset, before and after a change: reject rates and per-check counts.

    python bench/bench_packs.py run  DATA_DIR OUT_DIR         # one qualgate filter per (pack, dataset)
    python bench/bench_packs.py table BEFORE_DIR AFTER_DIR    # markdown tables for bench/RESULTS.md

``run`` writes ``OUT_DIR/<pack>__<dataset>/`` (a normal run folder) and ``OUT_DIR/<pack>__<dataset>.time``
(wall seconds, peak RSS). Run it once on the old commit (a ``git worktree`` with ``PYTHONPATH`` pointing at
it) and once on the new one, then ``table`` puts the two side by side. The right/wrong reads of the
rejections are a person's judgement and go into bench/RESULTS.md by hand; ``sample`` prints a fixed-seed
random sample of rejections per check for that read:

    python bench/bench_packs.py sample OUT_DIR/instruct__alpaca_data --per-check 20
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

#: (pack, dataset file stem): the packs a user would try on each dataset
COMBOS = [
    ("default", "alpaca_data"), ("instruct", "alpaca_data"),
    ("default", "dolly_3k"), ("instruct", "dolly_3k"),
    ("default", "code_alpaca_2k"), ("instruct", "code_alpaca_2k"), ("code", "code_alpaca_2k"),
    ("default", "gpteacher_roleplay"), ("instruct", "gpteacher_roleplay"),
]


def run(data: Path, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for pack, stem in COMBOS:
        folder = out / f"{pack}__{stem}"
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "qualgate", "filter", "-c", pack, str(data / f"{stem}.json"),
                               "-o", str(folder), "-q", "--no-html", "--no-cache", "-j", "1"],
                              capture_output=True, text=True)
        wall = time.perf_counter() - start
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024
        (out / f"{pack}__{stem}.time").write_text(json.dumps({"wall_s": round(wall, 1), "rc": proc.returncode,
                                                              "peak_mib_so_far": peak, "stderr": proc.stderr[-2000:]}))
        print(f"{pack:9} {stem:20} rc={proc.returncode} {wall:6.1f} s", flush=True)


def _report(folder: Path) -> dict[str, Any] | None:
    path = folder / "report.json"
    return json.loads(path.read_text()) if path.exists() else None


def table(before: Path, after: Path) -> None:
    print("| pack | dataset | records | rejected before | rejected after | per check, before → after |")
    print("|---|---|---:|---:|---:|---|")
    for pack, stem in COMBOS:
        b, a = _report(before / f"{pack}__{stem}"), _report(after / f"{pack}__{stem}")
        if a is None:
            continue
        checks = sorted(set(a["by_check"]) | set((b or {}).get("by_check", {})))
        parts = []
        for c in checks:
            nb = (b or {}).get("by_check", {}).get(c, {}).get("rejected", 0) if b else None
            na = a["by_check"].get(c, {}).get("rejected", 0)
            if nb or na:
                parts.append(f"{c} {nb if nb is not None else '-'} → {na}")
        rb = f"{b['rejected']} ({b['reject_rate']:.1%})" if b else "error"
        print(f"| {pack} | {stem} | {a['total']} | {rb} | {a['rejected']} ({a['reject_rate']:.1%}) | "
              f"{'; '.join(parts)} |")


def sample(folder: Path, per_check: int, seed: int) -> None:
    by_check: dict[str, list[dict[str, Any]]] = {}
    for line in (folder / "rejected.jsonl").read_text().splitlines():
        rec = json.loads(line)
        findings = rec.get("qualgate", {}).get("findings", [])
        if findings:
            by_check.setdefault(findings[0]["check"], []).append(rec)
    rng = random.Random(seed)
    for check, recs in sorted(by_check.items()):
        picked = rng.sample(recs, min(per_check, len(recs)))
        print(f"\n## {check}: {len(recs)} rejected, {len(picked)} shown")
        for rec in picked:
            f = rec["qualgate"]["findings"][0]
            body = {k: v for k, v in rec.items() if k != "qualgate"}
            print(json.dumps({"reason": f["reason"], "message": f["message"], "record": body},
                             ensure_ascii=False)[:1200])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("data", type=Path)
    r.add_argument("out", type=Path)
    t = sub.add_parser("table")
    t.add_argument("before", type=Path)
    t.add_argument("after", type=Path)
    s = sub.add_parser("sample")
    s.add_argument("folder", type=Path)
    s.add_argument("--per-check", type=int, default=20)
    s.add_argument("--seed", type=int, default=20261204)
    args = ap.parse_args()
    if args.cmd == "run":
        run(args.data, args.out)
    elif args.cmd == "table":
        table(args.before, args.after)
    else:
        sample(args.folder, args.per_check, args.seed)


if __name__ == "__main__":
    main()
