"""Example tests of bad and varied input: every format, every kind of broken record, atomic outputs.

Each test asserts on decisions (accepted / rejected) and on reason names, never on wording alone.
"""

from __future__ import annotations

import base64
import csv
import gzip
import json
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner, Result

from qualgate.cli import main
from qualgate.gate import Gate

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"
BROKEN = FIXTURES / "broken.jsonl"
INSTRUCT = FIXTURES / "instruct_sample.jsonl"
CHAT = FIXTURES / "chat_sample.jsonl"
FINAL_NAMES = ("accepted.jsonl", "rejected.jsonl", "scores.parquet", "report.json", "report.md", "report.html",
               "report.junit.xml", "card.json", "CARD.md")
GOOD = {"instruction": "Name a prime number.", "input": "", "output": "Seven is a prime number."}
GOOD_LINE = json.dumps(GOOD).encode()
RULES_ONLY = Path(__file__).resolve().parent.parent / "fixtures" / "rules_only.yaml"  # no dedup: GOOD repeats


# --------------------------------------------------------------------------------------------- helpers
def run(*args: str | Path, input: bytes | None = None) -> Result:
    """``qualgate filter ARGS -q -j 1`` in-process; exceptions other than SystemExit propagate."""
    argv = ["filter", *map(str, args), "-q", "-j", "1"]
    return CliRunner().invoke(main, argv, input=input, catch_exceptions=False)


def outputs(outdir: Path) -> dict[str, Any]:
    """Everything a run wrote: accepted lines (bytes), rejected records, report, scores rows."""
    acc = (outdir / "accepted.jsonl").read_bytes()
    rej = (outdir / "rejected.jsonl").read_bytes()
    assert acc == b"" or acc.endswith(b"\n")
    assert rej == b"" or rej.endswith(b"\n")
    return {
        "accepted": acc.splitlines(),
        "rejected": [json.loads(line) for line in rej.splitlines()],
        "report": json.loads((outdir / "report.json").read_text(encoding="utf-8")),
        "scores": pq.read_table(outdir / "scores.parquet").to_pylist(),
    }


def decisions(outdir: Path) -> list[tuple[str, bool, list[tuple[str, str]]]]:
    """Per input record, in input order: (id, accepted, [(check, reason), ...])."""
    out = outputs(outdir)
    by_id = {r["qualgate"]["id"]: [(f["check"], f["reason"]) for f in r["qualgate"]["findings"]]
             for r in out["rejected"]}
    return [(row["id"], row["accepted"], [] if row["accepted"] else by_id[row["id"]]) for row in out["scores"]]


def fixture_records(path: Path = INSTRUCT) -> list[dict[str, Any]]:
    """The parseable records of a JSONL fixture."""
    recs = []
    for line in path.read_bytes().splitlines():
        try:
            recs.append(json.loads(line))
        except ValueError:
            continue
    return recs


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_bytes(b"".join(json.dumps(r, ensure_ascii=False).encode() + b"\n" for r in records))
    return path


def only_malformed(rec: dict[str, Any]) -> dict[str, Any]:
    findings = rec["qualgate"]["findings"]
    assert len(findings) == 1, findings
    f = findings[0]
    assert f["check"] == "malformed"
    assert f["score"] is None and f["threshold"] is None
    return f


def assert_no_tmp(outdir: Path) -> None:
    leftovers = sorted(p.name for p in outdir.iterdir() if p.name.startswith(".") and p.name.endswith(".tmp"))
    assert leftovers == []


@pytest.fixture(scope="module")
def instruct_records() -> list[dict[str, Any]]:
    recs = fixture_records()
    assert len(recs) == 30  # one line of the fixture is broken on purpose
    return recs


@pytest.fixture(scope="module")
def jsonl_decisions(tmp_path_factory: pytest.TempPathFactory,
                    instruct_records: list[dict[str, Any]]) -> list[tuple[str, bool, list[tuple[str, str]]]]:
    """The reference: decisions for the parseable fixture records read from JSONL."""
    base = tmp_path_factory.mktemp("ref")
    src = write_jsonl(base / "ref.jsonl", instruct_records)
    res = run(src, "-o", base / "out")
    assert res.exit_code == 0, res.output
    got = decisions(base / "out")
    assert len(got) == 30
    assert any(acc for _, acc, _ in got) and not all(acc for _, acc, _ in got)
    return got


# ------------------------------------------------------------------------------------------ broken.jsonl
BROKEN_EXPECTED = {  # line -> reason
    2: "invalid_json",
    3: "invalid_utf8",
    4: "not_an_object",
    6: "missing_field",
    7: "wrong_type",
    8: "wrong_type",
}


def test_broken_fixture_each_bad_line_rejected_with_reason(tmp_path: Path) -> None:
    res = run(BROKEN, "-o", tmp_path / "out")
    assert res.exit_code == 1  # 6 of 8 rejected fails the default pack's max_reject_rate 0.5
    out = outputs(tmp_path / "out")
    lines = BROKEN.read_bytes().splitlines()
    # valid lines 1 and 10 are accepted byte for byte; blank lines 5 and 9 are skipped, not rejected
    assert out["accepted"] == [lines[0], lines[9]]
    assert [r["qualgate"]["source"]["line"] for r in out["rejected"]] == sorted(BROKEN_EXPECTED)
    assert [row["line"] for row in out["scores"]] == [1, 2, 3, 4, 6, 7, 8, 10]
    for rec in out["rejected"]:
        line = rec["qualgate"]["source"]["line"]
        assert rec["qualgate"]["source"] == {"file": str(BROKEN), "line": line}
        f = only_malformed(rec)
        assert f["reason"] == BROKEN_EXPECTED[line]
        assert f["message"].startswith(f"{BROKEN}:{line}: ")
        assert f["evidence"]["file"] == str(BROKEN) and f["evidence"]["line"] == line
    by_line = {r["qualgate"]["source"]["line"]: r for r in out["rejected"]}
    # unparseable lines keep their raw text; bad bytes also as base64, so nothing is lost
    assert by_line[2] == {"qualgate": by_line[2]["qualgate"]}
    assert by_line[2]["qualgate"]["raw"].encode() == lines[1]
    assert "raw_base64" not in by_line[2]["qualgate"]
    assert base64.b64decode(by_line[3]["qualgate"]["raw_base64"]) == lines[2]
    assert by_line[4]["qualgate"]["raw"] == '["a", "list", "not", "an", "object"]'
    # parseable-but-wrong records keep their fields, and the finding names the key
    assert {k: v for k, v in by_line[7].items() if k != "qualgate"} == json.loads(lines[6])
    assert by_line[7]["qualgate"]["findings"][0]["evidence"]["key"] == "output"
    assert by_line[8]["output"] is None
    report = out["report"]
    assert (report["total"], report["accepted"], report["rejected"]) == (8, 2, 6)
    assert report["by_check"]["malformed"]["rejected"] == 6
    assert report["by_check"]["malformed"]["reasons"] == {"invalid_json": 1, "invalid_utf8": 1, "missing_field": 1,
                                                          "not_an_object": 1, "wrong_type": 2}
    assert report["gate"]["passed"] is False


def test_strict_stops_at_first_bad_record(tmp_path: Path) -> None:
    res = run(BROKEN, "-o", tmp_path / "out", "--strict")
    assert res.exit_code == 2
    assert f"{BROKEN}:2" in res.stderr
    assert "invalid JSON" in res.stderr
    assert [p.name for p in (tmp_path / "out").iterdir()] == []


def test_strict_names_missing_field_key(tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_bytes(GOOD_LINE + b"\n" + b'{"instruction": "Null output", "output": null}\n')
    res = run(src, "-o", tmp_path / "out", "--strict")
    assert res.exit_code == 2
    assert f"{src}:2" in res.stderr and "'output'" in res.stderr


def test_strict_json_array_names_the_item_not_a_wrong_line(tmp_path: Path) -> None:
    src = tmp_path / "in.json"
    src.write_text(json.dumps([GOOD, {"instruction": "x", "output": None}], indent=2), encoding="utf-8")
    opening = [n for n, line in enumerate(src.read_text(encoding="utf-8").splitlines(), 1) if line.strip() == "{"]
    assert opening[1] == 7  # item 2 starts on line 7
    res = run(src, "-o", tmp_path / "out", "--strict")
    assert res.exit_code == 2
    assert f"{src}:2" not in res.stderr
    assert "item 2" in res.stderr


def test_strict_passes_clean_input(tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", [GOOD])
    res = run(src, "-o", tmp_path / "out", "--strict")
    assert res.exit_code == 0
    assert outputs(tmp_path / "out")["accepted"] == [GOOD_LINE]


# -------------------------------------------------------------------------------------- other formats
def test_json_array_same_decisions_as_jsonl(tmp_path: Path, instruct_records: list[dict[str, Any]],
                                            jsonl_decisions: list[Any]) -> None:
    src = tmp_path / "in.json"
    src.write_text(json.dumps(instruct_records, indent=2, ensure_ascii=False), encoding="utf-8")
    run(src, "-o", tmp_path / "out")
    assert decisions(tmp_path / "out") == jsonl_decisions
    out = outputs(tmp_path / "out")
    for i, rec in enumerate(out["rejected"]):
        assert rec["qualgate"]["source"]["file"] == str(src)
        assert set(rec["qualgate"]["source"]) == {"file", "item"}
        assert i == 0 or rec["qualgate"]["source"]["item"] > out["rejected"][i - 1]["qualgate"]["source"]["item"]
    assert [row["line"] for row in out["scores"]] == list(range(1, 31))
    # accepted records of a JSON array are re-serialised: same content as the input items
    accepted = [json.loads(line) for line in out["accepted"]]
    assert accepted == [r for r, (_, acc, _) in zip(instruct_records, jsonl_decisions, strict=True) if acc]


def test_json_array_non_object_items_are_malformed(tmp_path: Path) -> None:
    src = tmp_path / "in.json"
    src.write_text(json.dumps([GOOD, 3, "text", None, [GOOD]]), encoding="utf-8")
    res = run(src, "-o", tmp_path / "out")
    assert res.exit_code == 1
    out = outputs(tmp_path / "out")
    assert out["accepted"] == [json.dumps(GOOD, ensure_ascii=False).encode()]
    assert [r["qualgate"]["source"] for r in out["rejected"]] == [{"file": str(src), "item": i} for i in (2, 3, 4, 5)]
    assert [only_malformed(r)["reason"] for r in out["rejected"]] == ["not_an_object"] * 4
    assert [json.loads(r["qualgate"]["raw"]) for r in out["rejected"]] == [3, "text", None, [GOOD]]


def test_single_json_object_file(tmp_path: Path) -> None:
    src = tmp_path / "one.json"
    src.write_text(json.dumps(GOOD, indent=2), encoding="utf-8")
    run(src, "-o", tmp_path / "out")
    assert [json.loads(x) for x in outputs(tmp_path / "out")["accepted"]] == [GOOD]


def test_jsonl_saved_as_json_is_read_line_by_line(tmp_path: Path) -> None:
    src = tmp_path / "lines.json"
    src.write_bytes(GOOD_LINE + b"\n{broken\n" + GOOD_LINE + b"\n")
    run(src, "-o", tmp_path / "out", "-c", RULES_ONLY)
    out = outputs(tmp_path / "out")
    assert out["accepted"] == [GOOD_LINE, GOOD_LINE]
    assert [(r["qualgate"]["source"], only_malformed(r)["reason"]) for r in out["rejected"]] == [
        ({"file": str(src), "line": 2}, "invalid_json")]


def _write_table(path: Path, records: list[dict[str, Any]], delimiter: str) -> Path:
    with path.open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh, delimiter=delimiter)
        w.writerow(["instruction", "input", "output"])
        for r in records:
            w.writerow([r["instruction"], r["input"], r["output"]])
    return path


@pytest.mark.parametrize(("suffix", "delimiter"), [(".csv", ","), (".tsv", "\t")])
def test_csv_tsv_same_decisions_as_jsonl(tmp_path: Path, instruct_records: list[dict[str, Any]],
                                         jsonl_decisions: list[Any], suffix: str, delimiter: str) -> None:
    src = _write_table(tmp_path / f"in{suffix}", instruct_records, delimiter)
    run(src, "-o", tmp_path / "out")
    # values are strings in both, so even the content-hash ids agree
    assert decisions(tmp_path / "out") == jsonl_decisions
    out = outputs(tmp_path / "out")
    assert [json.loads(x) for x in out["accepted"]] == [
        r for r, (_, acc, _) in zip(instruct_records, jsonl_decisions, strict=True) if acc]
    # the recorded line is the physical line where the row starts (some fields hold newlines)
    starts, n = [], 2
    for r in instruct_records:
        starts.append(n)
        n += 1 + sum(r[k].count("\n") for k in ("instruction", "input", "output"))
    assert starts[-1] > 31  # the fixture does have multi-line fields
    assert [row["line"] for row in out["scores"]] == starts
    for rec in out["rejected"]:
        assert set(rec["qualgate"]["source"]) == {"file", "line"}
        assert rec["qualgate"]["source"]["file"] == str(src)
        assert {k: v for k, v in rec.items() if k != "qualgate"} == instruct_records[
            starts.index(rec["qualgate"]["source"]["line"])]


def test_parquet_same_decisions_as_jsonl(tmp_path: Path, instruct_records: list[dict[str, Any]],
                                         jsonl_decisions: list[Any]) -> None:
    src = tmp_path / "in.parquet"
    pq.write_table(pa.Table.from_pylist(instruct_records), src, row_group_size=5)
    run(src, "-o", tmp_path / "out")
    assert decisions(tmp_path / "out") == jsonl_decisions
    out = outputs(tmp_path / "out")
    assert [row["line"] for row in out["scores"]] == list(range(1, 31))
    for rec in out["rejected"]:
        assert set(rec["qualgate"]["source"]) == {"file", "row"}
        n = rec["qualgate"]["source"]["row"]
        assert {k: v for k, v in rec.items() if k != "qualgate"} == instruct_records[n - 1]


def test_parquet_non_string_values(tmp_path: Path) -> None:
    src = tmp_path / "in.parquet"
    pq.write_table(pa.Table.from_pylist([
        {"instruction": "Name a prime number.", "output": "Seven is a prime number.", "n": 1},
        {"instruction": "Name a prime number.", "output": None, "n": 2},
    ]), src)
    run(src, "-o", tmp_path / "out")
    out = outputs(tmp_path / "out")
    assert len(out["accepted"]) == 1
    assert [(r["qualgate"]["source"]["row"], only_malformed(r)["reason"]) for r in out["rejected"]] == [
        (2, "wrong_type")]


def test_broken_parquet_is_an_input_error(tmp_path: Path) -> None:
    src = tmp_path / "bad.parquet"
    src.write_bytes(b"PAR1 this is not parquet")
    res = run(src, "-o", tmp_path / "out")
    assert res.exit_code == 2
    assert str(src) in res.stderr


def test_gzip_jsonl_same_decisions(tmp_path: Path, instruct_records: list[dict[str, Any]],
                                   jsonl_decisions: list[Any]) -> None:
    plain = write_jsonl(tmp_path / "plain.jsonl", instruct_records)
    src = tmp_path / "in.jsonl.gz"
    src.write_bytes(gzip.compress(plain.read_bytes()))
    run(src, "-o", tmp_path / "out")
    assert decisions(tmp_path / "out") == jsonl_decisions
    out = outputs(tmp_path / "out")
    assert out["accepted"] == [line for line, (_, acc, _) in
                               zip(plain.read_bytes().splitlines(), jsonl_decisions, strict=True) if acc]


def test_gzip_csv(tmp_path: Path, instruct_records: list[dict[str, Any]], jsonl_decisions: list[Any]) -> None:
    plain = _write_table(tmp_path / "plain.csv", instruct_records, ",")
    src = tmp_path / "in.csv.gz"
    src.write_bytes(gzip.compress(plain.read_bytes()))
    run(src, "-o", tmp_path / "out")
    assert decisions(tmp_path / "out") == jsonl_decisions


def test_gzip_upper_case_extension(tmp_path: Path) -> None:
    src = tmp_path / "DATA.JSONL.GZ"
    src.write_bytes(gzip.compress(GOOD_LINE + b"\n"))
    run(src, "-o", tmp_path / "out")
    out = outputs(tmp_path / "out")
    assert out["accepted"] == [GOOD_LINE]
    assert out["rejected"] == []


def test_stdin_same_decisions_as_file(tmp_path: Path, jsonl_decisions: list[Any],
                                      instruct_records: list[dict[str, Any]]) -> None:
    data = write_jsonl(tmp_path / "in.jsonl", instruct_records).read_bytes()
    res = run("-", "-o", tmp_path / "out", input=data)
    assert res.exit_code == 0
    assert decisions(tmp_path / "out") == jsonl_decisions
    out = outputs(tmp_path / "out")
    assert out["accepted"] == [line for line, (_, acc, _) in
                               zip(data.splitlines(), jsonl_decisions, strict=True) if acc]
    assert out["rejected"]
    for rec in out["rejected"]:
        assert rec["qualgate"]["source"]["file"] == "<stdin>"
        assert set(rec["qualgate"]["source"]) == {"file", "line"}
    assert {row["file"] for row in out["scores"]} == {"<stdin>"}


def test_stdin_broken_lines(tmp_path: Path) -> None:
    res = run("-", "-o", tmp_path / "out", input=BROKEN.read_bytes())
    assert res.exit_code == 1
    out = outputs(tmp_path / "out")
    assert len(out["accepted"]) == 2
    assert {r["qualgate"]["source"]["line"]: only_malformed(r)["reason"] for r in out["rejected"]} == BROKEN_EXPECTED
    for r in out["rejected"]:
        assert r["qualgate"]["findings"][0]["message"].startswith(f"<stdin>:{r['qualgate']['source']['line']}: ")


def test_stdin_json_array_source_name(tmp_path: Path) -> None:
    res = run("-", "--format", "json", "-o", tmp_path / "out", input=json.dumps([GOOD, 3]).encode())
    assert res.exit_code in (0, 1)
    out = outputs(tmp_path / "out")
    assert out["accepted"] == [json.dumps(GOOD, ensure_ascii=False).encode()]
    assert out["rejected"][0]["qualgate"]["source"] == {"file": "<stdin>", "item": 2}


def test_several_files_in_one_run(tmp_path: Path) -> None:
    res = run(INSTRUCT, BROKEN, CHAT, "-o", tmp_path / "out")
    assert res.exit_code == 0  # 19 of 44 rejected
    out = outputs(tmp_path / "out")
    files = [row["file"] for row in out["scores"]]
    assert files == [str(INSTRUCT)] * 31 + [str(BROKEN)] * 8 + [str(CHAT)] * 5
    assert out["report"]["total"] == 44
    assert out["report"]["accepted"] + out["report"]["rejected"] == 44
    # each file's records get the same decisions as in a run of that file alone
    for i, path in enumerate((INSTRUCT, BROKEN, CHAT)):
        run(path, "-o", tmp_path / f"alone{i}")
        alone = decisions(tmp_path / f"alone{i}")
        together = [d for d, f in zip(decisions(tmp_path / "out"), files, strict=True) if f == str(path)]
        assert together == alone
    chat_rejected = {r["id"]: r["qualgate"]["findings"][0]["reason"] for r in out["rejected"]
                     if r["qualgate"]["source"]["file"] == str(CHAT)}
    assert chat_rejected == {"c2": "boilerplate_phrase", "c4": "dangling_ending", "c5": "missing_field"}


# --------------------------------------------------------------------------------- odd bytes and shapes
def test_csv_ragged_row_is_malformed(tmp_path: Path) -> None:
    src = tmp_path / "in.csv"
    src.write_text("instruction,input,output\n"
                   "Name a prime number.,,Seven is a prime number.\n"
                   "Too,many,fields,here\n"
                   "Too few\n"
                   "Name a colour of the rainbow.,,Indigo is one of the colours of the rainbow.\n", encoding="utf-8")
    res = run(src, "-o", tmp_path / "out")
    assert res.exit_code == 0
    out = outputs(tmp_path / "out")
    assert len(out["accepted"]) == 2
    assert [(r["qualgate"]["source"]["line"], only_malformed(r)["reason"]) for r in out["rejected"]] == [
        (3, "wrong_field_count"), (4, "wrong_field_count")]
    assert out["rejected"][0]["qualgate"]["raw"] == "Too,many,fields,here"
    assert out["rejected"][0]["qualgate"]["findings"][0]["message"].startswith(f"{src}:3: ")


def test_csv_invalid_utf8_row(tmp_path: Path) -> None:
    src = tmp_path / "in.csv"
    bad = b"Name a prime\xff number.,,Seven is a prime number."
    src.write_bytes(b"instruction,input,output\n" + bad + b"\n" + b"Name a prime number.,,Seven is a prime number.\n")
    run(src, "-o", tmp_path / "out")
    out = outputs(tmp_path / "out")
    assert len(out["accepted"]) == 1
    (rec,) = out["rejected"]
    assert only_malformed(rec)["reason"] == "invalid_utf8"
    assert base64.b64decode(rec["qualgate"]["raw_base64"]) == bad


def test_csv_long_field_is_read(tmp_path: Path) -> None:
    src = tmp_path / "in.csv"
    with src.open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["instruction", "output"])
        w.writerow(["Write a lot.", "word " * 40000])
        w.writerow(["Name a prime number.", "Seven is a prime number."])
    res = run(src, "-o", tmp_path / "out")
    assert res.exit_code in (0, 1), res.output
    out = outputs(tmp_path / "out")
    assert len(out["accepted"]) == 1
    assert [r["qualgate"]["findings"][0]["reason"] for r in out["rejected"]] == ["too_many_chars"]


def test_bom_on_first_line_jsonl(tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_bytes(b"\xef\xbb\xbf" + GOOD_LINE + b"\n" + GOOD_LINE + b"\n")
    res = run(src, "-o", tmp_path / "out", "-c", RULES_ONLY)
    assert res.exit_code == 0
    out = outputs(tmp_path / "out")
    assert out["accepted"] == [GOOD_LINE, GOOD_LINE]  # the BOM is not part of the record
    assert out["rejected"] == []


def test_bom_on_first_line_csv(tmp_path: Path) -> None:
    src = tmp_path / "in.csv"
    src.write_bytes(b"\xef\xbb\xbfinstruction,input,output\r\nName a prime number.,,Seven is a prime number.\r\n")
    res = run(src, "-o", tmp_path / "out")
    assert res.exit_code == 0
    out = outputs(tmp_path / "out")
    assert [json.loads(x) for x in out["accepted"]] == [GOOD]  # key is "instruction", not "\ufeffinstruction"
    assert out["rejected"] == []


def test_crlf_line_endings_jsonl(tmp_path: Path) -> None:
    lf = tmp_path / "lf.jsonl"
    lf.write_bytes(BROKEN.read_bytes())
    crlf = tmp_path / "crlf.jsonl"
    crlf.write_bytes(BROKEN.read_bytes().replace(b"\n", b"\r\n"))
    run(lf, "-o", tmp_path / "out_lf")
    run(crlf, "-o", tmp_path / "out_crlf")
    a, b = outputs(tmp_path / "out_lf"), outputs(tmp_path / "out_crlf")
    assert a["accepted"] == b["accepted"]  # the line ending is not part of the record
    assert [(r["qualgate"]["source"]["line"], only_malformed(r)["reason"]) for r in b["rejected"]] == sorted(
        BROKEN_EXPECTED.items())
    for ra, rb in zip(a["rejected"], b["rejected"], strict=True):
        assert ra["qualgate"]["id"] == rb["qualgate"]["id"]
        assert ra["qualgate"].get("raw") == rb["qualgate"].get("raw")
        assert ra["qualgate"].get("raw_base64") == rb["qualgate"].get("raw_base64")


def test_crlf_csv(tmp_path: Path, instruct_records: list[dict[str, Any]], jsonl_decisions: list[Any]) -> None:
    src = tmp_path / "in.csv"
    with src.open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh, lineterminator="\r\n")
        w.writerow(["instruction", "input", "output"])
        for r in instruct_records:
            w.writerow([r["instruction"], r["input"], r["output"]])
    run(src, "-o", tmp_path / "out")
    assert decisions(tmp_path / "out") == jsonl_decisions


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".csv", ".tsv", ".jsonl.gz"])
def test_empty_file(tmp_path: Path, suffix: str) -> None:
    src = tmp_path / f"empty{suffix}"
    src.write_bytes(gzip.compress(b"") if suffix.endswith(".gz") else b"")
    res = run(src, "-o", tmp_path / "out")
    assert res.exit_code == 0
    out = outputs(tmp_path / "out")
    assert out["accepted"] == [] and out["rejected"] == [] and out["scores"] == []
    report = out["report"]
    assert (report["total"], report["accepted"], report["rejected"], report["reject_rate"]) == (0, 0, 0, 0.0)
    assert report["gate"]["passed"] is True
    table = pq.read_table(tmp_path / "out" / "scores.parquet")
    assert table.num_rows == 0
    assert table.column_names[:4] == ["id", "accepted", "file", "line"]
    assert_no_tmp(tmp_path / "out")


def test_only_blank_lines(tmp_path: Path) -> None:
    src = tmp_path / "blank.jsonl"
    src.write_bytes(b"\n   \n\t\n\r\n")
    res = run(src, "-o", tmp_path / "out")
    assert res.exit_code == 0
    assert outputs(tmp_path / "out")["report"]["total"] == 0


def test_last_line_without_newline(tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_bytes(GOOD_LINE + b"\n" + b'{"text": 5')
    run(src, "-o", tmp_path / "out")
    out = outputs(tmp_path / "out")
    assert out["accepted"] == [GOOD_LINE]
    assert only_malformed(out["rejected"][0])["reason"] == "invalid_json"
    assert out["rejected"][0]["qualgate"]["raw"] == '{"text": 5'


# --------------------------------------------------------------------------------------- input errors
def test_missing_input_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.jsonl"
    res = run(missing, "-o", tmp_path / "out")
    assert res.exit_code == 2
    assert str(missing) in res.stderr and "not found" in res.stderr


def test_missing_second_file_loses_nothing_written(tmp_path: Path) -> None:
    missing = tmp_path / "nope.jsonl"
    res = run(INSTRUCT, missing, "-o", tmp_path / "out")
    assert res.exit_code == 2
    assert str(missing) in res.stderr
    assert [p.name for p in (tmp_path / "out").iterdir()] == []


def test_unknown_extension_suggests_format(tmp_path: Path) -> None:
    src = tmp_path / "data.txt"
    src.write_bytes(GOOD_LINE + b"\n")
    res = run(src, "-o", tmp_path / "out")
    assert res.exit_code == 2
    assert str(src) in res.stderr and "--format" in res.stderr
    ok = run(src, "-o", tmp_path / "out2", "--format", "jsonl")
    assert ok.exit_code == 0
    assert outputs(tmp_path / "out2")["accepted"] == [GOOD_LINE]


def test_json_broken_as_a_whole(tmp_path: Path) -> None:
    src = tmp_path / "bad.json"
    src.write_text('[\n  {"instruction": "a", "output": "b"},\n  {"instruction": "c", "output": }\n]\n',
                   encoding="utf-8")
    res = run(src, "-o", tmp_path / "out")
    assert res.exit_code == 2
    assert f"{src}:3" in res.stderr and "invalid JSON" in res.stderr
    assert not any((tmp_path / "out" / n).exists() for n in FINAL_NAMES)


def test_directory_as_input(tmp_path: Path) -> None:
    d = tmp_path / "dir.jsonl"
    d.mkdir()
    res = run(d, "-o", tmp_path / "out")
    assert res.exit_code == 2
    assert str(d) in res.stderr


# ------------------------------------------------------------------------------ records that need care
def test_existing_qualgate_field_is_preserved(tmp_path: Path) -> None:
    mine = {"run": 7, "notes": ["keep", "me"]}
    bad = {"instruction": "Can you draw me a cat?", "input": "",
           "output": "As an AI language model, I cannot draw.", "qualgate": mine}
    good = {**GOOD, "qualgate": mine}
    src = write_jsonl(tmp_path / "in.jsonl", [bad, good])
    run(src, "-o", tmp_path / "out")
    out = outputs(tmp_path / "out")
    assert out["accepted"] == [json.dumps(good, ensure_ascii=False).encode()]  # accepted: untouched
    (rec,) = out["rejected"]
    assert rec["qualgate"]["replaced_field"] == mine
    assert rec["qualgate"]["findings"][0]["check"] == "boilerplate"
    restored = {k: v for k, v in rec.items() if k != "qualgate"}
    restored["qualgate"] = rec["qualgate"]["replaced_field"]
    assert restored == bad


def test_id_field(tmp_path: Path) -> None:
    res = run(CHAT, "-o", tmp_path / "out", "--id", "id")
    out = outputs(tmp_path / "out")
    assert res.exit_code == (0 if out["report"]["gate"]["passed"] else 1)
    assert [row["id"] for row in out["scores"]] == ["c1", "c2", "c3", "c4", "c5"]
    assert {r["qualgate"]["id"] for r in out["rejected"]} == {"c2", "c4", "c5"}


def test_bad_id_field_is_malformed(tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", [{**GOOD, "uid": "a"}, GOOD, {**GOOD, "uid": [1]},
                                              {**GOOD, "uid": True}, {**GOOD, "uid": 7}])
    run(src, "-o", tmp_path / "out", "--id", "uid", "-c", RULES_ONLY)
    out = outputs(tmp_path / "out")
    assert [row["id"] for row in out["scores"] if row["accepted"]] == ["a", "7"]
    assert [(r["qualgate"]["source"]["line"], only_malformed(r)["reason"]) for r in out["rejected"]] == [
        (2, "bad_id"), (3, "bad_id"), (4, "bad_id")]
    assert all(r["qualgate"]["findings"][0]["evidence"]["key"] == "uid" for r in out["rejected"])


def test_unicode_and_escapes_accepted_verbatim(tmp_path: Path) -> None:
    lines = [
        '{"instruction": "Name a prime number.", "output": "Seven is a prime number \\u2014 it has no divisors."}',
        '{"instruction":"Name a prime number.","output":"Seven is a prime number \u2014 it has no divisors."}',
        '  {"output": "Seven is a prime number.",   "instruction": "Name a prime number."}  ',
        '{"instruction": "Name a prime number.", "output": "Seven is a prime number.\u2028Indeed it is."}',
    ]
    src = tmp_path / "in.jsonl"
    src.write_bytes(("\n".join(lines) + "\n").encode())
    run(src, "-o", tmp_path / "out", "-c", RULES_ONLY)
    out = outputs(tmp_path / "out")
    assert out["rejected"] == []
    assert out["accepted"] == [line.encode() for line in lines]


def test_nested_too_deep_is_malformed(tmp_path: Path) -> None:
    """20,000 levels: deeper than the parser goes, fewer values than input.max_record_values (100,000 levels
    would be record_too_large, counted before parsing: tests/test_reader_integrity.py)."""
    src = tmp_path / "in.jsonl"
    src.write_bytes(b'{"text": ' + b"[" * 20_000 + b"]" * 20_000 + b"}\n" + GOOD_LINE + b"\n")
    run(src, "-o", tmp_path / "out")
    out = outputs(tmp_path / "out")
    assert out["accepted"] == [GOOD_LINE]
    assert only_malformed(out["rejected"][0])["reason"] == "invalid_json"


def test_deeply_nested_record_does_not_crash_the_library() -> None:
    gate = Gate.from_config("default", workers=1)
    limit = sys.getrecursionlimit()
    tried = 0
    for depth in range(limit - 100, limit):
        try:
            rec = json.loads('{"text": "Seven is a prime number.", "x": ' + "[" * depth + "]" * depth + "}")
        except RecursionError:
            continue  # too deep for the caller to build; nothing to hand over
        tried += 1
        (d,) = gate.run([rec]).decisions  # must not raise
        assert d.accepted or d.findings[0].check == "malformed"
    assert tried > 0


def test_huge_integer_does_not_crash(tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_bytes(b'{"instruction": "Say a number.", "output": ' + b"1" * 5000 + b"}\n" + GOOD_LINE + b"\n")
    res = CliRunner().invoke(main, ["filter", str(src), "-o", str(tmp_path / "out"), "-q", "-j", "1"])
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    out = outputs(tmp_path / "out")
    assert out["accepted"] == [GOOD_LINE]
    assert len(out["rejected"]) == 1
    assert out["rejected"][0]["qualgate"]["findings"][0]["check"] == "malformed"


def _strict_json(line: bytes) -> Any:
    def no_constants(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    return json.loads(line, parse_constant=no_constants)


def test_overflowing_number_is_malformed_and_output_is_strict_json(tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    raw = b'{"instruction": "As an AI language model, give a big number.", "output": 1e999}'
    src.write_bytes(raw + b"\n")
    run(src, "-o", tmp_path / "out")
    (line,) = (tmp_path / "out" / "rejected.jsonl").read_bytes().splitlines()
    rec = _strict_json(line)
    assert only_malformed(rec)["reason"] == "invalid_json" and "out of range" in only_malformed(rec)["message"]
    assert rec["qualgate"]["raw"].encode() == raw


def test_library_non_finite_floats_are_written_as_strict_json(tmp_path: Path) -> None:
    from qualgate import Gate
    from qualgate.report import ReportBuilder
    from qualgate.runfolder import RunWriter

    gate = Gate.from_config("default")
    writer = RunWriter(tmp_path / "out", gate.score_columns)
    builder = ReportBuilder(gate.config, gate.score_columns)
    for d in gate.stream([{"text": "As an AI language model, I like big numbers.", "x": float("inf")}]):
        writer.write(d)
        builder.add(d)
    writer.close(builder.finish())
    (line,) = (tmp_path / "out" / "rejected.jsonl").read_bytes().splitlines()
    rec = _strict_json(line)
    assert rec["x"] == "inf" and rec["qualgate"]["findings"][0]["check"] == "boilerplate"


def test_duplicate_keys_are_malformed_not_silently_merged(tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    raw = b'{"text": "first value of the text field", "text": "second value"}'
    src.write_bytes(raw + b"\n")
    run(src, "-o", tmp_path / "out")
    (line,) = (tmp_path / "out" / "rejected.jsonl").read_bytes().splitlines()
    rec = json.loads(line)
    f = only_malformed(rec)
    assert f["reason"] == "duplicate_key" and "'text'" in f["message"] and rec["qualgate"]["raw"].encode() == raw


def test_nan_literal_is_invalid_json(tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_bytes(b'{"instruction": "Name a prime number.", "output": "Seven is a prime number.", "w": NaN}\n')
    run(src, "-o", tmp_path / "out")
    out = outputs(tmp_path / "out")
    assert out["accepted"] == []
    assert only_malformed(out["rejected"][0])["reason"] == "invalid_json"


# ------------------------------------------------------------------------------------- atomic outputs
def test_no_tmp_files_after_a_run(tmp_path: Path) -> None:
    res = run(INSTRUCT, BROKEN, "-o", tmp_path / "out")
    assert res.exit_code in (0, 1)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(FINAL_NAMES)
    assert_no_tmp(tmp_path / "out")


def _late_failure_input(tmp_path: Path) -> Path:
    src = tmp_path / "late.jsonl"
    src.write_bytes((GOOD_LINE + b"\n") * 40 + b'{"broken\n' + (GOOD_LINE + b"\n") * 5)
    return src


def test_failed_run_leaves_no_final_files(tmp_path: Path) -> None:
    src = _late_failure_input(tmp_path)
    res = run(src, "-o", tmp_path / "out", "--strict", "--batch-size", "4")
    assert res.exit_code == 2
    assert f"{src}:41" in res.stderr
    out = tmp_path / "out"
    assert not any((out / n).exists() for n in FINAL_NAMES)
    assert_no_tmp(out)
    assert list(out.iterdir()) == []


def test_failed_run_keeps_previous_outputs(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert run(INSTRUCT, "-o", out).exit_code == 0
    before = {n: (out / n).read_bytes() for n in FINAL_NAMES}
    res = run(_late_failure_input(tmp_path), "-o", out, "--strict", "--batch-size", "4")
    assert res.exit_code == 2
    assert {n: (out / n).read_bytes() for n in FINAL_NAMES} == before
    assert_no_tmp(out)
