"""The coverage-guided fuzz target (tests/fuzz/fuzz_inputs.py, atheris), run for a fixed budget from the corpus
kept in tests/fuzz/corpus: readers, the config loader and templates never raise anything but the documented
errors, and every record gets one decision."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

FUZZ = Path(__file__).parent / "fuzz"


def test_the_fuzz_target_finds_no_crash_in_its_budget(tmp_path: Path) -> None:
    if importlib.util.find_spec("atheris") is None:
        if os.environ.get("QUALGATE_REQUIRE_FUZZ") == "1":
            raise RuntimeError("QUALGATE_REQUIRE_FUZZ=1 but atheris is not installed (pip install 'qualgate[dev]')")
        pytest.skip("needs atheris (the dev extra)")
    work = tmp_path / "corpus"  # libFuzzer adds what it finds to the first folder: not the kept corpus
    work.mkdir()
    # libFuzzer's RSS is the process's peak as Linux reports it, which a child inherits from its parent across
    # fork and exec: after the Ray and model tests this pytest process peaked at ~2.4 GB, so the limit is set
    # well above that (this machine has 24 GiB); inputs are at most 4 KiB, so a real blow-up still trips it
    res = subprocess.run([sys.executable, str(FUZZ / "fuzz_inputs.py"), "-runs=3000", "-max_len=4096", "-timeout=20",
                          "-rss_limit_mb=8192", f"-artifact_prefix={tmp_path}/", str(work), str(FUZZ / "corpus")],
                         capture_output=True, text=True, timeout=600)
    crashes = [p.name for p in tmp_path.iterdir() if p.name.startswith(("crash-", "timeout-", "oom-"))]
    assert res.returncode == 0 and not crashes, res.stderr[-4000:]
    assert "DONE" in res.stderr and len(list((FUZZ / "corpus").iterdir())) >= 100
    shutil.rmtree(work)
