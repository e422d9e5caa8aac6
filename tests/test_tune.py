"""`qualgate tune`: re-deciding a run from its stored scores gives what a full re-run with the same
parameters gives; where it cannot know (skipped scores, keep-first chains), it says so."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qualgate import Gate
from qualgate.cli import main
from qualgate.errors import ConfigError
from qualgate.io import read_records
from qualgate.overrides import load_overrides
from qualgate.tune import tune, write
from tests.conftest import FIXTURES

INPUTS = [str(FIXTURES / "instruct_sample.jsonl"), str(FIXTURES / "text_quality_sample.jsonl")]


def _filter(out: Path, config: str, *extra: str, inputs: list[str] | None = None) -> dict[str, Any]:
    res = CliRunner().invoke(main, ["filter", *(inputs or INPUTS), "-c", config, "-o", str(out), "-q", "-j", "1",
                                    "--no-cache", *extra])
    assert res.exit_code in (0, 1), res.output
    return dict(json.loads((out / "report.json").read_text()))


def _rerun(run: Path, out: Path, settings: list[str]) -> dict[str, Any]:
    """A full run of the original inputs with the config the run recorded, changed by ``settings``."""
    report = json.loads((run / "report.json").read_text())
    cfg = report["config"]["resolved"]
    for s in settings:
        key, value = s.split("=", 1)
        name, param = key.rsplit(".", 1)
        next(c for c in cfg["checks"] if c["name"] == name)[param] = yaml.safe_load(value)
    path = out.parent / f"{out.name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    extra = ["--all-findings"] if report["run"]["all_findings"] else []
    return _filter(out, str(path), *extra, inputs=report["run"]["inputs"])


def _accepted_flags(run: Path) -> list[bool]:
    return [bool(x) for x in pq.read_table(run / "scores.parquet").column("accepted").to_pylist()]


@pytest.fixture(scope="module", params=["default", "all_findings"])
def run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp(f"run-{request.param}")
    _filter(out, "instruct", *(["--all-findings"] if request.param == "all_findings" else []))
    return out


SETTINGS = [
    ["length.min_words=8"],                                   # stricter: samples newly rejected
    ["length.min_words=3", "truncated.min_words=3"],          # several checks at once
    ["language.min_prob=0.999999"],
    ["repetition.max_top_ngram_frac={2: 0.05, 3: 0.05, 4: 0.05}"],
    ["boilerplate.max_matches=5"],                            # looser: what the earlier finding hid comes back
    ["prompt_echo.max_overlap=0.2", "prompt_echo.min_words=1"],
]


@pytest.mark.parametrize("settings", SETTINGS, ids=lambda s: ",".join(s))
def test_tune_equals_a_full_rerun(run: Path, tmp_path: Path, settings: list[str]) -> None:
    tuned = tune(run, settings, records=True)
    rerun = _rerun(run, tmp_path / "rerun", settings)
    flagged = set(tuned.needs_scores_ids) | set(tuned.order_dependent)
    ids = [r.id for r in tuned.run.rows]
    again = _accepted_flags(tmp_path / "rerun")
    # without keep-first flags, every sample tune does not flag is decided exactly as the re-run decides it
    if not tuned.order_dependent:
        for sid, d, full in zip(ids, tuned.decisions, again, strict=True):
            if sid not in flagged:
                assert d.accepted == full, (sid, settings)
    if tuned.exact:
        info = tuned.to_dict()
        assert info["accepted"]["after"] == rerun["accepted"]
        assert {n: c["after"] for n, c in info["by_check"].items() if c["after"]} == \
            {n: c["rejected"] for n, c in rerun["by_check"].items() if c["rejected"]}
        written = write(tuned, tmp_path / "tuned")
        assert written["accepted"] == rerun["accepted"] and written["by_check"] == rerun["by_check"]
        # records come out as the re-run writes them, in the same order: accepted ones byte for byte,
        # rejected ones with equal findings (a score read back from Parquet is a float: 0.0 for 0)
        accepted = [(tmp_path / d / "accepted.jsonl").read_bytes() for d in ("tuned", "rerun")]
        assert accepted[0] == accepted[1]
        mine, theirs = ([json.loads(x) for x in (tmp_path / d / "rejected.jsonl").read_text().splitlines()]
                        for d in ("tuned", "rerun"))
        assert mine == theirs


def test_settings_change_decisions_and_some_are_flagged(run: Path) -> None:
    """The parametrised cases are not vacuous: tightening rejects more, and in a default run loosening a check
    that hid later ones is flagged rather than guessed."""
    stricter = tune(run, ["length.min_words=8"])
    assert stricter.newly_rejected and stricter.after["length"] > stricter.before.get("length", 0)
    looser = tune(run, ["boilerplate.max_matches=5"])
    if looser.run.all_findings:
        assert looser.exact and looser.newly_accepted == []  # the boilerplate samples fail other checks too
    else:
        assert looser.needs_scores_ids and not looser.exact
        assert looser.needs_scores["refusal"] >= 1


def test_keep_first_chain_is_flagged(tmp_path: Path) -> None:
    """A kept sample that the new threshold rejects leaves its near-duplicate without the sample it was named a
    duplicate of: tune flags that sample instead of guessing what a re-run decides."""
    base = "the quick brown fox jumps over the lazy dog near the river bank"
    rows = [{"instruction": "Write.", "output": base + " today."},
            {"instruction": "Write.", "output": base + " today and tomorrow as well, said the man."},
            {"instruction": "Say hi.", "output": "Hello there, how are you doing on this fine and sunny morning in "
                                                 "the lovely old town by the sea?"}]
    data = tmp_path / "in.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"version": 1, "checks": [
        {"check": "length", "min_words": 1},
        {"check": "near_duplicate", "threshold": 0.5}]}))
    report = _filter(tmp_path / "run", str(cfg), inputs=[str(data)])
    assert report["by_check"]["near_duplicate"]["rejected"] == 1
    tuned = tune(tmp_path / "run", ["length.min_words=18"])
    ids = [r.id for r in tuned.run.rows]
    assert tuned.newly_rejected == [ids[0]]
    assert tuned.order_dependent == [ids[1]] and not tuned.exact  # named a duplicate of the one that left
    _rerun(tmp_path / "run", tmp_path / "rerun", ["length.min_words=18"])
    assert _accepted_flags(tmp_path / "rerun") == [False, True, True]  # what the flag warned about


def test_perplexity_relative_threshold_from_stored_percentiles(tmp_path: Path) -> None:
    inputs = [str(FIXTURES / "human_prose.jsonl"), str(FIXTURES / "text_quality_sample.jsonl")]
    ref = str(FIXTURES / "human_prose.jsonl")
    _filter(tmp_path / "run", "perplexity", "--all-findings", "--reference", ref, inputs=inputs)
    for changes in (["perplexity.max=reference_p90"], ["perplexity.min=reference_p10", "perplexity.max=500"]):
        tuned = tune(tmp_path / "run", changes)
        assert tuned.exact
        report = json.loads((tmp_path / "run" / "report.json").read_text())
        cfg = report["config"]["resolved"]
        for s in changes:
            key, value = s.split("=", 1)
            next(c for c in cfg["checks"] if c["name"] == "perplexity")[key.split(".")[1]] = yaml.safe_load(value)
        (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
        again = _filter(tmp_path / "rerun", str(tmp_path / "c.yaml"), "--all-findings", "--reference", ref,
                        inputs=inputs)
        assert tuned.to_dict()["accepted"]["after"] == again["accepted"]
        assert tuned.after.get("perplexity", 0) == again["by_check"]["perplexity"]["rejected"]
        assert tuned.after.get("perplexity", 0) > tuned.before.get("perplexity", 0)


@pytest.mark.parametrize(("setting", "words"), [
    ("placeholder.patterns=['x']", "how check 'placeholder' (placeholder) scores"),
    ("near_duplicate.threshold=0.5", "scores, not only how it decides"),
    ("nosuch.x=1", "no check named 'nosuch'"),
    ("length.nosuch=1", "has no parameter 'nosuch'"),
    ("length.min_words=-3", "at 'length.min_words': Input should be greater than or equal to 0"),
    ("length", "expected CHECK.PARAM=VALUE"),
])
def test_bad_settings_are_clear_errors(run: Path, setting: str, words: str) -> None:
    res = CliRunner().invoke(main, ["tune", "--run", str(run), "--set", setting])
    assert res.exit_code == 2, res.output
    assert words in res.output


def test_keep_first_threshold_is_refused_with_the_reason(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"version": 1, "checks": [{"check": "near_duplicate"}]}))
    _filter(tmp_path / "run", str(cfg))
    with pytest.raises(ConfigError, match="scores, not only how it decides"):
        tune(tmp_path / "run", ["near_duplicate.threshold=0.5"])


def test_cli_prints_counts_and_writes_a_run(run: Path, tmp_path: Path) -> None:
    res = CliRunner().invoke(main, ["tune", "--run", str(run), "--set", "length.min_words=8"])
    assert res.exit_code in (0, 1), res.output
    assert "length" in res.output and "->" in res.output
    out = tmp_path / "new"
    res = CliRunner().invoke(main, ["tune", "--run", str(run), "--set", "length.min_words=8", "-o", str(out),
                                    "--format", "json"])
    info = json.loads(res.output)
    assert info["written_to"] == str(out)
    report = json.loads((out / "report.json").read_text())
    assert report["tune"]["changes"] == {"length.min_words": 8}
    assert report["config"]["resolved"]["checks"][0]["min_words"] == 8 or any(
        c.get("min_words") == 8 for c in report["config"]["resolved"]["checks"] if c["check"] == "length")
    lines = sum(1 for f in ("accepted.jsonl", "rejected.jsonl") for x in (out / f).read_text().splitlines() if x)
    assert lines == report["total"] == len(tune(run, []).decisions)
    # the written run is a run like any other: tuned back, it gives the original decisions; in a default run
    # the samples the tuned run rejected skipped their later checks there, so they are flagged, not guessed
    first = tune(run, ["length.min_words=8"])
    back = tune(out, ["length.min_words=1"])
    if first.run.all_findings:  # scored everywhere; only the keep-first caveat for the re-accepted remains
        assert back.order_dependent == first.newly_rejected and not back.needs_scores_ids
        assert back.to_dict()["accepted"]["after"] == json.loads((run / "report.json").read_text())["accepted"]
    else:
        assert back.needs_scores_ids == first.newly_rejected
    res = CliRunner().invoke(main, ["tune", "--run", str(run), "-o", str(run)])
    assert res.exit_code == 2 and "another folder" in res.output


def test_tune_without_changes_reproduces_the_run(run: Path) -> None:
    same = tune(run, [])
    assert same.exact and not same.newly_accepted and not same.newly_rejected
    assert [d.accepted for d in same.decisions] == _accepted_flags(run)


@pytest.fixture(scope="module")
def full_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("full")
    _filter(out, "instruct", "--all-findings")
    return out


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(min_words=st.integers(0, 40), trunc=st.integers(1, 12), prob=st.floats(0.01, 1.0),
       overlap=st.floats(0.05, 1.0))
def test_tune_matches_an_in_process_rerun_for_any_thresholds(full_run: Path, min_words: int, trunc: int,
                                                             prob: float, overlap: float) -> None:
    """Property: with every score stored (--all-findings), tune's decision for each sample is the re-run's,
    whatever the thresholds, unless tune flags the sample itself."""
    settings_ = [f"length.min_words={min_words}", f"truncated.min_words={trunc}", f"language.min_prob={prob!r}",
                 f"prompt_echo.max_overlap={overlap!r}"]
    tuned = tune(full_run, settings_)
    report = json.loads((full_run / "report.json").read_text())
    gate = Gate.from_config(tuned.config, all_findings=True, workers=1, cache_dir=None)
    decisions = gate.run(list(read_records(report["run"]["inputs"]))).decisions
    assert not tuned.needs_scores_ids
    for mine, theirs in zip(tuned.decisions, decisions, strict=True):
        assert mine.id == theirs.id
        if tuned.exact:
            assert mine.accepted == theirs.accepted
            assert [(f.check, f.reason) for f in mine.findings] == [(f.check, f.reason) for f in theirs.findings]


def _records_file(tmp_path: Path, texts: list[str]) -> str:
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps({"instruction": "Write.", "output": t}) + "\n" for t in texts))
    return str(path)


def test_a_chain_through_keep_first_makes_the_result_not_exact(tmp_path: Path) -> None:
    """A is kept, B duplicates A, C duplicates B but not A. Rejecting A lets a re-run keep B and reject C:
    tune cannot see C's change, so it must not call the result exact."""
    words = [f"w{i}" for i in range(60)]
    a, b, c = " ".join(words[:40]), " ".join(words[3:45]), " ".join(words[8:52])
    data = _records_file(tmp_path, [a, b, c])
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"version": 1, "checks": [{"check": "length", "min_words": 1},
                                                            {"check": "near_duplicate", "threshold": 0.6}]}))
    report = _filter(tmp_path / "run", str(cfg), inputs=[data])
    assert report["accepted"] == 2  # A and C kept, B a duplicate of A
    tuned = tune(tmp_path / "run", ["length.min_words=42"])
    _rerun(tmp_path / "run", tmp_path / "rerun", ["length.min_words=42"])
    again = _accepted_flags(tmp_path / "rerun")
    assert again == [False, True, False]  # the re-run keeps B and rejects C as B's duplicate
    assert [d.accepted for d in tuned.decisions] != again and not tuned.exact


def test_a_missing_field_finding_keeps_its_place_in_the_order(tmp_path: Path) -> None:
    """A check-level missing field is that check's finding: tuning an earlier check re-decides the rest."""
    rows = [{"instruction": "Write.", "output": f"answer number {i} " + "word " * (i % 7), **({"extra": "x"} if i % 3
            else {})} for i in range(12)]
    data = tmp_path / "in.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"version": 1, "checks": [{"check": "length", "min_words": 1},
                                                            {"check": "length", "name": "extra_len", "field": "extra",
                                                             "min_words": 1}]}))
    for extra in ([], ["--all-findings"]):
        run = tmp_path / f"run{len(extra)}"
        _filter(run, str(cfg), *extra, inputs=[str(data)])
        tuned = tune(run, ["length.min_words=5"])
        again = _rerun(run, tmp_path / f"rerun{len(extra)}", ["length.min_words=5"])
        assert tuned.exact
        assert {n: c["after"] for n, c in tuned.to_dict()["by_check"].items() if c["after"]} == \
            {n: c["rejected"] for n, c in again["by_check"].items() if c["rejected"]}


def test_overrides_alone_do_not_touch_keep_first(run: Path, tmp_path: Path) -> None:
    rejected = [json.loads(x)["qualgate"]["id"] for x in (run / "rejected.jsonl").read_text().splitlines()
                if "raw" not in json.loads(x)["qualgate"]]
    path = tmp_path / "o.yaml"
    path.write_text(yaml.safe_dump([{"id": rejected[0], "decision": "accept", "reviewer": "r"},
                                    {"id": "nobody", "decision": "reject", "reviewer": "r"}]))
    tuned = tune(run, [], overrides=load_overrides(path))
    assert tuned.exact and tuned.newly_accepted == [rejected[0]]
    assert tuned.to_dict()["overrides"]["unmatched"] == ["nobody"]


@pytest.mark.parametrize("kind", ["json", "parquet"])
def test_items_and_rows_keep_their_unit_through_tune_and_explain(tmp_path: Path, kind: str) -> None:
    import pyarrow as pa

    records = [json.loads(x) for x in (FIXTURES / "instruct_sample.jsonl").read_text().splitlines()
               if x.strip().endswith("}") and "missing quote" not in x]
    path = tmp_path / f"in.{kind}"
    if kind == "json":
        path.write_text(json.dumps(records, indent=2))
    else:
        pq.write_table(pa.Table.from_pylist([{k: str(v) for k, v in r.items()} for r in records]), path)
    _filter(tmp_path / "run", "instruct", inputs=[str(path)])
    write(tune(tmp_path / "run", [], records=True), tmp_path / "same")
    for name in ("rejected.jsonl", "accepted.jsonl"):
        assert (tmp_path / "same" / name).read_text() == (tmp_path / "run" / name).read_text()
    unit = "item" if kind == "json" else "row"
    first = json.loads((tmp_path / "run" / "rejected.jsonl").read_text().splitlines()[0])
    assert unit in first["qualgate"]["source"]
    row = pq.read_table(tmp_path / "run" / "scores.parquet").to_pylist()[0]
    res = CliRunner().invoke(main, ["explain", row["id"], "--run", str(tmp_path / "run"), "--format", "json"])
    (occ,) = json.loads(res.output)["occurrences"]
    if row["accepted"]:
        assert json.loads(occ["record"])["instruction"] == str(records[0]["instruction"])


def test_a_run_folder_with_a_missing_or_short_file_is_a_clear_error(run: Path, tmp_path: Path) -> None:
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(run, broken)
    lines = (broken / "rejected.jsonl").read_text().splitlines()
    (broken / "rejected.jsonl").write_text("\n".join(lines[:-1]) + "\n")
    res = CliRunner().invoke(main, ["tune", "--run", str(broken), "--set", "length.min_words=2"])
    assert res.exit_code == 2 and "rejected.jsonl" in res.output and "inconsistent" in res.output
    (broken / "accepted.jsonl").unlink()
    (broken / "rejected.jsonl").write_text("\n".join(lines) + "\n")
    res = CliRunner().invoke(main, ["tune", "--run", str(broken), "-o", str(tmp_path / "x")])
    assert res.exit_code == 2 and "accepted.jsonl" in res.output and "missing" in res.output


def test_written_run_has_input_bytes_fresh_thresholds_and_text_views(tmp_path: Path) -> None:
    """tune -o: a newly accepted record is its input line byte for byte; the report's histograms carry the
    configured limits, its perplexity section the new threshold, its examples the text view."""
    lines = ['{"instruction":"Say caf\\u00e9.","input":"","output":"Tiny.","qualgate":"keep me","v":1.0e2}',
             *(json.dumps(json.loads(x)) for x in (FIXTURES / "instruct_sample.jsonl").read_text().splitlines()[:12]
               if x.strip().endswith("}"))]
    data = tmp_path / "in.jsonl"
    data.write_text("\n".join(lines) + "\n")
    _filter(tmp_path / "run", "instruct", "--all-findings", inputs=[str(data)])
    out = tmp_path / "tuned"
    report = write(tune(tmp_path / "run", ["length.min_words=4"], records=True), out).data
    assert report["histograms"]["length.words"]["thresholds"][0] == 4.0
    examples = [e for ex in report["examples"].values() for e in ex]
    assert examples and all(not e["text"].startswith("{") for e in examples)  # the text view, not the JSON
    assert lines[0].encode() in (tmp_path / "run" / "accepted.jsonl").read_bytes().splitlines()
    assert lines[0].encode() not in (out / "accepted.jsonl").read_bytes().splitlines()  # 3 words < 4
    back = write(tune(out, ["length.min_words=1"], records=True), tmp_path / "back").data
    assert lines[0].encode() in (tmp_path / "back" / "accepted.jsonl").read_bytes().splitlines()
    assert back["accepted"] == json.loads((tmp_path / "run" / "report.json").read_text())["accepted"]


def test_written_perplexity_section_shows_the_new_threshold(tmp_path: Path) -> None:
    inputs = [str(FIXTURES / "human_prose.jsonl"), str(FIXTURES / "text_quality_sample.jsonl")]
    _filter(tmp_path / "run", "perplexity", "--all-findings", "--reference", str(FIXTURES / "human_prose.jsonl"),
            inputs=inputs)
    report = write(tune(tmp_path / "run", ["perplexity.max=reference_p90"], records=True), tmp_path / "t").data
    assert "90th percentile" in report["sets"]["perplexity"]["max"]["from"]
    assert report["histograms"]["perplexity.perplexity"]["thresholds"]


# ------------------------------------------------------------------------------------ --labels
# Ids of fixtures/instruct_sample.jsonl under the instruct pack (content hashes): a labeller who wants one-word
# answers to a question that needs more ("4", "Stingy") dropped, and keeps a French answer and a cover letter.
LABELLED = {
    "4144f534bdeb98b5": "reject",  # "As an AI language model, I do not have personal opinions" (boilerplate)
    "ee4257b31a1623f2": "reject",  # "I can't create images" (boilerplate)
    "00e6e3adb15f9eba": "reject",  # "... are red, yellow and" (truncated)
    "a7aff29150647db0": "reject",  # unclosed code block (truncated)
    "2871223fd43e7798": "reject",  # empty output (empty_field)
    "2f5b98bc27e9443b": "reject",  # "4": one word
    "e1e89b397b9ccd89": "reject",  # "Stingy": one word
    "dfe649c4fcc591e6": "accept",  # French answer (language rejects it)
    "08fe91ff22832c5c": "accept",  # cover letter (placeholder rejects it)
    "76f3f9819af573a7": "accept", "8496f1c56c614988": "accept", "f9a07d9dc0db13c2": "accept",
    "69a32fe2655205d5": "accept", "2ed50d652951979e": "accept",  # "The Wild Yeast Bakehouse": 4 words
    "a7fd6a917ac3838c": "accept",  # 6 words
    "f72c2e136c1d9fda": "accept",  # "Positive": one word, and right
}


@pytest.fixture(scope="module")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("labels-run")
    _filter(out, "instruct", inputs=[str(FIXTURES / "instruct_sample.jsonl")])
    return out


def _labels_file(tmp_path: Path, labels: dict[str, str], name: str = "labels.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("".join(json.dumps({"id": i, "label": v}) + "\n" for i, v in labels.items()))
    return path


def _tune_labels(run: Path, *args: str) -> tuple[int, dict[str, Any], str]:
    res = CliRunner().invoke(main, ["tune", "--run", str(run), *args, "--format", "json"])
    try:
        return res.exit_code, dict(json.loads(res.output)), res.output
    except ValueError:
        return res.exit_code, {}, res.output


def _suggestion(report: dict[str, Any], check: str, param: str) -> dict[str, Any]:
    c = next(c for c in report["checks"] if c["check"] == check)
    return dict(next(s for s in c["suggestions"] if s["param"] == param))


def test_labels_give_exact_precision_recall_and_the_best_threshold(small_run: Path, tmp_path: Path) -> None:
    code, out, text = _tune_labels(small_run, "--labels", str(_labels_file(tmp_path, LABELLED)))
    assert code in (0, 1), text
    rep = out["labels"]
    assert rep["labelled"] == {"from_files": 16, "from_overrides": 0, "samples": 16, "reject": 7, "accept": 9}
    # the gate: rejects 5 of the 7 labelled rejects (not "4", "Stingy") and 2 labelled accepts
    assert {k: rep["gate"][k] for k in ("tp", "fp", "fn", "tn")} == {"tp": 5, "fp": 2, "fn": 2, "tn": 7}
    assert rep["gate"]["precision"] == rep["gate"]["recall"] == rep["gate"]["f1"] == 0.7143
    by = {c["check"]: c for c in rep["checks"]}
    # output_length comes after empty_field and truncated: it never saw 3 labelled rejects
    assert {k: by["output_length"][k] for k in ("tp", "fp", "fn", "tn")} == {"tp": 0, "fp": 0, "fn": 4, "tn": 9}
    assert by["output_length"]["not_scored"] == {"reject": 3, "accept": 0}
    assert {k: by["language"][k] for k in ("tp", "fp", "precision")} == {"tp": 0, "fp": 1, "precision": 0.0}
    # fewer than 2 output words: catches "4" and "Stingy", costs "Positive" (2, 3 and 4 split the labels alike;
    # 2 rejects the fewest samples of the run: the 5 one-word answers)
    best = _suggestion(rep, "output_length", "min_words")
    assert (best["current"], best["best"], best["set"]) == (None, 2, "output_length.min_words=2")
    assert {k: best["at_best"]["gate"][k] for k in ("tp", "fp", "fn", "tn")} == {"tp": 7, "fp": 3, "fn": 0, "tn": 6}
    assert best["at_best"]["gate"]["f1"] == 0.8235 and best["at_current"]["gate"]["f1"] == 0.7143
    assert best["at_best"]["check"]["precision"] == 0.6667 and best["at_best"]["check"]["recall"] == 0.5
    assert best["run_rejected"] == {"scored": 27, "current": 0, "best": 5}
    assert best["positives"] == 2 and "fewer than 20" in best["warning"]
    assert "output_length.min_words=2" in rep["set"]
    # what the search replays for the current value is what the run recorded, check by check
    for c in rep["checks"]:
        for s in c["suggestions"]:
            assert {k: s["at_current"]["check"][k] for k in ("tp", "fp", "fn", "tn")} == \
                {k: c[k] for k in ("tp", "fp", "fn", "tn")}, (c["check"], s["param"])


def test_text_table_and_apply_write_a_config_a_run_can_use(small_run: Path, tmp_path: Path) -> None:
    labels = _labels_file(tmp_path, LABELLED)
    snippet = tmp_path / "tuned.yaml"
    res = CliRunner().invoke(main, ["tune", "--run", str(small_run), "--labels", str(labels), "--min-positives", "2",
                                    "--apply", str(snippet), "--format", "json"])
    assert res.exit_code in (0, 1), res.output
    combined = json.loads(res.output)["labels"]["combined"]
    # one change at a time, the run re-decided after each: fewer than 40 characters in all catches "4" and
    # "Stingy" but not "Positive" (whose input is long), and rejects the fewest in the run (2; length.min_words=7
    # matches the labels as well but rejects 3); then the overlapping limits add nothing
    assert combined["set"] == ["length.min_chars=40"]
    assert {k: combined["gate_after"][k] for k in ("tp", "fp", "fn", "tn")} == {"tp": 7, "fp": 2, "fn": 0, "tn": 7}
    cfg = yaml.safe_load(snippet.read_text())
    assert next(c for c in cfg["checks"] if c["name"] == "length")["min_chars"] == 40
    assert snippet.read_text().startswith("# thresholds from labels")
    rerun = _filter(tmp_path / "rerun", str(snippet), inputs=[str(FIXTURES / "instruct_sample.jsonl")])
    tuned = tune(small_run, combined["set"])
    assert rerun["accepted"] == tuned.accepted_after
    assert {k for k, v in rerun["by_check"].items() if v["rejected"]} == set(tuned.after)
    # the text table
    res = CliRunner().invoke(main, ["tune", "--run", str(small_run), "--labels", str(labels)])
    assert "gate (before overrides): precision 0.71  recall 0.71  F1 0.71" in res.output
    row = next(line for line in res.output.splitlines() if line.startswith("output_length.min_words"))
    assert row.split()[:5] == ["output_length.min_words", "None", "2", "0.71", "0.82"] and "0 -> 5" in row
    assert "! output_length.min_words: rests on 2 labelled reject(s) (fewer than 20)" in res.output
    # with the default 20, a change resting on 2 labelled rejects is reported, not applied
    CliRunner().invoke(main, ["tune", "--run", str(small_run), "--labels", str(labels), "--apply", str(snippet)])
    cfg = yaml.safe_load(snippet.read_text())
    assert next(c for c in cfg["checks"] if c["name"] == "length")["min_chars"] is None
    assert "# left out (rests on 2 labelled reject(s) (fewer than 20)): length.min_chars=40" in snippet.read_text()


def test_overrides_are_labels(tmp_path: Path) -> None:
    """The run's own overrides count as labels, an overrides file works as --labels, and a label beats an
    override it disagrees with."""
    ov = tmp_path / "overrides.yaml"
    ov.write_text(yaml.safe_dump([
        {"id": "dfe649c4fcc591e6", "decision": "accept", "reviewer": "ann", "note": "French was asked for"},
        {"id": "2f5b98bc27e9443b", "decision": "reject", "reviewer": "ann"}]))
    run = tmp_path / "run"
    _filter(run, "instruct", "--overrides", str(ov), inputs=[str(FIXTURES / "instruct_sample.jsonl")])
    labels = _labels_file(tmp_path, {"e1e89b397b9ccd89": "reject", "2f5b98bc27e9443b": "accept"})
    code, out, text = _tune_labels(run, "--labels", str(labels))
    rep = out["labels"]
    assert rep["labelled"] == {"from_files": 2, "from_overrides": 1, "samples": 3, "reject": 1, "accept": 2}, text
    assert rep["conflicts_with_overrides"] == {"count": 1, "ids": ["2f5b98bc27e9443b"]}
    # measured before overrides: the gate rejected the French answer (labelled accept), not the other two
    assert {k: rep["gate"][k] for k in ("tp", "fp", "fn", "tn")} == {"tp": 0, "fp": 1, "fn": 1, "tn": 1}
    # the overrides file itself as labels, on a run without overrides
    no_overrides = _labels_file(tmp_path, {}, "none.jsonl")
    code, out, text = _tune_labels(run, "--labels", str(ov), "--overrides", str(no_overrides))
    assert code in (0, 1), text
    assert out["labels"]["labelled"] == {"from_files": 2, "from_overrides": 0, "samples": 2, "reject": 1, "accept": 1}


def test_labels_in_csv_and_yaml_and_unknown_ids(small_run: Path, tmp_path: Path) -> None:
    csv_file = tmp_path / "labels.csv"
    csv_file.write_text("id,label,note\n2f5b98bc27e9443b,reject,too short\nf72c2e136c1d9fda,,not yet\n"
                        "no-such-id,accept,\n")
    yaml_file = tmp_path / "labels.yaml"
    yaml_file.write_text("labels:\n  - {id: e1e89b397b9ccd89, decision: Reject}\n")
    code, out, text = _tune_labels(small_run, "--labels", str(csv_file), "--labels", str(yaml_file))
    assert code in (0, 1), text
    rep = out["labels"]
    assert rep["labelled"]["samples"] == 2 and rep["labelled"]["reject"] == 2
    assert rep["unknown_ids"] == {"count": 1, "ids": ["no-such-id"]} and rep["blank_rows"] == 1
    res = CliRunner().invoke(main, ["tune", "--run", str(small_run), "--labels", str(csv_file)])
    assert "1 label id(s) match no sample of the run (ignored): no-such-id" in res.output
    # a label bound to content (sha256, as in an overrides file) is used only on that content
    rejected = [json.loads(x)["qualgate"] for x in (small_run / "rejected.jsonl").read_text().splitlines()]
    digest = next(q["sha256"] for q in rejected if q["id"] == "00e6e3adb15f9eba")
    bound = _labels_file(tmp_path, {}, "bound.jsonl")
    bound.write_text(json.dumps({"id": "00e6e3adb15f9eba", "label": "reject", "sha256": digest[:16]}) + "\n"
                     + json.dumps({"id": "f72c2e136c1d9fda", "label": "accept", "sha256": "0" * 64}) + "\n")
    code, out, text = _tune_labels(small_run, "--labels", str(bound))
    assert out["labels"]["labelled"]["samples"] == 1, text
    assert out["labels"]["hash_mismatch"] == {"count": 1, "ids": ["f72c2e136c1d9fda"]}


@pytest.mark.parametrize(("name", "content", "where"), [
    ("bad.jsonl", '{"id": "a", "label": "reject"}\n{"id": "b", "label": "maybe"}\n', "bad.jsonl:2 at 'label'"),
    ("bad.jsonl", '{"id": "a", "label": "reject"}\n{"id": "a", "label": "accept"}\n', "bad.jsonl:2 at 'id'"),
    ("bad.jsonl", '{"id": "a"}\n', "bad.jsonl:1 at 'label'"),
    ("bad.jsonl", '{"id": "a", "label": "reject"\n', "bad.jsonl:1"),
    ("bad.csv", "sample,verdict\na,reject\n", "bad.csv:1"),
    ("bad.csv", "id,label\na,reject\nb,keep\n", "bad.csv:3 at 'label'"),
    ("bad.yaml", "labels:\n  - {id: a, label: reject}\n  - {id: b, label: accept, sha256: xyz}\n",
     "bad.yaml:3 at 'sha256'"),
    ("bad.yaml", "samples: []\n", "bad.yaml:1"),
])
def test_a_malformed_labels_file_is_a_clear_error(small_run: Path, tmp_path: Path, name: str, content: str,
                                                  where: str) -> None:
    path = tmp_path / name
    path.write_text(content)
    res = CliRunner().invoke(main, ["tune", "--run", str(small_run), "--labels", str(path)])
    assert res.exit_code == 2, res.output
    assert f"config error in {path.parent}/{where}" in res.output, res.output
