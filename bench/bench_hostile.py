"""Time and peak memory of pathological inputs (issue 10): what one hostile record or file costs a run.

    python bench/bench_hostile.py            # all cases, ~3 min on 2 cores
    python bench/bench_hostile.py --quick    # skip the model packs

Each case is one ``qualgate filter`` run in a fresh process (-j 1, --no-cache, --all-findings so that no
check is skipped), timed wall to wall; peak memory is the process's VmHWM, read at exit. Every input holds
5 ordinary instruct records plus the hostile one, built here from our fixtures. Side by side in the same
run: the JSON array reader against ``json.loads`` of the whole file (the reader before this change), and
the embedder's cut text against sentence-transformers tokenising the whole text. Prints a Markdown table
for bench/RESULTS.md.
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

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"
_WRAP = ("import sys\nfrom qualgate.cli import main\ntry:\n    main(sys.argv[1:])\nfinally:\n"
         "    print('VmHWM', open('/proc/self/status').read().split('VmHWM:')[1].split()[0], file=sys.stderr)")


def measured(code: str, *args: str) -> tuple[float, int, str]:
    """Seconds, peak MiB and stderr of ``python -c code args`` (the code prints VmHWM last)."""
    start = time.perf_counter()
    res = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    peak = int(res.stderr.rsplit("VmHWM", 1)[1].split()[0]) // 1024 if "VmHWM" in res.stderr else -1
    return seconds, peak, res.stderr


def outcome(out: Path) -> str:
    rejected = [json.loads(x) for x in (out / "rejected.jsonl").read_text().splitlines()] \
        if (out / "rejected.jsonl").exists() else []
    reasons = sorted({f["reason"] for r in rejected for f in r["qualgate"]["findings"][:1]})
    return f"{len(rejected)} rejected ({', '.join(reasons)})" if rejected else "all accepted"


def build(tmp: Path) -> dict[str, Path]:
    rng = random.Random(10)
    prose = " ".join(json.loads(x)["text"] for x in (FIXTURES / "human_prose.jsonl").read_text().splitlines() if x)
    words = prose.split()
    ordinary = [x for x in (FIXTURES / "instruct_sample.jsonl").read_text().splitlines()[:8]
                if x.startswith("{") and '"output"' in x][:5]

    def jsonl(name: str, record: bytes) -> Path:
        path = tmp / name
        path.write_bytes(("\n".join(ordinary) + "\n").encode() + record + b"\n")
        return path

    def rec(output: str) -> bytes:
        return json.dumps({"instruction": "Write at length.", "input": "", "output": output}).encode()

    cases = {
        "100 MB line (over the 16 MiB limit)": jsonl("line100mb.jsonl", rec("a" * (100 << 20))),
        "1M words, varied (5.5 MB)": jsonl("varied.jsonl", rec(" ".join(rng.choice(words) for _ in range(10**6)))),
        "1M words, one word repeated (5 MB)": jsonl("same.jsonl", rec(" ".join(["word"] * 10**6))),
        "6 MB without a space": jsonl("nospace.jsonl", rec("x" * 6_000_000)),
        "200,000 nested arrays (one line)": jsonl("nested.jsonl", b'{"output": "x", "m": ' + b"[" * 200_000
                                                   + b"]" * 200_000 + b"}"),
        "1M escaped NULs and lone surrogates (12 MB)": jsonl("nul.jsonl", b'{"instruction": "Odd.", "input": "", '
                                                              b'"output": "' + b"\\u0000\\ud800" * 10**6 + b'"}'),
    }
    csv = tmp / "field50mb.csv"
    with csv.open("w") as fh:
        fh.write("instruction,output\nSay hi.,Hello there!\nLong.," + "y" * (50 << 20) + "\nBye.,Goodbye!\n")
    cases["CSV line of 50 MB"] = csv
    cases.update(many_values(tmp, ordinary))
    items = [{"instruction": f"Question {i}: {rng.choice(words)}?", "input": "",
              "output": " ".join(rng.choice(words) for _ in range(80))} for i in range(200_000)]
    array = tmp / "array.json"
    array.write_text(json.dumps(items))
    cases[f"JSON array, 200,000 records ({array.stat().st_size / 2**20:.0f} MiB)"] = array
    return cases


def many_values(tmp: Path, ordinary: list[str]) -> dict[str, Path]:
    """Records small in bytes but holding millions of values (issue 18, item 12): a Parquet list that a 1 KB file
    expands to 30M items, rows of long lists in one row group, a million JSON keys, a million CSV fields."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    base = [json.loads(x) for x in ordinary]
    cases = {}
    for label, name, rows, width, kind in (("Parquet, one 30M-item list (1 KB file)", "list30m", 1, 30_000_000, "int8"),
                                           ("Parquet, 2,048 rows of 100,000-item lists (6 KB)", "lists", 2048, 100_000,
                                            "int64")):
        path = tmp / f"{name}.parquet"
        ids = pa.ListArray.from_arrays(pa.array(np.arange(rows + 1, dtype=np.int32) * width),
                                       pa.array(np.zeros(rows * width, kind)))
        extra = pa.ListArray.from_arrays(pa.array(np.zeros(len(base) + 1, np.int32)), pa.array([], kind))
        table = pa.table({"instruction": [r["instruction"] for r in base] + ["Count."] * rows,
                          "output": [r["output"] for r in base] + ["Here they are."] * rows,
                          "ids": pa.concat_arrays([extra, ids])})
        pq.write_table(table, path, compression="zstd")
        cases[label] = path
    keys = tmp / "keys1m.jsonl"
    wide = {"instruction": "Say hi.", "input": "", "output": "Hello there. How are you?"}
    keys.write_text("\n".join(ordinary) + "\n" + json.dumps({**wide, **{f"k{i}": 0 for i in range(10**6)}},
                                                            separators=(",", ":")) + "\n")
    cases["JSON line with 1M keys (12 MB)"] = keys
    row = tmp / "fields1m.csv"
    row.write_text("instruction,output\n" + "".join(f'"{r["instruction"]}","{r["output"]}"\n' for r in base)
                   + ",".join(["Say hi.", "Hello there."] + ["0"] * 10**6) + "\n")
    cases["CSV row of 1M fields (2 MB)"] = row
    header = tmp / "columns1m.csv"
    header.write_text(",".join(["instruction", "output"] + [f"c{i}" for i in range(10**6)]) + "\n"
                      + ",".join(["Say hi.", "Hello there. How are you?"] + ["0"] * 10**6) + "\n")
    cases["CSV of 1M columns (10 MB)"] = header
    return cases


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="only the default pack")
    ap.add_argument("--only", metavar="TEXT", action="append", help="only the cases whose label contains TEXT")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="qualgate-hostile-"))
    cases = {k: v for k, v in build(tmp).items() if args.only is None or any(text in k for text in args.only)}
    rows = []
    for label, path in cases.items():
        packs = ["default"] if args.quick or "nested" in label or "100 MB" in label or "CSV" in label \
            or "JSON array" in label or "Parquet" in label or "1M keys" in label else ["default", "embed", "perplexity"]
        for pack in packs:
            out = tmp / f"out-{path.stem}-{pack}"
            cmd = ["filter", str(path), "-c", pack, "-o", str(out), "-q", "--no-html", "--no-cache", "-j", "1",
                   "--all-findings"]
            if pack == "perplexity":
                cmd += ["--reference", str(FIXTURES / "reference_sample.jsonl")]
            seconds, peak, err = measured(_WRAP, *cmd)
            result = outcome(out) if (out / "report.json").exists() else err.strip().splitlines()[0][:90]
            rows.append((label, pack, seconds, peak, result))
            print(f"{label:50} {pack:10} {seconds:7.1f} s {peak:6} MiB  {result}", flush=True)
    if args.only is not None:
        print("\n| input | pack | seconds | peak MiB | outcome |\n|---|---|---:|---:|---|")
        for label, pack, seconds, peak, result in rows:
            print(f"| {label} | {pack} | {seconds:.1f} | {peak:,} | {result} |")
        return
    array = next(p for label, p in cases.items() if label.startswith("JSON array"))
    side = [("qualgate reader (items one at a time)", "from qualgate.io import read_records\n"
             f"n = sum(1 for _ in read_records([{str(array)!r}]))\n"),
            ("json.loads of the whole file (before)",
             f"import json\nn = len(json.loads(open({str(array)!r}).read()))\n")]
    print("\nReading the JSON array alone:")
    for label, body in side:
        code = body + "import sys\nprint('VmHWM', open('/proc/self/status').read().split('VmHWM:')[1].split()[0], " \
                      "file=sys.stderr)"
        seconds, peak, _ = measured(code)
        print(f"  {label:40} {seconds:6.1f} s {peak:6} MiB")
    varied = cases["1M words, varied (5.5 MB)"]
    embed = ("import json, sys, time\nfrom qualgate.embed import Embedder\ne = Embedder(None, 'cpu', 8, None)\n"
             "e.encode(['warm up'])\ntext = json.loads(open(sys.argv[1]).read().splitlines()[-1])['output']\n"
             "t = time.perf_counter()\n{call}\nprint('took', round(time.perf_counter() - t, 2), file=sys.stderr)\n"
             "print('VmHWM', open('/proc/self/status').read().split('VmHWM:')[1].split()[0], file=sys.stderr)")
    print("\nEmbedding the 5.5 MB record alone (model loaded first):")
    for label, call in (("cut to max_tokens x 64 chars (qualgate)", "e.encode([text])"),
                        ("whole text to sentence-transformers", "e.model.encode([text])")):
        _, peak, err = measured(embed.replace("{call}", call), str(varied))
        took = err.rsplit("took", 1)[1].split()[0]
        print(f"  {label:40} {took:>6} s {peak:6} MiB")
    print("\n| input | pack | seconds | peak MiB | outcome |\n|---|---|---:|---:|---|")
    for label, pack, seconds, peak, result in rows:
        print(f"| {label} | {pack} | {seconds:.1f} | {peak:,} | {result} |")


if __name__ == "__main__":
    main()
