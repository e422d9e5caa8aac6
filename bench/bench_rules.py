"""Rule packs on real synthetic data: reject rate per check, real examples, and a sample for human review.

    python bench/bench_rules.py ../shared/data/alpaca_data.json --pack instruct

Runs the pack with ``--all-findings`` off (as shipped: later checks skip samples that already
failed) through ``qualgate filter`` in-process, then prints, per check, how many samples it rejected and
the share of all records, three examples per reason (chosen with a fixed seed; texts cut to 200
characters), and writes 50 random rejections (fixed seed) to ``bench/out/review_<pack>.jsonl`` with
the record's instruction, input, output and the findings, for a person to judge right or wrong. The
judgement goes into bench/RESULTS.md by hand: it is not computed here.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from qualgate.cli import main as cli

ROOT = Path(__file__).resolve().parent.parent


def cut(value: Any, n: int = 200) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", type=Path)
    ap.add_argument("--pack", default="instruct")
    ap.add_argument("--review", type=int, default=50)
    ap.add_argument("--seed", type=int, default=20261123)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        res = CliRunner().invoke(cli, ["filter", str(args.data), "-c", args.pack, "-o", tmp, "-q", "--no-cache"])
        elapsed = time.perf_counter() - start
        if res.exit_code not in (0, 1):
            raise SystemExit(res.output)
        report = json.loads((Path(tmp) / "report.json").read_text())
        rejected = [json.loads(line) for line in (Path(tmp) / "rejected.jsonl").read_text().splitlines() if line]
    total = report["total"]
    print(f"{args.pack} on {args.data.name}: {total} records, {report['rejected']} rejected "
          f"({report['reject_rate']:.1%}) in {elapsed:.0f} s\n")
    print("| check | rejected | share of all records | reasons |\n|---|---:|---:|---|")
    for name, c in report["by_check"].items():
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(c["reasons"].items(), key=lambda kv: -kv[1]))
        print(f"| {name} | {c['rejected']} | {c['rejected'] / total:.2%} | {reasons or '-'} |")
    by_reason: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in rejected:
        f = r["qualgate"]["findings"][0]
        by_reason[(f["check"], f["reason"])].append(r)
    rng = random.Random(args.seed)
    print("\nExamples (first finding of each; three per reason, fixed seed):\n")
    for (check, reason), recs in sorted(by_reason.items()):
        print(f"- **{check} / {reason}** ({len(recs)})")
        for r in rng.sample(recs, min(3, len(recs))):
            f = r["qualgate"]["findings"][0]
            print(f"  - instruction: {cut(r.get('instruction'), 120)} | input: {cut(r.get('input'), 80)} | "
                  f"output: {cut(r.get('output'), 160)} → {f['message']}")
    sample = rng.sample(rejected, min(args.review, len(rejected)))
    out = ROOT / "bench" / "out" / f"review_{args.pack}.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as fh:
        for r in sample:
            fh.write(json.dumps({"instruction": r.get("instruction"), "input": r.get("input"),
                                 "output": r.get("output"),
                                 "findings": [f"{f['check']}/{f['reason']}: {f['message']}"
                                              for f in r["qualgate"]["findings"]]}, ensure_ascii=False) + "\n")
    print(f"\n{len(sample)} random rejections for review: {out}")


if __name__ == "__main__":
    main()
