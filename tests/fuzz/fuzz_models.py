"""Coverage-guided fuzz target (atheris) for the model-based checks: sentence embeddings and the n-gram LM.

    python tests/fuzz/fuzz_models.py -max_total_time=240 tests/fuzz/corpus_models     # grow the corpus
    python tests/fuzz/fuzz_models.py -runs=1000 WORKDIR tests/fuzz/corpus_models   # what tests/test_fuzz.py runs

About 70 executions a second on 2 cores after ~10 s of start-up (torch, the model, the sets). To shrink a grown
corpus, ``-merge=1 NEW OLD`` (``-use_counters=0`` keeps one file per coverage edge only): libFuzzer re-runs
``argv[0]`` for it, so call it through an executable wrapper, not ``python file.py``.

The gates are built once, offline (the packaged all-MiniLM-L6-v2, no download, no cache): the shipped ``embed``
pack (semantic duplicates, the diversity report) against fixtures/reference_sample.jsonl and against the input
itself, the shipped ``perplexity`` pack trained on that reference and cross-fitted on the input, and ``embed``
plus ``private_leak``, ``outlier`` and ``perplexity`` against the private and reference fixtures (no shipped
pack holds those two). ``default`` has no model check: fuzz_inputs.py covers it.

The first byte picks the input format and the gate, the rest is the file. Allowed outcomes: the documented
errors (``QualgateError``: exit 2 on the CLI) for files broken as a whole; otherwise one decision per record
(conservation), each accepted exactly when it has no finding or a reviewer's override, and a report that
counts them all. Anything else escaping is a crash that libFuzzer reports with the input.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

# one thread for OpenMP (torch, faiss) and OpenBLAS, set before any of them loads: libFuzzer runs one input at a
# time, and on a small CI runner their pools oversubscribe the cores (the 384x384 eigendecomposition of the
# diversity report took ~100 ms instead of 5 ms on 2 cores), several times slower and noisier per execution
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import atheris  # type: ignore[import-untyped]  # noqa: E402

_FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
_REFERENCE = [str(_FIXTURES / "reference_sample.jsonl")]
_PRIVATE = [str(_FIXTURES / "private_records.jsonl")]


def _gate(source: str | dict[str, Any], **sets: list[str]) -> Gate:
    gate = Gate.from_config(source, cache_dir=None)
    for role, paths in sets.items():
        gate.load_set(role, paths)
    return gate


# the gates are built inside the block: the modules behind the model checks (qualgate.embed, .diversity, .lm, the
# embedding and perplexity checks) are imported lazily, on the first gate that needs them, and only what is
# imported here is instrumented (torch and sentence-transformers are not: include= names qualgate only)
with atheris.instrument_imports(include=["qualgate"]):
    from fuzz_common import FORMATS, assert_decided, read_fuzzed

    from qualgate import Gate

    _GATES = [
        _gate("embed", reference=_REFERENCE),
        _gate("embed"),  # the diversity report against the input itself
        _gate("perplexity", reference=_REFERENCE),
        _gate("perplexity"),  # cross-fitted on the input by run() (abstains below 10 usable records)
        _gate({"version": 1, "extends": "embed",
               "checks": [{"check": "private_leak"}, {"check": "outlier"}, {"check": "perplexity"}]},
              private=_PRIVATE, reference=_REFERENCE),
    ]
def _records(fmt: str, body: bytes, gate: Gate) -> None:
    raws = read_fuzzed(fmt, body)
    if raws is None:
        return
    result = gate.run(raws)  # run, not stream: fits on the input where no reference is loaded, and reports
    assert_decided(raws, result.decisions)
    report = result.report
    assert (report["total"], report["accepted"]) == (len(raws), sum(d.accepted for d in result.decisions))


def test_one_input(data: bytes) -> None:
    if not data:
        return
    fmt = FORMATS[data[0] % len(FORMATS)]
    _records(fmt, data[1:], _GATES[(data[0] // len(FORMATS)) % len(_GATES)])


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
