"""The Ray engine on a local Ray instance gives exactly the local engine's decisions and outputs."""

from __future__ import annotations

import importlib.util
import json
import os
import random
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from qualgate import Gate
from qualgate.cli import main
from qualgate.io import read_records
from tests.conftest import FIXTURES

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
    """3,000 records from our fixtures: prose paragraphs, instruct samples, exact and near copies, word salad,
    a few broken lines, in a fixed shuffled order."""
    rng = random.Random(9)
    paras = [json.loads(x)["text"] for x in (FIXTURES / "human_prose.jsonl").read_text().splitlines() if x]
    lines: list[str] = [x for x in (FIXTURES / "instruct_sample.jsonl").read_text().splitlines() if x]
    while len(lines) < 3000:
        text = rng.choice(paras)
        kind = rng.random()
        if kind < 0.1:
            words = text.split()
            text = " ".join(words[: len(words) - rng.randint(1, 3)])  # a near copy
        elif kind < 0.15:
            words = text.split()
            rng.shuffle(words)
            text = " ".join(words)
        elif kind < 0.17:
            text = text[: rng.randint(10, 60)]
        lines.append(json.dumps({"instruction": "Write a paragraph.", "input": "", "output": text}))
    rng.shuffle(lines)
    path = tmp_path_factory.mktemp("ray") / "data.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def _decisions(gate: Gate, path: Path) -> list[tuple[str, bool, list[tuple[str, str, Any]]]]:
    if gate.needs_input_fit:
        gate.load_set("input", [str(path)])
    return [(d.id, d.accepted, [(f.check, f.reason, f.evidence.get("duplicate_of")) for f in d.findings])
            for d in gate.stream(read_records([str(path)]))]


@pytest.mark.parametrize("config", ["instruct", "perplexity"])
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


def test_a_killed_actor_is_restarted_and_the_run_gives_the_same_decisions(ray_local: Any, data: Path) -> None:
    """Worker failure mid-run: the actor is restarted, its batches re-run, and nothing changes."""
    import ray

    local = _decisions(Gate.from_config("instruct", workers=1, batch_size=128, cache_dir=None), data)
    gate = Gate.from_config("instruct", workers=2, batch_size=128, cache_dir=None, engine="ray")
    out, killed = [], False
    for d in gate.stream(read_records([str(data)])):
        out.append((d.id, d.accepted, [(f.check, f.reason, f.evidence.get("duplicate_of")) for f in d.findings]))
        if len(out) == 600 and not killed:
            names = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
                     if a["name"].startswith("qualgate-scorer-")]
            assert names
            ray.kill(ray.get_actor(names[0]), no_restart=False)
            killed = True
    assert killed and out == local
