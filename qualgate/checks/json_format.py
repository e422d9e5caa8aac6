"""JSON validity of a field (a ```json fence accepted) and, optionally, a JSON Schema (jsonschema, loaded lazily).

Rule-based and per sample.
"""

from __future__ import annotations

import importlib
import json
import re
from typing import Any

import yaml
from pydantic import ConfigDict, Field, model_validator

from qualgate.checks.base import Check, Measurement, Params, register
from qualgate.checks.common import OUTPUT_DOC, FieldName, line_of, where
from qualgate.errors import ConfigError
from qualgate.findings import Finding
from qualgate.packs import data_file
from qualgate.sample import Sample


def _jsonschema() -> Any:
    try:
        return importlib.import_module("jsonschema")
    except ImportError:
        raise ConfigError("json_valid needs the jsonschema library to validate a schema: pip install jsonschema",
                          key="schema") from None


def _load_schema(path: str) -> Any:
    try:
        file = data_file(path)
        text = file.read_text(encoding="utf-8")
        return yaml.safe_load(text) if file.suffix.lower() in (".yaml", ".yml") else json.loads(text)
    except FileNotFoundError:
        raise ValueError(f"schema_file {path!r} not found") from None
    except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError) as exc:
        raise ValueError(f"schema_file {path!r} could not be read: {exc}") from None


def _schema_validator(schema: Any) -> Any:
    """A jsonschema validator for ``schema``; raises ValueError when the schema itself is invalid."""
    js = _jsonschema()
    if not isinstance(schema, (dict, bool)):
        raise ValueError(f"a JSON Schema must be an object, got {type(schema).__name__}")
    cls = js.validators.validator_for(schema)
    try:
        cls.check_schema(schema)
    except js.exceptions.SchemaError as exc:
        raise ValueError(f"invalid JSON Schema: {exc.message} (at {exc.json_path})") from None
    return cls(schema)


_JSON_FENCE = re.compile(r"^[ \t]*(`{3,}|~{3,})[ \t]*(?:json5?|jsonc)?[ \t]*\n(.*?)^[ \t]*\1[ \t]*$",
                         re.MULTILINE | re.DOTALL | re.IGNORECASE)


class JsonValidParams(Params):
    model_config = ConfigDict(validate_by_name=True, validate_by_alias=True, serialize_by_alias=True)

    field: FieldName = Field("output", description=OUTPUT_DOC)
    allow_fence: bool = Field(True, description="accept JSON inside a ```json (or unlabelled) fenced block")
    json_schema: dict[str, Any] | None = Field(None, alias="schema", description="inline JSON Schema the value must "
                                               "satisfy (validated with the jsonschema library)")
    schema_file: str | None = Field(None, description="JSON Schema file (.json, .yaml): a path, or shipped in rules/")
    max_errors: int = Field(5, ge=1, description="most schema errors reported as evidence")

    @model_validator(mode="after")
    def _schema_ok(self) -> JsonValidParams:
        if self.json_schema is not None and self.schema_file is not None:
            raise ValueError("set schema or schema_file, not both")
        if self.json_schema is not None:
            _schema_validator(self.json_schema)
        elif self.schema_file is not None:
            _schema_validator(_load_schema(self.schema_file))
        return self


@register
class JsonValid(Check[JsonValidParams]):
    """A field is not valid JSON (a ```json fence is accepted), or does not match a JSON Schema."""

    kind = "json_valid"
    params_model = JsonValidParams
    score_names = ("invalid_json", "schema_errors")
    cost = 2

    def __init__(self, name: str, params: JsonValidParams) -> None:
        super().__init__(name, params)
        schema = params.json_schema if params.schema_file is None else _load_schema(params.schema_file)
        self._validator = None if schema is None else _schema_validator(schema)

    def _parse(self, text: str) -> tuple[Any, dict[str, Any] | None, bool]:
        """(document, parse error evidence or None, whether it came from a fenced block)."""
        try:
            return json.loads(text), None, False
        except (ValueError, RecursionError) as exc:  # ValueError: also integers over Python's digit limit
            error = _json_error(exc, 0)
        if self.params.allow_fence and (fence := _JSON_FENCE.search(text)):
            offset = line_of(text, fence.start(2)) - 1
            try:
                return json.loads(fence.group(2)), None, True
            except (ValueError, RecursionError) as exc:
                return None, {**_json_error(exc, offset), "fenced": True}, True
        return None, error, False

    def score(self, sample: Sample) -> Measurement:
        doc, error, fenced = self._parse(sample.view(self.params.field))
        if error is not None:
            return Measurement({"invalid_json": 1.0, "schema_errors": None}, error)
        evidence: dict[str, Any] = {"fenced": fenced}
        if self._validator is None:
            return Measurement({"invalid_json": 0.0, "schema_errors": None}, evidence)
        try:
            errors = sorted(self._validator.iter_errors(doc), key=lambda e: (str(e.json_path), e.message))
        except RecursionError:  # a recursive schema on deeply nested data: one error, not a crash
            evidence["errors"] = [{"path": "$", "error": "nested too deeply to validate against the schema"}]
            return Measurement({"invalid_json": 0.0, "schema_errors": 1.0}, evidence)
        evidence["errors"] = [{"path": e.json_path, "error": e.message[:300]}
                              for e in errors[: self.params.max_errors]]
        return Measurement({"invalid_json": 0.0, "schema_errors": float(len(errors))}, evidence)

    def decide(self, m: Measurement) -> list[Finding]:
        place, ev = where(self.params.field), m.evidence
        if m.values["invalid_json"]:
            return [self.finding("invalid_json", 1.0, 0,
                                 f"{place} is not valid JSON: {ev.get('error')} "
                                 f"(line {ev.get('line')}, column {ev.get('column')})", **ev)]
        n = m.values["schema_errors"] or 0.0
        if n <= 0:
            return []
        first = ev["errors"][0]
        return [self.finding("schema_violation", n, 0,
                             f"{place} does not match the schema at {first['path']}: {first['error']}",
                             path=first["path"], error=first["error"], errors=ev["errors"])]


def _json_error(exc: Exception, line_offset: int) -> dict[str, Any]:
    if isinstance(exc, json.JSONDecodeError):
        return {"line": exc.lineno + line_offset, "column": exc.colno, "error": exc.msg}
    if isinstance(exc, RecursionError):
        return {"line": None, "column": None, "error": "nested too deeply"}
    return {"line": None, "column": None, "error": str(exc)[:200]}
