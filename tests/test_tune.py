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
