"""Roles a pack names (instruction, input, output) read the record field each file holds them in
(``input.fields``, found in the file's first records when not given), and a field that nearly every record
lacks stops the run with exit 2 naming it, instead of rejecting 100% of the records as malformed."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qualgate import ConfigError, Gate, InputError
from qualgate.cli import main
from qualgate.config import load_config
from qualgate.engines.checkpoint import Checkpoint
from qualgate.sample import FieldMap, TextSpec, make_sample
from qualgate.tune import tune
from tests.conftest import write_mixed

# GPTeacher-style roleplay records (instruction / input / response), written for these tests
ROLEPLAY = [
    {"instruction": "You are a pirate captain. Greet the new crew on their first morning aboard.", "input": "",
     "response": "Ahoy, ye scallywags! Welcome aboard the Crimson Gull. We sail at dawn, so stow yer gear, "
                 "mind the rigging, and keep yer wits about ye."},
    {"instruction": "Pretend you are a detective and tell the visitor what you deduce about him.",
     "input": "The visitor has red mud on his boots and a pale band of skin on his wrist.",
     "response": "You walked here across the clay fields this morning, and you sold the watch you wore for years, "
                 "which tells me money has lately become a worry."},
    {"instruction": "As a chef on a cooking show, describe tonight's special to the audience.", "input": "",
     "response": "I'm sorry, but I can't help with that request."},
    {"instruction": "Roleplay as a museum guide introducing the dinosaur hall.", "input": "",
     "response": "Good afternoon and welcome! Dear [Your Name], please follow me past the ticket desk."},
    {"instruction": "You are a medieval herald. Announce the opening of the royal tournament.", "input": "",
     "response": "   "},
    {"instruction": "Take the role of a ship's navigator and explain how you fix our position at night.",
     "input": "We have a sextant, a chronometer and clear skies.",
     "response": "I measure the angle of Polaris above the horizon to find our latitude, then compare the "
                 "chronometer's Greenwich time with local noon to work out our longitude."},
]
ALPACA = [{"instruction": r["instruction"], "input": r["input"], "output": r["response"]} for r in ROLEPLAY]
ACCEPTED = [True, True, False, False, False, True]


def _checks(decisions: Any) -> list[list[str]]:
    return [[f.check for f in d.findings] for d in decisions]


def _expected(**options: Any) -> list[list[str]]:
    """The instruct pack's findings on the records in Alpaca's layout: what any other layout must give."""
    decisions = Gate.from_config("instruct", cache_dir=None, **options).run(ALPACA).decisions
    assert [d.accepted for d in decisions] == ACCEPTED
    return _checks(decisions)


def _write(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def _run(*args: str) -> Any:
    return CliRunner().invoke(main, ["filter", *args, "-q", "--no-html", "--no-cache", "-j", "1"])


# ----------------------------------------------------------------------------------------- auto mapping
def test_instruct_reads_gpteacher_response_as_output() -> None:
    gate = Gate.from_config("instruct", cache_dir=None, all_findings=True)
    result = gate.run(ROLEPLAY)
    found = _checks(result.decisions)
    assert found == _expected(all_findings=True)
    assert "refusal" in found[2] and "empty_field" in found[4]  # checks that read the output role
    assert gate.fields_used == {"<records>": {"output": "response"}}
    assert result.report["run"]["fields"] == {"<records>": {"output": "response"}}
    empty = next(f for f in result.decisions[4].findings if f.check == "empty_field")
    assert empty.evidence["fields"] == ["response"]  # named as the record names it


def test_filter_reports_the_mapping_in_report_json_and_on_stderr(tmp_path: Path) -> None:
    data = _write(tmp_path / "roleplay.jsonl", ROLEPLAY)
    res = CliRunner().invoke(main, ["filter", "-c", "instruct", str(data), "-o", str(tmp_path / "out"),
                                    "--no-html", "--no-cache", "-j", "1"])
    assert res.exit_code == 0, res.output
    assert f"fields: output=response in {data}" in res.output
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["run"]["fields"] == {str(data): {"output": "response"}}
    assert report["accepted"] == 3 and report["by_check"]["malformed"]["rejected"] == 0


def test_identity_is_not_reported_and_the_roles_own_name_wins() -> None:
    both = [{**r, "output": r["response"]} for r in ROLEPLAY]  # output and response: output, as named
    gate = Gate.from_config("instruct", cache_dir=None)
    assert _checks(gate.run(both).decisions) == _expected() and gate.fields_used == {}


@pytest.mark.parametrize("names, found", [
    ({"instruction": "prompt", "output": "completion"}, {"instruction": "prompt", "output": "completion"}),
    ({"instruction": "question", "input": "context", "output": "answer"},
     {"instruction": "question", "input": "context", "output": "answer"}),
])
def test_common_names_are_found(names: dict[str, str], found: dict[str, str]) -> None:
    records = [{names.get(k, k) if k != "response" else names["output"]: v for k, v in r.items()} for r in ROLEPLAY]
    gate = Gate.from_config("instruct", cache_dir=None)
    assert _checks(gate.run(records).decisions) == _expected() and gate.fields_used == {"<records>": found}


def test_each_file_is_read_with_its_own_names(tmp_path: Path) -> None:
    alpaca = _write(tmp_path / "a.jsonl", ALPACA[:3])
    teacher = _write(tmp_path / "b.jsonl", ROLEPLAY[3:])
    gate = Gate.from_config("instruct", cache_dir=None)
    decisions = list(gate.stream(gate.read([str(alpaca), str(teacher)])))
    assert _checks(decisions) == _expected() and gate.fields_used == {str(teacher): {"output": "response"}}


# ------------------------------------------------------------------------------------- explicit mapping
def test_explicit_mapping_reads_any_field_names(tmp_path: Path) -> None:
    records = [{"ask": r["instruction"], "data": r["input"], "reply": r["response"]} for r in ROLEPLAY]
    cfg = {"version": 1, "extends": "instruct",
           "input": {"fields": {"instruction": "ask", "input": "data", "output": "reply"}}}
    assert _checks(Gate.from_config(cfg, cache_dir=None).run(records).decisions) == _expected()
    data = _write(tmp_path / "d.jsonl", records)
    res = _run("-c", "instruct", str(data), "-o", str(tmp_path / "out"), "--field", "instruction=ask",
               "--field", "input=data", "--field", "output=reply")
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "out" / "report.json").read_text())["accepted"] == 3


def test_explicit_mapping_wins_over_the_roles_own_name() -> None:
    records = [{**r, "output": ""} for r in ROLEPLAY]  # a blank output beside the real answer
    assert {"empty_field"} == {c for cs in _checks(Gate.from_config("instruct", cache_dir=None).run(records).decisions)
                               for c in cs}
    gate = Gate.from_config("instruct", fields={"output": "response"}, cache_dir=None)
    assert _checks(gate.run(records).decisions) == _expected()


def test_bad_mappings_are_config_errors() -> None:
    with pytest.raises(ConfigError, match=r"input\.fields"):
        load_config({"version": 1, "input": {"fields": {"answer": "response"}}})
    with pytest.raises(ConfigError, match="two roles to the same record field"):
        load_config({"version": 1, "input": {"fields": {"instruction": "text", "output": "text"}}})
    res = CliRunner().invoke(main, ["filter", "x.jsonl", "-o", "out", "--field", "answer=response"])
    assert res.exit_code == 2 and "ROLE one of instruction, input, output" in res.output


def test_the_mapping_is_part_of_the_config_identity() -> None:
    plain = load_config("instruct")
    mapped = plain.with_input(fields={"output": "response"})
    same = plain.with_input(fields={"output": "output"})  # explicit: no longer found per file
    assert "fields" not in plain.to_dict()["input"]  # configs without it keep their digest
    assert mapped.to_dict()["input"]["fields"] == {"output": "response"}
    assert len({plain.digest(), mapped.digest(), same.digest()}) == 3
    assert load_config(mapped.to_dict()).digest() == mapped.digest()
    assert mapped.with_input(fields={"instruction": "prompt"}).input.fields == {"output": "response",
                                                                                 "instruction": "prompt"}


# ------------------------------------------------------------------------- sets, workers, checkpoints, tune
def test_a_baseline_in_another_layout_is_read_with_its_own_names(tmp_path: Path) -> None:
    base = _write(tmp_path / "base.jsonl", ROLEPLAY[:2])  # GPTeacher names
    gate = Gate.from_config("instruct", cache_dir=None)
    gate.load_baseline([str(base)])
    found = [d.findings for d in gate.run(ALPACA[:2]).decisions]
    assert all(len(f) == 1 and f[0].reason.endswith("duplicate") for f in found), found


def test_the_mapping_travels_with_the_sample_and_keys_checkpoints(tmp_path: Path) -> None:
    sample = make_sample(ROLEPLAY[0], TextSpec("{output}"), None, fields={"output": "response"})
    assert pickle.loads(pickle.dumps(sample)).view("output") == ROLEPLAY[0]["response"] == sample.text
    gate = Gate.from_config("instruct", cache_dir=None)
    plain = make_sample(ROLEPLAY[0], gate.spec, None)
    ckpt = Checkpoint(tmp_path / "ck", gate)
    assert ckpt.batch_key([sample]) != ckpt.batch_key([plain])


def test_tune_reads_the_records_with_the_runs_mapping(tmp_path: Path) -> None:
    data = _write(tmp_path / "roleplay.jsonl", ROLEPLAY)
    assert _run("-c", "instruct", str(data), "-o", str(tmp_path / "run")).exit_code == 0
    tuned = tune(tmp_path / "run", ["output_length.max_words=20"], records=True)
    assert all(r["response"].strip() in d.sample.text for d, r in zip(tuned.decisions, ROLEPLAY, strict=True))
    assert [[f.check for f in d.findings] for d in tuned.decisions][:2] == [["output_length"], ["output_length"]]


# ------------------------------------------------------------------------------------------- early exit
def test_a_misspelt_template_field_stops_after_the_first_records(tmp_path: Path) -> None:
    data = _write(tmp_path / "roleplay.jsonl", ROLEPLAY * 10)
    res = _run("-c", "instruct", str(data), "-o", str(tmp_path / "out"), "--text", "{instrution}\n{output}")
    assert res.exit_code == 2, res.output
    assert f"input error in {data}: field 'instrution', which the text view" in res.output
    assert "is missing in all 60 of the first 60 records: did you mean 'instruction'? (fields present: " \
           "instruction, input, response); fix --text or input.text" in res.output
    assert not (tmp_path / "out" / "accepted.jsonl").exists()


def test_a_misspelt_check_field_names_the_check_and_the_role(tmp_path: Path) -> None:
    data = _write(tmp_path / "roleplay.jsonl", ROLEPLAY * 10)
    cfg = tmp_path / "c.yaml"
    cfg.write_text("version: 1\nextends: instruct\nchecks:\n  - name: output_length\n    field: outptu\n")
    res = _run("-c", str(cfg), str(data), "-o", str(tmp_path / "out"))
    assert res.exit_code == 2, res.output
    assert "field 'outptu', which check 'output_length' needs, is missing in all " in res.output
    assert "did you mean 'output' (the role, read from 'response')?" in res.output
    res = _run("-c", "instruct", str(data), "-o", str(tmp_path / "out"), "--field", "output=answer")
    assert res.exit_code == 2 and "field 'answer' (read for 'output')" in res.output
    assert "did you mean 'response'?" in res.output and "--field output=FIELD" in res.output


def test_the_run_stops_before_reading_the_whole_input() -> None:
    read = 0

    def records() -> Any:
        nonlocal read
        for i in range(5000):
            read += 1
            yield {"prompt_text": f"Say hello number {i}.", "reply": "Hello!"}

    gate = Gate.from_config("instruct", cache_dir=None)
    with pytest.raises(InputError, match=r"field 'instruction', which the text view .* is missing in all 512 of "
                                         r"the first 512 records \(fields present: prompt_text, reply\); map the "
                                         r"role with --field instruction=FIELD"):
        list(gate.stream(records()))
    assert read < 2000


def test_missing_optional_input_and_a_few_missing_fields_do_not_stop_a_run(tmp_path: Path) -> None:
    rows = []
    for line in write_mixed(tmp_path / "m.jsonl", 60).read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:  # the fixture's broken lines
            continue
        if isinstance(rec, dict) and "instruction" in rec:
            rows.append({k: v for k, v in rec.items() if k != "input"})  # no input at all
    for r in rows[:10]:  # a few records without the answer: malformed, one by one
        r.pop("output", None)
    decisions = Gate.from_config("instruct", cache_dir=None).run(rows).decisions
    malformed = [f.evidence.get("key") for d in decisions for f in d.findings if f.check == "malformed"]
    assert len(rows) >= 40 and malformed.count("output") >= 10 and "input" not in malformed


def test_small_inputs_keep_their_per_record_malformed_findings() -> None:
    rows = [{"prompt_text": "Hi.", "reply": "Hello!"}] * 5
    decisions = Gate.from_config("instruct", cache_dir=None).run(rows).decisions
    assert {f.reason for d in decisions for f in d.findings} == {"missing_field"}


# -------------------------------------------------------------------------------------------- property
SENTENCES = [r["instruction"] for r in ROLEPLAY] + [r["response"] for r in ROLEPLAY] + [
    "", "  ", "Write a haiku about rain.", "Rain taps the window; the kettle sighs; the cat dreams of summer.",
    "As an AI language model, I cannot do that.", "The answer is 42.", "Lorem ipsum [Your Name] placeholder text."]
records = st.lists(st.fixed_dictionaries({"instruction": st.sampled_from(SENTENCES),
                                          "input": st.sampled_from(["", SENTENCES[1], SENTENCES[7]]),
                                          "output": st.sampled_from(SENTENCES)}), min_size=1, max_size=6)
FREE_NAMES = ["ask", "data", "reply", "q", "body", "turn_2"]
COMMON = {"instruction": ["prompt", "question"], "input": ["context"], "output": ["response", "completion", "answer"]}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(recs=records, data=st.data())
def test_renaming_fields_with_the_matching_mapping_decides_the_same(recs: list[dict[str, str]],
                                                                   data: st.DataObject) -> None:
    explicit = data.draw(st.booleans(), label="explicit")
    if explicit:
        names = dict(zip(["instruction", "input", "output"],
                         data.draw(st.permutations(FREE_NAMES), label="names")[:3], strict=True))
    else:  # the common names FieldMap finds on its own
        names = {role: data.draw(st.sampled_from(options), label=role) for role, options in COMMON.items()}
    renamed = [{names[k]: v for k, v in r.items()} for r in recs]
    plain = Gate.from_config("instruct", cache_dir=None).run(recs).decisions
    gate = Gate.from_config("instruct", fields=names if explicit else None, cache_dir=None)
    other = gate.run(renamed).decisions
    assert [(d.accepted, [(f.check, f.reason) for f in d.findings]) for d in other] == \
        [(d.accepted, [(f.check, f.reason) for f in d.findings]) for d in plain]
    assert gate.fields_used == {"<records>": {r: n for r, n in names.items() if r != n}}
    assert FieldMap.describe(names).startswith("instruction=")


@pytest.mark.slow
def test_worker_processes_read_with_the_same_mapping(tmp_path: Path) -> None:
    data = _write(tmp_path / "roleplay.jsonl", ROLEPLAY * 3)
    runs = []
    for workers in (1, 2):
        gate = Gate.from_config("instruct", cache_dir=None, workers=workers, batch_size=4)
        runs.append([(d.accepted, _checks([d])[0]) for d in gate.stream(gate.read([str(data)]))])
    assert runs[0] == runs[1] and [a for a, _ in runs[0][:6]] == ACCEPTED
