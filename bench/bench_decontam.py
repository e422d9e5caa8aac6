"""Benchmark contamination: recall of planted benchmark items, false hits on clean data, and speed.

    python bench/bench_decontam.py recall      # planted items: recall per kind, n-gram (13, 8) and embedding
    python bench/bench_decontam.py clean       # false hits of the n-gram check on all 52k Alpaca, unplanted
    python bench/bench_decontam.py speed       # µs per document of the n-gram check, 52k Alpaca x benchmark sizes
    python bench/bench_decontam.py embed-speed # docs/s of the embedding stage (contamination_rephrase)

recall: benchmark items are planted into real synthetic records (Alpaca, random, seeded) inside the output,
between two of its sentences, as their own paragraph or inline, in four kinds:

- ``verbatim``: the item's text as the benchmark holds it;
- ``rewrapped``: the same words broken into lines of 5-8 words, half of them as list items (``- `` / ``1. ``);
- ``edited``: 2-5% of the words changed (a word swapped for another, casing, punctuation; at least one);
- ``paraphrased``: the item reworded by hand (fixtures/benchmark_paraphrases.jsonl; only for the shipped items).

Two benchmarks: the 60 items we wrote (fixtures/benchmark_items.jsonl: maths word problems, science and
trivia questions, short reading comprehension; question and answer), and Dolly (human-written,
../shared/data/dolly_3k.json, not shipped) used as a benchmark of realistic size (no paraphrases for it).
Each planted record is checked by a Gate holding only the check under test, with the benchmark loaded as
the CLI loads it; a kind's recall is the share of planted records rejected *naming the planted item*. The rows
"ngram13+..." count a plant found by either (``-c decontam_embed``: the n-gram check, then the embedding stage).
Methods: ``contamination`` n=13 and n=8, ``contamination_rephrase`` with wordllama, and with MiniLM (own items;
``--dolly-minilm`` for the Dolly plants too: minutes on a CPU). Vectors are cached in bench/out/cache.

clean: all 52k Alpaca records, nothing planted, through the n-gram check (13 and 8) against both benchmarks;
the hits are written to bench/out/decontam_clean_*.jsonl to read (some are real overlaps, not false hits).

embed-speed: docs/s of ``contamination_rephrase`` on Alpaca, MiniLM against wordllama, cold.

speed: the n-gram check alone over the 52k Alpaca texts against Dolly (3k items) and a synthetic benchmark of
20k items (Alpaca-shaped texts drawn from Dolly's words); µs per document, median of rounds, compared with
the figure decon (allenai/decon, a Rust decontamination tool) publishes in its README: 34 µs/doc.
decon's Python wheel (PyPI ``decontaminate``) needs Python >= 3.12, so it is not run side by side here.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"
OUT = ROOT / "bench" / "out"
CACHE = OUT / "cache"  # the embedder's disk cache: re-runs embed nothing again
ITEMS = ROOT / "fixtures" / "benchmark_items.jsonl"
PARAPHRASES = ROOT / "fixtures" / "benchmark_paraphrases.jsonl"
TEMPLATE = "{question}\n{answer}"  # how the shipped items are read as a benchmark (--benchmark-text)
KINDS = ("verbatim", "rewrapped", "edited", "paraphrased")

# words swapped in by ``edited``: common ones, so an edit reads like a typo or a careless rewording
_SWAPS = ("the", "a", "some", "this", "that", "very", "also", "then", "now", "all", "each", "one", "two",
          "big", "small", "new", "old", "good", "many", "few", "just", "only")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def item_text(item: dict[str, Any]) -> str:
    return TEMPLATE.format(**item)


def rewrap(text: str, rng: random.Random) -> str:
    """The text's words in lines of 5-8 words; half the time each line is a list item."""
    words = text.split()
    lines, i = [], 0
    while i < len(words):
        n = rng.randint(5, 8)
        lines.append(" ".join(words[i:i + n]))
        i += n
    marker = rng.choice(["", "", "- ", "1. "])
    if marker == "1. ":
        return "\n".join(f"{k + 1}. {line}" for k, line in enumerate(lines))
    return "\n".join(marker + line for line in lines)


def edit(text: str, rng: random.Random, share: tuple[float, float] = (0.02, 0.05)) -> str:
    """2-5% of the words changed (at least one): another word, other casing, or punctuation added/dropped.
    Line breaks are kept."""
    lines = [line.split(" ") for line in text.split("\n")]
    where = [(r, c) for r, line in enumerate(lines) for c, w in enumerate(line) if w]
    n = max(1, round(len(where) * rng.uniform(*share)))
    for r, c in rng.sample(where, min(n, len(where))):
        w = lines[r][c]
        how = rng.choice(("swap", "swap", "case", "punct"))
        if how == "swap":
            lines[r][c] = rng.choice([s for s in _SWAPS if s != w.lower()])
        elif how == "case":
            lines[r][c] = w.upper() if not w.isupper() else w.lower()
        else:
            lines[r][c] = w.rstrip(".,;:?!") if w[-1] in ".,;:?!" else w + ","
        if lines[r][c] == w or not lines[r][c]:  # "2".upper(), "?" stripped to nothing: swap instead
            lines[r][c] = rng.choice([s for s in _SWAPS if s != w.lower()])
    return "\n".join(" ".join(line) for line in lines)


def plant(host: dict[str, Any], text: str, rng: random.Random) -> dict[str, Any]:
    """``host`` (an instruction record) with ``text`` inside its output, between two of its sentences (or at
    an end), as its own paragraph or inline."""
    output = str(host.get("output", ""))
    cuts = [0, len(output)] + [m.start() for m in _SENTENCE_END.finditer(output)]
    at = rng.choice(cuts)
    before, after = output[:at].rstrip(), output[at:].lstrip()
    sep = "\n\n" if rng.random() < 0.5 or "\n" in text else " "
    new = sep.join(p for p in (before, text, after) if p)
    return {**host, "output": new}


def planted_records(items: Sequence[dict[str, Any]], paraphrases: dict[str, dict[str, Any]] | None,
                    hosts: Sequence[dict[str, Any]], seed: int,
                    kinds: Sequence[str] = KINDS) -> list[dict[str, Any]]:
    """One planted record per item and kind (a different host each), with ``_planted`` = {kind, item} to score
    against (a check reads the text view, not that field)."""
    rng = random.Random(seed)
    out = []
    for kind in kinds:
        if kind == "paraphrased" and not paraphrases:
            continue
        for item in items:
            if kind == "paraphrased":
                assert paraphrases is not None
                text = item_text(paraphrases[item["id"]])
            else:
                text = item_text(item)
                if kind == "rewrapped":
                    text = rewrap(text, rng)
                elif kind == "edited":
                    text = edit(text, rng)
            host = rng.choice(hosts)
            rec = plant(host, text, rng)
            rec["_planted"] = {"kind": kind, "item": item["id"]}
            out.append(rec)
    return out


# ------------------------------------------------------------------------------------------------- runs
def alpaca() -> list[dict[str, Any]]:
    return json.loads((DATA / "alpaca_data.json").read_text(encoding="utf-8"))


def dolly_items() -> list[dict[str, Any]]:
    """Dolly records as benchmark items: id ``dolly-N``, question = instruction (+ context), answer = response."""
    rows = json.loads((DATA / "dolly_3k.json").read_text(encoding="utf-8"))
    return [{"id": f"dolly-{i}", "question": "\n".join(p for p in (r["instruction"], r.get("input", "")) if p),
             "answer": r["output"]} for i, r in enumerate(rows)]


def write_benchmark(items: Sequence[dict[str, Any]], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"id": x["id"], "question": x["question"], "answer": x["answer"]}) + "\n"
                            for x in items), encoding="utf-8")
    return path


def gate_for(check: dict[str, Any], bench: str, path: Path, cache: Path | None) -> Any:
    from qualgate import Gate

    gate = Gate.from_config({"version": 1, "checks": [check]}, cache_dir=cache)
    gate.load_benchmark(bench, str(path), text=TEMPLATE, cache_dir=cache)
    return gate


def hits(gate: Any, records: Sequence[dict[str, Any]]) -> list[dict[str, Any] | None]:
    """Per record: the first finding's evidence (benchmark, item_id, ...) or None."""
    out: list[dict[str, Any] | None] = []
    for d in gate.run(records).decisions:
        f = next((f for f in d.findings if f.reason in ("contamination", "contamination_rephrase")), None)
        out.append(dict(f.evidence, score=f.score) if f is not None else None)
    return out


def right(rec: dict[str, Any], ev: dict[str, Any] | None) -> bool:
    """The finding names the planted item (first, or among the other items it also matched)."""
    item = rec["_planted"]["item"]
    return ev is not None and (ev.get("item_id") == item or any(a.get("item_id") == item for a in ev.get("also", [])))


def recall_table(records: Sequence[dict[str, Any]], found: Sequence[dict[str, Any] | None]) -> dict[str, str]:
    by: dict[str, list[int]] = {}
    for rec, ev in zip(records, found, strict=True):
        by.setdefault(rec["_planted"]["kind"], []).append(int(right(rec, ev)))
    return {k: f"{sum(v)}/{len(v)} ({sum(v) / len(v):.0%})" for k, v in by.items()}


def strip_plant(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k != "_planted"} for r in records]


def cmd_recall(args: argparse.Namespace) -> None:
    rng = random.Random(args.seed)
    hosts = rng.sample(alpaca(), 2000)
    items = read_jsonl(ITEMS)
    paras = {p["id"]: p for p in read_jsonl(PARAPHRASES)}
    OUT.mkdir(parents=True, exist_ok=True)
    sets = {"own60": (items, paras, ITEMS)}
    if not args.own_only:
        dolly = dolly_items()
        sets["dolly3k"] = (rng.sample(dolly, args.dolly_plants), None,
                           write_benchmark(dolly, OUT / "dolly_benchmark.jsonl"))
    ngram = [("ngram13", {"check": "contamination", "n": 13}), ("ngram8", {"check": "contamination", "n": 8})]
    static = [("wordllama", {"check": "contamination_rephrase", "model": "wordllama"})]
    minilm = [("minilm", {"check": "contamination_rephrase"})]
    for name, (its, ps, path) in sets.items():
        records = planted_records(its, ps, hosts, args.seed)
        methods = ngram + ([] if args.no_embed else static + (minilm if name == "own60" or args.dolly_minilm else []))
        found: dict[str, list[dict[str, Any] | None]] = {}
        for label, check in methods:
            gate = gate_for(check, name, path, CACHE)
            t = time.perf_counter()
            found[label] = hits(gate, strip_plant(records))
            print(json.dumps({"benchmark": name, "method": label, "recall": recall_table(records, found[label]),
                              "s": round(time.perf_counter() - t, 1)}), flush=True)
        for embed in ("wordllama", "minilm"):  # the decontam_embed pack: the n-gram check, then the embedding stage
            if embed in found:
                either = [a if right(r, a) else b for r, a, b in zip(records, found["ngram13"], found[embed],
                                                                     strict=True)]
                print(json.dumps({"benchmark": name, "method": f"ngram13+{embed}",
                                  "recall": recall_table(records, either)}), flush=True)


def cmd_clean(args: argparse.Namespace) -> None:
    records = alpaca()[: args.limit]
    dolly_path = write_benchmark(dolly_items(), OUT / "dolly_benchmark.jsonl")
    for name, path in (("own60", ITEMS), ("dolly3k", dolly_path)):
        for n in (13, 8):
            gate = gate_for({"check": "contamination", "n": n}, name, path, None)
            found = hits(gate, records)
            flagged = [(i, ev) for i, ev in enumerate(found) if ev is not None]
            dump = OUT / f"decontam_clean_{name}_{n}.jsonl"
            with dump.open("w", encoding="utf-8") as f:
                for i, ev in flagged:
                    f.write(json.dumps({"row": i, "record": records[i], "evidence": ev}) + "\n")
            print(json.dumps({"benchmark": name, "n": n, "records": len(records), "hits": len(flagged),
                              "written": str(dump)}), flush=True)


def synthetic_benchmark(size: int, seed: int) -> list[dict[str, Any]]:
    """``size`` items of Dolly's word distribution (shuffled words of random Dolly records): realistic n-gram
    counts without real text."""
    rng = random.Random(seed)
    dolly = dolly_items()
    out = []
    for i in range(size):
        src = rng.choice(dolly)
        words = (src["question"] + " " + src["answer"]).split()[:120]
        rng.shuffle(words)
        cut = max(1, len(words) // 3)
        out.append({"id": f"syn-{i}", "question": " ".join(words[:cut]), "answer": " ".join(words[cut:])})
    return out


def _alpaca_texts(limit: int | None) -> list[str]:
    """Alpaca records as the ``auto`` text view reads them (instruction, input, output on lines)."""
    return ["\n".join(p for p in (r["instruction"], r["input"], r["output"]) if p) for r in alpaca()[:limit]]


def cmd_speed(args: argparse.Namespace) -> None:
    """µs per document of the n-gram index's ``match`` (the check's whole scoring) over the Alpaca texts, and of
    a Gate holding only the check (records -> decisions: sample views, findings, report), rounds interleaved."""
    from qualgate import Gate
    from qualgate.decontam import open_benchmark

    records = alpaca()[: args.limit]
    texts = _alpaca_texts(args.limit)
    mb = sum(len(t.encode()) for t in texts) / 1e6
    benches = {"dolly3k": write_benchmark(dolly_items(), OUT / "dolly_benchmark.jsonl"),
               "syn20k": write_benchmark(synthetic_benchmark(20_000, args.seed), OUT / "syn20k_benchmark.jsonl")}
    print(json.dumps({"docs": len(texts), "MB": round(mb, 2), "rounds": args.rounds}), flush=True)
    for name, path in benches.items():
        for n in (13, 8):
            bench = open_benchmark(name, path, text=TEMPLATE)
            t0 = time.perf_counter()
            index = bench.index(n, None)
            build = time.perf_counter() - t0
            gate = Gate.from_config({"version": 1, "checks": [{"check": "contamination", "n": n}]}, cache_dir=None)
            gate.load_benchmark(name, path, text=TEMPLATE)
            match_s, gate_s = [], []
            for _ in range(args.rounds):  # interleaved: the machine's load hits both alike
                t = time.perf_counter()
                found = index.match(texts)
                match_s.append(time.perf_counter() - t)
                t = time.perf_counter()
                rejected = sum(not d.accepted for d in gate.run(records).decisions)
                gate_s.append(time.perf_counter() - t)
            m, g = statistics.median(match_s), statistics.median(gate_s)
            print(json.dumps({"benchmark": name, "items": len(index.item_ids), "n": n, "build_s": round(build, 2),
                              "match_us_per_doc": round(m / len(texts) * 1e6, 1), "match_MB_s": round(mb / m, 1),
                              "gate_us_per_doc": round(g / len(texts) * 1e6, 1),
                              "hits": sum(x is not None for x in found), "rejected": rejected,
                              "match_s": [round(x, 2) for x in match_s], "gate_s": [round(x, 2) for x in gate_s]}),
                  flush=True)


def cmd_embed_speed(args: argparse.Namespace) -> None:
    """docs/s of ``contamination_rephrase`` (MiniLM and the static backend) on Alpaca against the 60 items, cold
    (no disk cache: every passage embedded), backends interleaved over ``--rounds``."""
    from qualgate import Gate, embed
    from qualgate.checks.contamination_rephrase import passages

    records = alpaca()[: args.limit or 500]
    texts = _alpaca_texts(args.limit or 500)
    units = sum(len(passages(t, [2, 3], 8, 200)) for t in texts)
    times: dict[str, list[float]] = {"all-MiniLM-L6-v2": [], "wordllama": []}
    warm = alpaca()[-50:]
    for _ in range(args.rounds):
        for label, model in (("all-MiniLM-L6-v2", None), ("wordllama", "wordllama")):
            embed._SHARED.clear()  # a fresh embedder: nothing remembered from the last round
            gate = Gate.from_config({"version": 1, "checks": [{"check": "contamination_rephrase", "model": model}]},
                                    cache_dir=None)
            gate.load_benchmark("own60", ITEMS, text=TEMPLATE)
            gate.run(warm)  # model loaded, items embedded: not timed
            t = time.perf_counter()
            gate.run(records)
            times[label].append(time.perf_counter() - t)
    for label, ts in times.items():
        s = statistics.median(ts)
        print(json.dumps({"model": label, "docs": len(records), "passages": units, "s": [round(x, 1) for x in ts],
                          "docs_per_s": round(len(records) / s, 1), "passages_per_s": round(units / s, 1)}),
              flush=True)


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=("recall", "clean", "speed", "embed-speed"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--limit", type=int, default=None, help="Alpaca records (clean, speed); default all 52k")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--dolly-plants", type=int, default=300, help="Dolly items planted (recall)")
    ap.add_argument("--own-only", action="store_true", help="recall: only the 60 shipped items")
    ap.add_argument("--no-embed", action="store_true", help="recall: n-gram check only")
    ap.add_argument("--dolly-minilm", action="store_true", help="recall: MiniLM on the Dolly plants too (slow)")
    args = ap.parse_args(argv)
    {"recall": cmd_recall, "clean": cmd_clean, "speed": cmd_speed, "embed-speed": cmd_embed_speed}[args.what](args)


if __name__ == "__main__":
    sys.exit(main())
