"""Embedding-stage benchmarks: a model-collapse simulation, check throughput vs raw encode, faiss at scale.

    python bench/bench_embed.py collapse      # generations that re-sample their densest regions
    python bench/bench_embed.py throughput    # semantic_duplicate samples/s vs SentenceTransformer.encode
    python bench/bench_embed.py grouping      # CPU time of raw encode vs char- vs token-sorted forward passes
    python bench/bench_embed.py agreement     # static backend (model: wordllama) vs MiniLM keep-first decisions
    python bench/bench_embed.py faiss         # VectorIndex flat vs HNSW at 10k / 100k / 1M vectors

collapse: Dolly (human-written, ../shared/data/dolly_3k.json) is split at random into a reference half
and a pool half. Generation 0 draws N texts uniformly from the pool; generation g+1 drops the
``replace`` share (15%) of generation g with the lowest density (mean cosine similarity to its 10
nearest neighbours in the generation: its tails) and refills it from the rest of the pool with
probability proportional to exp(density / tau), density now measured against the kept members: each
generation over-produces what the previous one produced most, as a collapsing generator does. Every
generation goes through a real Gate (``semantic_duplicate`` plus the diversity report against the
reference, with the gate conditions below); the script prints a table and writes bench/collapse.png.

throughput: the same Alpaca texts (the ``auto`` text view) embedded by plain ``SentenceTransformer.encode``
(batch 64, normalised) and by a Gate with only ``semantic_duplicate`` (no disk cache), with ``window: 0``
(each gate batch embedded alone, as before the read-ahead) and with the read-ahead window, interleaved for
``--rounds`` rounds, each run in its own subprocess with its peak RSS; then a cold and a warm disk cache.

grouping: the same texts in one process, CPU time on one torch thread: raw encode, the old per-gate-batch
calls, and the Embedder's token-sorted forward passes, with padded / real tokens of each.

agreement: N Alpaca records plus planted near-copies (request reworded, answer's sentences swapped);
keep-first decisions of the static backend at several thresholds against MiniLM's at 0.9 (precision, recall,
natural pairs apart), speeds, and a JSONL of the disagreements to read.

faiss: clustered synthetic unit vectors (384-d, like MiniLM), 1,000 queries: build and query time of
qualgate's VectorIndex as exact (IndexFlatIP) and as HNSW (built single-threaded, as qualgate does
for determinism), and HNSW recall@1 against exact search.

Needs qualgate[embed] and, for the plot, matplotlib in the benchmark's environment.
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

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"
OUT = ROOT / "bench" / "out"
COVERAGE_LIMIT, RATIO_LIMIT = 0.8, 0.85


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---------------------------------------------------------------------------------------- collapse
def dolly() -> list[dict[str, Any]]:
    rows = json.loads((DATA / "dolly_3k.json").read_text())
    return [{"id": f"dolly-{i}", "text": "\n".join(p for p in (r["instruction"], r.get("input", ""), r["output"]) if p)}
            for i, r in enumerate(rows)]


def collapse(args: argparse.Namespace) -> None:
    from qualgate import Gate
    from qualgate.embed import Embedder

    rows = dolly()
    rng = random.Random(args.seed)
    rng.shuffle(rows)
    half = len(rows) // 2
    reference, pool = rows[:half], rows[half:]
    OUT.mkdir(parents=True, exist_ok=True)
    ref_path = OUT / "collapse_reference.jsonl"
    ref_path.write_text("".join(json.dumps(r) + "\n" for r in reference))
    cache = OUT / "cache"
    start = time.perf_counter()
    vecs = Embedder(None, "auto", 64, cache).encode([r["text"] for r in pool])
    print(f"embedded the pool ({len(pool)} texts) in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    cfg = {"version": 1, "input": {"text": "text", "id": "id"}, "checks": [{"check": "semantic_duplicate"}],
           "diversity": {"seed": 0},
           "gate": {"min_reference_coverage": COVERAGE_LIMIT, "min_diversity_ratio": RATIO_LIMIT}}
    gate = Gate.from_config(cfg, cache_dir=cache)
    gate.load_set("reference", [str(ref_path)], cache_dir=cache)
    nprng = np.random.default_rng(args.seed)
    chosen = nprng.choice(len(pool), args.n, replace=False)
    table = []
    for gen in range(args.generations):
        result = gate.run([pool[i] for i in chosen])
        div = result.report["diversity"]
        row = {"generation": gen, "accepted": result.report["accepted"], "rejected": result.report["rejected"],
               "coverage": div["reference_coverage"], "tail_coverage": div["tail_coverage"], "ratio": div["ratio"],
               "nn_distance": div["nn_distance"]["accepted"]["mean"],
               "reference_nn_distance": div["nn_distance"]["reference"]["mean"],
               "entropy": div["entropy"]["accepted"], "missing": len(div["missing_clusters"]),
               "clusters": div["clusters"], "passed": result.report.passed}
        table.append(row)
        print(json.dumps(row), file=sys.stderr)
        chosen = next_generation(vecs, chosen, args, nprng)
    print(f"\nreference: {len(reference)} Dolly texts, pool {len(pool)}, {args.n} per generation, "
          f"tau {args.tau}, k {args.k}; gate: min_reference_coverage {COVERAGE_LIMIT}, "
          f"min_diversity_ratio {RATIO_LIMIT}\n")
    print("| generation | accepted | semantic dups | reference coverage | tail coverage | diversity ratio (Vendi) "
          "| NN cosine distance | cluster entropy | missing clusters | gate |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in table:
        print(f"| {r['generation']} | {r['accepted']} | {r['rejected']} | {r['coverage']:.3f} "
              f"| {r['tail_coverage']:.3f} | {r['ratio']:.3f} | {r['nn_distance']:.3f} | {r['entropy']:.3f} "
              f"| {r['missing']}/{r['clusters']} "
              f"| {'pass' if r['passed'] else '**FAIL**'} |")
    print(f"\nreference NN cosine distance at the same sample size: {table[0]['reference_nn_distance']:.3f}")
    plot(table, ROOT / "bench" / "collapse.png")


def density(points: Any, members: Any, k: int) -> Any:
    """Mean cosine similarity of each point to its k most similar members."""
    return np.sort(points @ members.T, axis=1)[:, -k:].mean(axis=1)


def next_generation(vecs: Any, chosen: Any, args: argparse.Namespace, rng: np.random.Generator) -> Any:
    """Drop the sparsest ``replace`` share of the generation (its tails) and refill it from the pool near the
    generation's dense regions: each generation over-produces what the previous one produced most."""
    current = vecs[chosen]
    own = density(current, current, args.k + 1)  # +1: each member is its own nearest neighbour
    n_new = round(args.replace * len(chosen))
    keep = chosen[np.argsort(-own, kind="stable")[: len(chosen) - n_new]]
    outside = np.setdiff1d(np.arange(len(vecs)), chosen)
    score = density(vecs[outside], vecs[keep], args.k)
    weights = np.exp((score - score.max()) / args.tau)
    return np.concatenate([keep, rng.choice(outside, n_new, replace=False, p=weights / weights.sum())])


def plot(table: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    gens = [r["generation"] for r in table]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    for key, label in (("coverage", "reference coverage"), ("tail_coverage", "tail coverage"),
                       ("ratio", "diversity ratio (Vendi)"), ("entropy", "cluster entropy")):
        ax.plot(gens, [r[key] for r in table], marker="o", label=label)
    ax.axhline(COVERAGE_LIMIT, color="grey", linestyle="--", linewidth=0.8)
    ax.axhline(RATIO_LIMIT, color="grey", linestyle=":", linewidth=0.8)
    failed = [r["generation"] for r in table if not r["passed"]]
    if failed:
        ax.axvspan(failed[0] - 0.5, gens[-1] + 0.5, color="red", alpha=0.07, label="gate fails")
    ax.set_xlabel("generation")
    ax.set_ylim(0, 1.05)
    ax.set_title("Simulated collapse from Dolly: diversity against the human reference")
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    print(f"plot: {path}", file=sys.stderr)


# -------------------------------------------------------------------------------------- throughput
def alpaca_records(n: int) -> list[dict[str, Any]]:
    rows = json.loads((DATA / "alpaca_data.json").read_text())[:n]
    return [{"id": f"alpaca-{i}", **r} for i, r in enumerate(rows)]


def _child(mode: str, n: int, cache: str | None, window: int = 4096, model: str | None = None) -> dict[str, Any]:
    from qualgate import Gate

    records = alpaca_records(n)
    check: dict[str, Any] = {"check": "semantic_duplicate", "window": window, **({"model": model} if model else {})}
    gate = Gate.from_config({"version": 1, "input": {"id": "id"}, "checks": [check]}, cache_dir=cache)
    texts = [gate.sample(r, i).text for i, r in enumerate(records, 1)]
    if mode == "raw":
        from qualgate.embed import Embedder

        model_ = Embedder(model, "auto", 64, None).model
        model_.encode(texts[:64], batch_size=64, normalize_embeddings=True)  # warm-up, as the check's first batch
        start = time.perf_counter()
        model_.encode(texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
        seconds = time.perf_counter() - start
        rejected = None
    else:
        gate.checks[0].embedder.model.encode(texts[:64], batch_size=64, normalize_embeddings=True)  # same warm-up
        start = time.perf_counter()
        result = gate.run(records)
        seconds = time.perf_counter() - start
        rejected = result.report["rejected"]
    return {"mode": mode, "n": n, "window": window if mode == "check" else None, "seconds": round(seconds, 2),
            "per_s": round(n / seconds, 1), "peak_mib": round(peak_mib()), "rejected": rejected}


def _run_child(mode: str, n: int, cache: str | None = None, window: int = 4096, model: str | None = None
               ) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "_child", mode, str(n), cache or "-", str(window), model or "-"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
    row: dict[str, Any] = json.loads(out)
    print(json.dumps(row), file=sys.stderr)
    return row


def throughput(args: argparse.Namespace) -> None:
    """Interleaved rounds of raw encode, the check embedding each gate batch alone (window 0, the old way) and
    the check with its read-ahead window; then a cold and a warm disk cache."""
    cache = OUT / "throughput-cache"
    if cache.exists():
        import shutil

        shutil.rmtree(cache)
    rows = []
    for _ in range(args.rounds):
        rows.append({**_run_child("raw", args.n), "cache": "-"})
        rows.append({**_run_child("check", args.n, window=0), "cache": "off"})
        rows.append({**_run_child("check", args.n, window=args.window), "cache": "off"})
    if args.cache:
        rows.append({**_run_child("check", args.n, str(cache), args.window), "cache": "cold"})
        rows.append({**_run_child("check", args.n, str(cache), args.window), "cache": "warm"})

    def median(mode: str, window: int | None) -> float:
        return float(np.median([r["seconds"] for r in rows if r["mode"] == mode and r["window"] == window
                                and r["cache"] in ("-", "off")]))

    raw = median("raw", None)
    print(f"\n{args.n} Alpaca texts (instruction, input, output), batch 64, gate batch 512, {args.rounds} interleaved "
          "rounds\n")
    print("| run | window | disk cache | seconds | samples/s | vs median raw | peak RSS MiB |")
    print("|---|---:|---|---:|---:|---:|---:|")
    for r in rows:
        name = "SentenceTransformer.encode" if r["mode"] == "raw" else "semantic_duplicate (Gate.run)"
        print(f"| {name} | {r['window'] if r['window'] is not None else '-'} | {r['cache']} | {r['seconds']} | "
              f"{r['per_s']} | {r['seconds'] / raw:.2f}x | {r['peak_mib']} |")
    for w in (0, args.window):
        print(f"median check / median raw, window {w}: {median('check', w) / raw:.3f}x")


# ------------------------------------------------------------------------------------------- grouping
def grouping(args: argparse.Namespace) -> None:
    """How texts are grouped into forward passes, in one process, interleaved, CPU time on one torch thread (other
    tenants' load barely counts): raw ``SentenceTransformer.encode`` over all texts (its character sort), the
    check's old grouping (one call per 512-sample gate batch) and the Embedder's token-sorted passes over all of
    them (a window at least as large as the input). Also padded / real tokens of each grouping."""
    import torch

    from qualgate import Gate
    from qualgate.embed import Embedder
    from qualgate.lm.text import model_input

    torch.set_num_threads(1)
    records = alpaca_records(args.n)
    gate = Gate.from_config({"version": 1, "input": {"id": "id"}, "checks": [{"check": "semantic_duplicate"}]},
                            cache_dir=None)
    texts = [model_input(gate.sample(r, i).text, 256) for i, r in enumerate(records, 1)]
    embedder = Embedder(None, "cpu", 64, None)
    model = embedder.model
    tokens = embedder._token_counts(texts)
    chars = np.array([len(t) for t in texts])

    def padded(key: Any, window: int) -> float:
        total = 0
        for s in range(0, len(texts), window):
            idx = np.arange(s, min(s + window, len(texts)))
            order = idx[np.argsort(-key[idx], kind="stable")]
            total += sum(int(tokens[order[b:b + 64]].max()) * len(order[b:b + 64]) for b in range(0, len(order), 64))
        return total / int(tokens.sum())

    kw: dict[str, Any] = {"batch_size": 64, "normalize_embeddings": True, "convert_to_numpy": True,
                          "show_progress_bar": False}
    runs = {"raw encode (characters, all)": (lambda: model.encode(texts, **kw), padded(chars, len(texts))),
            "old check (characters, per 512)": (lambda: np.concatenate([model.encode(texts[s:s + 512], **kw)
                                                                        for s in range(0, len(texts), 512)]),
                                                padded(chars, 512)),
            "Embedder (tokens, all)": (lambda: embedder._forward(texts), padded(tokens, len(texts)))}
    model.encode(texts[:64], **kw)
    cpu: dict[str, list[float]] = {k: [] for k in runs}
    out = {}
    for _ in range(args.rounds):
        for name, (fn, _) in runs.items():
            start = time.process_time()
            out[name] = fn()
            cpu[name].append(time.process_time() - start)
            print(f"{name}: {cpu[name][-1]:.1f} s CPU", file=sys.stderr)
    raw = float(np.median(cpu["raw encode (characters, all)"]))
    base = out["raw encode (characters, all)"]
    print(f"\n{args.n} Alpaca texts, batch 64, one torch thread, median of {args.rounds} interleaved rounds\n")
    print("| grouping | padded / real tokens | CPU s | vs raw encode | max |vector difference| |")
    print("|---|---:|---:|---:|---:|")
    for name, (_, pad) in runs.items():
        med = float(np.median(cpu[name]))
        print(f"| {name} | {pad:.3f} | {med:.1f} | {med / raw:.3f}x | {float(np.abs(out[name] - base).max()):.1e} |")


# ------------------------------------------------------------------------------------------ agreement
def _plant(records: list[dict[str, Any]], n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` near-copies of random earlier records, appended: the request reworded ("Please ..."), the answer's
    first two sentences swapped (or its last word dropped). Both models should call each a duplicate."""
    rng = random.Random(seed)
    out = []
    for k, i in enumerate(sorted(rng.sample(range(len(records)), n))):
        r = records[i]
        sentences = [x for x in r["output"].split(". ") if x]
        output = ". ".join([sentences[1], sentences[0], *sentences[2:]]) if len(sentences) > 1 else \
            " ".join(r["output"].split()[:-1]) or r["output"]
        instruction = "Please " + r["instruction"][:1].lower() + r["instruction"][1:]
        out.append({**r, "id": f"planted-{k}-of-{r['id']}", "instruction": instruction, "output": output})
    return records + out


def agreement(args: argparse.Namespace) -> None:
    """semantic_duplicate's keep-first decisions with the static backend against MiniLM's on the same texts."""
    from qualgate import Gate
    from qualgate.embed import Embedder
    from qualgate.semdedup import exact_keep_first

    records = _plant(alpaca_records(args.n), args.plant, 0)
    gate = Gate.from_config({"version": 1, "input": {"id": "id"}, "checks": [{"check": "semantic_duplicate"}]},
                            cache_dir=None)
    texts = [gate.sample(r, i).text for i, r in enumerate(records, 1)]
    ids = [r["id"] for r in records]
    vecs, speed = {}, {}
    for name, model in (("minilm", None), ("static", "wordllama")):
        embedder = Embedder(model, "cpu", 64, Path(args.cache) if name == "minilm" else None)
        embedder.encode(texts[:64])
        start = time.perf_counter()
        vecs[name] = embedder.encode(texts)
        speed[name] = (embedder.stats["embedded"], time.perf_counter() - start)
        print(f"{name}: {embedder.stats} in {speed[name][1]:.1f} s", file=sys.stderr)
    ref = exact_keep_first(vecs["minilm"], args.reference)
    truth = ref.duplicate_of >= 0
    planted = np.array([i.startswith("planted-") for i in ids])
    print(f"\n{args.n} Alpaca records + {args.plant} planted near-copies; reference: MiniLM at {args.reference} "
          f"rejects {int(truth.sum())} ({int((truth & planted).sum())} planted, {int((truth & ~planted).sum())} "
          "natural)\n")
    print("| static threshold | rejected | agree | precision | recall | F1 | natural: rejected / agree / precision / "
          "recall | planted caught |")
    print("|---:|---:|---:|---:|---:|---:|---|---:|")
    results = {}
    for t in args.thresholds:
        got = exact_keep_first(vecs["static"], t)
        mine = got.duplicate_of >= 0
        both = int((mine & truth).sum())
        prec, rec = both / max(mine.sum(), 1), both / max(truth.sum(), 1)
        f1 = 2 * prec * rec / max(prec + rec, 1e-9)
        nat, nat_both = int((mine & ~planted).sum()), int((mine & truth & ~planted).sum())
        nat_prec, nat_rec = nat_both / max(nat, 1), nat_both / max(int((truth & ~planted).sum()), 1)
        results[t] = got
        print(f"| {t} | {int(mine.sum())} | {both} | {prec:.3f} | {rec:.3f} | {f1:.3f} | {nat} / {nat_both} / "
              f"{nat_prec:.3f} / {nat_rec:.3f} | {int((mine & planted).sum())}/{args.plant} |")
    for name, (n, sec) in speed.items():
        print(f"{name}: {n} texts in {sec:.1f} s = {n / sec:,.0f} texts/s")
    if args.dump:
        got = results[args.pick]
        mine = got.duplicate_of >= 0
        with open(args.dump, "w") as fh:
            for i in np.flatnonzero(mine != truth):
                j = int(got.duplicate_of[i] if mine[i] else ref.duplicate_of[i])
                fh.write(json.dumps({"only": "static" if mine[i] else "minilm", "id": ids[i], "kept": ids[j],
                                     "cos_minilm": round(float(vecs["minilm"][i] @ vecs["minilm"][j]), 3),
                                     "cos_static": round(float(vecs["static"][i] @ vecs["static"][j]), 3),
                                     "text": texts[i][:300], "kept_text": texts[j][:300]}) + "\n")
        print(f"disagreements at {args.pick}: {int((mine != truth).sum())} -> {args.dump}", file=sys.stderr)


# ------------------------------------------------------------------------------------------- faiss
def synthetic(n: int, dim: int, rng: np.random.Generator) -> Any:
    centres = rng.standard_normal((1000, dim)).astype(np.float32)
    x = centres[rng.integers(0, 1000, n)] + 0.9 * rng.standard_normal((n, dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def faiss_bench(args: argparse.Namespace) -> None:
    from qualgate.vectors import VectorIndex

    rng = np.random.default_rng(0)
    rows = []
    for n in args.sizes:
        x = synthetic(n, 384, rng)
        q = synthetic(500, 384, rng)
        # planted: 500 noisy copies of indexed vectors (cosine ~0.93), the case semantic_duplicate must find
        src = rng.integers(0, n, 500)
        planted = x[src] + 0.018 * rng.standard_normal((500, 384)).astype(np.float32)
        planted /= np.linalg.norm(planted, axis=1, keepdims=True)
        q = np.concatenate([q, planted])
        res: dict[str, Any] = {"n": n}
        truth = None
        for kind in ("flat", "hnsw"):
            if kind == "hnsw" and n > args.max_hnsw:
                continue
            index = VectorIndex(384, kind)  # type: ignore[arg-type]
            start = time.perf_counter()
            for part in range(0, n, 100_000):
                index.add(x[part:part + 100_000])
            res[f"{kind}_build_s"] = round(time.perf_counter() - start, 2)
            start = time.perf_counter()
            _, ids = index.search(q, 1)
            res[f"{kind}_query_ms"] = round((time.perf_counter() - start) * 1000 / len(q), 3)
            if kind == "flat":
                truth = ids[:, 0]
            else:
                res["hnsw_recall@1"] = round(float((ids[:500, 0] == truth[:500]).mean()), 4)
                res["hnsw_planted_recall"] = round(float((ids[500:, 0] == src).mean()), 4)
                res["planted_cosine"] = round(float(np.median((planted * x[src]).sum(axis=1))), 3)
            del index
        res["peak_mib"] = round(peak_mib())
        rows.append(res)
        print(json.dumps(res), file=sys.stderr)
    print("\n| vectors | exact build s | exact ms/query | HNSW build s (1 thread) | HNSW ms/query | "
          "HNSW recall@1 (random queries) | HNSW recall (planted duplicates) | peak RSS MiB |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['n']:,} | {r['flat_build_s']} | {r['flat_query_ms']} | {r.get('hnsw_build_s', '-')} | "
              f"{r.get('hnsw_query_ms', '-')} | {r.get('hnsw_recall@1', '-')} | {r.get('hnsw_planted_recall', '-')} "
              f"(cos {r.get('planted_cosine', '-')}) | {r['peak_mib']} |")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_child":
        cache, window, model = sys.argv[4], int(sys.argv[5]), sys.argv[6]
        print(json.dumps(_child(sys.argv[2], int(sys.argv[3]), None if cache == "-" else cache, window,
                                None if model == "-" else model)))
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("collapse")
    c.add_argument("--n", type=int, default=500, help="texts per generation")
    c.add_argument("--generations", type=int, default=12)
    c.add_argument("--tau", type=float, default=0.05, help="sharpness of the refill (lower = faster collapse)")
    c.add_argument("--replace", type=float, default=0.15, help="share of each generation replaced")
    c.add_argument("--k", type=int, default=10, help="neighbours for the density")
    c.add_argument("--seed", type=int, default=0)
    t = sub.add_parser("throughput")
    t.add_argument("--n", type=int, default=2000)
    t.add_argument("--rounds", type=int, default=3, help="interleaved rounds of raw / window 0 / window")
    t.add_argument("--window", type=int, default=4096, help="the check's read-ahead window")
    t.add_argument("--cache", action=argparse.BooleanOptionalAction, default=True, help="also a cold and a warm cache")
    g = sub.add_parser("grouping")
    g.add_argument("--n", type=int, default=1000)
    g.add_argument("--rounds", type=int, default=2)
    a = sub.add_parser("agreement")
    a.add_argument("--n", type=int, default=10_000)
    a.add_argument("--plant", type=int, default=300)
    a.add_argument("--reference", type=float, default=0.9, help="MiniLM threshold (the reference decisions)")
    a.add_argument("--thresholds", type=float, nargs="+",
                   default=[0.85, 0.87, 0.88, 0.89, 0.9, 0.91, 0.92, 0.93, 0.94, 0.95])
    a.add_argument("--pick", type=float, default=0.9, help="static threshold whose disagreements are dumped")
    a.add_argument("--dump", default=None, help="JSONL of the disagreements at --pick")
    a.add_argument("--cache", default=str(OUT / "agreement-cache"), help="disk cache for MiniLM's vectors")
    f = sub.add_parser("faiss")
    f.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    f.add_argument("--max-hnsw", type=int, default=1_000_000)
    args = ap.parse_args()
    {"collapse": collapse, "throughput": throughput, "grouping": grouping, "agreement": agreement,
     "faiss": faiss_bench}[args.cmd](args)


if __name__ == "__main__":
    main()
