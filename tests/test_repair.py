"""Repairs: recorded fixes made to records before the checks (placeholder inputs, stray whitespace and control
characters, mojibake). The checks and accepted.jsonl see the repaired record; the original stays recoverable."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qualgate import Gate
from qualgate.cli import main
from qualgate.config import load_config
from qualgate.errors import ConfigError
from qualgate.repair import RepairConfig, Repaired, Repairer, restore

#: A few rule checks, as in the instruct pack, with every repair on.
CONFIG: dict[str, Any] = {
    "version": 1,
    "input": {"text": "{instruction}\n{input}\n{output}"},
    "repair": {"steps": ["mojibake", "strip", "placeholder_input"]},
    "checks": [{"check": "empty_field", "fields": ["instruction", "output"]},
               {"check": "placeholder"},
               {"check": "truncated", "field": "output"}],
}
NO_REPAIR = {**CONFIG, "repair": {"enabled": False}}

# Alpaca-style records (written for these tests) with the placeholder inputs generators write, stray edges,
# control characters and text decoded with the wrong codec.
RECORDS: list[dict[str, Any]] = [
    {"instruction": "Name a landmark in the United States.", "input": "<noinput>", "output": "The Statue of Liberty."},
    {"instruction": "Suggest a way to increase engagement.", "input": "N/A",
     "output": "Host live question-and-answer sessions."},
    {"instruction": "Identify the largest animal in the world.", "input": "No input required.",
     "output": "The blue whale."},
    {"instruction": "Give a word that means happy.", "input": '"<noinput>"', "output": "Joyful."},
    {"instruction": "Explain why the sky is blue. ", "input": "",
     "output": "\ufeffSunlight is scattered by air molecules,\tblue light most of all.\x07\n\n"},
    {"instruction": "Rewrite the sentence politely.", "input": "I donâ€™t want to go.",
     "output": "Iâ€™d rather not go, thank you."},
    {"instruction": "Fill in the blank.", "input": "The boy <noinput> the ball.", "output": "The boy kicked the ball."},
    {"instruction": "Is the Moon a planet?", "input": "", "output": "N/A"},
    {"instruction": "Write a haiku about rain.", "input": "",
     "output": "Soft rain on the roof.\nPuddles hold the sky."},
]


def _run(config: dict[str, Any], records: list[dict[str, Any]], **options: Any) -> Any:
    return Gate.from_config(config, cache_dir=None, **options).run(records)


def test_placeholder_inputs_are_emptied_before_the_checks() -> None:
    before = _run(NO_REPAIR, RECORDS)
    after = _run(CONFIG, RECORDS)
    reasons_before = [[f.check for f in d.findings] for d in before.decisions]
    reasons_after = [[f.check for f in d.findings] for d in after.decisions]
    assert reasons_before[:4] == [["placeholder"], ["placeholder"], [], ["placeholder"]]  # the input alone
    assert reasons_after[:4] == [[], [], [], []]
    assert [d.sample.record["input"] for d in after.decisions[:4]] == ["", "", "", ""]
    # a placeholder inside a sentence is not a whole-value placeholder; an answer "N/A" is never emptied
    assert reasons_after[6] == ["placeholder"] and after.decisions[6].sample.record["input"] == RECORDS[6]["input"]
    assert reasons_after[7] == ["placeholder"] and after.decisions[7].sample.record["output"] == "N/A"
    assert after.decisions[8].sample.record is RECORDS[8]  # nothing to repair: the record itself


def test_strip_and_mojibake_keep_inner_newlines_and_tabs() -> None:
    after = _run(CONFIG, RECORDS)
    rec4, rec5 = after.decisions[4].sample.record, after.decisions[5].sample.record
    assert rec4["instruction"] == "Explain why the sky is blue."
    assert rec4["output"] == "Sunlight is scattered by air molecules,\tblue light most of all."
    assert rec5["input"] == "I don’t want to go." and rec5["output"] == "I’d rather not go, thank you."
    assert after.decisions[4].sample.record.repairs == [
        {"field": "instruction", "steps": ["strip"], "before": "Explain why the sky is blue. "},
        {"field": "output", "steps": ["strip"], "before": RECORDS[4]["output"]}]
    assert [e["steps"] for e in rec5.repairs] == [["mojibake"], ["mojibake"]]
    fixed, steps = Repairer(RepairConfig()).fix_text("line one\r\n\tline two\x00\x1b ")
    assert (fixed, steps) == ("line one\r\n\tline two", ["strip"])
    code = "\n\ufeff    return total\nprint(f(2))\n"  # an indented first line of code keeps its indentation
    assert Repairer(RepairConfig()).fix_text(code) == ("    return total\nprint(f(2))", ["strip"])
    for fine in ("naïve café", "SÃO PAULO", "Œuvre", "“quoted”", "ｆｕｌｌ width", "&amp; stays"):
        assert Repairer(RepairConfig()).fix_text(fine) == (fine, [])


def test_chat_turns_are_repaired_and_restored() -> None:
    rec = {"messages": [{"role": "user", "content": " Whatâ€™s up? "}, {"role": "assistant", "content": "Fine."}]}
    fixed = Repairer(RepairConfig()).repair(rec)
    assert isinstance(fixed, Repaired)
    assert fixed["messages"][0]["content"] == "What’s up?" and fixed["messages"][1] is rec["messages"][1]
    assert [e["field"] for e in fixed.repairs] == ["messages[0].content"]
    assert restore(fixed, fixed.repairs) == rec
    assert rec["messages"][0]["content"] == " Whatâ€™s up? "  # the input record is never changed


def test_the_id_field_is_never_repaired_and_content_ids_are_of_the_record_as_read() -> None:
    with_id = {**CONFIG, "input": {**CONFIG["input"], "id": "uid"}}
    recs = [{**r, "uid": f" r{i} "} for i, r in enumerate(RECORDS)]
    assert [d.id for d in _run(with_id, recs).decisions] == [f" r{i} " for i in range(len(RECORDS))]
    on, off = _run(CONFIG, RECORDS), _run(NO_REPAIR, RECORDS)
    assert [d.id for d in on.decisions] == [d.id for d in off.decisions]


def test_filter_writes_repaired_records_records_repairs_and_keeps_originals(tmp_path: Path) -> None:
    data = tmp_path / "in.jsonl"
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in RECORDS), encoding="utf-8")
    (tmp_path / "c.yaml").write_text(json.dumps(CONFIG))
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["filter", str(data), "-c", str(tmp_path / "c.yaml"), "-o", str(out), "-q",
                                    "-j", "1", "--no-cache", "--no-html"])
    assert res.exit_code in (0, 1), res.output
    accepted = [json.loads(x) for x in (out / "accepted.jsonl").read_text().splitlines()]
    rejected = [json.loads(x) for x in (out / "rejected.jsonl").read_text().splitlines()]
    assert len(accepted) + len(rejected) == len(RECORDS)
    assert accepted[0] == {**RECORDS[0], "input": ""}  # the repaired record, nothing added
    assert "qualgate" not in accepted[0]
    table = pq.read_table(out / "scores.parquet").to_pylist()
    by_line = {row["line"]: row for row in table}
    for line, rec in enumerate(RECORDS, start=1):
        row = by_line[line]
        repairs = json.loads(row["repairs"]) if row["repairs"] else []
        written = accepted.pop(0) if row["accepted"] else rejected.pop(0)
        assert restore(written, repairs) == rec  # the input record, exactly, from the run's outputs
        if not row["accepted"]:
            assert written["qualgate"].get("repairs", []) == repairs
    assert not accepted and not rejected
    report = json.loads((out / "report.json").read_text())
    rep = report["repairs"]
    assert rep["records"] == 6 and rep["accepted"] == 6
    assert rep["by_step"] == {"mojibake": {"input": 1, "output": 1}, "placeholder_input": {"input": 4},
                              "strip": {"instruction": 1, "output": 1}}
    assert report["run"]["repair_seconds"] >= 0 and "seconds" not in rep
    assert "## Repairs" in (out / "report.md").read_text()
    res = CliRunner().invoke(main, ["explain", by_line[1]["id"], "--run", str(out)])
    assert res.exit_code == 0 and "placeholder_input" in res.output
    tuned = tmp_path / "tuned"  # a tuned run keeps the repairs: the originals are still there
    res = CliRunner().invoke(main, ["tune", "--run", str(out), "--set", "truncated.min_words=2", "-o",
                                    str(tuned)])
    assert res.exit_code in (0, 1), res.output
    assert pq.read_table(tuned / "scores.parquet").column("repairs").to_pylist() == [r["repairs"] for r in table]
    assert json.loads((tuned / "report.json").read_text())["repairs"]["records"] == 6


def test_overrides_bind_to_the_repaired_record_the_reviewer_saw(tmp_path: Path) -> None:
    gate = Gate.from_config(CONFIG, cache_dir=None)
    first = gate.run(RECORDS)
    d = first.decisions[6]  # input "The boy <noinput> the ball." and rejected
    q = first.rejected[0]["qualgate"]
    assert q["id"] == d.id and not d.accepted
    path = tmp_path / "ov.jsonl"
    path.write_text(json.dumps({"id": q["id"], "sha256": q["sha256"], "decision": "accept", "reviewer": "kim"}))
    gate.use_overrides(path, require_hash=True)
    again = gate.run(RECORDS)
    assert again.decisions[6].accepted and not gate.overrides.problems()  # type: ignore[union-attr]


def test_packs_and_config_errors() -> None:
    assert load_config("default").repair is None
    instruct = load_config("instruct").repair
    assert instruct is not None and instruct.active and instruct.placeholder_fields == ["input"]
    off = load_config({"version": 1, "extends": "instruct", "repair": {"enabled": False}})
    assert off.repair is not None and not off.repair.active
    assert Gate(off, cache_dir=None).repairer is None
    assert load_config(load_config("instruct").to_dict()).repair == instruct  # workers rebuild the config
    with pytest.raises(ConfigError) as err:
        load_config({"version": 1, "repair": {"steps": ["strip", "lowercase"]}})
    assert "repair.steps" in str(err.value)
    with pytest.raises(ConfigError, match="RE2"):
        load_config({"version": 1, "repair": {"placeholder_pattern": "(?=no)input"}})


def test_repaired_records_pickle_with_their_repairs() -> None:
    fixed = Repairer(RepairConfig()).repair(RECORDS[0])
    back = pickle.loads(pickle.dumps(fixed))
    assert back == fixed and back.repairs == fixed.repairs  # what worker processes and Ray actors receive


@pytest.mark.slow  # ~5 s: two spawned worker processes
def test_two_workers_decide_like_one() -> None:
    one = _run(CONFIG, RECORDS * 4, batch_size=5)
    two = _run(CONFIG, RECORDS * 4, batch_size=5, workers=2)
    assert [(d.id, d.accepted, [f.reason for f in d.findings]) for d in one.decisions] == \
        [(d.id, d.accepted, [f.reason for f in d.findings]) for d in two.decisions]
    assert one.report["repairs"]["records"] == two.report["repairs"]["records"] == 24


_PIECES = st.sampled_from(["donâ€™t", "cafÃ©", "â€œhiâ€\x9d", "<noinput>", "N/A", "None", " ", "\t", "\n", "\x00",
                           "\x07", "\x85", "\u200b", "\ufeff", "\xa0", "Ã", "€", "naïve", "word", ".", "“", "Na"])
_TEXT = st.lists(st.one_of(_PIECES, st.text(max_size=4)), max_size=8).map("".join)


_GATE = Gate.from_config(CONFIG, cache_dir=None, batch_size=3)  # stateless between runs


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.fixed_dictionaries({"instruction": _TEXT, "input": _TEXT, "output": _TEXT}), max_size=8))
def test_repair_is_idempotent_and_every_record_lands_once(records: list[dict[str, Any]]) -> None:
    repairer = Repairer(RepairConfig())
    for rec in records:
        once = repairer.repair(rec)
        assert repairer.repair(once) is once  # nothing left to repair
        assert restore(once, list(getattr(once, "repairs", []))) == rec
    result = _GATE.run(records)
    assert len(result.decisions) == len(records)
    assert len(result.accepted) + len(result.rejected) == len(records)
    assert [d.sample.source.line for d in result.decisions] == list(range(1, len(records) + 1))  # type: ignore[union-attr]
