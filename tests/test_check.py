"""`qualgate check` in a real temporary git repository: only added records are gated, against the base."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from qualgate.cli import main
from tests.conftest import FIXTURES

PARAS = [json.loads(x) for x in (FIXTURES / "human_prose.jsonl").read_text().splitlines() if x]


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)


def write(path: Path, records: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    git(tmp_path, "init", "-q", "-b", "main")
    git(tmp_path, "config", "user.email", "t@example.org")
    git(tmp_path, "config", "user.name", "t")
    write(tmp_path / "data.jsonl", [{"id": p["id"], "text": p["text"]} for p in PARAS[:40]])
    git(tmp_path, "add", "data.jsonl")
    git(tmp_path, "commit", "-q", "-m", "base")
    return tmp_path


def check(repo: Path, *args: str, env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(main, ["check", str(repo / "data.jsonl"), "--base", "HEAD", *args], env=env)


def test_bad_additions_fail_with_the_right_records_named(repo: Path) -> None:
    base = [{"id": p["id"], "text": p["text"]} for p in PARAS[:40]]
    added = [
        {"id": "good", "text": PARAS[50]["text"]},
        {"id": "copy", "text": PARAS[3]["text"]},                                   # line 42: copies line 4
        {"id": "refusal", "text": "As an AI language model, I cannot write about gardening."},  # line 43
    ]
    write(repo / "data.jsonl", base + added)
    res = check(repo)
    assert res.exit_code == 1, res.output
    assert "## qualgate: FAILED" in res.output
    assert "| 42 |" in res.output and "| 43 |" in res.output and "| 41 |" not in res.output
    assert "exact_duplicate" in res.output or "near_duplicate" in res.output
    out = json.loads(check(repo, "--format", "json").output)
    assert out["added"] == 3 and not out["passed"]
    assert {r["line"]: r["findings"][0]["reason"] for r in out["rejected"]} == {
        42: "exact_duplicate", 43: "boilerplate_phrase"}
    assert out["rejected"][0]["findings"][0]["evidence"]["in_baseline"] is True
    assert out["rejected"][0]["findings"][0]["evidence"]["duplicate_source"] == {
        "file": str(repo / "data.jsonl") + "@HEAD", "line": 4}


def test_good_additions_pass(repo: Path) -> None:
    write(repo / "data.jsonl", [{"id": p["id"], "text": p["text"]} for p in PARAS[:45]])
    res = check(repo)
    assert res.exit_code == 0, res.output
    assert "## qualgate: passed" in res.output and "| 5 | 5 | 0 |" in res.output


def test_reordering_and_removing_records_is_not_a_finding(repo: Path) -> None:
    records = [{"id": p["id"], "text": p["text"]} for p in PARAS[:40]]
    random.Random(1).shuffle(records)
    write(repo / "data.jsonl", records[:30])
    res = check(repo)
    assert res.exit_code == 0, res.output
    assert "No records added" in res.output


def test_new_file_and_step_summary(repo: Path, tmp_path: Path) -> None:
    write(repo / "new.jsonl", [{"id": "a", "text": PARAS[60]["text"]}, {"id": "b", "text": ""}])
    summary = tmp_path / "summary.md"
    res = CliRunner().invoke(main, ["check", str(repo / "new.jsonl"), "--base", "HEAD"],
                             env={"GITHUB_STEP_SUMMARY": str(summary)})
    assert res.exit_code == 1, res.output
    assert "too_few_words" in summary.read_text() or "empty" in summary.read_text()
    assert "| `" + str(repo / "new.jsonl") + "` | `HEAD` | 2 | 1 | 1 |" in res.output


def test_outside_a_repository_is_a_usage_error(tmp_path: Path) -> None:
    write(tmp_path / "x.jsonl", [{"text": "hello"}])
    res = CliRunner().invoke(main, ["check", str(tmp_path / "x.jsonl")])
    assert res.exit_code == 2 and "not inside a git repository" in res.output


def test_importing_qualgate_and_a_rules_only_gate_do_not_import_torch() -> None:
    code = ("import sys, qualgate; g = qualgate.Gate.from_config('instruct', cache_dir=None); "
            "g.run([{'instruction': 'Say hi.', 'input': '', 'output': 'Hi there, nice to meet you.'}]); "
            "bad = [m for m in ('torch', 'sentence_transformers', 'transformers', 'faiss') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_filter_dataset_splits_a_hugging_face_dataset() -> None:
    datasets = pytest.importorskip("datasets")
    from qualgate import Gate

    rows = [{"id": p["id"], "text": p["text"]} for p in PARAS[:5]]
    rows += [{"id": "dup", "text": PARAS[0]["text"]}, {"id": "ai", "text": "As an AI language model, I cannot."}]
    ds = datasets.Dataset.from_list(rows)
    gate = Gate.from_config({"version": 1, "extends": "default", "input": {"text": "text", "id": "id"}},
                            cache_dir=None)
    accepted, rejected = gate.filter_dataset(ds)
    assert accepted["id"] == [p["id"] for p in PARAS[:5]] and accepted.column_names == ["id", "text"]
    assert rejected["id"] == ["dup", "ai"]
    why = [json.loads(x) for x in rejected["qualgate"]]
    assert [w["findings"][0]["reason"] for w in why] == ["exact_duplicate", "boilerplate_phrase"]


def test_a_reviewers_override_lets_a_flagged_record_in_and_says_so(repo: Path) -> None:
    """The override is bound to the record's content (sha256) and read from the base revision: a reviewer's
    decision lands on the base branch, then the pull request it reviewed passes."""
    base = [{"id": p["id"], "text": p["text"]} for p in PARAS[:40]]
    quoted = {"id": "quoted", "text": "The essay quotes the phrase 'As an AI language model' to discuss chatbots."}
    reviews = repo / "reviews.yaml"
    reviews.write_text("[]\n")
    git(repo, "add", "reviews.yaml")
    git(repo, "commit", "-q", "-m", "no reviews yet")
    write(repo / "data.jsonl", [*base, quoted])
    first = json.loads(check(repo, "--id", "id", "--format", "json").output)
    assert not first["passed"]
    sha = first["rejected"][0]["sha256"]
    assert len(sha) == 64
    reviews.write_text(f'- {{id: quoted, sha256: {sha}, decision: accept, reviewer: ana, '
                       'note: "a quotation, not a refusal"}\n')
    unreviewed = check(repo, "--id", "id", "--overrides", str(reviews))
    assert unreviewed.exit_code == 1, unreviewed.output  # the change's own edit of the overrides is not applied
    assert "differs from the base revision" in unreviewed.output
    git(repo, "add", "reviews.yaml")
    git(repo, "commit", "-q", "-m", "review")
    res = check(repo, "--id", "id", "--overrides", str(reviews))
    assert res.exit_code == 0, res.output
    assert "Accepted by a reviewer despite findings" in res.output and "| `quoted` | ana |" in res.output
    out = json.loads(check(repo, "--id", "id", "--overrides", str(reviews), "--format", "json").output)
    assert out["passed"] and out["overruled"][0]["findings"][0]["reason"] == "boilerplate_phrase"


def test_the_configs_record_limit_applies_to_the_pull_request_check(repo: Path, tmp_path: Path) -> None:
    """`qualgate check` reads the changed files (and their base versions) under the config's input limits, as
    `filter` does: an added record over input.max_record_bytes is rejected as record_too_large, unparsed."""
    base = [{"id": p["id"], "text": p["text"]} for p in PARAS[:40]]
    added = [{"id": "huge", "text": "word " * 2000}, {"id": "good", "text": PARAS[50]["text"]}]
    write(repo / "data.jsonl", [*base, *added])
    config = tmp_path / "small.yaml"
    config.write_text("version: 1\nextends: default\ninput: {max_record_bytes: 4096}\n")
    git(repo, "add", "small.yaml")
    git(repo, "commit", "-q", "-m", "config")  # the config that judges a change comes from its base
    out = json.loads(check(repo, "-c", str(config), "--format", "json").output)
    assert out["added"] == 2
    assert {r["line"]: r["findings"][0]["reason"] for r in out["rejected"]} == {41: "record_too_large"}


def test_only_lines_the_base_lacks_are_parsed_and_a_warm_run_parses_no_base_line(repo: Path, tmp_path: Path) -> None:
    """Lines are matched by their bytes first; content decides the rest, as before: a reformatted copy of a base
    record uses up that record, so the unchanged line holding it becomes the added (extra) copy."""
    from qualgate.check import find_changes

    lines = (repo / "data.jsonl").read_text().splitlines(keepends=True)
    first = json.loads(lines[0])
    reformatted = json.dumps(dict(reversed(list(first.items()))), indent=None, separators=(",", ":")) + "\n"
    new = json.dumps({"id": "new", "text": PARAS[50]["text"]}) + "\n"
    (repo / "data.jsonl").write_text(reformatted + "".join(lines) + "{not json\n" + new)
    cache = tmp_path / "cache"
    for run in ("cold", "warm"):
        [change] = find_changes([str(repo / "data.jsonl")], "HEAD", None, cache)
        assert [r.source.line for r in change.added] == [2, 42, 43], run  # not line 1: its content is in the base
        assert change.added[1].error is not None and change.added[2].record == {"id": "new", "text": PARAS[50]["text"]}
        assert (change.records, change.base_records) == (43, 40)
        assert change.parsed == 4, run  # the reformatted line, line 2 (the extra copy), the broken and the new line
        assert change.base_parsed == (40 if run == "cold" else 0)


def test_a_warm_check_reports_how_few_lines_it_parsed(repo: Path, tmp_path: Path) -> None:
    records = [{"id": p["id"], "text": p["text"]} for p in PARAS[:40]]
    added = [{"id": "copy", "text": PARAS[3]["text"]}, {"id": "ok", "text": PARAS[50]["text"]}]
    write(repo / "data.jsonl", [*records, *added])
    cache = str(tmp_path / "cache")
    outs = [json.loads(check(repo, "--cache-dir", cache, "--format", "json").output) for _ in range(2)]
    assert [o["files"][0]["base_parsed"] for o in outs] == [40, 0]
    assert [o["files"][0]["parsed"] for o in outs] == [2, 2]
    assert outs[0]["rejected"] == outs[1]["rejected"] and [r["line"] for r in outs[1]["rejected"]] == [41]
