"""Near-duplicate benchmark: planted duplicates in real text, qualgate vs plain datasketch vs datatrove.

    python bench/bench_minhash.py --docs 100000          # build the corpus, run all three, print tables
    python bench/bench_minhash.py --buckets 10000 20000  # a template's giant LSH buckets vs ordinary records

The corpus: every record of Alpaca, Dolly, Code Alpaca and GPTeacher in ../shared/data (instruction,
input and answer joined), then variants of randomly chosen records made by random word edits
(substitutions, deletions, insertions) until the corpus has --docs documents. Each variant's true
Jaccard with its source is computed exactly on word 5-gram sets of the normalised text; a variant
is a true duplicate when that Jaccard is >= the threshold (0.8). Variants come after all originals,
so keep-first methods should remove exactly the true-duplicate variants and nothing else.

Each method runs as its own subprocess, end to end from the same JSONL file to the set of removed
ids, timed by wall clock, with the peak RSS of its whole process tree sampled every 50 ms:

- qualgate: ``qualgate filter`` with only the ``near_duplicate`` check, 2 workers (signatures in the
  workers, index lookups and keep-first decisions in the main process), and with 1 process;
- datasketch 2.x as its docs recommend for many documents: ``MinHash.bulk`` (its batch API, default sha1
  hash) on 1,024 documents at a time + ``MinHashLSH(threshold=0.8)`` filled in an ``insertion_session``,
  keep-first (query, then insert the misses), no verification, on the same shingles as qualgate;
- datatrove 0.10: the four-stage ``MinhashDedup*`` pipeline with 2 workers and the config of its own
  example (``examples/minhash_deduplication.py``: 14 buckets x 8 hashes, 64-bit xxhash, which are also
  ``MinhashConfig``'s defaults), whitespace word tokens (its NLTK tokenizer needs data that cannot be
  downloaded here).

``--repeat N`` runs every method N times, interleaved (A, B, C, A, B, C, ...), and reports the median wall
time, so a loaded machine slows all methods alike; ``--reuse`` keeps the corpus of an earlier run.

Needs psutil and datatrove[processing,io] in the benchmark's environment (not qualgate's).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import random
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
THRESHOLD = 0.8


# ------------------------------------------------------------------------------------------ corpus
def originals() -> list[str]:
    texts = []
    for name in ("alpaca_data.json", "dolly_3k.json", "code_alpaca_2k.json", "gpteacher_roleplay.json"):
        for r in json.loads((DATA / name).read_text()):
            answer = r.get("output", r.get("response", ""))
            texts.append("\n".join(p for p in (r.get("instruction", ""), r.get("input", ""), answer) if p))
    return texts


def shingle_set(text: str) -> set[str]:
    from qualgate.minhashing import Shingler

    sh = Shingler(5)
    return {" ".join(s) for s in sh.shingles(sh.normalize(text))}


def true_jaccard(a: str, b: str) -> float:
    sa, sb = shingle_set(a), shingle_set(b)
    return len(sa & sb) / len(sa | sb) if sa | sb else 1.0


def make_variant(text: str, rng: random.Random, vocab: list[str]) -> str:
    words = text.split()
    rate = rng.uniform(0.0, 0.08)
    for _ in range(max(1, round(len(words) * rate))):
        op = rng.random()
        pos = rng.randrange(len(words))
        if op < 0.6:
            words[pos] = rng.choice(vocab)
        elif op < 0.8 and len(words) > 1:
            del words[pos]
        else:
            words.insert(pos, rng.choice(vocab))
    return " ".join(words)


def build_corpus(path: Path, n_docs: int, seed: int = 0) -> dict[str, Any]:
    rng = random.Random(seed)
    texts = originals()
    vocab = [w for t in rng.sample(texts, 2000) for w in t.split()]
    rows: list[dict[str, Any]] = [{"id": f"o{i}", "text": t} for i, t in enumerate(texts)]
    eligible = [i for i, t in enumerate(texts) if len(t.split()) >= 10]
    variants = []
    for k in range(max(0, n_docs - len(rows))):
        src = rng.choice(eligible)
        v = make_variant(texts[src], rng, vocab)
        j = round(true_jaccard(texts[src], v), 6)
        variants.append({"id": f"v{k}", "text": v, "source": f"o{src}", "jaccard": j})
    rows += variants
    with path.open("w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    labels = {v["id"]: v["jaccard"] for v in variants}
    return {"docs": len(rows), "originals": len(texts), "variants": len(variants),
            "positives": sum(j >= THRESHOLD for j in labels.values()), "labels": labels}


# ----------------------------------------------------------------------------------------- methods
def run_datasketch(corpus: Path, out: Path) -> None:
    from datasketch import MinHash, MinHashLSH

    from qualgate.minhashing import Shingler

    sh = Shingler(5)
    lsh = MinHashLSH(threshold=THRESHOLD, num_perm=128)
    removed = []

    def flush(ids: list[str], shingles: list[list[bytes]]) -> None:
        for key, m in zip(ids, MinHash.bulk(shingles, num_perm=128), strict=True):
            if lsh.query(m):
                removed.append(key)
            else:
                session.insert(key, m)

    with corpus.open(encoding="utf-8") as fh, lsh.insertion_session() as session:
        ids: list[str] = []
        shingles: list[list[bytes]] = []
        for line in fh:
            r = json.loads(line)
            ids.append(r["id"])
            shingles.append([" ".join(s).encode("utf-8") for s in sh.shingles(sh.normalize(r["text"]))])
            if len(ids) == 1024:
                flush(ids, shingles)
                ids, shingles = [], []
        flush(ids, shingles)
    (out / "removed.json").write_text(json.dumps(removed))


def run_datatrove(corpus: Path, out: Path) -> None:
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup.minhash import (
        MinhashConfig,
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupFilter,
        MinhashDedupSignature,
    )
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import JsonlWriter
    from datatrove.utils.hashing import HashConfig
    from datatrove.utils.word_tokenizers import WordTokenizer

    class Whitespace(WordTokenizer):
        def word_tokenize(self, text: str) -> list[str]:
            return text.split()

        def sent_tokenize(self, text: str) -> list[str]:
            return [text]

        def span_tokenize(self, text: str) -> list[tuple[int, int]]:
            return [(0, len(text))]

    cfg = MinhashConfig(hash_config=HashConfig(precision=64), num_buckets=14, hashes_per_bucket=8)  # its example's
    workers = 2
    data = out / "input"
    data.mkdir(parents=True)
    # split the corpus into one file per worker, in order, so stage 1 and 4 run in parallel
    lines = corpus.read_text(encoding="utf-8").splitlines(keepends=True)
    per = (len(lines) + workers - 1) // workers
    for w in range(workers):
        (data / f"part{w}.jsonl").write_text("".join(lines[w * per:(w + 1) * per]), encoding="utf-8")
    reader = JsonlReader(str(data), text_key="text", id_key="id")
    logs = str(out / "logs")
    signature = MinhashDedupSignature(str(out / "sigs"), config=cfg, language=Whitespace())
    stage1 = LocalPipelineExecutor([reader, signature], tasks=workers, workers=workers, logging_dir=f"{logs}/1")
    stage2 = LocalPipelineExecutor([MinhashDedupBuckets(str(out / "sigs"), str(out / "buckets"), config=cfg)],
                                   tasks=cfg.num_buckets, workers=workers, logging_dir=f"{logs}/2", depends=stage1)
    stage3 = LocalPipelineExecutor([MinhashDedupCluster(str(out / "buckets"), str(out / "remove"), config=cfg)],
                                   tasks=1, logging_dir=f"{logs}/3", depends=stage2)
    stage4 = LocalPipelineExecutor([JsonlReader(str(data), text_key="text", id_key="id"),
                                    MinhashDedupFilter(str(out / "remove"),
                                                       exclusion_writer=JsonlWriter(str(out / "removed")))],
                                   tasks=workers, workers=workers, logging_dir=f"{logs}/4", depends=stage3)
    stage4.run()
    removed = []
    for f in sorted((out / "removed").glob("*.jsonl*")):
        import gzip

        opener = gzip.open if f.suffix == ".gz" else open
        with opener(f, "rt", encoding="utf-8") as fh:
            removed += [json.loads(line)["id"] for line in fh]
    (out / "removed.json").write_text(json.dumps(removed))


def qualgate_removed(out: Path) -> None:
    ids = [json.loads(line)["qualgate"]["id"] for line in (out / "qg" / "rejected.jsonl").open(encoding="utf-8")]
    (out / "removed.json").write_text(json.dumps(ids))


# ------------------------------------------------------------------------------------------ harness
def measure(cmd: list[str], cwd: str | None = None) -> tuple[float, float, float]:
    """Wall seconds, peak RSS (MiB) of the process tree, and CPU seconds of the whole tree: ``wait4`` counts the
    children each process waited for, and each process's CPU time is also sampled every 50 ms (a forkserver's
    workers, as datatrove's, are nobody's waited-for children); the larger of the two. On a loaded machine CPU
    seconds compare methods better than wall time."""
    import os

    import psutil

    start = time.perf_counter()
    proc = psutil.Popen(cmd, cwd=cwd)
    peak = 0
    seen: dict[int, float] = {}
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        total = 0
        with contextlib.suppress(psutil.Error):
            for p in [proc, *proc.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    total += p.memory_info().rss
                    cpu = p.cpu_times()
                    seen[p.pid] = cpu.user + cpu.system
        peak = max(peak, total)
        time.sleep(0.05)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{cmd} exited {os.waitstatus_to_exitcode(status)}")
    return time.perf_counter() - start, peak / 2**20, max(usage.ru_utime + usage.ru_stime, sum(seen.values()))


def evaluate(removed: list[str], labels: dict[str, float]) -> dict[str, float]:
    rem = set(removed)
    tp = sum(1 for v, j in labels.items() if j >= THRESHOLD and v in rem)
    fp_var = sum(1 for v, j in labels.items() if j < THRESHOLD and v in rem)
    fp_orig = sum(1 for r in rem if r.startswith("o"))
    fn = sum(1 for v, j in labels.items() if j >= THRESHOLD and v not in rem)
    p = tp / (tp + fp_var + fp_orig) if tp + fp_var + fp_orig else 1.0
    r = tp / (tp + fn) if tp + fn else 1.0
    return {"tp": tp, "fp_variants": fp_var, "fp_originals": fp_orig, "fn": fn, "precision": p, "recall": r,
            "f1": 2 * p * r / (p + r) if p + r else 0.0}


def recall_by_band(removed: list[str], labels: dict[str, float]) -> list[tuple[str, int, float]]:
    rem, out = set(removed), []
    edges = [0.0, 0.5, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 1.0001]
    for lo, hi in itertools.pairwise(edges):
        ids = [v for v, j in labels.items() if lo <= j < hi]
        out.append((f"[{lo:.2f}, {min(hi, 1.0):.2f}{']' if hi > 1 else ')'}", len(ids),
                    sum(v in rem for v in ids) / len(ids) if ids else float("nan")))
    return out


def scale(n_docs: int, work: Path) -> None:
    """Memory at scale: n short samples (8-30 words, sentences recombined from the real data, 10% edited
    copies of earlier ones) through ``qualgate filter`` with only near_duplicate; wall time and peak RSS."""
    rng = random.Random(1)
    sentences = [s.strip() for t in originals() for s in t.replace("\n", ". ").split(". ") if len(s.split()) >= 4]
    vocab = [w for s in rng.sample(sentences, 5000) for w in s.split()]
    work.mkdir(parents=True, exist_ok=True)
    corpus = work / "short.jsonl"
    texts: list[str] = []
    with corpus.open("w", encoding="utf-8") as fh:
        for i in range(n_docs):
            if texts and rng.random() < 0.1:
                t = make_variant(rng.choice(texts[-50_000:]), rng, vocab)
            else:  # the start of one real sentence and the end of another: short, realistic, rarely repeated
                a, b = rng.choice(sentences).split(), rng.choice(sentences).split()
                t = " ".join(a[: rng.randint(4, 15)] + b[-rng.randint(4, 15):])
            texts.append(t)
            fh.write(json.dumps({"id": i, "text": t}) + "\n")
    cfg = work / "nd.yaml"
    cfg.write_text("version: 1\ninput: {text: text, id: id}\nchecks:\n  - check: near_duplicate\n")
    wall, rss, _ = measure([sys.executable, "-m", "qualgate.cli", "filter", str(corpus), "-c", str(cfg), "-o",
                         str(work / "out"), "-q", "-j", "1"])
    report = json.loads((work / "out" / "report.json").read_text())
    sec = report["sets"]["near_duplicate"]
    print(f"| {n_docs:,} short samples | {wall:.1f} s | {n_docs / wall:,.0f} docs/s | peak RSS {rss:.0f} MiB | "
          f"index {sec['index_bytes'] / 2**20:.0f} MiB | rejected {report['rejected']:,} |")


def buckets(sizes: list[int], work: Path, src: str | None) -> None:
    """A template's giant LSH buckets: n short Alpaca instructions, each after the same 40-word preamble
    (true Jaccard between two of them ~0.5-0.7: every sample shares buckets with thousands of others),
    against the same n instructions alone, through ``qualgate filter`` with only near_duplicate; wall time
    and peak RSS. ``src``: run the qualgate of another checkout (the code before a change)."""
    import os

    if src:  # ``python -m`` looks in the working folder first
        os.environ["PYTHONPATH"] = src
        os.chdir(src)
    rows = json.loads((DATA / "alpaca_data.json").read_text())
    preamble = " ".join(" ".join(r["output"] for r in rows[:2]).split()[:40])
    short = [r["instruction"] for r in rows if 4 <= len(r["instruction"].split()) <= 20]
    work.mkdir(parents=True, exist_ok=True)
    cfg = work / "nd.yaml"
    cfg.write_text("version: 1\ninput: {text: text, id: id}\nchecks:\n  - check: near_duplicate\n")
    print("| records | kind | wall s | peak RSS MiB | rejected |\n|---:|---|---:|---:|---:|")
    for n in sizes:
        picked = random.Random(0).sample(short, n)
        for kind, texts in (("shared 40-word prefix", [f"{preamble} {t}" for t in picked]), ("ordinary", picked)):
            corpus = work / f"{n}-{kind.split()[0]}.jsonl"
            corpus.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(texts)))
            out = work / f"out-{corpus.stem}"
            wall, rss, _ = measure([sys.executable, "-m", "qualgate.cli", "filter", str(corpus), "-c", str(cfg), "-o",
                                 str(out), "-q", "-j", "1"])
            rejected = json.loads((out / "report.json").read_text())["rejected"]
            print(f"| {n:,} | {kind} | {wall:.1f} | {rss:.0f} | {rejected:,} |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=int, default=0, help="instead: memory/time for this many short samples")
    ap.add_argument("--buckets", type=int, nargs="+", help="instead: a template's giant buckets, at these sizes")
    ap.add_argument("--src", help="with --buckets: the qualgate checkout to run (default: this one); else the "
                    "checkout the methods qualgate-src and qualgate-src-1proc run (the code before a change, "
                    "interleaved with this one's)")
    ap.add_argument("--docs", type=int, default=100_000)
    ap.add_argument("--work", default="/tmp/qualgate-bench-minhash")
    ap.add_argument("--repeat", type=int, default=1, help="runs per method, interleaved; the median wall is reported")
    ap.add_argument("--reuse", action="store_true", help="keep the corpus of an earlier run with the same --docs")
    ap.add_argument("--methods", nargs="+", default=["qualgate", "qualgate-1proc", "datasketch", "datatrove"])
    ap.add_argument("--run-datasketch", nargs=2, metavar=("CORPUS", "OUT"), help=argparse.SUPPRESS)
    ap.add_argument("--run-datatrove", nargs=2, metavar=("CORPUS", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.run_datasketch:
        return run_datasketch(Path(args.run_datasketch[0]), Path(args.run_datasketch[1]))
    if args.run_datatrove:
        return run_datatrove(Path(args.run_datatrove[0]), Path(args.run_datatrove[1]))

    work = Path(args.work)
    if not args.reuse:
        shutil.rmtree(work, ignore_errors=True)
    if args.scale:
        return scale(args.scale, work)
    if args.buckets:
        return buckets(args.buckets, work, args.src)
    work.mkdir(parents=True, exist_ok=True)
    corpus, saved = work / "corpus.jsonl", work / "corpus-info.json"
    t0 = time.perf_counter()
    if args.reuse and saved.exists() and json.loads(saved.read_text())["docs"] == args.docs:
        info = json.loads(saved.read_text())
    else:
        info = build_corpus(corpus, args.docs)
        saved.write_text(json.dumps(info))
    print(f"corpus: {info['docs']} docs ({info['originals']} originals, {info['variants']} variants, "
          f"{info['positives']} with Jaccard >= {THRESHOLD}), ready in {time.perf_counter() - t0:.0f} s")
    cfg = work / "nd.yaml"
    cfg.write_text(f"version: 1\ninput: {{text: text, id: id}}\nchecks:\n  - check: near_duplicate\n"
                   f"    threshold: {THRESHOLD}\n")
    me = [sys.executable, __file__]
    commands = {
        "qualgate": [sys.executable, "-m", "qualgate.cli", "filter", str(corpus), "-c", str(cfg), "-o",
                     str(work / "qualgate" / "qg"), "-q", "-j", "2", "--no-html", "--no-cache"],
        "qualgate-1proc": [sys.executable, "-m", "qualgate.cli", "filter", str(corpus), "-c", str(cfg), "-o",
                           str(work / "qualgate-1proc" / "qg"), "-q", "-j", "1", "--no-html", "--no-cache"],
        **({"qualgate-src": [sys.executable, "-m", "qualgate.cli", "filter", str(corpus), "-c", str(cfg), "-o",
                             str(work / "qualgate-src" / "qg"), "-q", "-j", "2", "--no-html", "--no-cache"],
            "qualgate-src-1proc": [sys.executable, "-m", "qualgate.cli", "filter", str(corpus), "-c", str(cfg), "-o",
                                   str(work / "qualgate-src-1proc" / "qg"), "-q", "-j", "1", "--no-html",
                                   "--no-cache"]} if args.src else {}),
        "datasketch": [*me, "--run-datasketch", str(corpus), str(work / "datasketch")],
        "datatrove": [*me, "--run-datatrove", str(corpus), str(work / "datatrove")],
    }
    walls: dict[str, list[float]] = {name: [] for name in args.methods}
    rsss: dict[str, list[float]] = {name: [] for name in args.methods}
    cpus: dict[str, list[float]] = {name: [] for name in args.methods}
    for rep in range(args.repeat):
        for name in args.methods:
            shutil.rmtree(work / name, ignore_errors=True)
            (work / name).mkdir(parents=True)
            # ``python -m`` imports from the working folder first: the other checkout's code runs from there
            wall, rss, cpu = measure(commands[name], args.src if name.startswith("qualgate-src") else None)
            walls[name].append(wall)
            rsss[name].append(rss)
            cpus[name].append(cpu)
            print(f"run {rep + 1}: {name} {wall:.1f} s, {cpu:.1f} CPU s, {rss:.0f} MiB", flush=True)
    results = {}
    for name in args.methods:
        if name.startswith("qualgate"):
            qualgate_removed(work / name)
        removed = json.loads((work / name / "removed.json").read_text())
        results[name] = {"wall": statistics.median(walls[name]), "rss": max(rsss[name]), "removed": removed,
                         "cpu": statistics.median(cpus[name]),
                         **evaluate(removed, info["labels"])}
    base = results.get("qualgate")
    print(f"\nwall = median of {args.repeat} interleaved run(s); peak RSS = the largest of them")
    one = results.get("qualgate-1proc")
    print("\n| method | wall s | docs/s | qualgate -j 2 faster by | qualgate -j 1 faster by | CPU s (all processes) "
          "| peak RSS MiB | removed | precision | recall | F1 |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, r in results.items():
        ratio = f"{r['wall'] / base['wall']:.2f}x" if base else "-"
        ratio1 = f"{r['wall'] / one['wall']:.2f}x" if one else "-"
        print(f"| {name} | {r['wall']:.1f} | {info['docs'] / r['wall']:,.0f} | {ratio} | {ratio1} | {r['cpu']:.1f} | "
              f"{r['rss']:.0f} | "
              f"{len(r['removed'])} | {r['precision']:.4f} | {r['recall']:.4f} | {r['f1']:.4f} |")
    print("\nerrors: " + "; ".join(f"{n}: {r['fp_variants']} variants below the threshold removed, "
                                   f"{r['fp_originals']} originals removed, {r['fn']} true duplicates kept"
                                   for n, r in results.items()))
    print("\nrecall (share of variants removed) by true Jaccard with the source:\n")
    print("| Jaccard | variants | " + " | ".join(results) + " |")
    print("|---|---:|" + "---:|" * len(results))
    bands = {n: recall_by_band(r["removed"], info["labels"]) for n, r in results.items()}
    for i, (label, count, _) in enumerate(next(iter(bands.values()))):
        print(f"| {label} | {count} | " + " | ".join(f"{bands[n][i][2]:.3f}" for n in results) + " |")


if __name__ == "__main__":
    main()
