"""Property-based tests of the rules that hold everywhere: conservation, complete findings, determinism, ids.

Inputs are random mixes of records (right and wrong field types, missing fields, a ``qualgate`` key of
their own) and malformed raw lines (invalid JSON, invalid UTF-8, JSON that is not an object), with blank
lines between them, written to a JSONL file and run through the real CLI or the library pipeline.
"""

from __future__ import annotations

import base64
import copy
import json
import random
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qualgate.cli import main
from qualgate.gate import Gate
from qualgate.io import read_records
from qualgate.report import ReportBuilder
from qualgate.runfolder import RunWriter
from qualgate.sample import Source

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"
FINDING_KEYS = {"check", "reason", "score", "threshold", "message", "evidence"}

SENTENCES = [
    "Name a prime number.",
    "Seven is a prime number.",
    "Explain why the sky is blue.",
    "Sunlight is scattered by the molecules of the atmosphere, and blue light is scattered the most.",
    "Give three tips for staying healthy.",
    "Eat well, exercise regularly and sleep seven to nine hours a night.",
    "Write a haiku about autumn.",
    "Crisp leaves drift and fall\nGolden light on quiet paths\nThe year exhales slow",
    "Où est la gare ?",
    "Die Katze schläft auf dem Sofa und träumt von Mäusen.",
    "As an AI language model, I do not have personal opinions.",
    "I'm sorry, but I cannot help with that.",
    "The three primary colours of paint are red, yellow and",
    "Dear {{name}}, thank you for your letter.",
    "<noinput>",
    "```python\ndef f(x):\n    return x",
    "",
    "   ",
    "Emoji are fine too 🙂 and so are accents: café, naïve, jalapeño.",
    "A line\u2028separator and a next-line\x85character stay inside the line.",
    "Lone surrogate \ud800 in a string.",
]


# --------------------------------------------------------------------------------------- strategies
def _any_json(leaves: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.recursive(leaves, lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=6), kids,
                                                                                           max_size=3), max_leaves=6)


json_leaves = (st.none() | st.booleans() | st.integers(-(10**12), 10**12)
               | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12))
json_values = _any_json(json_leaves)
text_values = st.sampled_from(SENTENCES) | st.text(max_size=60)
field_values = st.one_of(text_values, text_values, text_values, st.none(), st.integers(-1000, 1000),
                         st.floats(allow_nan=False, allow_infinity=False), st.booleans(),
                         st.lists(st.text(max_size=5), max_size=3), st.dictionaries(st.text(max_size=5), json_leaves,
                                                                                    max_size=2))
good_records = st.fixed_dictionaries({"instruction": st.sampled_from(SENTENCES[:8]),
                                      "input": st.sampled_from(["", "", SENTENCES[1]]),
                                      "output": st.sampled_from(SENTENCES[1:8:2])})
plausible_records = st.fixed_dictionaries({"instruction": st.sampled_from(SENTENCES[:8]),
                                           "input": st.sampled_from(["", SENTENCES[1], "<noinput>"]),
                                           "output": st.sampled_from(SENTENCES)})
messy_records = st.fixed_dictionaries({}, optional={"instruction": field_values, "input": field_values,
                                                    "output": field_values, "qualgate": json_values,
                                                    "meta": json_values, "id": json_leaves})
with_own_qualgate = good_records.flatmap(
    lambda r: st.fixed_dictionaries({k: st.just(v) for k, v in r.items()}, optional={"qualgate": json_values}))
text_records = st.fixed_dictionaries({"text": st.one_of(text_values, text_values, field_values)},
                                     optional={"meta": json_values})
chat_messages = st.lists(st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", "system"]),
                                                "content": text_values}, optional={"name": st.text(max_size=4)})
                         | json_values, min_size=1, max_size=4)
chat_records = st.fixed_dictionaries({"messages": chat_messages}, optional={"id": json_leaves})
records = st.one_of(good_records, plausible_records, messy_records, with_own_qualgate, text_records, chat_records)

BAD_BYTES = [b"\xff", b"\xfe\xff", b"\xc3\x28", b"\x80", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"\xc0\xaf"]
BLANKS = [b"", b" ", b"\t", b"  \t  "]


@dataclass(frozen=True)
class Line:
    """One input line: its bytes (no line ending), and the record it holds (None: unparseable or blank)."""

    data: bytes
    record: dict[str, Any] | None
    blank: bool = False


def _dumps(rec: Any, ascii_only: bool, compact: bool) -> str:
    sep = (",", ":") if compact else (", ", ": ")
    try:
        return json.dumps(rec, ensure_ascii=ascii_only, separators=sep).encode("utf-8").decode("utf-8")
    except UnicodeEncodeError:  # lone surrogates can only travel escaped
        return json.dumps(rec, ensure_ascii=True, separators=sep)


@st.composite
def record_lines(draw: st.DrawFn) -> Line:
    rec = draw(records)
    text = _dumps(rec, draw(st.booleans()), draw(st.booleans()))
    pad = draw(st.sampled_from(["", " ", "\t"]))
    return Line((pad + text + draw(st.sampled_from(["", " ", "\t "]))).encode("utf-8"), rec)


@st.composite
def invalid_json_lines(draw: st.DrawFn) -> Line:
    kind = draw(st.sampled_from(["truncated", "garbage", "single_quotes", "trailing_comma"]))
    rec = draw(records)
    text = json.dumps(rec)
    if kind == "truncated":
        text = text[: draw(st.integers(1, len(text) - 1))]
    elif kind == "garbage":
        text = "not json: " + draw(st.text(max_size=20)).replace("\n", " ").replace("\r", " ")
    elif kind == "single_quotes":
        text = "{'instruction': 'x', 'output': 'y'}"
    else:
        text = text[:-1] + (', "x": 1,}' if rec else '"x": 1,}')
    return Line(text.encode("utf-8"), None)


@st.composite
def invalid_utf8_lines(draw: st.DrawFn) -> Line:
    text = json.dumps(draw(records))
    cut = draw(st.integers(1, len(text)))
    return Line(text[:cut].encode() + draw(st.sampled_from(BAD_BYTES)) + text[cut:].encode(), None)


not_objects = (st.lists(json_values, max_size=3) | json_leaves).map(lambda v: Line(json.dumps(v).encode(), None))
blank_lines = st.sampled_from(BLANKS).map(lambda b: Line(b, None, blank=True))
_LINE_KINDS = {"record": record_lines(), "invalid_json": invalid_json_lines(), "invalid_utf8": invalid_utf8_lines(),
               "not_object": not_objects, "blank": blank_lines}
lines = st.sampled_from(["record"] * 7 + ["invalid_json", "invalid_utf8", "not_object", "blank"]).flatmap(
    _LINE_KINDS.__getitem__)


# ------------------------------------------------------------------------------------------ helpers
@contextmanager
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="qg-prop-") as d:
        yield Path(d)


def write_input(path: Path, items: list[Line], crlf: bool = False) -> Path:
    end = b"\r\n" if crlf else b"\n"
    path.write_bytes(b"".join(item.data + end for item in items))
    return path


def cli_filter(*args: str | Path) -> int:
    res = CliRunner().invoke(main, ["filter", *map(str, args), "-q"], catch_exceptions=False)
    return res.exit_code


def lib_filter(paths: list[Path], outdir: Path, **options: Any) -> dict[str, Any]:
    """The library pipeline the CLI is made of: read_records -> Gate.stream -> RunWriter + ReportBuilder."""
    gate = Gate.from_config("default", **options)
    writer = RunWriter(outdir, gate.score_columns)
    builder = ReportBuilder(gate.config, gate.score_columns)
    try:
        for d in gate.stream(read_records([str(p) for p in paths])):
            writer.write(d)
            builder.add(d)
    except BaseException:
        writer.abort()
        raise
    report = builder.finish(**gate.settings())
    writer.close(report)
    return report.data


def load_outputs(outdir: Path) -> dict[str, Any]:
    acc = (outdir / "accepted.jsonl").read_bytes()
    rej = (outdir / "rejected.jsonl").read_bytes()
    for blob in (acc, rej):
        assert blob == b"" or blob.endswith(b"\n")
    return {
        "accepted_bytes": acc,
        "rejected_bytes": rej,
        "accepted": acc.splitlines(),
        "rejected": [json.loads(line) for line in rej.splitlines()],
        "report": json.loads((outdir / "report.json").read_text(encoding="utf-8")),
        "scores": pq.read_table(outdir / "scores.parquet"),
    }


def without_qualgate(rec: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in rec.items() if k != "qualgate"}


def check_findings(findings: list[dict[str, Any]]) -> None:
    assert findings, "a rejected record must say why"
    for f in findings:
        assert set(f) == FINDING_KEYS
        assert isinstance(f["check"], str) and f["check"]
        assert isinstance(f["reason"], str) and f["reason"]
        assert isinstance(f["message"], str) and f["message"]
        assert isinstance(f["evidence"], dict)
        if f["check"] != "malformed":
            assert isinstance(f["score"], (int, float)) and not isinstance(f["score"], bool), f
            assert isinstance(f["threshold"], (int, float)) and not isinstance(f["threshold"], bool), f
        else:
            assert f["score"] is None and f["threshold"] is None


def check_conservation(src: Path, items: list[Line], out: dict[str, Any], exit_code: int | None = None) -> None:
    """Every non-blank input line in exactly one output, unchanged; counts add up; findings complete."""
    numbered = [(n, item) for n, item in enumerate(items, start=1) if not item.blank]
    rows = out["scores"].to_pylist()
    report = out["report"]
    # one row per record, in input order, pointing at the right line
    assert [r["line"] for r in rows] == [n for n, _ in numbered]
    assert {r["file"] for r in rows} <= {str(src)}
    assert len(out["accepted"]) + len(out["rejected"]) == len(numbered)
    # accepted: byte for byte the input lines, in order; never an unparseable one
    accepted_items = [item for (_, item), r in zip(numbered, rows, strict=True) if r["accepted"]]
    assert out["accepted"] == [item.data for item in accepted_items]
    assert all(item.record is not None for item in accepted_items)
    # rejected: the input record plus `qualgate`, or the raw bytes when it could not be parsed
    rejected_pairs = [(n, item, r) for (n, item), r in zip(numbered, rows, strict=True) if not r["accepted"]]
    assert len(rejected_pairs) == len(out["rejected"])
    for (n, item, row), rec in zip(rejected_pairs, out["rejected"], strict=True):
        q = rec["qualgate"]
        assert q["id"] == row["id"]
        assert q["source"] == {"file": str(src), "line": n}
        check_findings(q["findings"])
        if item.record is None:
            assert set(rec) == {"qualgate"}
            assert q["findings"][0]["check"] == "malformed"
            assert q["findings"][0]["reason"] in {"invalid_json", "invalid_utf8", "not_an_object"}
            raw = base64.b64decode(q["raw_base64"]) if "raw_base64" in q else q["raw"].encode("utf-8")
            assert raw == item.data
            try:
                item.data.decode("utf-8")
            except UnicodeDecodeError:
                assert "raw_base64" in q
            else:
                assert "raw_base64" not in q
        else:
            assert without_qualgate(rec) == without_qualgate(item.record)
            if "qualgate" in item.record:
                assert q["replaced_field"] == item.record["qualgate"]
            else:
                assert "replaced_field" not in q
    # report counts add up
    assert report["total"] == len(numbered) == out["scores"].num_rows
    assert report["accepted"] == len(out["accepted"])
    assert report["rejected"] == len(out["rejected"])
    assert report["total"] == report["accepted"] + report["rejected"]
    # without --all-findings a rejected record's findings come from one check, so per-check counts add up
    assert sum(c["rejected"] for c in report["by_check"].values()) == report["rejected"]
    for rec in out["rejected"]:
        assert len({f["check"] for f in rec["qualgate"]["findings"]}) == 1
    reasons: dict[str, int] = {}
    for rec in out["rejected"]:
        for f in rec["qualgate"]["findings"]:
            reasons[f"{f['check']}/{f['reason']}"] = reasons.get(f"{f['check']}/{f['reason']}", 0) + 1
    reported = {f"{c}/{r}": k for c, s in report["by_check"].items() for r, k in s["reasons"].items()}
    assert reported == reasons
    if exit_code is not None:
        assert exit_code == (0 if report["gate"]["passed"] else 1)


def decision_view(d: Any) -> tuple[Any, ...]:
    return (d.id, d.accepted, [f.to_dict() for f in d.findings], d.scores, d.skipped,
            str(d.sample.source) if d.sample.source else None)


PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ------------------------------------------------------------------------------------- conservation
@PROPERTY
@given(items=st.lists(lines, max_size=25), crlf=st.booleans())
def test_conservation_through_the_cli(items: list[Line], crlf: bool) -> None:
    with workdir() as tmp:
        src = write_input(tmp / "in.jsonl", items, crlf=crlf)
        # report.html is rendered (from hostile text too) by the library variant below and test_report_html
        code = cli_filter(src, "-o", tmp / "out", "-j", "1", "--no-html")
        check_conservation(src, items, load_outputs(tmp / "out"), code)
        assert not [p for p in (tmp / "out").iterdir() if p.name.endswith(".tmp")]


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(items=st.lists(lines, max_size=25), batch_size=st.integers(1, 8))
def test_conservation_through_the_library(items: list[Line], batch_size: int) -> None:
    with workdir() as tmp:
        src = write_input(tmp / "in.jsonl", items)
        lib_filter([src], tmp / "out", workers=1, batch_size=batch_size)
        check_conservation(src, items, load_outputs(tmp / "out"))


@settings(max_examples=60, deadline=None)
@given(recs=st.lists(st.one_of(records, json_leaves, st.lists(json_leaves, max_size=2)), max_size=20))
def test_gate_run_keeps_every_record(recs: list[Any]) -> None:
    """``Gate.run`` on in-memory items: one decision each; accepted records are the very objects passed in."""
    gate = Gate.from_config("default", workers=1, batch_size=4)
    result = gate.run(recs)
    assert len(result.decisions) == len(recs)
    assert len(result.accepted) + len(result.rejected) == len(recs)
    assert result.report["total"] == len(recs) == result.report["accepted"] + result.report["rejected"]
    accepted = iter(result.accepted)
    rejected = iter(result.rejected)
    for n, (item, d) in enumerate(zip(recs, result.decisions, strict=True), start=1):
        assert d.sample.source == Source("<records>", n, "item")
        if d.accepted:
            assert next(accepted) is item
            continue
        rec = next(rejected)
        check_findings(rec["qualgate"]["findings"])
        if isinstance(item, dict):
            assert without_qualgate(rec) == without_qualgate(item)
        else:
            assert set(rec) == {"qualgate"}
            assert rec["qualgate"]["findings"][0]["reason"] == "not_an_object"
            assert json.loads(rec["qualgate"]["raw"]) == item


# -------------------------------------------------------------------------------------- determinism
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(items=st.lists(lines, min_size=1, max_size=25))
def test_same_input_same_outputs(items: list[Line]) -> None:
    """Two CLI runs and one library run over the same file write the same bytes and the same scores."""
    with workdir() as tmp:
        src = write_input(tmp / "in.jsonl", items)
        cli_filter(src, "-o", tmp / "a", "-j", "1")
        cli_filter(src, "-o", tmp / "b", "-j", "1", "--batch-size", "3")
        lib_filter([src], tmp / "c", workers=1, batch_size=7)
        a, b, c = (load_outputs(tmp / x) for x in "abc")
        for other in (b, c):
            assert other["accepted_bytes"] == a["accepted_bytes"]
            assert other["rejected_bytes"] == a["rejected_bytes"]
            assert other["scores"].equals(a["scores"])
            for key in ("total", "accepted", "rejected", "by_check", "scores", "gate"):
                assert other["report"][key] == a["report"][key]


def _pool_input(path: Path, n_generated: int = 50, seed: int = 20240601) -> Path:
    """The three fixtures plus ``n_generated`` records built from them (some broken), as one JSONL file."""
    rng = random.Random(seed)
    fixture_lines = [line for name in ("instruct_sample.jsonl", "broken.jsonl", "chat_sample.jsonl")
                     for line in (FIXTURES / name).read_bytes().splitlines()]
    parsed = []
    for line in fixture_lines:
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            parsed.append(value)
    out = list(fixture_lines)
    for i in range(n_generated):
        rec = copy.deepcopy(rng.choice(parsed))
        roll = rng.random()
        if roll < 0.15:
            rec["output"] = rng.choice([None, 3, ["x"], "", "and the"])
        elif roll < 0.25:
            out.append(json.dumps(rec).encode()[:-3])
            continue
        elif roll < 0.3:
            out.append(json.dumps(rec).encode() + b"\xff")
            continue
        rec["n"] = i
        out.append(json.dumps(rec, ensure_ascii=rng.random() < 0.5).encode("utf-8"))
    path.write_bytes(b"\n".join(out) + b"\n")
    return path


def test_process_pool_gives_the_same_decisions(tmp_path: Path) -> None:
    src = _pool_input(tmp_path / "in.jsonl")
    serial = [decision_view(d) for d in
              Gate.from_config("default", workers=1, batch_size=8).stream(read_records([str(src)]))]
    pooled_gate = Gate.from_config("default", workers=2, batch_size=8)
    assert pooled_gate.pooled_checks, "the default pack's checks should be per-sample (pooled)"
    pooled = [decision_view(d) for d in pooled_gate.stream(read_records([str(src)]))]
    assert len(serial) > 8 * 4  # several batches
    assert any(v[1] for v in serial) and not all(v[1] for v in serial)
    assert pooled == serial


def test_process_pool_cli_writes_the_same_files(tmp_path: Path) -> None:
    src = _pool_input(tmp_path / "in.jsonl", seed=7)
    cli_filter(src, "-o", tmp_path / "serial", "-j", "1", "--batch-size", "8")
    cli_filter(src, "-o", tmp_path / "pooled", "-j", "2", "--batch-size", "8")
    a, b = load_outputs(tmp_path / "serial"), load_outputs(tmp_path / "pooled")
    assert b["accepted_bytes"] == a["accepted_bytes"]
    assert b["rejected_bytes"] == a["rejected_bytes"]
    assert b["scores"].equals(a["scores"])
    assert b["report"]["run"]["workers"] == 2
    assert a["report"]["by_check"] == b["report"]["by_check"]


# ---------------------------------------------------------------------------------------- sample ids
def _reorder(value: Any, rng: random.Random) -> Any:
    """The same JSON value with every object's keys in a shuffled order."""
    if isinstance(value, dict):
        keys = list(value)
        rng.shuffle(keys)
        return {k: _reorder(value[k], rng) for k in keys}
    if isinstance(value, list):
        return [_reorder(v, rng) for v in value]
    return value


json_objects = st.dictionaries(st.text(max_size=8), json_values, max_size=6)


@settings(max_examples=200, deadline=None)
@given(rec=json_objects | records, seed=st.integers(0, 2**32 - 1))
def test_sample_id_is_stable_and_ignores_key_order(rec: dict[str, Any], seed: int) -> None:
    gate = Gate.from_config("default", workers=1)
    sid = gate.sample(rec, 1).id
    assert isinstance(sid, str) and sid
    assert gate.sample(rec, 99).id == sid  # position does not matter
    assert Gate.from_config("default", workers=1).sample(copy.deepcopy(rec), 1).id == sid
    shuffled = _reorder(rec, random.Random(seed))
    assert shuffled == rec
    assert gate.sample(shuffled, 1).id == sid


@settings(max_examples=60, deadline=None)
@given(rec=records, ascii_only=st.booleans(), compact=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_sample_id_does_not_depend_on_formatting(rec: dict[str, Any], ascii_only: bool, compact: bool,
                                                 seed: int) -> None:
    """A record read from a JSONL line (any spacing, escaping, key order) has the id of the same dict in memory."""
    gate = Gate.from_config("default", workers=1)
    line = _dumps(_reorder(rec, random.Random(seed)), ascii_only, compact).encode("utf-8")
    with workdir() as tmp:
        src = tmp / "in.jsonl"
        src.write_bytes(b"  " + line + b"\n")
        (d,) = gate.stream(read_records([str(src)]))
    assert d.id == gate.sample(rec, 1).id


@settings(max_examples=60, deadline=None)
@given(uid=st.text(min_size=1, max_size=20) | st.integers(-(10**18), 10**18), rec=records)
def test_id_field_is_used(uid: str | int, rec: dict[str, Any]) -> None:
    gate = Gate.from_config("default", workers=1, id="uid")
    s = gate.sample({**rec, "uid": uid}, 1)
    assert s.id == str(uid)
    assert s.problem is None or s.problem.reason != "bad_id"


@settings(max_examples=40, deadline=None)
@given(uid=st.none() | st.booleans() | st.floats() | st.lists(st.integers(), max_size=2), rec=records)
def test_bad_id_field_is_malformed(uid: Any, rec: dict[str, Any]) -> None:
    gate = Gate.from_config("default", workers=1, id="uid")
    (d,) = gate.run([{**rec, "uid": uid}]).decisions
    assert not d.accepted
    assert (d.findings[0].check, d.findings[0].reason) == ("malformed", "bad_id")
    assert d.findings[0].evidence["key"] == "uid"
    (d,) = gate.run([{k: v for k, v in rec.items() if k != "uid"}]).decisions
    assert (d.findings[0].check, d.findings[0].reason) == ("malformed", "bad_id")


def test_id_option_in_the_cli(tmp_path: Path) -> None:
    rng = random.Random(3)
    recs = [{"uid": f"u{i}" if i % 3 else i, "instruction": rng.choice(SENTENCES[:8]), "input": "",
             "output": rng.choice(SENTENCES[:12])} for i in range(30)]
    src = tmp_path / "in.jsonl"
    src.write_bytes(b"".join(json.dumps(r).encode() + b"\n" for r in recs))
    cli_filter(src, "-o", tmp_path / "out", "-j", "1", "--id", "uid")
    out = load_outputs(tmp_path / "out")
    assert out["scores"].column("id").to_pylist() == [str(r["uid"]) for r in recs]
    assert [r["qualgate"]["id"] for r in out["rejected"]] == [
        str(r["uid"]) for r, ok in zip(recs, out["scores"].column("accepted").to_pylist(), strict=True) if not ok]
    assert out["rejected"], "some of these records should be rejected"
    cli_filter(src, "-o", tmp_path / "hash", "-j", "1")
    hashed = load_outputs(tmp_path / "hash")["scores"].column("id").to_pylist()
    assert hashed != out["scores"].column("id").to_pylist()
    assert len(set(hashed)) == len({json.dumps(r, sort_keys=True) for r in recs})


def test_non_string_keys_do_not_crash() -> None:
    gate = Gate.from_config("default", workers=1)
    result = gate.run([{1: "one", "text": "Seven is a prime number."}, {"text": "Seven is a prime number."}])
    assert len(result.decisions) == 2
    assert result.decisions[1].accepted
