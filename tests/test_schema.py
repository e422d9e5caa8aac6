"""`qualgate schema`: the published JSON Schema accepts every shipped pack and rejects typos."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml
from click.testing import CliRunner

from qualgate.cli import main
from qualgate.config import config_json_schema
from qualgate.packs import pack_names, pack_path
from tests.conftest import FIXTURES


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = config_json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


@pytest.mark.parametrize("pack", pack_names())
def test_every_shipped_pack_validates(validator: jsonschema.Draft202012Validator, pack: str) -> None:
    path = pack_path(pack)
    assert path is not None
    assert list(validator.iter_errors(yaml.safe_load(path.read_text()))) == []


def test_fixture_config_validates(validator: jsonschema.Draft202012Validator) -> None:
    assert list(validator.iter_errors(yaml.safe_load((FIXTURES / "rules_only.yaml").read_text()))) == []


@pytest.mark.parametrize("bad", [
    {"version": 1, "checks": [{"check": "length", "min_wordz": 3}]},      # typo in a parameter
    {"version": 1, "checks": [{"check": "no_such_check"}]},              # unknown kind
    {"version": 2},                                                       # unknown version
    {"version": 1, "gate": {"max_reject_rate": 2}},                      # out of range
    {"version": 1, "checks": [{"check": "perplexity", "backend": "gpt"}]},
])
def test_schema_rejects_what_the_loader_rejects(validator: jsonschema.Draft202012Validator,
                                                bad: dict[str, object]) -> None:
    assert list(validator.iter_errors(bad))
    from qualgate import ConfigError
    from qualgate.config import load_config

    with pytest.raises(ConfigError):
        load_config(bad)


def test_an_update_of_an_inherited_check_is_valid(validator: jsonschema.Draft202012Validator) -> None:
    cfg = {"version": 1, "extends": "default", "checks": [{"name": "language", "enabled": False}]}
    assert list(validator.iter_errors(cfg)) == []


def test_cli_writes_the_schema(tmp_path: Path) -> None:
    out = tmp_path / "schema.json"
    res = CliRunner().invoke(main, ["schema", "-o", str(out)])
    assert res.exit_code == 0
    assert json.loads(out.read_text())["title"] == "qualgate config"
