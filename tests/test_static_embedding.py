"""The torch-free static backend (``model: wordllama``) and the embedding read-ahead window, on the real packaged
weights (the wordllama wheel: 16 MB, loads in ~0.1 s, so these run by default)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from qualgate import Gate
from tests.conftest import FIXTURES

for _module in ("wordllama", "faiss"):
    if __import__("importlib.util").util.find_spec(_module) is None:
        if os.environ.get("QUALGATE_REQUIRE_EMBED") == "1":
            raise RuntimeError(f"QUALGATE_REQUIRE_EMBED=1 but {_module} is not installed")
        pytest.skip(f"needs the embed extra ({_module} missing)", allow_module_level=True)

PARAPHRASES = {"bread-2": "bread-1", "tea-2": "tea-1", "prime-2": "prime-1", "photosynthesis-2": "photosynthesis"}
STATIC = {"check": "semantic_duplicate", "model": "wordllama"}


def _records() -> list[dict[str, Any]]:
    return [json.loads(x) for x in (FIXTURES / "semantic_sample.jsonl").read_text().splitlines() if x.strip()]


def _run(check: dict[str, Any], records: list[dict[str, Any]], **gate: Any) -> Any:
    return Gate.from_config({"version": 1, "input": {"id": "id"}, "checks": [check]}, **gate).run(records)


def _verdicts(result: Any) -> list[tuple[str, bool, Any, Any]]:
    return [(d.id, d.accepted, d.scores["semantic_duplicate.cosine"],
             [f.evidence.get("duplicate_of") for f in d.findings]) for d in result.decisions]


def test_static_default_catches_reworded_copies_not_paraphrases() -> None:
    """At its default (0.92) the static model rejects what repeats the kept sample's words in another order or
    with a few changed (bread-2, tea-2); paraphrases in other words (photosynthesis-2 0.90, prime-2 0.88) pass,
    which MiniLM catches: on Alpaca it found 10% of MiniLM's natural duplicates (bench/RESULTS.md)."""
    result = _run(STATIC, _records(), cache_dir=None)
    rejected = {d.id: d.findings[0] for d in result.decisions if not d.accepted}
    assert set(rejected) == {"bread-2", "tea-2"}
    for sid, f in rejected.items():
        assert (f.reason, f.evidence["duplicate_of"]) == ("semantic_duplicate", PARAPHRASES[sid])
        assert f.threshold == 0.92 and f.score >= 0.92
    section = result.report["sets"]["semantic_duplicate"]["embedder"]
    assert (section["model"], section["dim"], section["device"]) == ("wordllama", 256, "cpu")


def test_static_lower_threshold_catches_the_paraphrases_and_keeps_related_topics() -> None:
    result = _run({**STATIC, "threshold": 0.85}, _records(), cache_dir=None)
    rejected = {d.id: d.findings[0].evidence["duplicate_of"] for d in result.decisions if not d.accepted}
    assert rejected == PARAPHRASES
    by_id = {d.id: d for d in result.decisions}  # same form, another subject
    assert by_id["mountain-poem"].accepted and by_id["mountain-poem"].scores["semantic_duplicate.cosine"] < 0.5


def test_vectors_equal_wordllamas_own_inference() -> None:
    """Mean of the token rows, normalised: what WordLlamaInference.embed(norm=True) gives for the text with its
    whitespace runs made single spaces, built from the same files the way MODELS.md says (WordLlama.load() itself
    fails offline). Without that, newline and indentation tokens weighed so much in the mean that a list re-joined
    on one line fell to cosine 0.76 with itself."""
    from safetensors.numpy import load_file
    from tokenizers import Tokenizer
    from wordllama import WordLlamaInference

    from qualgate.embed import Embedder, static_model_path

    folder = static_model_path()
    theirs = WordLlamaInference(load_file(str(folder / "weights/l2_supercat_256.safetensors"))["embedding.weight"],
                                Tokenizer.from_file(str(folder / "tokenizers/l2_supercat_tokenizer_config.json")))
    texts = [r["instruction"] + "\n" + r["output"] for r in _records()]
    ours = Embedder("wordllama", "auto", 4, None).encode(texts)
    assert np.allclose(ours, theirs.embed([" ".join(t.split()) for t in texts], norm=True), atol=1e-6)
    assert not np.allclose(ours, theirs.embed(texts, norm=True), atol=1e-3)
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-6)


def test_empty_and_unknown_texts_get_unit_vectors() -> None:
    from qualgate.embed import Embedder

    vecs = Embedder("wordllama", "auto", 64, None).encode(["", "   ", "\ud800 lone surrogate", "ok", ""])
    assert np.isfinite(vecs).all() and np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-6)
    assert vecs[0] @ vecs[4] == pytest.approx(1.0)  # two texts without tokens are the same, and like nothing else
    assert abs(vecs[0] @ vecs[3]) < 0.5


def test_static_backend_imports_no_torch_and_needs_no_network(tmp_path: Path) -> None:
    """The point of the backend: a CPU run without torch or sentence-transformers installed, and no network
    (where ``unshare -n`` can cut it, the run goes through a namespace without one). The heavy packages are
    hidden from the import system, as on a `pip install ".[static]"` machine, so an install check that still
    asks for sentence-transformers (the diversity report's once did) fails here."""
    code = ("import json, sys\n"
            "class Hidden:\n"
            "    def __init__(self, finder): self.finder = finder\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] in ('torch', 'sentence_transformers', 'transformers'): return None\n"
            "        return self.finder.find_spec(name, path, target) if hasattr(self.finder, 'find_spec') else None\n"
            "sys.meta_path[:] = [Hidden(f) for f in sys.meta_path]\n"
            "from qualgate import Gate\n"
            f"records = [json.loads(x) for x in open({str(FIXTURES / 'semantic_sample.jsonl')!r}) if x.strip()]\n"
            "gate = Gate.from_config({'version': 1, 'input': {'id': 'id'}, 'checks': [{'check': 'semantic_duplicate',"
            " 'model': 'wordllama', 'threshold': 0.85}, {'check': 'private_leak', 'model': 'wordllama'}],"
            " 'diversity': {'model': 'wordllama'}},"
            " cache_dir=sys.argv[1])\n"
            "gate.load_set('private', [sys.argv[2]], cache_dir=sys.argv[1])\n"
            "result = gate.run(records)\n"
            "assert result.report['diversity']['model'] == 'wordllama'\n"
            "print(json.dumps([sum(not d.accepted for d in result.decisions),"
            " [m for m in ('torch', 'sentence_transformers', 'transformers') if m in sys.modules]]))\n")
    private = tmp_path / "private.jsonl"
    private.write_text(json.dumps({"id": "p1", "text": "Who was Napoleon Bonaparte?"}) + "\n")
    cmd = [sys.executable, "-c", code, str(tmp_path / "cache"), str(private)]
    if shutil.which("unshare") and subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0:
        cmd = ["unshare", "-n", *cmd]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_"))}
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env, cwd=Path(__file__).parent.parent)
    rejected, heavy = json.loads(out.stdout.strip().splitlines()[-1])
    assert rejected == len(PARAPHRASES) and heavy == []


@pytest.mark.parametrize("batch", [1, 3, 512])
def test_read_ahead_window_changes_no_decision_and_embeds_ahead(batch: int, tmp_path: Path) -> None:
    """With a window the check embeds up to ``window`` samples in one call before the batches that need them
    (then served from memory); decisions, scores and named kept samples are those of embedding batch by batch.
    (Each run gets its own cache folder, hence its own embedder and an empty memory.)"""
    records = _records()
    alone = _run({**STATIC, "window": 0}, records, batch_size=batch, cache_dir=tmp_path / "alone")
    ahead = _run(STATIC, records, batch_size=batch, cache_dir=tmp_path / "ahead")
    assert _verdicts(alone) == _verdicts(ahead)
    assert ahead.report["sets"]["semantic_duplicate"]["embedder"]["memo_hits"] >= len(records)
    assert alone.report["sets"]["semantic_duplicate"]["embedder"]["memo_hits"] == 0


@pytest.mark.parametrize("workers", [1, 2])
def test_read_ahead_embeds_only_what_the_rules_let_through(workers: int, tmp_path: Path) -> None:
    """Samples a per-sample check rejected are not embedded, ahead or at all, whether the rules ran here or in
    worker processes (``-j 2``: the window's embeddings are still made here); the decisions do not change."""
    records = _records() + [{"id": f"short-{i}", "instruction": "Hi", "output": f"x{i}"} for i in range(5)]
    cfg = {"version": 1, "input": {"id": "id"},
           "checks": [{"check": "length", "min_words": 5}, STATIC]}
    result = Gate.from_config(cfg, batch_size=4, workers=workers, cache_dir=tmp_path).run(records)
    assert sum(d.findings[0].check == "length" for d in result.decisions if not d.accepted) == 5
    stats = result.report["sets"]["semantic_duplicate"]["embedder"]
    assert stats["embedded"] == len(_records()) and stats["memo_hits"] >= len(_records())
    assert {d.id for d in result.decisions if not d.accepted and d.findings[0].check == "semantic_duplicate"} \
        == {"bread-2", "tea-2"}

