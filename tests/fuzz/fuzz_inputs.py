"""Coverage-guided fuzz target (atheris) for what strangers control: input files, configs, text templates.

    python tests/fuzz/fuzz_inputs.py -runs=20000 tests/fuzz/corpus     # grow the corpus
    python tests/fuzz/fuzz_inputs.py -runs=3000 WORKDIR tests/fuzz/corpus   # what tests/test_fuzz.py runs

The first byte picks the target (and, for records, which shipped pack checks them), the rest is its input.
Allowed outcomes: the documented errors (``QualgateError``: exit 2 on the CLI) for configs, templates and
files broken as a whole; for records, one decision per record (conservation). Anything else escaping is
a crash that libFuzzer reports with the input.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile

import atheris

with atheris.instrument_imports(include=["qualgate"]):
    from fuzz_common import FORMATS, assert_decided, read_fuzzed

    from qualgate import Gate
    from qualgate.config import load_config
    from qualgate.errors import FieldsMissingError, QualgateError

#: every shipped pack that needs no model or reference set: together they hold every rule check
_GATES = [Gate.from_config(pack, cache_dir=None) for pack in ("instruct", "chat", "code", "json", "tinystories")]
_TMP = tempfile.mkdtemp(prefix="qualgate-fuzz-")


def _records(fmt: str, body: bytes, gate: Gate) -> None:
    raws = read_fuzzed(fmt, body)
    if raws is not None:
        with contextlib.suppress(FieldsMissingError):  # a layout the pack cannot read at all: exit 2, documented
            assert_decided(raws, list(gate.stream(raws)))


def _config(body: bytes) -> None:
    path = os.path.join(_TMP, "config.yaml")
    with open(path, "wb") as fh:
        fh.write(body)
    with contextlib.suppress(QualgateError):  # a config error (exit 2) is the documented outcome
        load_config(path)


def _template(body: bytes) -> None:
    with contextlib.suppress(QualgateError):
        gate = Gate.from_config("default", text=body.decode("utf-8", "replace") or "{x}", cache_dir=None)
        gate.run([{"instruction": "Say hi.", "output": "Hello!", "x": "1"}])


def test_one_input(data: bytes) -> None:
    if not data:
        return
    target, body = data[0] % 7, data[1:]
    if target < len(FORMATS):
        _records(FORMATS[target], body, _GATES[(data[0] // 7) % len(_GATES)])
    elif target == 5:
        _config(body)
    else:
        _template(body)


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
