"""Reviewer overrides: applied after every check, recorded next to the findings they overrule."""

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
from qualgate.tune import tune
from tests.conftest import FIXTURES

INPUT = FIXTURES / "instruct_sample.jsonl"


def _filter(out: Path, *extra: str) -> dict[str, Any]:
    res = CliRunner().invoke(main, ["filter", str(INPUT), "-c", "instruct", "-o", str(out), "-q", "-j", "1",
                                    "--no-cache", *extra])
    assert res.exit_code in (0, 1), res.output
    return dict(json.loads((out / "report.json").read_text()))


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text().splitlines() if x] if path.exists() else []


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("plain")
    _filter(out)
    return out


def _ids(run: Path) -> tuple[list[str], list[str]]:
    """(rejected ids, accepted ids) of a run, parseable records only."""
    rows = pq.read_table(run / "scores.parquet").to_pylist()
    rejected = [r["qualgate"]["id"] for r in _jsonl(run / "rejected.jsonl") if "raw" not in r["qualgate"]]
    return rejected, [r["id"] for r in rows if r["accepted"]]


def test_accept_and_reject_overrides_are_applied_last_and_recorded(plain: Path, tmp_path: Path) -> None:
    rejected, accepted = _ids(plain)
    lift, drop = rejected[0], accepted[0]
    ov = tmp_path / "overrides.yaml"
    ov.write_text(yaml.safe_dump([
        {"id": lift, "decision": "accept", "reviewer": "ana", "note": "fine for our use"},
        {"id": drop, "decision": "reject", "reviewer": "bo", "note": "off-topic"},
        {"id": "no-such-id", "decision": "reject", "reviewer": "bo"},
    ]))
    base = json.loads((plain / "report.json").read_text())
    report = _filter(tmp_path / "run", "--overrides", str(ov))
    run = tmp_path / "run"
    assert report["accepted"] == base["accepted"] and report["total"] == base["total"]  # one each way
    acc_lines = (run / "accepted.jsonl").read_bytes().splitlines()
    original = dict(zip(*(_ids(plain)[1], (plain / "accepted.jsonl").read_bytes().splitlines()), strict=True))
    assert original[drop] not in acc_lines
    # the overruled sample is written as it came in, byte for byte, and its findings stay on record
    source_lines = INPUT.read_bytes().splitlines()
    assert any(line in source_lines for line in acc_lines)
    rej = {r["qualgate"]["id"]: r for r in _jsonl(run / "rejected.jsonl")}
    assert lift not in rej
    dropped = rej[drop]["qualgate"]
    assert dropped["override"]["reviewer"] == "bo" and dropped["findings"][0]["check"] == "override"
    assert dropped["findings"][0]["reason"] == "reviewer_rejected" and "off-topic" in dropped["findings"][0]["message"]
    history = {o["id"]: o for o in _jsonl(run / "overrides.jsonl")}
    assert set(history) == {lift, drop}
    assert history[lift]["decision"] == "accept" and history[lift]["findings"]  # what the reviewer overruled
    assert history[lift]["from"].endswith("overrides.yaml:1")
    rows = {r["id"]: r for r in pq.read_table(run / "scores.parquet").to_pylist()}
    assert rows[lift]["accepted"] and json.loads(rows[lift]["override"])["reviewer"] == "ana"
    ov_sec = report["overrides"]
    assert (ov_sec["applied"], ov_sec["accepted"], ov_sec["rejected"]) == (2, 1, 1)
    assert ov_sec["unmatched"] == ["no-such-id"]
    first_check = history[lift]["findings"][0]["check"]
    assert report["by_check"][first_check].get("overruled") == 1
    assert "Reviewer overrides" in (run / "report.md").read_text()
    # explain shows the override beside the findings
    res = CliRunner().invoke(main, ["explain", lift, "--run", str(run)])
    assert "overridden: accept by ana" in res.output


def test_jsonl_overrides_and_library_api(plain: Path, tmp_path: Path) -> None:
    rejected, _ = _ids(plain)
    ov = tmp_path / "o.jsonl"
    ov.write_text(json.dumps({"id": rejected[1], "decision": "accept", "reviewer": "cy"}) + "\n\n")
    gate = Gate.from_config("instruct", cache_dir=None)
    gate.use_overrides(ov)
    result = gate.run(list(read_records([str(INPUT)])))
    lifted = [d for d in result.decisions if d.override is not None]
    assert lifted and all(d.accepted and d.findings for d in lifted)  # accepted, findings kept
    assert result.report["overrides"]["applied"] == len(lifted)


@pytest.mark.parametrize(("text", "name", "words"), [
    ("- {id: a, decision: accept}\n", "o.yaml", "o.yaml:1 at 'reviewer'"),
    ("- {id: a, decision: maybe, reviewer: x}\n", "o.yaml", "at 'decision'"),
    ("- {id: a, decision: accept, reviewer: x}\n- {id: a, decision: reject, reviewer: y}\n", "o.yaml",
     "o.yaml:2 at 'id': id 'a' is overridden twice"),
    ("- [a, b\n", "o.yaml", "invalid YAML"),
    ("things: []\n", "o.yaml", "only the key 'overrides'"),
    ("overrides:\n  - {id: a, decision: accept, reviewer: x, colour: red}\n", "o.yaml", "o.yaml:2 at 'colour'"),
    ('{"id": "a", "decision": "accept", "reviewer": "x"}\n{"id": "b", "decision"\n', "o.jsonl", "o.jsonl:2"),
    ('["a"]\n', "o.jsonl", "must be a mapping"),
])
def test_bad_overrides_files_name_file_line_and_key(tmp_path: Path, text: str, name: str, words: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_overrides(path)
    assert words in str(err.value)
    res = CliRunner().invoke(main, ["filter", str(INPUT), "-o", str(tmp_path / "out"), "--overrides", str(path),
                                    "-q"])
    assert res.exit_code == 2 and words in res.output
    assert not (tmp_path / "out" / "accepted.jsonl").exists()


def test_numeric_ids_and_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "o.yaml"
    path.write_text("- {id: 7, decision: reject, reviewer: x}\n")
    assert "7" in load_overrides(path).entries
    path.write_text("")
    assert len(load_overrides(path)) == 0


def test_tune_keeps_the_runs_overrides_and_can_replace_them(plain: Path, tmp_path: Path) -> None:
    rejected, _ = _ids(plain)
    ov = tmp_path / "o.yaml"
    ov.write_text(yaml.safe_dump([{"id": rejected[0], "decision": "accept", "reviewer": "ana"}]))
    _filter(tmp_path / "run", "--overrides", str(ov))
    kept = tune(tmp_path / "run", ["length.min_words=2"])
    assert [d.id for d in kept.decisions if d.override is not None] == [rejected[0]]
    assert next(d for d in kept.decisions if d.id == rejected[0]).accepted
    empty = tmp_path / "none.yaml"
    empty.write_text("[]\n")
    replaced = tune(tmp_path / "run", [], overrides=load_overrides(empty))
    assert not any(d.override for d in replaced.decisions)
    assert not next(d for d in replaced.decisions if d.id == rejected[0]).accepted


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(picks=st.lists(st.tuples(st.integers(0, 40), st.sampled_from(["accept", "reject"])), max_size=12))
def test_every_record_lands_once_and_overrides_win(picks: list[tuple[int, str]], tmp_path_factory:
                                                    pytest.TempPathFactory) -> None:
    gate = Gate.from_config("instruct", cache_dir=None)
    records = list(read_records([str(INPUT)]))  # malformed lines included: they can be overridden too
    ids = [d.id for d in gate.run(records).decisions]
    chosen: dict[str, str] = {}
    for i, decision in picks:
        if i < len(ids):
            chosen.setdefault(ids[i], decision)
    path = tmp_path_factory.mktemp("ov") / "o.yaml"
    path.write_text(yaml.safe_dump([{"id": k, "decision": v, "reviewer": "r"} for k, v in chosen.items()]))
    gate.use_overrides(path)
    before = {d.id: d.accepted for d in Gate.from_config("instruct", cache_dir=None).run(records).decisions}
    result = gate.run(records)
    assert len(result.decisions) == len(records)
    assert result.report["accepted"] + result.report["rejected"] == len(records)
    refused = set(result.report["overrides"].get("refused", {}).get("ids", []))
    for d in result.decisions:
        want = chosen.get(d.id)
        if d.sample.record is None and want == "accept":  # an unparseable line never enters accepted.jsonl
            assert not d.accepted and d.override is None and d.id in refused
            continue
        assert d.accepted == (want == "accept" if want else before[d.id])
        assert (d.override is not None) == (want is not None)
