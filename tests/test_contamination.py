"""The contamination check (issue 21): samples that contain a benchmark item, found by hashed word n-grams, with
evidence that names the item but never writes benchmark text the sample did not itself contain."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from qualgate import Gate
from qualgate.cli import main
from qualgate.decontam import BenchmarkIndex, normalize, shipped_dir
from qualgate.errors import ConfigError, InputError
from qualgate.hashing import sha256_file
from tests.conftest import FIXTURES

BENCH = FIXTURES / "benchmark_sample.jsonl"
SAMPLES = FIXTURES / "contaminated_sample.jsonl"
ITEMS = [json.loads(x) for x in BENCH.read_text().splitlines()]
#: sample id -> the benchmark item it contains and how it was found (everything else in the fixture is clean)
CONTAMINATED = {"verbatim": ("gm-03", "ngram"),           # the question inside a longer answer
                "rewrapped": ("gm-06", "ngram"),          # re-wrapped into 4-word lines
                "light_edit": ("gm-12", "ngram"),         # "On Sunday" -> "On Monday": the runs around it survive
                "shouting": ("gm-09", "ngram"),           # upper case, other punctuation
                "trivia_line": ("tq-02", "line"),         # a 10-word question as the instruction
                "trivia_whole": ("tq-08", "text"),        # question and answer, nothing else
                "long_trivia": ("tq-11", "ngram"),        # a 19-word question inside a sentence
                "solution_copy": ("gm-16", "ngram")}      # only the worked solution


def records() -> list[dict[str, Any]]:
    return [json.loads(x) for x in SAMPLES.read_text().splitlines()]


def gate(**params: Any) -> Gate:
    cfg = {"version": 1, "input": {"id": "id"}, "checks": [{"check": "contamination", **params}]}
    g = Gate.from_config(cfg, cache_dir=None)
    g.load_benchmark("school", BENCH)
    return g


def test_copies_are_rejected_with_the_item_and_the_samples_own_span() -> None:
    result = gate().run(records())
    got = {d.id: d.findings[0] for d in result.decisions if d.findings}
    assert {k: (f.evidence["item_id"], f.evidence["match"]) for k, f in got.items()} == CONTAMINATED
    for d in result.decisions:
        if d.findings:
            ev = d.findings[0].evidence
            assert d.findings[0].reason == "contamination" and ev["benchmark"] == "school" and 0 < ev["overlap"] <= 1
            assert ev["span"] in d.sample.text  # the sample's text, as written
    rewrapped = got["rewrapped"].evidence
    assert rewrapped["span"].startswith("A water tank holds\n900 litres") and rewrapped["matched_ngrams"] >= 20
    assert got["light_edit"].evidence["matched_ngrams"] < got["light_edit"].evidence["item_ngrams"]
    assert got["trivia_whole"].evidence["overlap"] == 1.0
    assert "contains benchmark school item gm-03" in got["verbatim"].message


def test_near_topic_samples_are_kept() -> None:
    """Same people, numbers and facts in other words: not contamination."""
    result = gate().run(records())
    kept = {d.id for d in result.decisions if d.accepted}
    assert kept == {r["id"] for r in records()} - set(CONTAMINATED)
    assert all(k.startswith("clean_") for k in kept) and len(kept) == 8


def test_min_overlap_and_n() -> None:
    """A share threshold keeps a sample that quotes a small part of an item; 8-grams find the same copies."""
    result = gate(min_overlap=0.3).run(records())
    rejected = {d.id for d in result.decisions if not d.accepted}
    assert "light_edit" not in rejected and {"verbatim", "rewrapped"} <= rejected
    assert {d.id for d in gate(n=8).run(records()).decisions if not d.accepted} == set(CONTAMINATED)


def test_template_ngrams_shared_by_many_items_match_nothing() -> None:
    texts = [f"Question {i}: answer with a single number and show the working in the box below please." for i in
             range(12)]
    index = BenchmarkIndex.build("tmpl", texts, [str(i) for i in range(12)])
    probe = ["Please answer with a single number and show the working in the box below please, thanks."]
    assert index.match(probe, max_items_per_ngram=10) == [None]
    assert index.match(probe, max_items_per_ngram=20)[0] is not None


def _words(text: str) -> list[str]:
    return normalize(text).split(" ")


def test_no_benchmark_text_reaches_the_run_folder_beyond_the_matched_spans(tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["filter", str(SAMPLES), "-c", "decontam", "--id", "id", "-o", str(out),
                                       "--benchmark", f"school={BENCH}", "-q", "--no-cache", "-j", "1"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    written = normalize(" ".join(p.read_bytes().decode("utf-8", "replace") for p in out.iterdir() if p.is_file()))
    inputs = normalize(" ".join(str(v) for r in records() for v in r.values()))
    rejected = [json.loads(x) for x in (out / "rejected.jsonl").read_text().splitlines()]
    assert {r["id"] for r in rejected} == set(CONTAMINATED)
    for item in ITEMS:  # every 6-word run of every item that is in the output was in the input samples already
        words = _words(item["question"] + " " + item["answer"])
        for i in range(len(words) - 5):
            run = " ".join(words[i:i + 6])
            assert run not in written or run in inputs, (item["id"], run)


def test_bench_index_build_writes_hashes_and_ids_only(tmp_path: Path) -> None:
    index_file = tmp_path / "school-13.npz"
    run = CliRunner().invoke(main, ["bench-index", "build", "school", str(BENCH), "-o", str(index_file),
                                    "--licence", "CC0, written for these tests"], catch_exceptions=False)
    assert run.exit_code == 0, run.output
    assert "30 items" in run.output
    raw = index_file.read_bytes()
    with np.load(index_file, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    strings = [str(x) for a in arrays.values() if a.dtype.kind == "U" for x in np.atleast_1d(a).tolist()]
    assert sorted(arrays["item_ids"].tolist()) == sorted(i["id"] for i in ITEMS)
    text_dump = normalize(" ".join(strings)) + " " + normalize(raw.decode("latin-1"))
    for item in ITEMS:
        words = _words(item["question"])
        assert not any(" ".join(words[i:i + 3]) in text_dump for i in range(len(words) - 2)), item["id"]
    show = CliRunner().invoke(main, ["bench-index", "show", str(index_file)], catch_exceptions=False)
    assert "30 items" in show.output and "CC0" in show.output and "sha256" in show.output
    # the index file gives the same decisions as the data file it was built from
    g = Gate.from_config({"version": 1, "input": {"id": "id"}, "checks": [{"check": "contamination"}]},
                         cache_dir=None)
    g.load_benchmark("school", index_file)
    assert {d.id for d in g.run(records()).decisions if not d.accepted} == set(CONTAMINATED)


def test_the_index_cache_is_keyed_by_content(tmp_path: Path) -> None:
    bench, cache = tmp_path / "bench.jsonl", tmp_path / "cache"
    shutil.copy(BENCH, bench)
    cfg = {"version": 1, "input": {"id": "id"}, "checks": [{"check": "contamination"}]}
    probe = [{"id": "new", "instruction": "Recite.", "output": "The lighthouse keeper counted nine hundred and "
                                                                "twelve gulls on the rocks before the storm arrived."}]
    for _ in range(2):
        g = Gate.from_config(cfg, cache_dir=None)
        g.load_benchmark("school", bench, cache_dir=cache)
        assert g.run(probe).decisions[0].accepted
    assert len(list(cache.glob("benchmark-*.npz"))) == 1
    bench.write_text(bench.read_text() + json.dumps({"id": "new-item", "question": probe[0]["output"],
                                                     "answer": "912"}) + "\n")
    g = Gate.from_config(cfg, cache_dir=None)
    g.load_benchmark("school", bench, cache_dir=cache)
    assert len(list(cache.glob("benchmark-*.npz"))) == 2
    assert g.run(probe).decisions[0].findings[0].evidence["item_id"] == "new-item"


def test_clear_errors() -> None:
    decontam = Gate.from_config("decontam", cache_dir=None)
    with pytest.raises(ConfigError, match=r"compares with a benchmark set, and none is loaded: pass --benchmark "
                                          r"NAME=PATH"):
        decontam.run(records())
    with pytest.raises(ConfigError, match="no check that compares with benchmarks: use -c decontam"):
        Gate.from_config("default", cache_dir=None).load_benchmark("school", BENCH)
    with pytest.raises(ConfigError, match="no shipped benchmark index named 'nosuch'"):
        decontam.load_benchmark("nosuch")
    with pytest.raises(InputError, match="benchmark 'school' file not found"):
        decontam.load_benchmark("school", "no/such/file.jsonl")
    named = Gate.from_config({"version": 1, "checks": [{"check": "contamination", "benchmarks": ["gsm8k"]}]},
                             cache_dir=None)
    with pytest.raises(ConfigError, match=re.escape("pass --benchmark gsm8k=PATH")):
        named.load_benchmark("school", BENCH)
    with pytest.raises(ConfigError, match=re.escape("pass --benchmark gsm8k=PATH")):
        named.run(records())


def test_an_index_of_another_n_is_refused(tmp_path: Path) -> None:
    index_file = tmp_path / "school-8.npz"
    assert CliRunner().invoke(main, ["bench-index", "build", "school", str(BENCH), "-o", str(index_file), "-n",
                                     "8"]).exit_code == 0
    g = Gate.from_config("decontam", cache_dir=None)
    with pytest.raises(ConfigError, match="holds 8-grams, the check uses n=13"):
        g.load_benchmark("school", index_file)


def test_cli_errors_name_the_flag(tmp_path: Path) -> None:
    run = CliRunner().invoke(main, ["filter", str(SAMPLES), "-c", "decontam", "-o", str(tmp_path / "o"), "-q"])
    assert run.exit_code == 2 and "--benchmark NAME=PATH" in run.output
    run = CliRunner().invoke(main, ["filter", str(SAMPLES), "-o", str(tmp_path / "o"), "-q", "--benchmark",
                                    f"school={BENCH}"])
    assert run.exit_code == 2 and "use -c decontam" in run.output
    run = CliRunner().invoke(main, ["filter", str(SAMPLES), "-c", "decontam", "-o", str(tmp_path / "o"), "-q",
                                    "--benchmark", f"school={BENCH}", "--benchmark-text", "other={question}"])
    assert run.exit_code == 2 and "--benchmark-text" in run.output


def test_the_shipped_humaneval_index() -> None:
    """`--benchmark humaneval` needs no file: the index ships in rules/benchmarks (hashes of the prompts only)."""
    g = Gate.from_config({"version": 1, "extends": "decontam", "input": {"id": "id"}}, cache_dir=None)
    g.load_benchmark("humaneval")
    copied = ("Here is the task: Check if in given list of numbers, are any two numbers closer to each other than "
              "given threshold. Write it in Python.")  # one sentence of HumanEval/0's docstring (MIT)
    near = "Write a Python function that returns True when two numbers in a list differ by less than a threshold."
    result = g.run([{"id": "copy", "instruction": copied, "output": "def f(xs, t): ..."},
                    {"id": "near", "instruction": near, "output": "def f(xs, t): ..."}])
    found = {d.id: d.findings[0].evidence["item_id"] if d.findings else None for d in result.decisions}
    assert found == {"copy": "HumanEval/0", "near": None}
    read = g.benchmarks_read()  # the shipped index for the check's n, with that file's own sha256
    assert [(b["name"], b["file"]) for b in read] == [("humaneval", "humaneval-13.npz")]
    assert read[0]["sha256"] == sha256_file(shipped_dir() / "humaneval-13.npz")


def test_pull_request_check_takes_benchmarks_from_the_command_line(tmp_path: Path) -> None:
    """`qualgate check -c decontam --benchmark NAME=PATH`: an added record that copies a benchmark item fails."""
    import subprocess

    repo = tmp_path / "repo"
    repo.mkdir()
    for args in (["init", "-q", "-b", "main"], ["config", "user.email", "t@example.org"], ["config", "user.name", "t"]):
        subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)
    clean = [r for r in records() if r["id"].startswith("clean_")]
    (repo / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in clean[:4]))
    subprocess.run(["git", "add", "data.jsonl"], cwd=repo, check=True, capture_output=True)
    subprocess.run(["git", "commit", "-q", "-m", "base"], cwd=repo, check=True, capture_output=True)
    added = [r for r in records() if r["id"] in ("verbatim", "clean_planets")]
    with (repo / "data.jsonl").open("a") as fh:
        fh.write("".join(json.dumps(r) + "\n" for r in added))
    run = CliRunner().invoke(main, ["check", str(repo / "data.jsonl"), "--base", "HEAD", "-c", "decontam", "--id",
                                    "id", "--format", "json", "--benchmark", f"school={BENCH}"])
    assert run.exit_code == 1, run.output
    out = json.loads(run.output)
    assert [(r["id"], r["findings"][0]["evidence"]["item_id"]) for r in out["rejected"]] == [("verbatim", "gm-03")]


def test_tune_redecides_from_the_stored_evidence(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("version: 1\ninput: {id: id}\nchecks:\n  - {check: contamination, min_overlap: 0.3}\n")
    out = tmp_path / "run"
    assert CliRunner().invoke(main, ["filter", str(SAMPLES), "-c", str(cfg), "-o", str(out), "-q", "--no-html",
                                     "--no-cache", "-j", "1", "--benchmark", f"school={BENCH}"]).exit_code == 0
    assert "light_edit" not in (out / "rejected.jsonl").read_text()
    run = CliRunner().invoke(main, ["tune", "--run", str(out), "--set", "contamination.min_overlap=0"])
    assert "+2" in run.output and "light_edit" in run.output and "exact" in run.output, run.output


def test_a_damaged_index_is_refused_by_name(tmp_path: Path) -> None:
    index = BenchmarkIndex.build("school", [i["question"] for i in ITEMS], [i["id"] for i in ITEMS])
    arrays = index.arrays()
    arrays["ngram_item"] = arrays["ngram_item"] + 1000  # items that do not exist
    np.savez(tmp_path / "bad.npz", **arrays)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    g = Gate.from_config("decontam", cache_dir=None)
    with pytest.raises(InputError, match="damaged benchmark index: ngram_item out of range"):
        g.load_benchmark("school", tmp_path / "bad.npz")
    with pytest.raises(InputError, match="cannot read benchmark index"):
        g.load_benchmark("school", tmp_path / "junk.npz")


def test_short_inside_finds_a_short_question_within_a_line() -> None:
    quiz = {"id": "quiz", "instruction": "Quiz time! Which organ of the human body produces insulin? Think first.",
            "output": "The pancreas."}
    assert gate().run([quiz]).decisions[0].accepted  # not a whole line: missed by default
    found = gate(short_inside=True).run([quiz]).decisions[0].findings[0].evidence
    assert (found["item_id"], found["match"], found["span"]) == (
        "tq-06", "inside", "Which organ of the human body produces insulin")


def test_a_resumed_checkpoint_does_not_reuse_verdicts_of_other_benchmarks(tmp_path: Path) -> None:
    bench = tmp_path / "bench.jsonl"
    shutil.copy(BENCH, bench)
    args = ["filter", str(SAMPLES), "-c", "decontam", "--id", "id", "-q", "--no-html", "--no-cache", "-j", "1",
            "--checkpoint", str(tmp_path / "ckpt"), "--benchmark", f"school={bench}"]
    assert CliRunner().invoke(main, [*args, "-o", str(tmp_path / "a")]).exit_code == 0
    assert "clean_berlin" not in (tmp_path / "a" / "rejected.jsonl").read_text()
    berlin = next(r for r in records() if r["id"] == "clean_berlin")
    with bench.open("a") as fh:
        fh.write(json.dumps({"id": "new", "question": berlin["output"], "answer": "1989"}) + "\n")
    assert CliRunner().invoke(main, [*args, "-o", str(tmp_path / "b")]).exit_code in (0, 1)  # 9 of 16: > 50%
    assert "clean_berlin" in (tmp_path / "b" / "rejected.jsonl").read_text()


def test_bench_index_build_of_several_files(tmp_path: Path) -> None:
    """One benchmark from two files: one index, items named by file, both files' sha256 recorded."""
    lines = BENCH.read_text().splitlines(keepends=True)
    (tmp_path / "a.jsonl").write_text("".join(lines[:20]))
    (tmp_path / "b.jsonl").write_text("".join(lines[20:]))
    index_file = tmp_path / "ab.npz"
    run = CliRunner().invoke(main, ["bench-index", "build", "school", str(tmp_path / "a.jsonl"),
                                    str(tmp_path / "b.jsonl"), "-o", str(index_file)], catch_exceptions=False)
    assert run.exit_code == 0, run.output
    index = BenchmarkIndex.load(index_file)
    assert index.names == ["school"] and len(index) == 30 and len(index.short_words) == len(index.short)
    assert [s["file"] for s in index.meta["benchmarks"]["school"]["sources"]] == ["a.jsonl", "b.jsonl"]
    g = Gate.from_config({"version": 1, "input": {"id": "id"}, "checks": [{"check": "contamination"}]},
                         cache_dir=None)
    g.load_benchmark("school", index_file)
    got = {d.id: d.findings[0].evidence["item_id"] for d in g.run(records()).decisions if d.findings}
    assert {k: v.split(":", 1)[1] for k, v in got.items()} == {k: v[0] for k, v in CONTAMINATED.items()}


def test_min_matches_is_a_scoring_parameter_and_spares_whole_line_matches(tmp_path: Path) -> None:
    """min_matches chooses which item matches (an item with fewer shared n-grams is no match), so `tune` cannot
    re-decide it from stored evidence; a short item found as a whole line is one match and is not held to it."""
    words = [f"word{i}x" for i in range(52)]
    bench = tmp_path / "ab.jsonl"
    bench.write_text(json.dumps({"id": "A", "text": "alpha bravo charlie delta echo foxtrot golf hotel india juliet "
                                 "kilo lima mike november oscar"}) + "\n"
                     + json.dumps({"id": "B", "text": " ".join(words)}) + "\n")
    sample = [{"id": "s1", "text": "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike "
               "and then " + " ".join(words[:15])}]
    cfg = {"version": 1, "input": {"id": "id", "text": "text"}}
    found = {}
    for k in (1, 2, 3):
        g = Gate.from_config({**cfg, "checks": [{"check": "contamination", "min_matches": k}]}, cache_dir=None)
        g.load_benchmark("ab", bench)
        found[k] = [(f.evidence["item_id"], f.evidence["matched_ngrams"]) for f in g.run(sample).decisions[0].findings]
    assert found == {1: [("A", 1)], 2: [("B", 3)], 3: [("B", 3)]}
    trivia = [r for r in records() if r["id"] in ("trivia_line", "trivia_whole")]
    result = gate(min_matches=3).run(trivia)
    assert [d.findings[0].evidence["match"] for d in result.decisions] == ["line", "text"]
    out = tmp_path / "run"
    assert CliRunner().invoke(main, ["filter", str(SAMPLES), "-o", str(out), "-q", "--no-html", "--no-cache", "-j",
                                     "1", "-c", "decontam", "--id", "id", "--benchmark",
                                     f"school={BENCH}"]).exit_code == 0
    run = CliRunner().invoke(main, ["tune", "--run", str(out), "--set", "contamination.min_matches=2"])
    assert run.exit_code == 2 and "re-run the gate" in run.output and "exact" not in run.output, run.output


def test_pull_request_check_reads_a_benchmark_inside_the_repository_from_the_base(tmp_path: Path) -> None:
    """A change that edits the benchmark file in the repository cannot switch decontamination off: the base's
    version judges it (the working tree's with --trust-worktree), and the summary names the benchmark's sha256."""
    import hashlib
    import subprocess

    repo = tmp_path / "repo"
    (repo / "bench").mkdir(parents=True)

    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)

    for args in (["init", "-q", "-b", "main"], ["config", "user.email", "t@example.org"], ["config", "user.name", "t"]):
        git(*args)
    shutil.copy(BENCH, repo / "bench" / "gsm.jsonl")
    clean = [r for r in records() if r["id"].startswith("clean_")]
    (repo / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in clean[:4]))
    git("add", "data.jsonl", "bench/gsm.jsonl")
    git("commit", "-q", "-m", "base")
    added = [r for r in records() if r["id"] == "verbatim"]
    with (repo / "data.jsonl").open("a") as fh:
        fh.write(json.dumps(added[0]) + "\n")
    (repo / "bench" / "gsm.jsonl").write_text(json.dumps({"id": "x", "question": "Nothing to see here at all, "
                                                           "just one unrelated harmless question.", "answer": "No."})
                                               + "\n")
    args = ["check", str(repo / "data.jsonl"), "--base", "HEAD", "-c", "decontam", "--id", "id", "--benchmark",
            f"school={repo / 'bench' / 'gsm.jsonl'}"]
    run = CliRunner().invoke(main, args)
    assert run.exit_code == 1, run.output
    sha = hashlib.sha256(BENCH.read_bytes()).hexdigest()
    assert f"school (gsm.jsonl sha256 {sha[:12]})" in run.output
    assert "benchmark file" in run.output and "differs from the base revision" in run.output
    out = json.loads(CliRunner().invoke(main, [*args, "--format", "json"]).output)
    assert out["benchmarks"] == [{"name": "school", "file": "gsm.jsonl", "sha256": sha}]
    assert CliRunner().invoke(main, [*args, "--trust-worktree"]).exit_code == 0


@pytest.mark.parametrize(("content", "message"), [
    (b'{"id": "a", "text": "A fine question with enough words."}\n{bad json}\n', r"bad\.jsonl:2: .*invalid JSON"),
    (b'{"id": "a", "text": "caf\xe9 au lait"}\n', r"bad\.jsonl:1: .*not valid UTF-8"),
    (b'{"id": "a", "text": "A fine question."}\n{"id": "b", "text": " ?! "}\n', r"bad\.jsonl:2: .*item b has no text"),
    (b'{"task_id": "T/0", "prompt": "def add(a, b):", "canonical_solution": "return a + b", "test": "assert"}\n',
     r"bad\.jsonl:1: .*item T/0: no known text layout .*\(it has: prompt, canonical_solution, test\)"),
    (b"", r"bad\.jsonl: benchmark 'school' file is empty"),
])
def test_a_benchmark_file_is_read_strictly(tmp_path: Path, content: bytes, message: str) -> None:
    """Trusted data: a line that cannot be read or an item without text stops the run, naming file and line
    (it was skipped, and a benchmark of no usable item matched nothing without a word)."""
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(content)
    with pytest.raises(InputError, match=message):
        Gate.from_config("decontam", cache_dir=None).load_benchmark("school", bad)


def test_a_directory_or_a_fake_index_is_named_as_such(tmp_path: Path) -> None:
    (tmp_path / "dir.jsonl").mkdir()
    (tmp_path / "fake.npz").write_text("not a zip")
    g = Gate.from_config("decontam", cache_dir=None)
    with pytest.raises(InputError, match="is a directory"):
        g.load_benchmark("school", tmp_path / "dir.jsonl")
    with pytest.raises(InputError, match=r"not an \.npz index"):
        g.load_benchmark("school", tmp_path / "fake.npz")


def test_invisible_format_characters_do_not_split_words() -> None:
    """A zero-width space or a soft hyphen inside every few words split them into two and hid the copy; they are
    deleted before hashing (the near-duplicate checks' shingles are unchanged)."""
    from qualgate.minhashing import Shingler

    question = next(i["question"] for i in ITEMS if i["id"] == "gm-03")
    words = question.split(" ")
    hidden = " ".join(w[:2] + ("\u200b" if k % 2 else "\u00ad") + w[2:] if len(w) > 3 else w
                      for k, w in enumerate(words))
    assert normalize(hidden) == normalize(question)
    result = gate().run([{"id": "zw", "instruction": hidden, "output": "42"}])
    assert result.decisions[0].findings[0].evidence["item_id"] == "gm-03"
    assert " " in Shingler(5, "word").normalize("ab\u200bcd")  # other checks: as before


def test_the_report_names_each_benchmark_file_read(tmp_path: Path) -> None:
    """Per benchmark: name, the file read and its sha256, n, text view, also for the shipped index of another n and
    for an index the cache built from a file of another name (it kept the first file's name)."""
    import hashlib

    cache = tmp_path / "cache"
    for name in ("gsm_old.jsonl", "TOTALLY_NEW_NAME.jsonl"):
        shutil.copy(BENCH, tmp_path / name)
        g = Gate.from_config({"version": 1, "input": {"id": "id"}, "checks": [{"check": "contamination"}]},
                             cache_dir=None)
        g.load_benchmark("school", tmp_path / name, cache_dir=cache)
        section = next(c for c in g.set_checks if c.kind == "contamination").report_section()
        info = section["benchmarks"][0]
        assert isinstance(section["benchmarks"], list) and info["name"] == "school" and info["n"] == 13
        assert (info["file"], info["text"], [s["file"] for s in info["sources"]]) == (name, "auto", [name])
        assert info["sha256"] == hashlib.sha256(BENCH.read_bytes()).hexdigest() and "built_as" not in info
    g = Gate.from_config({"version": 1, "checks": [{"check": "contamination", "n": 8}]}, cache_dir=None)
    g.load_benchmark("humaneval")
    info = next(c for c in g.set_checks if c.kind == "contamination").report_section()["benchmarks"][0]
    shipped = Path(__file__).parents[1] / "rules" / "benchmarks" / "humaneval-8.npz"
    assert (info["file"], info["n"], info["text"]) == ("humaneval-8.npz", 8, "{prompt}")
    assert info["sha256"] == hashlib.sha256(shipped.read_bytes()).hexdigest()
    assert g.benchmarks_read() == [{"name": "humaneval", "file": "humaneval-8.npz", "sha256": info["sha256"]}]


def test_a_benchmark_no_check_uses_and_an_index_of_several_are_refused(tmp_path: Path) -> None:
    named = Gate.from_config({"version": 1, "checks": [{"check": "contamination", "benchmarks": ["gsm8k"]}]},
                             cache_dir=None)
    with pytest.raises(ConfigError, match=r"--benchmark school: no check .* compares with it \(they name gsm8k"):
        named.load_benchmark("school", BENCH)
    questions = [i["question"] for i in ITEMS]
    two = BenchmarkIndex.merge([BenchmarkIndex.build("a", questions[:5], [str(k) for k in range(5)]),
                                BenchmarkIndex.build("b", questions[5:], [str(k) for k in range(25)])])
    two.save(tmp_path / "two.npz")
    with pytest.raises(ConfigError, match=r"holds 2 benchmarks \(a, b\); pass an index of one benchmark"):
        Gate.from_config("decontam", cache_dir=None).load_benchmark("school", tmp_path / "two.npz")


def test_bench_index_show_escapes_a_crafted_meta(tmp_path: Path) -> None:
    index = BenchmarkIndex.build("school", [i["question"] for i in ITEMS], [i["id"] for i in ITEMS])
    info = index.meta["benchmarks"]["school"]
    info.update({"sources": [{"file": "evil\n---\ninjected: 1", "sha256": "\u202eabc\x1b[2J"}], "short_items": "x"})
    index.save(tmp_path / "evil.npz")
    run = CliRunner().invoke(main, ["bench-index", "show", str(tmp_path / "evil.npz")])
    assert run.exit_code == 0, run.output
    assert "\u202e" not in run.output and "\x1b" not in run.output and "\ninjected" not in run.output
    assert "evil\\n---" in run.output


def test_a_short_item_rewrapped_over_lines_inside_a_paragraph() -> None:
    """A trivia question broken over two or three lines, with the answer on the next line of the same paragraph:
    no line and no paragraph is the item, a run of its lines is."""
    question = next(i["question"] for i in ITEMS if i["id"] == "tq-02")
    words = question.split(" ")
    two = " ".join(words[:4]) + "\n" + " ".join(words[4:])
    three = " ".join(words[:3]) + "\n" + " ".join(words[3:6]) + "\n" + " ".join(words[6:])
    result = gate().run([{"id": f"w{k}", "instruction": "Answer this.", "input": "",
                          "output": f"{text}\nThat one is easy, and here is the answer with its reasons."}
                         for k, text in enumerate((two, three))])
    got = [(d.findings[0].evidence["item_id"], d.findings[0].evidence["match"]) for d in result.decisions]
    assert got == [("tq-02", "lines"), ("tq-02", "lines")]
    assert "a run of lines of the sample is a line of it" in result.decisions[0].findings[0].message
