"""near_duplicate: datasketch bit-equality, verified Jaccard, keep-first, baseline and its cache, clusters."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from datasketch import LeanMinHash, MinHash, MinHashLSH
from hypothesis import given, settings
from hypothesis import strategies as st

from qualgate import Gate
from qualgate.cli import main
from qualgate.errors import InputError
from qualgate.index import KeyIndex, jaccard
from qualgate.minhashing import Shingler, optimal_bands, permutations, shingle_hash, signatures

WORDS = [f"w{i}" for i in range(5000)]


def doc(rng: random.Random, n: int = 120) -> list[str]:
    return rng.sample(WORDS, n)


def edit(words: list[str], n_changes: int, rng: random.Random) -> list[str]:
    out = list(words)
    for pos in rng.sample(range(len(out)), n_changes):
        out[pos] = f"x{rng.randrange(10**9)}"
    return out


def nd_gate(batch_size: int = 512, **params: Any) -> Gate:
    return Gate.from_config({"version": 1, "input": {"text": "text"},
                             "checks": [{"check": "near_duplicate", **params}]}, batch_size=batch_size)


def true_jaccard(a: str, b: str, sh: Shingler | None = None) -> float:
    sh = sh or Shingler()
    sa = {" ".join(s) for s in sh.shingles(sh.normalize(a))}
    sb = {" ".join(s) for s in sh.shingles(sh.normalize(b))}
    return len(sa & sb) / len(sa | sb)


# --------------------------------------------------------------------------------- datasketch parity
@pytest.mark.parametrize("unit,ngram", [("word", 5), ("word", 1), ("word", 3), ("char", 5)])
@pytest.mark.parametrize("num_perm,seed", [(128, 1), (64, 7), (256, 42)])
def test_signatures_equal_datasketch_bulk_bit_for_bit(unit: str, ngram: int, num_perm: int, seed: int) -> None:
    rng = random.Random(seed)
    texts = [" ".join(doc(rng, rng.randrange(1, 300))) for _ in range(40)]
    texts += ["", "One.", "Ünïcödé — text, with: punctuation!! 123", "日本語のテキストです。短い。", "a b c d"]
    sh = Shingler(ngram, unit)
    norm = [sh.normalize(t) for t in texts]
    sets = sh.hash_sets(norm)
    perms = permutations(num_perm, seed)
    assert np.array_equal(perms, MinHash(num_perm=num_perm, seed=seed).permutations)
    ours = signatures(sets, perms)
    shingles = [[" ".join(s) if unit == "word" else s for s in sh.shingles(n)] for n in norm]
    theirs = MinHash.bulk(shingles, num_perm=num_perm, seed=seed, hashfunc=shingle_hash)
    for i, m in enumerate(theirs):
        assert np.array_equal(ours[i], m.hashvalues), texts[i][:60]
        ref = np.unique(np.array([shingle_hash(s) for s in shingles[i]], dtype=np.uint32))
        assert np.array_equal(sets[i], ref)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(min_size=0, max_size=200), min_size=1, max_size=8))
def test_signatures_equal_datasketch_on_random_unicode(texts: list[str]) -> None:
    sh = Shingler(3)
    norm = [sh.normalize(t) for t in texts]
    perms = np.asarray(MinHash(num_perm=32, seed=1).permutations)
    ours = signatures(sh.hash_sets(norm), perms)
    theirs = MinHash.bulk([[" ".join(s) for s in sh.shingles(n)] for n in norm], num_perm=32, seed=1,
                          hashfunc=shingle_hash)
    assert all(np.array_equal(ours[i], m.hashvalues) for i, m in enumerate(theirs))


def test_signatures_work_in_datasketch_lsh() -> None:
    rng = random.Random(3)
    base = doc(rng)
    texts = [" ".join(base), " ".join(edit(base, 1, rng)), " ".join(doc(rng))]
    sh = Shingler()
    perms = np.asarray(MinHash(num_perm=128, seed=1).permutations)
    sigs = signatures(sh.hash_sets([sh.normalize(t) for t in texts]), perms)
    lsh = MinHashLSH(threshold=0.8, num_perm=128)
    for i, sig in enumerate(sigs):
        lsh.insert(str(i), LeanMinHash(seed=1, hashvalues=sig, scheme="affine32"))
    assert set(lsh.query(LeanMinHash(seed=1, hashvalues=sigs[1], scheme="affine32"))) == {"0", "1"}


def test_normalisation_and_short_texts() -> None:
    sh = Shingler(5)
    assert sh.normalize("  Hello,   WORLD!! It's\tＦｕｌｌ-width ") == "hello world it s full width"
    assert Shingler(5, normalize_digits=True).normalize("Call 555-1234") == "call 000 0000"
    assert sh.shingles("only three words") == [["only", "three", "words"]]
    assert len(sh.hash_sets(["only three words"])[0]) == 1


# ------------------------------------------------------------------------------------- decisions
@pytest.mark.parametrize("changes", [0, 1, 2, 3, 5, 8, 12, 20, 40])
def test_known_pairs_above_and_below_threshold(changes: int) -> None:
    rng = random.Random(changes)
    base = doc(rng)
    a, b = " ".join(base), " ".join(edit(base, changes, rng))
    j = true_jaccard(a, b)
    result = nd_gate().run([{"text": a}, {"text": b}])
    first, second = result.decisions
    assert first.accepted
    if j >= 0.8:
        (f,) = second.findings
        assert f.reason == ("exact_duplicate" if changes == 0 else "near_duplicate")
        assert f.evidence["duplicate_of"] == first.id and f.score == pytest.approx(j, abs=1e-6)
        assert f.threshold == (1.0 if changes == 0 else 0.8)
    else:
        score = second.scores["near_duplicate.jaccard"]
        assert second.accepted and (score == 0.0 or score == pytest.approx(j, abs=1e-6))  # 0: never a candidate


def test_exact_duplicate_after_normalisation() -> None:
    result = nd_gate().run([{"text": "The cat sat on the mat."}, {"text": "the CAT sat on... the mat"}])
    f = result.decisions[1].findings[0]
    assert f.reason == "exact_duplicate" and f.evidence["duplicate_of"] == result.decisions[0].id


def test_keep_first_is_deterministic_and_order_sensitive() -> None:
    rng = random.Random(11)
    base = doc(rng)
    texts = [" ".join(edit(base, k, rng)) for k in (0, 1, 2, 1)] + [" ".join(doc(rng)) for _ in range(5)]
    records = [{"text": t} for t in texts]
    runs = [[(d.accepted, [f.to_dict() for f in d.findings]) for d in nd_gate(batch_size=b).run(records).decisions]
            for b in (512, 1, 3)]
    assert runs[0] == runs[1] == runs[2]
    assert [ok for ok, _ in runs[0]][:4] == [True, False, False, False]
    rev = nd_gate().run(list(reversed(records))).decisions
    assert rev[-1].accepted is False and rev[-4].accepted is True  # now the last copy is the one kept


def test_no_chaining_through_rejected_samples() -> None:
    rng = random.Random(5)
    a = doc(rng)
    b = edit(a, 7, rng)  # near a
    c = edit(b, 7, rng)  # near b, not near a
    texts = [" ".join(x) for x in (a, b, c)]
    assert true_jaccard(texts[0], texts[1]) >= 0.5 > true_jaccard(texts[0], texts[2])
    assert true_jaccard(texts[1], texts[2]) >= 0.5
    decisions = nd_gate(threshold=0.5).run([{"text": t} for t in texts]).decisions
    assert decisions[1].findings and decisions[1].findings[0].evidence["duplicate_of"] == decisions[0].id
    assert decisions[2].accepted  # similar to the rejected b only: b is not kept, so c is not its duplicate


def test_gate_reuse_starts_from_an_empty_index() -> None:
    gate = nd_gate()
    records = [{"text": "a sentence that is long enough to shingle"}, {"text": "something else entirely here"}]
    assert all(d.accepted for d in gate.run(records).decisions)
    assert all(d.accepted for d in gate.run(records).decisions)


def test_samples_rejected_earlier_are_not_kept() -> None:
    cfg = {"version": 1, "input": {"text": "text"}, "checks": [
        {"check": "pattern", "forbidden": ["BAD"]}, {"check": "near_duplicate"}]}
    text = "one two three four five six seven eight"
    records = [{"text": text + " BAD"}, {"text": text + " bad"}]
    for all_findings in (False, True):
        ds = Gate.from_config(cfg, all_findings=all_findings).run(records).decisions
        assert [f.check for f in ds[0].findings] == ["pattern"]
        assert ds[1].accepted  # its exact twin was rejected by `pattern`, so it was never kept


def test_cluster_guard_reports_largest_clusters() -> None:
    texts = ["the same generated answer again and again"] * 5 + ["something different for a change"]
    result = nd_gate(max_cluster_size=2).run([{"text": t} for t in texts])
    sec = result.report["sets"]["near_duplicate"]
    top = sec["largest_clusters"][0]
    assert top["duplicates"] == 4 and top["kept"] == result.decisions[0].id
    assert len(result.report["warnings"]) == 1 and "absorbed 4 duplicates" in result.report["warnings"][0]


def test_field_option_hashes_only_that_field() -> None:
    gate = Gate.from_config({"version": 1, "checks": [{"check": "near_duplicate", "field": "output"}]})
    same_answer = "Paris is the capital and the largest city of France."
    ds = gate.run([{"instruction": "Capital of France?", "output": same_answer},
                   {"instruction": "Which city is the French capital?", "output": same_answer}]).decisions
    assert ds[1].findings[0].reason == "exact_duplicate"


def test_params_validation() -> None:
    from qualgate import ConfigError

    with pytest.raises(ConfigError, match="exceeds num_perm"):
        nd_gate(bands=20, rows=10)
    with pytest.raises(ConfigError, match="both bands and rows"):
        nd_gate(bands=20)
    assert optimal_bands(0.8, 128) == (21, 6)


# ------------------------------------------------------------------------------------- baseline
def write_jsonl(path: Path, texts: list[str]) -> Path:
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    return path


def test_baseline_never_rejected_and_cache_reused(tmp_path: Path) -> None:
    rng = random.Random(2)
    base_docs = [" ".join(doc(rng)) for _ in range(20)]
    base_docs.append(base_docs[0])  # a duplicate inside the baseline: still never rejected
    baseline = write_jsonl(tmp_path / "base.jsonl", base_docs)
    new = write_jsonl(tmp_path / "new.jsonl", [" ".join(edit(base_docs[3].split(), 2, rng)),
                                                " ".join(doc(rng)), base_docs[5]])
    cfg = tmp_path / "c.yaml"
    cfg.write_text("version: 1\ninput: {text: text}\nchecks:\n  - check: near_duplicate\n")
    cache = tmp_path / "cache"
    outs = []
    for n in range(2):
        out = tmp_path / f"out{n}"
        res = CliRunner().invoke(main, ["filter", str(new), "-c", str(cfg), "-o", str(out), "--baseline",
                                        str(baseline), "--cache-dir", str(cache), "-q", "-j", "1"])
        assert res.exit_code == 0, res.output
        report = json.loads((out / "report.json").read_text())
        assert report["total"] == 3 and report["baseline"]["records"] == 20  # the exact copy is not indexed
        assert report["baseline"]["not_indexed"] == {"near_duplicate": 1}
        assert report["baseline"]["cache"]["near_duplicate"]["status"] == ("miss" if n == 0 else "hit")
        rejected = [json.loads(x) for x in (out / "rejected.jsonl").read_text().splitlines()]
        assert [r["qualgate"]["findings"][0]["reason"] for r in rejected] == ["near_duplicate", "exact_duplicate"]
        for r in rejected:
            ev = r["qualgate"]["findings"][0]["evidence"]
            assert ev["in_baseline"] is True and ev["duplicate_source"]["file"] == str(baseline)
        assert len((out / "accepted.jsonl").read_text().splitlines()) == 1
        outs.append([r["qualgate"]["findings"] for r in rejected])
    assert outs[0] == outs[1]
    assert len(list(cache.glob("near_duplicate-*.npz"))) == 1
    write_jsonl(baseline, base_docs[:10])  # changed content: a new cache entry
    res = CliRunner().invoke(main, ["filter", str(new), "-c", str(cfg), "-o", str(tmp_path / "o3"), "--baseline",
                                    str(baseline), "--cache-dir", str(cache), "-q", "-j", "1"])
    report = json.loads((tmp_path / "o3" / "report.json").read_text())
    assert report["baseline"]["cache"]["near_duplicate"]["status"] == "miss" and report["baseline"]["records"] == 10
    assert len(list(cache.glob("near_duplicate-*.npz"))) == 2


def test_baseline_with_library_and_no_cache(tmp_path: Path) -> None:
    baseline = write_jsonl(tmp_path / "b.jsonl", ["an answer that already exists in the dataset", "{bad"])
    (tmp_path / "b.jsonl").write_text((tmp_path / "b.jsonl").read_text() + "not json\n")
    gate = nd_gate()
    info = gate.load_baseline([str(baseline)], cache_dir=None)
    assert info["records"] == 2 and info["skipped"] == 1 and info["cache"]["near_duplicate"]["status"] == "disabled"
    ds = gate.run([{"text": "An answer that already exists in the dataset!"}]).decisions
    assert ds[0].findings[0].evidence["in_baseline"] is True


# ---------------------------------------------------------------------------------------- index
@settings(max_examples=50, deadline=None)
@given(st.lists(st.lists(st.integers(0, 30), max_size=20), min_size=1, max_size=12),
       st.lists(st.integers(0, 40), max_size=30))
def test_key_index_matches_a_dict(batches: list[list[int]], queries: list[int]) -> None:
    for fingerprint in (False, True):
        _check_key_index(KeyIndex(fingerprint=fingerprint), batches, queries)


def _check_key_index(idx: KeyIndex, batches: list[list[int]], queries: list[int]) -> None:
    ref: dict[int, list[int]] = {}
    value = 0
    for batch in batches:
        vals = np.arange(value, value + len(batch), dtype=np.int64)
        idx.add(np.asarray(batch, dtype=np.uint64), vals)
        for k, v in zip(batch, vals.tolist(), strict=True):
            ref.setdefault(k, []).append(v)
        value += len(batch)
    pos, vals = idx.query(np.asarray(queries, dtype=np.uint64))
    got = sorted(zip(pos.tolist(), vals.tolist(), strict=True))
    assert got == sorted((p, v) for p, q in enumerate(queries) for v in ref.get(q, []))
    assert len(idx) == value
    again = KeyIndex.from_state(idx.state())
    pos2, vals2 = again.query(np.asarray(queries, dtype=np.uint64))
    assert sorted(zip(pos2.tolist(), vals2.tolist(), strict=True)) == got


def test_key_index_grows_past_many_resizes() -> None:
    rng = np.random.default_rng(0)
    for fingerprint in (False, True):
        idx = KeyIndex(fingerprint=fingerprint)
        keys = rng.integers(0, 2**63, 50_000, dtype=np.uint64)
        for lo in range(0, len(keys), 5000):
            idx.add(keys[lo:lo + 5000], np.arange(lo, lo + 5000))
        pos, vals = idx.query(keys[::7])
        assert np.array_equal(np.sort(pos), np.arange(len(keys[::7]))) and np.array_equal(vals, pos * 7)


def test_jaccard() -> None:
    a, b = np.array([1, 2, 3], np.uint32), np.array([2, 3, 4, 5], np.uint32)
    assert jaccard(a, b) == 2 / 5 and jaccard(a, a) == 1.0


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(max_codepoint=127), max_size=80), st.booleans())
def test_ascii_fast_path_equals_unicode_normalisation(text: str, digits: bool) -> None:
    import re
    import unicodedata

    sh = Shingler(5, normalize_digits=digits)
    slow = unicodedata.normalize("NFKC", text).casefold()
    slow = re.sub(r"\d", "0", slow) if digits else slow
    assert sh.normalize(text) == re.sub(r"[\W_]+", " ", slow).strip()


def test_baseline_replaces_earlier_state_and_survives_a_corrupt_cache(tmp_path: Path) -> None:
    text = "lorem ipsum dolor sit amet consectetur adipiscing elit sed do"
    a = write_jsonl(tmp_path / "a.jsonl", ["the first baseline has this one answer in it"])
    b = write_jsonl(tmp_path / "b.jsonl", ["the second baseline holds a different answer"])
    (tmp_path / "b.jsonl").write_text((tmp_path / "b.jsonl").read_text() + "{broken\n")
    cache = tmp_path / "cache"
    gate = nd_gate()
    gate.run([{"text": text}])
    assert gate.load_baseline([str(a)], cache_dir=cache)["records"] == 1  # nothing of the run leaks in
    info = gate.load_baseline([str(b)], cache_dir=cache)
    assert info["records"] == 1 and info["skipped"] == 1
    assert gate.run([{"text": text}]).decisions[0].accepted
    assert gate.run([{"text": "the first baseline has this one answer in it"}]).decisions[0].accepted
    hit = nd_gate().load_baseline([str(b)], cache_dir=cache)
    assert hit["cache"]["near_duplicate"]["status"] == "hit" and hit["skipped"] == 1 and hit["records"] == 1
    for npz in cache.glob("*.npz"):
        npz.write_bytes(npz.read_bytes()[:200])  # truncated: not a zip any more
    again = nd_gate()
    info = again.load_baseline([str(b)], cache_dir=cache)
    assert info["cache"]["near_duplicate"]["status"] == "miss" and info["records"] == 1
    assert again.run([{"text": "The second baseline holds a different answer."}]).decisions[0].findings


def test_baseline_records_without_the_field_are_not_indexed(tmp_path: Path) -> None:
    base = tmp_path / "f.jsonl"
    base.write_text(json.dumps({"text": "a", "foo": "an answer that the baseline has"}) + "\n"
                    + json.dumps({"text": "b"}) + "\n")
    gate = Gate.from_config({"version": 1, "input": {"text": "text"},
                             "checks": [{"check": "near_duplicate", "field": "foo"}]})
    info = gate.load_baseline([str(base)])
    assert info["records"] == 1 and info["not_indexed"] == {"near_duplicate": 1}


def test_ids_round_trip_exactly_through_the_cache(tmp_path: Path) -> None:
    base = tmp_path / "i.jsonl"
    base.write_text(json.dumps({"id": "abc\u0000", "text": "an answer with an odd identifier"}) + "\n")
    gate = Gate.from_config({"version": 1, "input": {"text": "text", "id": "id"},
                             "checks": [{"check": "near_duplicate"}]})
    gate.load_baseline([str(base)], cache_dir=tmp_path / "c")
    again = Gate.from_config(gate.config)
    again.load_baseline([str(base)], cache_dir=tmp_path / "c")
    d = again.run([{"id": "n1", "text": "An answer with an odd identifier!"}]).decisions[0]
    assert d.findings[0].evidence["duplicate_of"] == "abc\x00"


def test_one_huge_document_equals_datasketch() -> None:
    rng = random.Random(9)
    text = " ".join(rng.choice(WORDS) for _ in range(30_000))  # > 8192 shingles: signature computed in slices
    sh = Shingler()
    norm = sh.normalize(text)
    sets = sh.hash_sets([norm, "short one"])
    ours = signatures(sets, permutations(64, 1))
    (theirs,) = MinHash.bulk([[" ".join(s) for s in sh.shingles(norm)]], num_perm=64, seed=1, hashfunc=shingle_hash)
    assert len(sets[0]) > 8192 and np.array_equal(ours[0], theirs.hashvalues)


def _workers_input(path: Path) -> list[bytes]:
    """1,300 JSONL lines: the lines past the first 1,000 (the preamble head, parsed in the main process) are
    parsed by the worker processes; among them near-duplicates, an exact copy and bad input of every kind."""
    rng = random.Random(7)
    texts = [" ".join(doc(rng, 60)) for _ in range(1290)]
    lines = [json.dumps({"id": f"r{i}", "text": t}).encode() for i, t in enumerate(texts)]
    lines[1100] = json.dumps({"id": "near", "text": " ".join(edit(texts[5].split(), 1, rng))}).encode()
    lines[1101] = json.dumps({"id": "copy", "text": texts[1050].upper()}).encode()
    lines[1200:1200] = [b'{"id": "bad", "text": ', b'["not an object"]', b'{"id": "dup", "id": "dup2"}',
                        b'{"id": "notext"}', b'{"id": "null", "text": null}', b'{"id": "latin", "text": "caf\xe9"}']
    path.write_bytes(b"\n".join(lines) + b"\n")
    return lines


def _outcome(gate: Gate, path: Path) -> list[tuple[str, bool, list[str], bytes | None]]:
    decisions = gate.stream(gate.read([str(path)]))
    return [(d.id, d.accepted, [f.reason for f in d.findings], d.sample.raw) for d in decisions]


def _id_gate(**options: Any) -> Gate:
    return Gate.from_config({"version": 1, "input": {"text": "text", "id": "id"},
                             "checks": [{"check": "near_duplicate"}]}, batch_size=128, **options)


def test_workers_parse_raw_lines_with_the_same_decisions(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    lines = _workers_input(path)
    deferred = list(_id_gate().read([str(path)]).lines() or [])
    assert len(deferred) == len(lines) and all(r.deferred and r.record is None for r in deferred)
    assert deferred[1206].parsed().record == {"id": "r1200", "text": json.loads(lines[1206])["text"]}
    one = _outcome(_id_gate(), path)
    two = _id_gate(workers=2)
    assert two._parses_in_workers()
    assert _outcome(two, path) == one
    by_id = {i: (ok, why) for i, ok, why, _ in one}
    assert by_id["near"] == (False, ["near_duplicate"]) and by_id["copy"] == (False, ["exact_duplicate"])
    assert sorted(why[0] for _, ok, why, _ in one if not ok and why[0] not in ("near_duplicate", "exact_duplicate")) \
        == ["duplicate_key", "invalid_json", "invalid_utf8", "missing_field", "not_an_object", "wrong_type"]
    accepted = {raw for _, ok, _, raw in one if ok}
    assert lines[1290] in accepted and lines[1100] not in accepted  # verbatim bytes, from the main process


def test_strict_names_the_line_a_worker_parsed(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    _workers_input(path)
    gate = _id_gate(strict=True, workers=2)
    with pytest.raises(InputError) as err:
        _outcome(gate, path)
    assert err.value.file == str(path) and err.value.line == 1201


def test_a_run_leaves_the_garbage_collector_as_it_found_it() -> None:
    """The gate freezes what is loaded during a run (fewer full collections); a library user's process must get
    its collector back afterwards, and a freeze of their own must survive the run."""
    import gc

    from qualgate import Gate

    records = [{"id": str(i), "text": f"record number {i} says something about gardens and tomatoes"} for i in range(5)]
    Gate.from_config("default").run(records)
    assert gc.get_freeze_count() == 0
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        Gate.from_config("default").run(records)
        assert gc.get_freeze_count() > frozen // 2  # not unfrozen by the run (refcounting may free a few)
    finally:
        gc.unfreeze()
