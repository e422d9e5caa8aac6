"""The CLI end to end on the bundled fixtures, and the library API that backs it."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
from click.testing import CliRunner

from qualgate import Gate, __version__
from qualgate.cli import main
from qualgate.io import read_records

# line of fixtures/instruct_sample.jsonl -> (check, reason) of its first finding under the default pack
EXPECTED = {
    11: ("boilerplate", "boilerplate_phrase"),
    13: ("malformed", "invalid_json"),
    17: ("placeholder", "placeholder"),
    18: ("placeholder", "placeholder"),
    19: ("truncated", "dangling_ending"),
    23: ("truncated", "unclosed_code_block"),
    24: ("language", "wrong_language"),
    29: ("boilerplate", "boilerplate_phrase"),
    30: ("near_duplicate", "exact_duplicate"),
    31: ("near_duplicate", "near_duplicate"),
}


def run_cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def test_filter_default_pack_on_fixture(fixtures: Path, tmp_path: Path) -> None:
    src = fixtures / "instruct_sample.jsonl"
    code, out = run_cli("filter", str(src), "-o", str(tmp_path), "-j", "1")
    assert code == 0, out
    assert "31 records: 21 accepted, 10 rejected" in out
    rejected = [json.loads(line) for line in (tmp_path / "rejected.jsonl").read_text().splitlines()]
    got = {r["qualgate"]["source"]["line"]: (r["qualgate"]["findings"][0]["check"],
                                             r["qualgate"]["findings"][0]["reason"]) for r in rejected}
    assert got == EXPECTED
    for r in rejected:
        for f in r["qualgate"]["findings"]:
            assert set(f) == {"check", "reason", "score", "threshold", "message", "evidence"}
            assert f["message"]
    lines = [line for line in src.read_bytes().splitlines() if line.strip()]
    accepted = (tmp_path / "accepted.jsonl").read_bytes().splitlines()
    assert accepted == [line for n, line in enumerate(lines, 1) if n not in EXPECTED]  # byte for byte
    report = json.loads((tmp_path / "report.json").read_text())
    assert (report["total"], report["accepted"], report["rejected"]) == (31, 21, 10)
    near = next(r for r in rejected if r["qualgate"]["source"]["line"] == 31)["qualgate"]["findings"][0]
    assert near["evidence"]["duplicate_source"] == {"file": str(src), "line": 15} and 0.8 <= near["score"] < 1
    assert report["sets"]["near_duplicate"]["largest_clusters"][0]["duplicates"] == 1
    assert report["by_check"]["truncated"]["reasons"] == {"dangling_ending": 1, "unclosed_code_block": 1}
    assert report["gate"]["passed"] is True
    assert report["gate"]["conditions"][0]["name"] == "max_reject_rate"
    table = pq.read_table(tmp_path / "scores.parquet")
    assert table.num_rows == 31 and "length.words" in table.column_names and "language.prob" in table.column_names
    assert sum(table.column("accepted").to_pylist()) == 21
    md = (tmp_path / "report.md").read_text()
    assert "gate PASSED" in md and "| truncated | truncated |" in md and "As an AI language model" in md
    assert not list(tmp_path.glob(".*.tmp"))


def test_gate_failure_exits_1(fixtures: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "strict.yaml"
    cfg.write_text("version: 1\nextends: default\ngate: {max_rejected: 0}\n")
    code, out = run_cli("filter", str(fixtures / "instruct_sample.jsonl"), "-c", str(cfg), "-o", str(tmp_path / "o"))
    assert code == 1 and "gate FAILED" in out and "max_rejected" in out
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert report["gate"]["passed"] is False


def test_config_error_exits_2(fixtures: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("version: 1\nchecks:\n  - check: length\n    min_words: -1\n")
    code, out = run_cli("filter", str(fixtures / "instruct_sample.jsonl"), "-c", str(cfg), "-o", str(tmp_path / "o"))
    assert code == 2 and "checks[0].min_words" in out and f"{cfg}:4" in out
    assert not (tmp_path / "o").exists()


def test_instruct_pack_and_text_option(fixtures: Path, tmp_path: Path) -> None:
    code, _ = run_cli("filter", str(fixtures / "instruct_sample.jsonl"), "-c", "instruct", "-o", str(tmp_path), "-q")
    report = json.loads((tmp_path / "report.json").read_text())
    assert code == 0 and report["by_check"]["empty_field"]["rejected"] == 1
    code, _ = run_cli("filter", str(fixtures / "instruct_sample.jsonl"), "--text", "{output}", "-o",
                      str(tmp_path / "t"), "-q")
    report = json.loads((tmp_path / "t" / "report.json").read_text())
    assert code == 0 and report["run"]["text"] == "{output}"


def test_rules_lists_checks_and_packs() -> None:
    code, out = run_cli("rules")
    assert code == 0
    for name in ("length", "language", "pattern", "boilerplate", "empty_field", "placeholder", "truncated",
                 "default", "instruct"):
        assert f"  {name} " in out
    code, out = run_cli("rules", "language")
    assert code == 0 and "min_prob" in out and "default 0.25" in out
    code, out = run_cli("rules", "instruct")
    assert code == 0 and "output_length" in out
    code, out = run_cli("rules", "nope")
    assert code == 2


def test_version() -> None:
    code, out = run_cli("--version")
    assert code == 0 and __version__ in out


def test_library_run_and_stream(fixtures: Path) -> None:
    gate = Gate.from_config("default")
    records = list(read_records([str(fixtures / "instruct_sample.jsonl")]))
    result = gate.run(records)
    assert len(result.accepted) == 21 and len(result.rejected) == 10
    assert result.report["total"] == 31 and result.report.passed
    ids = [d.id for d in gate.stream(records)]
    assert ids == [d.id for d in result.decisions]
    lines = [d.sample.source.line for d in result.decisions if d.sample.source]
    assert lines == sorted(lines)


def test_library_accepts_plain_dicts_and_bad_items() -> None:
    gate = Gate.from_config("default")
    result = gate.run([{"text": "A perfectly normal sentence about gardens and the plants that grow there."},
                       "not a dict", {"text": 3.5}, {"other": "x"}])
    reasons = [[f.reason for f in d.findings] for d in result.decisions]
    assert reasons == [[], ["not_an_object"], [], ["missing_field"]]
    assert result.rejected[0]["qualgate"]["raw"] == '"not a dict"'


def test_help_imports_neither_numpy_nor_the_checks() -> None:
    """`qualgate --help` must start fast: the package's public names load on first use (PEP 562)."""
    import subprocess
    import sys

    code = ("import sys, qualgate.cli; print(sorted(m for m in ('numpy', 'qualgate.checks', 'qualgate.gate') "
            "if m in sys.modules)); from qualgate import Gate, load_config; print(Gate.__name__, 'qualgate.gate' "
            "in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[0] == "[]" and out[1] == "Gate True"


def test_a_closed_pipe_is_a_quiet_sigpipe_exit() -> None:
    """`qualgate schema | head -0`: the reader going away is no internal error (it closes the pipe before the
    schema, which takes a moment to build, is written)."""
    import subprocess
    import sys

    job = subprocess.Popen([sys.executable, "-m", "qualgate", "schema"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE)
    assert job.stdout is not None
    job.stdout.close()  # the reader is gone before the first write
    _, err = job.communicate(timeout=60)
    assert job.returncode == 141 and b"internal error" not in err and b"Traceback" not in err, err


def test_a_rules_only_run_imports_only_the_check_modules_it_uses(tmp_path: Path) -> None:
    """The check registry imports a family's module on first use: a run of rule checks loads neither MinHash
    (datasketch), embeddings (faiss, torch, sentence-transformers), perplexity nor fastText; and writing
    scores.parquet does not make pyarrow import pandas (a third of a small run's time), nor the card
    pyarrow.compute (30 ms)."""
    import subprocess
    import sys

    (tmp_path / "rules.yaml").write_text("version: 1\nchecks:\n  - {check: empty_field, fields: [output]}\n"
                                         "  - {check: truncated}\n  - {check: boilerplate}\n  - {check: refusal}\n")
    (tmp_path / "in.jsonl").write_text(json.dumps({"instruction": "Name a colour.", "output": "Blue."}) + "\n"
                                       + json.dumps({"instruction": "Hi", "output": "As an AI language model, I"
                                                     " cannot."}) + "\n")
    code = ("import runpy, sys\nsys.argv = ['qualgate', 'filter', '-c', 'rules.yaml', 'in.jsonl', '-o', 'out', '-q', "
            "'--no-html', '--no-cache', '-j', '1']\ntry:\n    runpy.run_module('qualgate.cli', run_name='__main__')\n"
            "except SystemExit as exc:\n    print(exc.code)\nprint(sorted(m for m in sys.modules if m in ("
            "'datasketch', 'faiss', 'torch', 'sentence_transformers', 'transformers', 'fasttext', 'langdetect', "
            "'qualgate.checks.minhash', 'qualgate.checks.embedding', 'qualgate.checks.perplexity', "
            "'qualgate.checks.language', 'qualgate.checks.text_quality', 'qualgate.minhashing', 'qualgate.index', "
            "'qualgate.lm.ngram', 'qualgate.checks.tasks', 'tqdm', 'pandas', 'pyarrow.pandas_compat', "
            "'pyarrow.compute')))\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert proc.stdout.split("\n")[:2] == ["0", "[]"], proc.stdout + proc.stderr
    assert [json.loads(x)["output"] for x in (tmp_path / "out" / "rejected.jsonl").read_text().splitlines()] == [
        "As an AI language model, I cannot."]


def test_the_lazy_registry_names_the_module_of_every_built_in_check() -> None:
    """``checks.BUILTIN`` (kind -> module) must agree with what the modules of qualgate/checks/ register, or a kind
    would be unknown until something else imported its module."""
    import pkgutil
    from importlib import import_module

    import qualgate.checks
    from qualgate.checks import BUILTIN, REGISTRY, base

    for module in pkgutil.iter_modules(qualgate.checks.__path__):
        import_module(f"qualgate.checks.{module.name}")
    registered = {k: c.__module__ for k, c in base.REGISTRY.items() if c.__module__.startswith("qualgate.checks.")}
    assert registered == {k: f"qualgate.checks.{m}" for k, m in BUILTIN.items()}
    assert sorted(REGISTRY) == sorted(registered) and REGISTRY["refusal"].kind == "refusal"
    assert "no_such_check" not in REGISTRY
