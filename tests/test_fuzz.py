"""The coverage-guided fuzz targets (tests/fuzz, atheris), each run for a fixed budget from the corpus kept beside
it: fuzz_inputs.py from tests/fuzz/corpus (readers, the config loader and templates never raise anything but the
documented errors, and every record gets one decision) and fuzz_models.py from tests/fuzz/corpus_models (the same
for the model checks: embeddings, private leaks, outliers, the diversity report, perplexity)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import require_embed

FUZZ = Path(__file__).parent / "fuzz"


def _require_atheris() -> None:
    if importlib.util.find_spec("atheris") is None:
        if os.environ.get("QUALGATE_REQUIRE_FUZZ") == "1":
            raise RuntimeError("QUALGATE_REQUIRE_FUZZ=1 but atheris is not installed (pip install 'qualgate[dev]')")
        pytest.skip("needs atheris (the dev extra)")


def _fuzz(tmp_path: Path, target: str, corpus: str, runs: int) -> None:
    work = tmp_path / "corpus"  # libFuzzer adds what it finds to the first folder: not the kept corpus
    work.mkdir()
    # libFuzzer's RSS is the process's peak as Linux reports it, which a child inherits from its parent across
    # fork and exec: after the Ray and model tests this pytest process peaked at ~2.4 GB, so the limit is set
    # well above that (this machine has 24 GiB; fuzz_models.py itself holds ~1 GB with the model loaded);
    # inputs are at most 4 KiB, so a real blow-up still trips it
    res = subprocess.run([sys.executable, str(FUZZ / target), f"-runs={runs}", "-max_len=4096", "-timeout=20",
                          "-rss_limit_mb=8192", f"-artifact_prefix={tmp_path}/", str(work), str(FUZZ / corpus)],
                         capture_output=True, text=True, timeout=600)
    crashes = [p.name for p in tmp_path.iterdir() if p.name.startswith(("crash-", "timeout-", "oom-"))]
    assert res.returncode == 0 and not crashes, res.stderr[-4000:]
    assert "DONE" in res.stderr
    shutil.rmtree(work)


def test_the_fuzz_target_finds_no_crash_in_its_budget(tmp_path: Path) -> None:
    _require_atheris()
    _fuzz(tmp_path, "fuzz_inputs.py", "corpus", runs=3000)
    assert len(list((FUZZ / "corpus").iterdir())) >= 100


def test_the_model_fuzz_target_finds_no_crash_in_its_budget(tmp_path: Path) -> None:
    _require_atheris()
    require_embed()  # inside the test: at module level its skip would take the test above with it
    # -runs counts the corpus replay too (~105 files): ~10 s to import torch and build the gates, then ~70 exec/s
    # on 2 cores, so ~20 s in all; the kept corpus alone reaches every edge the 34k-run growth found
    _fuzz(tmp_path, "fuzz_models.py", "corpus_models", runs=1000)
    assert len(list((FUZZ / "corpus_models").iterdir())) >= 50
