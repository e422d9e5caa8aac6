"""`qualgate explain ID --run OUTDIR`: a run's findings and scores for one sample, the kept one beside a duplicate."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from qualgate.cli import main
from tests.conftest import FIXTURES


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run")
    res = CliRunner().invoke(main, ["filter", str(FIXTURES / "instruct_sample.jsonl"), "-o", str(out), "-q",
                                    "--no-cache"])
    assert res.exit_code in (0, 1), res.output
    return out


def _rejected(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in (run_dir / "rejected.jsonl").read_text().splitlines() if x]


def test_a_duplicate_is_shown_with_the_kept_sample(run_dir: Path) -> None:
    dup: dict[str, Any] = next(r for r in _rejected(run_dir)
                               if r["qualgate"]["findings"][0]["reason"] == "exact_duplicate")
    sid = dup["qualgate"]["id"]
    res = CliRunner().invoke(main, ["explain", sid, "--run", str(run_dir)])
    assert res.exit_code == 0, res.output
    assert "REJECTED" in res.output and "near_duplicate / exact_duplicate" in res.output
    info = json.loads(CliRunner().invoke(main, ["explain", sid, "--run", str(run_dir), "--format", "json"]).output)
    (occ,) = info["occurrences"]
    kept = occ["findings"][0]["kept_sample"]
    # the kept record, read from the input: same text after normalisation, not the rejected line itself
    assert json.loads(kept["record"])["instruction"].lower() == dup["instruction"].lower()
    assert kept["id"] == dup["qualgate"]["findings"][0]["evidence"]["duplicate_of"]
    assert kept["source"]["line"] != dup["qualgate"]["source"]["line"]
    assert occ["scores"]["near_duplicate.exact"] == 1.0


def test_an_accepted_sample_lists_its_scores(run_dir: Path) -> None:
    import pyarrow.parquet as pq

    row = next(r for r in pq.read_table(run_dir / "scores.parquet").to_pylist() if r["accepted"])
    res = CliRunner().invoke(main, ["explain", row["id"], "--run", str(run_dir), "--format", "json"])
    info = json.loads(res.output)
    (occ,) = info["occurrences"]
    assert occ["accepted"] and "findings" not in occ and occ["scores"]["length.words"] > 0
    assert json.loads(occ["record"])  # the record itself, read from the input file


def test_unknown_id_is_a_clear_error(run_dir: Path) -> None:
    res = CliRunner().invoke(main, ["explain", "nope", "--run", str(run_dir)])
    assert res.exit_code == 2 and "no sample with id 'nope'" in res.output


def test_junit_report_for_ci_dashboards(run_dir: Path, tmp_path: Path) -> None:
    import xml.etree.ElementTree as ET

    root = ET.parse(run_dir / "report.junit.xml").getroot()
    gate, checks = root.findall("testsuite")
    assert gate.get("failures") == "0" and [c.get("name") for c in gate] == ["max_reject_rate"]
    assert {c.get("name") for c in checks} >= {"near_duplicate", "truncated", "placeholder"}
    strict = tmp_path / "strict.yaml"
    strict.write_text("version: 1\nextends: default\ngate: {max_reject_rate: 0.01}\n")
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["filter", str(FIXTURES / "instruct_sample.jsonl"), "-c", str(strict), "-o",
                                    str(out), "-q", "--no-cache"])
    assert res.exit_code == 1
    failure = ET.parse(out / "report.junit.xml").getroot().find("testsuite/testcase/failure")
    assert failure is not None and "max_reject_rate" in (failure.get("message") or "")


@pytest.mark.parametrize("fmt", ["markdown", "json", "junit", "html"])
def test_report_command_prints_a_runs_report_in_each_format(run_dir: Path, fmt: str, tmp_path: Path) -> None:
    res = CliRunner().invoke(main, ["report", str(run_dir), "--format", fmt])
    assert res.exit_code in (0, 1), res.output
    expected = {"markdown": "# qualgate report", "json": '"by_check"', "junit": "<testsuites",
                "html": "<!DOCTYPE html>"}[fmt]
    assert expected in res.output
    if fmt in ("markdown", "junit"):  # the same text the run wrote
        name = {"markdown": "report.md", "junit": "report.junit.xml"}[fmt]
        assert res.output == (run_dir / name).read_text()
    out = tmp_path / "r.out"
    CliRunner().invoke(main, ["report", str(run_dir), "--format", fmt, "-o", str(out)])
    assert expected in out.read_text()


def test_report_command_on_a_folder_without_a_run(tmp_path: Path) -> None:
    res = CliRunner().invoke(main, ["report", str(tmp_path)])
    assert res.exit_code == 2 and "report.json" in res.output


def test_an_id_with_a_lone_surrogate_is_written_and_explained(tmp_path: Path) -> None:
    data = tmp_path / "in.jsonl"
    data.write_text('{"id": "bad\\ud800id", "text": "Tiny \\ud800 text for the check."}\n'
                    '{"id": "ok", "text": "A plain and fine sentence."}\n')
    cfg = tmp_path / "c.yaml"
    cfg.write_text("version: 1\ninput: {text: text, id: id}\nchecks:\n  - {check: length, min_words: 1}\n")
    res = CliRunner().invoke(main, ["filter", str(data), "-c", str(cfg), "-o", str(tmp_path / "run"), "-q"])
    assert res.exit_code == 0, res.output
    rows = [json.loads(x) for x in (tmp_path / "run" / "accepted.jsonl").read_text().splitlines()]
    assert len(rows) == 2
    res = CliRunner().invoke(main, ["explain", "ok", "--run", str(tmp_path / "run")])
    assert res.exit_code == 0 and "ACCEPTED" in res.output
