"""Shared preambles (qualgate/preamble.py): dedup compares what follows a long prefix most records share.

fixtures/tool_use_sample.jsonl: 26 tool-use chats behind one 173-word system prompt (tool descriptions), plus
three true duplicates: an exact copy of t01, t07 with only case and spacing changed, t20 with one word changed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from qualgate import Gate
from qualgate.cli import main
from qualgate.io import read_records
from qualgate.preamble import HEAD, MIN_RECORDS, MIN_WORDS, Preamble, detect
from tests.conftest import FIXTURES, require_embed

TOOL_USE = FIXTURES / "tool_use_sample.jsonl"
RECORDS = [json.loads(x) for x in TOOL_USE.read_text().splitlines() if x.strip()]
SYSTEM = RECORDS[0]["messages"][0]["content"]
TRUE_DUPLICATES = {"dup-exact": "t01", "dup-case": "t07", "dup-near": "t20"}


def nd_gate(batch_size: int = 512, workers: int = 1, **params: Any) -> Gate:
    cfg = {"version": 1, "input": {"id": "id"}, "checks": [{"check": "length", "min_words": 1},
                                                           {"check": "near_duplicate", **params}]}
    return Gate.from_config(cfg, batch_size=batch_size, workers=workers, cache_dir=None)


def duplicates(gate: Gate, records: list[dict[str, Any]]) -> dict[str, str]:
    return {d.id: f.evidence["duplicate_of"] for d in gate.run(records).decisions for f in d.findings}


def chat(sid: str, user: str, answer: str, system: str = SYSTEM) -> dict[str, Any]:
    return {"id": sid, "messages": [{"role": "system", "content": system}, {"role": "user", "content": user},
                                    {"role": "assistant", "content": answer}]}


# ---------------------------------------------------------------------------------------------- decisions
def test_without_the_option_the_preamble_merges_different_tasks() -> None:
    """The problem is real: "weather in NYC today" is a near-duplicate of "weather in LA tomorrow" (Jaccard 0.90),
    and 25 of the 26 different tasks are merged into t01."""
    found = duplicates(nd_gate(drop_shared_prefix=False), RECORDS)
    assert found["t02"] == "t01" and len(found) == 26 and set(found.values()) <= {"t01", "t20"}


def test_with_the_option_only_true_duplicates_are_caught() -> None:
    result = nd_gate().run(RECORDS)
    found = {d.id: d.findings[0] for d in result.decisions if d.findings}
    assert {sid: f.evidence["duplicate_of"] for sid, f in found.items()} == TRUE_DUPLICATES
    assert [found[s].reason for s in TRUE_DUPLICATES] == ["exact_duplicate", "exact_duplicate", "near_duplicate"]
    for f in found.values():
        assert f.evidence["shared_prefix_dropped"] == {"words": 173, "chars": len(SYSTEM)}
        assert "after dropping the shared 173-word prefix" in f.message


def test_the_option_is_on_by_default() -> None:
    assert nd_gate().checks[-1].params.drop_shared_prefix is True


def test_same_decisions_for_every_batch_size_worker_count_and_checkpoint(tmp_path: Path) -> None:
    """Detection reads a fixed head of the input, never a batch; worker processes (which build their checks from
    the config) and a checkpointed run get the prefix the run detected, and drop the same."""
    want = duplicates(nd_gate(batch_size=1), RECORDS)
    assert want == TRUE_DUPLICATES
    for batch in (2, 7, len(RECORDS), 512):
        assert duplicates(nd_gate(batch_size=batch), RECORDS) == want, batch
    assert duplicates(nd_gate(batch_size=5, workers=2), RECORDS) == want
    ahead = Gate.from_config({"version": 1, "input": {"id": "id"}, "checks": [{"check": "near_duplicate"}]},
                             batch_size=5, cache_dir=None, checkpoint_dir=tmp_path)
    assert duplicates(ahead, RECORDS) == want


def test_records_without_the_prefix_are_compared_whole() -> None:
    """A copy of a task without the preamble is the same task: it matches the record that has one (whose text was
    compared without it); a record with another system prompt keeps its own and is no duplicate."""
    plain = chat("plain", RECORDS[1]["messages"][1]["content"], RECORDS[1]["messages"][2]["content"])
    plain["messages"] = plain["messages"][1:]
    other = chat("other", RECORDS[1]["messages"][1]["content"], RECORDS[1]["messages"][2]["content"],
                 system="You are a weather bot. " * 10)
    result = nd_gate().run([*RECORDS, plain, other])
    by_id = {d.id: d for d in result.decisions}
    (f,) = by_id["plain"].findings
    assert f.reason == "exact_duplicate" and f.evidence["duplicate_of"] == "t02"
    assert "shared_prefix_dropped" not in f.evidence  # its own text was compared as it is
    assert by_id["other"].accepted


def test_a_baseline_is_stripped_alike_and_decides_the_prefix(tmp_path: Path) -> None:
    """With a baseline the prefix comes from its head, so both sides drop the same words; a cached baseline
    index keeps it."""
    base = tmp_path / "base.jsonl"
    base.write_text("".join(json.dumps(r) + "\n" for r in RECORDS[:26]))
    new = [chat("n1", "What's the weather in Chicago on Sunday?", '{"tool": "get_weather", "arguments": '
                '{"city": "Chicago", "date": "sunday"}}'), {**RECORDS[1], "id": "n2"}]
    for status in ("miss", "hit"):
        gate = Gate.from_config({"version": 1, "input": {"id": "id"}, "checks": [{"check": "near_duplicate"}]},
                                cache_dir=tmp_path / "cache")
        info = gate.load_baseline([str(base)], cache_dir=tmp_path / "cache")
        assert info["cache"]["near_duplicate"]["status"] == status
        result = gate.run(new)
        by_id = {d.id: d for d in result.decisions}
        assert by_id["n1"].accepted, by_id["n1"].findings
        (f,) = by_id["n2"].findings
        assert f.evidence["duplicate_of"] == "t02" and f.evidence["in_baseline"]
        assert f.evidence["shared_prefix_dropped"]["words"] == 173
        prefix = result.report["sets"]["near_duplicate"]["shared_prefix"]
        assert (prefix["detected_from"], prefix["records_carrying"], prefix["head"]) == ("baseline", 26, 26)


def test_a_given_prefix_is_dropped_without_detection() -> None:
    """Four records are too few to detect anything; a prefix given in the config needs none."""
    sample = RECORDS[:3] + RECORDS[-3:-2]
    assert duplicates(nd_gate(), sample) == {"t02": "t01", "t03": "t01", "dup-exact": "t01"}
    gate = nd_gate(shared_prefix=SYSTEM)
    assert duplicates(gate, sample) == {"dup-exact": "t01"}
    assert gate.report_sections()["near_duplicate"]["shared_prefix"] == {
        "found": True, "words": 173, "chars": len(SYSTEM), "excerpt": SYSTEM[:110] + " … " + SYSTEM[-40:],
        "detected_from": "config"}


# ------------------------------------------------------------------------------------------------- report
def test_the_report_names_the_prefix(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("version: 1\ninput: {id: id}\nchecks:\n  - check: near_duplicate\n")
    res = CliRunner().invoke(main, ["filter", str(TOOL_USE), "-c", str(cfg), "-o", str(tmp_path / "out"), "-q",
                                    "--no-html", "--no-cache"])
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    prefix = report["sets"]["near_duplicate"]["shared_prefix"]
    assert prefix["words"] == 173 and prefix["chars"] == len(SYSTEM) and prefix["share"] == 1.0
    assert prefix["excerpt"].startswith("You are a helpful assistant with access to the following tools.")
    assert prefix["excerpt"].endswith("Keep answers short and polite.")
    md = (tmp_path / "out" / "report.md").read_text()
    assert "## Shared prefix dropped (near_duplicate)" in md
    assert ("A 173-word (1160-character) prefix, carried by 28 of the 28 distinct texts among the first 29 input "
            "records (100%), was dropped") in md
    rejected = [json.loads(x)["id"] for x in (tmp_path / "out" / "rejected.jsonl").read_text().splitlines()]
    assert rejected == list(TRUE_DUPLICATES)


def test_nothing_found_is_reported_as_such() -> None:
    gate = nd_gate()
    gate.run([{"id": str(i), "text": f"Record {i} talks about topic {i} in its own words."} for i in range(30)])
    assert gate.report_sections()["near_duplicate"]["shared_prefix"] == {"found": False, "head": 30,
                                                                        "detected_from": "input"}


def test_a_set_of_copies_of_one_text_has_no_preamble() -> None:
    """A collapsed generator (most records one text) is no preamble: its near copies (one word short, so they
    would not carry "all but the last word") are still near-duplicates."""
    text = " ".join(f"w{i}" for i in range(40))
    records = [{"id": f"c{i}", "text": text} for i in range(40)] + [{"id": "short", "text": text[:-4]}] + \
              [{"id": f"o{i}", "text": f"other record number {i}"} for i in range(5)]
    found = duplicates(nd_gate(), records)
    assert found["short"] == "c0" and len(found) == 40
    assert detect([r["text"] for r in records], "input") is None


# ---------------------------------------------------------------------------------------------- detection
PREAMBLE = " ".join(f"word{i}" for i in range(MIN_WORDS))


@pytest.mark.parametrize("carrying, total, found", [(20, 25, True), (19, 25, False), (20, 20, True),
                                                    (19, 19, False), (800, 1000, True), (799, 1000, False)])
def test_a_prefix_needs_a_clear_majority_and_enough_records(carrying: int, total: int, found: bool) -> None:
    texts = [f"{PREAMBLE} task {i}" for i in range(carrying)] + [f"other text {i}" for i in range(total - carrying)]
    prefix = detect(texts, "input")
    assert (prefix is not None) is found
    if prefix is not None:
        assert prefix.text == f"{PREAMBLE} task" and prefix.carried == carrying and prefix.distinct == total


def test_a_prefix_is_long_whole_words_and_leaves_a_remainder() -> None:
    short = " ".join(PREAMBLE.split()[:MIN_WORDS - 1])
    assert detect([f"{short} t{i} task" for i in range(30)], "input") is None  # 19 shared words
    texts = [f"{PREAMBLE}, and then t{i} task" for i in range(30)]
    prefix = detect(texts, "input")
    assert prefix is not None and prefix.words[-1] == "then" and prefix.chars == len(f"{PREAMBLE}, and then")
    cut = Preamble(True, None)
    cut.fit(texts, "input")
    # whole words only ("thenx" does not carry "then"), and a text that is the prefix alone is kept whole
    assert cut.strip_all([f"{PREAMBLE}, and then", f"{PREAMBLE}, and thenx 5", texts[3]]) == [
        f"{PREAMBLE}, and then", f"{PREAMBLE}, and thenx 5", "t3 task"]
    # whitespace between the words does not matter; what follows keeps its own
    assert cut.strip_all([PREAMBLE.replace(" ", "\n ") + ",  and then\n\nTask  A"]) == ["Task  A"]


def test_detection_reads_only_the_head() -> None:
    texts = [f"unrelated record {i}" for i in range(HEAD)] + [f"{PREAMBLE} task {i}" for i in range(5 * HEAD)]
    assert detect(texts, "input") is None
    assert MIN_RECORDS <= HEAD


def test_ordinary_instruction_data_has_no_prefix() -> None:
    """Our instruction and prose fixtures (modelled on Alpaca and Dolly) have no shared opening to drop."""
    for name in ("instruct_sample.jsonl", "human_prose.jsonl", "reference_sample.jsonl"):
        records = [r.record for r in read_records([str(FIXTURES / name)]) if r.record is not None]
        texts = [r["text"] if "text" in r else f"{r['instruction']}\n{r.get('input', '')}\n{r['output']}"
                 for r in records if "text" in r or "output" in r]
        assert len(texts) >= MIN_RECORDS and detect(texts, "input") is None, name


# ----------------------------------------------------------------------------------------------- embeddings
@pytest.mark.slow
def test_semantic_duplicates_compare_the_task_not_the_preamble(tmp_path: Path) -> None:
    """MiniLM reads the first 256 tokens: behind a 173-word preamble every record embeds alike (cosine 1.000, 28 of
    29 merged). Without the preamble only the true duplicates are, and the NYC task is not LA's (cosine < 0.9)."""
    require_embed()
    runs = {}
    for drop in (False, True):
        gate = Gate.from_config({"version": 1, "input": {"id": "id"}, "checks": [
            {"check": "semantic_duplicate", "drop_shared_prefix": drop}]}, cache_dir=tmp_path)
        runs[drop] = gate.run(RECORDS)
    merged = {d.id: f.evidence["duplicate_of"] for d in runs[False].decisions for f in d.findings}
    assert len(merged) == 28 and set(merged.values()) == {"t01"}
    found = {d.id: f for d in runs[True].decisions for f in d.findings}
    assert {sid: f.evidence["duplicate_of"] for sid, f in found.items()} == TRUE_DUPLICATES
    assert all(f.evidence["shared_prefix_dropped"]["words"] == 173 for f in found.values())
    nyc = next(d for d in runs[True].decisions if d.id == "t02")
    assert nyc.accepted and nyc.scores["semantic_duplicate.cosine"] < 0.9
    assert runs[True].report["sets"]["semantic_duplicate"]["shared_prefix"]["words"] == 173
