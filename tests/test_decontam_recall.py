"""Recall harness of benchmark decontamination (issue 21 item 3): the 60 benchmark items we wrote
(fixtures/benchmark_items.jsonl) planted into our synthetic instruction records verbatim, re-wrapped into short
lines, lightly edited and paraphrased by hand (fixtures/benchmark_paraphrases.jsonl), as bench/bench_decontam.py
plants them into Alpaca; each kind's recall must stay above the floor measured here, and the clean fixtures must
give no hit. The n-gram check runs by default; the embedding stage (``contamination_rephrase``, MiniLM) is slow."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

from qualgate import Gate
from qualgate.checks.contamination_rephrase import passages
from tests.conftest import FIXTURES, ROOT

_spec = importlib.util.spec_from_file_location("bench_decontam", ROOT / "bench" / "bench_decontam.py")
assert _spec is not None and _spec.loader is not None
B = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(B)

ITEMS = B.read_jsonl(FIXTURES / "benchmark_items.jsonl")
PARAPHRASES = {p["id"]: p for p in B.read_jsonl(FIXTURES / "benchmark_paraphrases.jsonl")}
#: clean records: every fixture of ours with prose, instructions or chats (none quotes a benchmark item)
CLEAN = ("semantic_sample.jsonl", "reference_sample.jsonl", "human_prose.jsonl", "instruct_sample.jsonl",
         "text_quality_sample.jsonl", "collapsed_sample.jsonl", "leak_sample.jsonl", "private_records.jsonl",
         "tool_use_sample.jsonl", "chat_sample.jsonl")


def _lines(name: str) -> list[dict[str, Any]]:
    out = []
    for line in (FIXTURES / name).read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue  # instruct_sample.jsonl holds a malformed line on purpose
        if isinstance(rec, dict):
            out.append(rec)
    return out


def _hosts() -> list[dict[str, Any]]:
    """Instruction records of ours with an answer of a few sentences to plant into."""
    recs = _lines("semantic_sample.jsonl") + _lines("instruct_sample.jsonl")
    return [{k: r[k] for k in ("instruction", "input", "output") if k in r} for r in recs
            if len(str(r.get("output", "")).split()) >= 8]


PLANTED = B.planted_records(ITEMS, PARAPHRASES, _hosts(), seed=0)


def _gate(check: dict[str, Any], bench: str = "school", path: Path = FIXTURES / "benchmark_items.jsonl") -> Gate:
    g = Gate.from_config({"version": 1, "checks": [check]}, cache_dir=None)
    g.load_benchmark(bench, path, text=B.TEMPLATE)
    return g


def _recall(check: dict[str, Any]) -> dict[str, float]:
    found = B.hits(_gate(check), B.strip_plant(PLANTED))
    by: dict[str, list[bool]] = {}
    for rec, ev in zip(PLANTED, found, strict=True):
        right = ev is not None and ev["benchmark"] == "school" and ev["item_id"] == rec["_planted"]["item"]
        by.setdefault(rec["_planted"]["kind"], []).append(right)
    return {kind: sum(v) / len(v) for kind, v in by.items()}


def test_the_harness_plants_each_kind_as_described() -> None:
    assert len(ITEMS) == len(PARAPHRASES) == 60 and len(PLANTED) == 240
    by_kind = {k: [r for r in PLANTED if r["_planted"]["kind"] == k] for k in B.KINDS}
    item = {x["id"]: B.item_text(x) for x in ITEMS}
    for rec in by_kind["verbatim"]:
        assert item[rec["_planted"]["item"]] in rec["output"]
    for rec in by_kind["rewrapped"]:
        words = item[rec["_planted"]["item"]].split()
        lines = [ln for ln in rec["output"].split("\n") if ln.strip()]
        assert all(w in rec["output"] for w in words) and sum(4 <= len(ln.split()) <= 9 for ln in lines) >= 3
    for rec in by_kind["edited"]:
        words = item[rec["_planted"]["item"]].split()
        assert item[rec["_planted"]["item"]] not in rec["output"] and len(words) >= 15
    for rec in by_kind["paraphrased"]:
        assert B.item_text(PARAPHRASES[rec["_planted"]["item"]]) in rec["output"]


@pytest.mark.parametrize(("n", "floors"), [
    # re-wrapped into numbered lines ("1. ", "2. ", ... every 5-8 words, a quarter of the re-wrapped plants) is
    # found because line-leading list markers are dropped before hashing (index version 2; with the numbers kept
    # as words, no 13-gram survived them: 42/60 at n=13, 56/60 at n=8)
    (13, {"verbatim": 1.0, "rewrapped": 1.0, "edited": 1.0, "paraphrased": 0.0}),
    (8, {"verbatim": 1.0, "rewrapped": 1.0, "edited": 1.0, "paraphrased": 0.0}),
])
def test_ngram_recall_per_kind(n: int, floors: dict[str, float]) -> None:
    recall = _recall({"check": "contamination", "n": n})
    assert all(recall[k] >= floors[k] for k in floors), recall
    assert recall["paraphrased"] <= 0.25, recall  # what the n-gram stage misses: the embedding stage's work


@pytest.mark.parametrize("n", [13, 8])
def test_ngram_no_hit_on_clean_fixtures(n: int) -> None:
    records = [r for name in CLEAN for r in _lines(name)]
    assert len(records) > 300
    g = Gate.from_config({"version": 1, "checks": [{"check": "contamination", "n": n}]}, cache_dir=None)
    g.load_benchmark("school", FIXTURES / "benchmark_items.jsonl", text=B.TEMPLATE)
    g.load_benchmark("sample", FIXTURES / "benchmark_sample.jsonl")
    hit = [(f.evidence["item_id"], f.evidence["span"]) for d in g.run(records).decisions for f in d.findings
           if f.reason == "contamination"]
    # 8 words are few: a prose sentence on photosynthesis shares one 8-gram with a science question (1 of its 20)
    assert hit == ([] if n == 13 else [("sci-01", "water and carbon dioxide into sugar and oxygen")])


def test_passages_join_rewrapped_lines_and_keep_offsets() -> None:
    text = ("Sure, here is one.\n\n- Lena buys 3 packs of pencils\n- for her classroom. Each pack holds\n"
            "- 12 pencils. How many are left?\n\nHope this helps you out today.")
    got = passages(text, [2, 3], 5, 200)
    assert got[0] == (0, len(text), "text")
    paragraphs = [text[s:e] for s, e, what in got if what == "paragraph"]
    assert paragraphs == [text.split("\n\n")[1], "Hope this helps you out today."]  # not the 4-word one
    runs = [text[s:e] for s, e, what in got if what == "sentences"]
    assert "- Lena buys 3 packs of pencils\n- for her classroom. Each pack holds\n- 12 pencils." in runs
    assert all(len(t.split()) >= 5 for t in runs)
    assert passages("One short line.", [2, 3], 8, 200) == [(0, 15, "text")]


def _rephrase_hits(check: dict[str, Any], records: list[dict[str, Any]]) -> list[tuple[str, Any]]:
    result = _gate(check).run(records)
    texts = {B.item_text(x) for x in ITEMS}
    for d in result.decisions:  # names and cosines only: no benchmark text in scores or evidence
        written = json.dumps(d.scores) + json.dumps([f.evidence for f in d.findings])
        assert not any(t[:30] in written for t in texts)
    return [(d.sample.text[:60], d.findings[0].evidence) for d in result.decisions
            if any(f.reason == "contamination_rephrase" for f in d.findings)]


def test_static_embedding_recall_per_kind_and_no_hit_on_clean_fixtures() -> None:
    """The torch-free backend (wordllama, loads in ~0.1 s) at its default 0.85: copies found, a third of the
    paraphrases; the nearest clean text (a photosynthesis answer, to a photosynthesis question) stays at 0.84."""
    pytest.importorskip("wordllama")
    pytest.importorskip("faiss")
    check = {"check": "contamination_rephrase", "model": "wordllama"}
    recall = _recall(check)
    floors = {"verbatim": 1.0, "rewrapped": 1.0, "edited": 1.0, "paraphrased": 0.3}
    assert all(recall[k] >= floors[k] for k in floors), recall
    assert _rephrase_hits(check, [r for name in CLEAN for r in _lines(name)]) == []


def test_static_rephrase_evidence_points_at_the_samples_own_passage() -> None:
    pytest.importorskip("wordllama")
    pytest.importorskip("faiss")
    from qualgate.errors import ConfigError

    host = _hosts()[0]
    item = next(x for x in ITEMS if x["id"] == "math-14")  # one of the paraphrases wordllama finds (0.90)
    rec = {**host, "output": host["output"] + "\n\n" + B.item_text(PARAPHRASES[item["id"]])}
    g = _gate({"check": "contamination_rephrase", "model": "wordllama"})
    assert g.config.checks[0].params.cosine == 0.85  # the static backend's own default
    d = g.run([host, rec]).decisions
    assert d[0].accepted and not d[1].accepted
    f = d[1].findings[0]
    ev = f.evidence
    assert (f.reason, ev["benchmark"], ev["item_id"], ev["part"]) == ("contamination_rephrase", "school", "math-14",
                                                                      "paragraph")
    assert d[1].sample.text[ev["start"]:ev["end"]] == B.item_text(PARAPHRASES[item["id"]])
    assert f.message.startswith("says what item math-14 of benchmark school says (a paragraph of it, characters ")
    with pytest.raises(ConfigError, match="--benchmark NAME=PATH"):
        Gate.from_config({"version": 1, "checks": [{"check": "contamination_rephrase", "model": "wordllama"}]},
                         cache_dir=None).run([host])


@pytest.mark.slow
def test_minilm_finds_paraphrases_and_nothing_in_clean_fixtures() -> None:
    """MiniLM at its default 0.8 on the hand-written paraphrases (the kind the n-gram check misses) and on every
    clean fixture."""
    paraphrased = [r for r in PLANTED if r["_planted"]["kind"] == "paraphrased"]
    found = B.hits(_gate({"check": "contamination_rephrase"}), B.strip_plant(paraphrased))
    right = sum(ev is not None and ev["item_id"] == r["_planted"]["item"] for r, ev in zip(paraphrased, found,
                                                                                            strict=True))
    assert right >= 48, right  # of 60
    hits = _rephrase_hits({"check": "contamination_rephrase"}, [r for name in CLEAN for r in _lines(name)])
    # the only ones: two tool-use answers saying who wrote Pride and Prejudice, that it came out in 1813 and follows
    # Elizabeth Bennet: the facts of trivia item triv-05, restated (a true rephrase of its question and answer)
    assert [(ev["item_id"], ev["part"]) for _, ev in hits] == [("triv-05", "sentences")] * 2
    assert all(ev["cosine"] < 0.9 for _, ev in hits)
