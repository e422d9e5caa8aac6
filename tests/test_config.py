"""Config loading: shipped packs, extends, and errors that name file, line and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from qualgate import ConfigError, Gate, load_config
from qualgate.packs import pack_names


def write(tmp_path: Path, text: str, name: str = "c.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


@pytest.mark.parametrize("pack", pack_names())
def test_every_shipped_pack_loads_and_round_trips(pack: str) -> None:
    cfg = load_config(pack)
    assert cfg.checks and cfg.description
    again = load_config(cfg.to_dict())
    assert again.to_dict() == cfg.to_dict()


def test_instruct_extends_default_and_overrides_by_name() -> None:
    base, cfg = load_config("default"), load_config("instruct")
    names = [c.name for c in cfg.checks]
    disabled = {"quality_heuristics"}  # instruct turns it off (measured on Alpaca)
    assert names[: len(base.checks) - len(disabled)] == [c.name for c in base.checks if c.name not in disabled]
    assert {"empty_field", "output_length"} <= set(names)
    truncated = next(c for c in cfg.checks if c.name == "truncated")
    assert truncated.params.field == "output"  # type: ignore[attr-defined]
    assert cfg.input.text == "{instruction}\n{input}\n{output}"
    assert cfg.gate.max_reject_rate == base.gate.max_reject_rate


def test_extends_can_disable_and_append(tmp_path: Path) -> None:
    p = write(tmp_path, "version: 1\nextends: default\nchecks:\n  - name: language\n    enabled: false\n"
                        "  - check: pattern\n    forbidden: ['TODO']\ngate: {max_rejected: 3}\n")
    cfg = load_config(p)
    names = [c.name for c in cfg.checks]
    assert "language" not in names and names[-1] == "pattern"
    assert cfg.gate.max_rejected == 3 and cfg.gate.max_reject_rate == 0.5


def test_extends_relative_path_and_cycle(tmp_path: Path) -> None:
    write(tmp_path, "version: 1\nchecks:\n  - check: length\n    min_words: 2\n", "base.yaml")
    child = write(tmp_path, "version: 1\nextends: base.yaml\nchecks:\n  - name: length\n    min_words: 5\n")
    assert load_config(child).checks[0].params.min_words == 5  # type: ignore[attr-defined]
    write(tmp_path, "version: 1\nextends: b.yaml\n", "a.yaml")
    write(tmp_path, "version: 1\nextends: a.yaml\n", "b.yaml")
    with pytest.raises(ConfigError, match="cycle"):
        load_config(tmp_path / "a.yaml")


@pytest.mark.parametrize("text,key,line,words", [
    ("version: 2\n", "version", 1, "1"),
    ("version: 1\nchecks:\n  - check: lenght\n    min_words: 1\n", "checks[0].check", 3, "did you mean 'length'"),
    ("version: 1\nchecks:\n  - check: length\n    min_wrods: 1\n", "checks[0].min_wrods", 4, "allowed: check, name"),
    ("version: 1\nchecks:\n  - check: length\n    min_words: many\n", "checks[0].min_words", 4, "integer"),
    ("version: 1\nchecks:\n  - check: length\n    min_words: 5\n    max_words: 2\n", "checks[0]", 3,
     "greater than max_words"),
    ("version: 1\nchecks:\n  - check: language\n    min_prob: 1.5\n", "checks[0].min_prob", 4, "less than or equal"),
    ("version: 1\nchecks:\n  - check: pattern\n    forbidden: ['(']\n", "checks[0].forbidden", 4,
     "invalid regular expression"),
    ("version: 1\ngate:\n  max_reject_rate: 2\n", "gate.max_reject_rate", 3, "less than or equal"),
    ("version: 1\nsurprise: true\n", "surprise", 2, "unknown key"),
    ("version: 1\ninput:\n  text: '{a.b}'\n", "input.text", 3, "plain top-level field names"),
    ("version: 1\nchecks:\n  - check: length\n    min_words: 1\n  - check: length\n    max_words: 9\n",
     "checks[1]", 5, "used twice"),
    ("version: 1\nextends: nope\n", "extends", 2, "no such pack"),
])
def test_config_errors_name_file_key_and_line(tmp_path: Path, text: str, key: str, line: int, words: str) -> None:
    p = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(p)
    err = info.value
    assert err.file == str(p) and err.key == key and err.line == line, str(err)
    assert words in str(err)
    assert str(p) in str(err) and key in str(err)


def test_yaml_syntax_and_shape_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, "version: 1\nchecks: [\n"))
    assert "invalid YAML" in str(info.value) and info.value.line is not None
    with pytest.raises(ConfigError, match="empty"):
        load_config(write(tmp_path, ""))
    with pytest.raises(ConfigError, match="mapping"):
        load_config(write(tmp_path, "- a\n- b\n"))
    with pytest.raises(ConfigError, match="no config file or shipped pack"):
        load_config(tmp_path / "missing.yaml")


def test_yaml_is_loaded_safely(tmp_path: Path) -> None:
    p = write(tmp_path, "version: 1\ndescription: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(p)


def test_text_and_id_overrides() -> None:
    gate = Gate.from_config("default", text="{question}", id="qid")
    assert gate.config.input.text == "{question}" and gate.config.input.id == "qid"
    d = gate.run([{"qid": 7, "question": "As an AI language model, I cannot say."}]).decisions[0]
    assert d.id == "7" and [f.reason for f in d.findings] == ["boilerplate_phrase"]
    with pytest.raises(ConfigError):
        Gate.from_config("default", text="{0}")


@pytest.mark.parametrize("check", [
    {"check": "boilerplate", "phrases_file": "nope.txt"},
    {"check": "refusal", "phrases_file": "nope.txt"},
    {"check": "unanswerable", "patterns_file": "nope.txt"},
    {"check": "vocabulary", "words_file": "nope.txt"},
    {"check": "flagged_words", "words_file": "nope.txt"},
])
def test_a_missing_word_list_is_a_config_error_naming_the_key(check: dict[str, str]) -> None:
    key = next(k for k in check if k != "check")
    with pytest.raises(ConfigError, match=rf"checks\[0\]\.{key}.*'nope.txt' not found"):
        load_config({"version": 1, "checks": [check]})


def test_a_null_check_name_is_a_config_error_naming_the_key() -> None:
    """Found by the one-changed-value property in CI: `name: null` reached an assert (a traceback, exit 2)."""
    with pytest.raises(ConfigError, match=r"checks\[0\]\.name.*1-64 letters"):
        load_config({"version": 1, "extends": "default", "checks": [{"check": "length", "name": None}]})
