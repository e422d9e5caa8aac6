"""Sets the input is compared with (baseline, private, reference): records without the input's id field are
used under their content hash, and a set that gives a check no usable record is an error naming the cause."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from qualgate import ConfigError, Gate, InputError
from qualgate.cli import main
from qualgate.sample import canonical_json, content_id
from tests.conftest import FIXTURES, require_embed


def _records(name: str) -> list[dict[str, Any]]:
    """The fixture's well-formed records (instruct_sample.jsonl also holds broken lines on purpose)."""
    out = []
    for line in (FIXTURES / name).read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return [r for r in out if isinstance(r, dict)]


def _write(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def _without(records: list[dict[str, Any]], *fields: str) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k not in fields} for r in records]


def _config(path: Path, text: str, check: str) -> Path:
    path.write_text(f"version: 1\ninput: {{text: {json.dumps(text)}, id: id}}\nchecks:\n  - check: {check}\n")
    return path


def _filter(tmp_path: Path, data: Path, cfg: Path, out: str, *sets: str) -> Result:
    return CliRunner().invoke(main, ["filter", str(data), "-c", str(cfg), "-o", str(tmp_path / out), "-q", "-j", "1",
                                     "--cache-dir", str(tmp_path / "cache"), *sets])


def _decisions(out: Path) -> list[tuple[str, bool, list[str]]]:
    rows = [(json.loads(x), True) for x in (out / "accepted.jsonl").read_text().splitlines()]
    rows += [(json.loads(x), False) for x in (out / "rejected.jsonl").read_text().splitlines()]
    return sorted((r["id"], ok, [f["reason"] for f in r.get("qualgate", {}).get("findings", [])]) for r, ok in rows)


def test_reference_without_ids_decides_as_with_ids(tmp_path: Path) -> None:
    reference = _records("reference_sample.jsonl")
    with_ids = _write(tmp_path / "ref_ids.jsonl", reference)
    no_ids = _write(tmp_path / "human.jsonl", _without(reference, "id"))
    data = _write(tmp_path / "data.jsonl", [
        *_records("human_prose.jsonl")[:30],
        {"id": "salad", "text": "onions quarterly the of spreadsheet brown juicy nine fold"},
        {"id": "loop", "text": "the the the the the the the the the the the the the the the the"}])
    cfg = _config(tmp_path / "p.yaml", "text", "perplexity")
    runs = []
    for n, ref in enumerate((with_ids, no_ids)):
        res = _filter(tmp_path, data, cfg, f"out{n}", "--reference", str(ref))
        assert res.exit_code in (0, 1), res.output
        report = json.loads((tmp_path / f"out{n}" / "report.json").read_text())
        assert report["reference"]["records"] == 40 and report["reference"]["skipped"] == 0
        runs.append(_decisions(tmp_path / f"out{n}"))
    assert runs[0] == runs[1]
    assert any(not ok for _, ok, _ in runs[0]) and any(ok for _, ok, _ in runs[0])  # it did decide something


def test_baseline_without_ids_catches_duplicates_named_by_content_hash(tmp_path: Path) -> None:
    base_records = _without(_records("reference_sample.jsonl")[:10], "id")
    base = _write(tmp_path / "base.jsonl", base_records)
    data = _write(tmp_path / "data.jsonl", [{"id": "new-1", "text": base_records[2]["text"]},
                                            {"id": "new-2", "text": "A fresh answer the baseline does not have."}])
    res = _filter(tmp_path, data, _config(tmp_path / "d.yaml", "text", "near_duplicate"), "out", "--baseline",
                  str(base))
    assert res.exit_code == 0, res.output
    (rejected,) = [json.loads(x) for x in (tmp_path / "out" / "rejected.jsonl").read_text().splitlines()]
    (f,) = rejected["qualgate"]["findings"]
    assert rejected["id"] == "new-1" and f["reason"] == "exact_duplicate"
    assert f["evidence"]["in_baseline"] is True
    assert f["evidence"]["duplicate_of"] == content_id(canonical_json(base_records[2]))
    assert f["evidence"]["duplicate_source"] == {"file": str(base), "line": 3}


def test_private_set_without_ids_catches_leaks_and_writes_no_private_text(tmp_path: Path) -> None:
    require_embed()
    private = _without(_records("private_records.jsonl"), "id")
    priv = _write(tmp_path / "private.jsonl", private)
    res = _filter(tmp_path, FIXTURES / "leak_sample.jsonl", _config(tmp_path / "l.yaml", "text", "private_leak"),
                  "out", "--private", str(priv))
    assert res.exit_code == 0, res.output
    out = tmp_path / "out"
    (rejected,) = [json.loads(x) for x in (out / "rejected.jsonl").read_text().splitlines()]
    (f,) = rejected["qualgate"]["findings"]
    assert rejected["id"] == "gen-001" and f["check"] == "private_leak"
    assert f["evidence"]["private_id"] == content_id(canonical_json(private[0]))  # was ticket-0417
    for path in out.iterdir():
        content = path.read_text(errors="replace")
        for rec in private[1:]:
            assert rec["text"][:40] not in content, path.name


@pytest.mark.parametrize("role, check", [("reference", "perplexity"), ("baseline", "near_duplicate")])
def test_set_missing_the_text_field_is_an_input_error_naming_fields(tmp_path: Path, role: str, check: str) -> None:
    renamed = [{"reply" if k == "output" else k: v for k, v in r.items()} for r in _records("instruct_sample.jsonl")
               if list(r) == ["instruction", "input", "output"]]  # not a common name of output (FieldMap)
    bad = _write(tmp_path / "human.jsonl", renamed)
    cfg = _config(tmp_path / "c.yaml", "{instruction}\n{output}", check)
    res = _filter(tmp_path, FIXTURES / "instruct_sample.jsonl", cfg, "out", f"--{role}", str(bad))
    assert res.exit_code == 2, res.output
    n = len(renamed)
    assert f"{bad}: {role} set: 0 of {n} records usable: field 'output' missing in all {n} " in res.output
    assert "(fields present: instruction, input, reply;" in res.output
    assert not (tmp_path / "out").exists()


def test_private_set_missing_the_text_field_is_an_input_error(tmp_path: Path) -> None:
    require_embed()
    bad = _write(tmp_path / "private.jsonl", [{"ticket": r["id"], "body": r["text"]}
                                              for r in _records("private_records.jsonl")])
    gate = Gate.from_config({"version": 1, "input": {"text": "text", "id": "id"},
                             "checks": [{"check": "private_leak"}]}, cache_dir=tmp_path)
    with pytest.raises(InputError, match=r"private set: 0 of 6 records usable: field 'text' missing in all 6 "
                                         r"\(fields present: ticket, body;"):
        gate.load_set("private", [str(bad)], cache_dir=tmp_path)
    assert "private" not in gate.sets_info
    with pytest.raises(ConfigError, match="none is loaded"):  # nothing half-loaded is used
        gate.run(_records("leak_sample.jsonl"))


def test_a_check_field_missing_in_every_set_record_names_the_check(tmp_path: Path) -> None:
    base = _write(tmp_path / "b.jsonl", [{"text": "one answer here"}, {"text": "another answer"}])
    gate = Gate.from_config({"version": 1, "input": {"text": "text"},
                             "checks": [{"check": "near_duplicate", "field": "foo"}]}, cache_dir=None)
    with pytest.raises(InputError, match=r"baseline set: 0 of 2 records usable by check 'near_duplicate': "
                                         r"field 'foo' missing in all 2 \(fields present: text\)$"):
        gate.load_baseline([str(base)])


def test_too_few_usable_records_names_the_cause_also_from_the_cache(tmp_path: Path) -> None:
    reference = _records("reference_sample.jsonl")[:12]
    mixed = reference[:3] + [{"id": r["id"], "body": r["text"]} for r in reference[3:]]
    ref = _write(tmp_path / "small.jsonl", mixed)
    cfg = {"version": 1, "input": {"text": "text", "id": "id"}, "checks": [{"check": "perplexity"}]}
    infos = []
    for status in ("miss", "hit"):
        gate = Gate.from_config(cfg, cache_dir=None)
        with pytest.warns(UserWarning, match=r"reference set .*small.jsonl: 9 of 12 records left out: "
                                             r"field 'text' missing in 9 \(fields present: id, topic, text, body;"):
            info = gate.load_set("reference", [str(ref)], cache_dir=tmp_path / "cache")
        assert info["cache"]["perplexity"]["status"] == status
        infos.append({k: v for k, v in info.items() if k != "cache"})
        with pytest.raises(ConfigError, match=r"needs at least 10 usable records in the reference set, got 3 of 12: "
                                              r"field 'text' missing in 9 \(fields present"):
            gate.run([{"id": "a", "text": "Brown the onions slowly."}])
    assert infos[0] == infos[1]
    assert infos[0]["unusable"] == {"records": 12, "usable": 3, "causes": {"field 'text' missing": 9}}


def test_a_damaged_usage_record_in_the_cache_rebuilds_the_index(tmp_path: Path) -> None:
    import numpy as np

    ref = _write(tmp_path / "r.jsonl", [{"text": "one answer"}, {"body": "no text"}])
    cfg = {"version": 1, "input": {"text": "text"}, "checks": [{"check": "near_duplicate"}]}
    with pytest.warns(UserWarning, match="1 of 2 records left out"):
        Gate.from_config(cfg).load_baseline([str(ref)], cache_dir=tmp_path)
    (npz,) = tmp_path.glob("near_duplicate-*.npz")
    with np.load(npz) as z:
        state = {k: z[k] for k in z.files}
    np.savez(npz, **{**state, "_qualgate_usage": np.asarray("{not json")})
    with warnings.catch_warnings(record=True):  # rebuilt, whether or not that is said
        info = Gate.from_config(cfg).load_baseline([str(ref)], cache_dir=tmp_path)
    assert info["cache"]["near_duplicate"]["status"] == "miss"
    assert info["unusable"] == {"records": 2, "usable": 1, "causes": {"field 'text' missing": 1}}


def test_diversity_note_names_why_reference_records_were_left_out(tmp_path: Path) -> None:
    require_embed()
    ref = _write(tmp_path / "r.jsonl", [{"text": "Brown the onions slowly over low heat."},
                                        *({"body": f"no text {i}"} for i in range(4))])
    gate = Gate.from_config({"version": 1, "input": {"text": "text", "id": "id"}, "checks": [], "diversity": {}},
                            cache_dir=tmp_path)
    with pytest.warns(UserWarning, match="4 of 5 records left out"):
        gate.load_set("reference", [str(ref)], cache_dir=tmp_path)
    note = gate.run(_records("leak_sample.jsonl")).report["diversity"]["note"]
    assert note.startswith("too few samples to measure diversity")
    assert "reference records left out: field 'text' missing in 4 (fields present: text, body;" in note
