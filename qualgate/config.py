"""YAML config -> validated GateConfig. Every error names the file, the line and the key path.

Shape (version 1)::

    version: 1
    extends: default          # optional: a shipped pack name or a path (relative to this file)
    input: {text: auto, id: null, fields: {output: response}}
    checks:
      - check: length         # the check kind
        name: short_output    # optional; defaults to the kind; lets a kind appear twice
        field: output
        min_words: 1
    gate: {max_reject_rate: 0.3}
    diversity: {clusters: 40}  # optional: dataset-level diversity against --reference (needs qualgate[embed])
    repair: {steps: [mojibake, strip, placeholder_input]}  # optional: recorded fixes before the checks (repair.py)

With ``extends``, an entry whose name matches an inherited check updates its parameters
(``enabled: false`` removes it); other entries are appended. ``input``, ``gate``, ``diversity`` and ``repair``
keys override.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from qualgate.checks import REGISTRY, Check, Params
from qualgate.diversity import DiversityConfig
from qualgate.errors import ConfigError
from qualgate.findings import MALFORMED
from qualgate.packs import is_bare_name, pack_names, pack_path
from qualgate.repair import RepairConfig
from qualgate.sample import TextSpec

_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]{0,63}$")


class InputConfig(BaseModel):
    """How records become samples."""

    model_config = ConfigDict(extra="forbid")
    text: str = Field("auto", min_length=1, description="auto, a field name, or a template like '{a}\\n{b}'")
    id: str | None = Field(None, description="field holding a sample id; unset = content hash of the record")
    fields: dict[Literal["instruction", "input", "output"], str] = Field(
        default_factory=dict, description="the record field each role names, e.g. {output: response}: a check "
        "parameter or a text template naming instruction, input or output reads it; a role not given is found in "
        "each file's first records (output: output, response, completion or answer; instruction: instruction, "
        "prompt or question; input: input or context)")
    max_record_bytes: int = Field(16 << 20, ge=1024, description="longest record read (a JSONL or CSV line, a JSON "
                                  "array item, a Parquet row's text); a longer one is rejected as record_too_large, "
                                  "unparsed, with bounded memory")
    max_document_bytes: int = Field(1 << 30, ge=1024, description="largest JSON document (a .json file, read whole): "
                                    "a larger one is an input error (convert it to JSON Lines, which is streamed)")
    max_record_values: int = Field(1 << 16, ge=16, description="most values one record may hold, counted at every "
                                   "depth (object members, list items, CSV fields, Parquet columns); a record with "
                                   "more is rejected as record_too_large, a CSV header with more is an input error")

    @field_validator("fields")
    @classmethod
    def _field_names(cls, v: dict[str, str]) -> dict[str, str]:
        for role, name in v.items():
            if not name.strip():
                raise ValueError(f"input.fields.{role} must name a record field")
        if len(set(v.values())) < len(v):
            raise ValueError("input.fields maps two roles to the same record field")
        return v


class GateConditions(BaseModel):
    """Dataset-level conditions: the gate fails (exit 1) when one is not met."""

    model_config = ConfigDict(extra="forbid")
    max_reject_rate: float | None = Field(None, ge=0, le=1)
    max_rejected: int | None = Field(None, ge=0)
    min_accepted: int | None = Field(None, ge=0)
    max_malformed: int | None = Field(None, ge=0)
    max_check_reject_rate: dict[str, float] = Field(default_factory=dict)
    min_reference_coverage: float | None = Field(None, ge=0, le=1, description="share of reference clusters covered")
    min_diversity_ratio: float | None = Field(None, ge=0, description="accepted / reference Vendi score")

    @property
    def needs_diversity(self) -> bool:
        return self.min_reference_coverage is not None or self.min_diversity_ratio is not None

    @field_validator("max_check_reject_rate")
    @classmethod
    def _rates(cls, v: dict[str, float]) -> dict[str, float]:
        for name, rate in v.items():
            if not 0 <= rate <= 1:
                raise ValueError(f"max_check_reject_rate.{name} must be between 0 and 1, got {rate}")
        return v


class _RawConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: Literal[1]
    description: str | None = None
    extends: str | None = None
    input: InputConfig | None = None
    checks: list[dict[str, Any]] = Field(default_factory=list)
    gate: GateConditions | None = None
    diversity: DiversityConfig | None = None
    repair: RepairConfig | None = None


@dataclass
class CheckSpec:
    """One validated check entry."""

    kind: str
    name: str
    params: Params

    def build(self) -> Check[Any]:
        return REGISTRY[self.kind](self.name, self.params)

    def to_dict(self) -> dict[str, Any]:
        return {"check": self.kind, "name": self.name, **self.params.model_dump(mode="json")}


@dataclass
class GateConfig:
    """A whole validated config (after ``extends`` is resolved)."""

    input: InputConfig = field(default_factory=lambda: InputConfig())
    checks: list[CheckSpec] = field(default_factory=list)
    gate: GateConditions = field(default_factory=lambda: GateConditions())
    description: str = ""
    source: str = "<dict>"
    diversity: DiversityConfig | None = None
    #: how the config was named: ``pack NAME`` for a shipped pack, else the path as given (or ``<dict>``)
    label: str = "<dict>"
    #: fixes made to records before the checks read them (``qualgate.repair``); None = none
    repair: RepairConfig | None = None

    def digest(self) -> str:
        """SHA-256 of the resolved config and of every file it names: what decided, for a summary or a card."""
        import hashlib
        import json

        blob = json.dumps([self.to_dict(), referenced_files(self.to_dict())], sort_keys=True, default=str)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def identity(self) -> str:
        """``pack instruct (sha256 1a2b3c4d5e6f)``: the name and content hash a reader can verify."""
        return f"{self.label} (sha256 {self.digest()[:12]})"

    def to_dict(self) -> dict[str, Any]:
        """Plain, fully resolved form: loading it again gives an equal config."""
        out = {
            "version": 1,
            "description": self.description,
            "input": _input_dict(self.input),
            "checks": [c.to_dict() for c in self.checks],
            "gate": self.gate.model_dump(exclude_defaults=True),
        }
        if self.diversity is not None:
            out["diversity"] = self.diversity.model_dump(exclude_defaults=True)
        if self.repair is not None:
            out["repair"] = self.repair.model_dump()
        return out

    def with_input(self, text: str | None = None, id: str | None = None,
                   fields: dict[str, str] | None = None) -> GateConfig:
        """``fields`` (role -> record field) update ``input.fields`` role by role."""
        update: dict[str, Any] = {}
        if text is not None:
            update["text"] = text
        if id is not None:
            update["id"] = id
        if fields:
            update["fields"] = {**self.input.fields, **fields}
        if not update:
            return self
        try:
            new_input = InputConfig.model_validate({**self.input.model_dump(), **update})
        except ValidationError as exc:  # --text '' or --field role=''
            err = exc.errors()[0]
            raise ConfigError(err["msg"].removeprefix("Value error, "),
                              key=_key_text(["input", *err["loc"]])) from None
        TextSpec(new_input.text)
        return GateConfig(new_input, self.checks, self.gate, self.description, self.source, self.diversity,
                          self.label, self.repair)


def _input_dict(inp: InputConfig) -> dict[str, Any]:
    """``input`` as ``to_dict`` writes it: ``fields`` only when given, so that configs without it keep their
    digest (checkpoints, set caches and ``qualgate check`` summaries name it)."""
    out = inp.model_dump()
    if not out["fields"]:
        del out["fields"]
    return out


# ------------------------------------------------------------------------------------------ loading
@dataclass
class _Doc:
    """One parsed file: its data and its YAML node tree (for line numbers)."""

    file: str
    data: Any
    node: yaml.Node | None


def _line_of(node: yaml.Node | None, path: list[str | int]) -> int | None:
    """1-based line of the value at ``path`` in a composed YAML tree (nearest existing ancestor)."""
    line = node.start_mark.line + 1 if node is not None else None
    for key in path:
        if isinstance(node, yaml.MappingNode):
            match = next((kn for kn, vn in node.value if getattr(kn, "value", None) == key), None)
            if match is None:
                return line
            line = match.start_mark.line + 1
            node = dict((kn.value, vn) for kn, vn in node.value if isinstance(kn, yaml.ScalarNode))[key]
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def _key_text(path: list[str | int]) -> str:
    out = ""
    for k in path:
        out += f"[{k}]" if isinstance(k, int) else (f".{k}" if out else str(k))
    return out


#: libyaml's parser when PyYAML has it: the pure-Python one took 14 ms for default.yaml, twice (compose, then load)
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _read_yaml(path: Path) -> _Doc:
    file = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("file not found", file=file) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read: {exc}", file=file) from None
    try:
        loader = _YAML_LOADER(text)
        try:  # parsed once: the nodes give the line numbers, the data is built from them (as safe_load does)
            node = loader.get_single_node()
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"invalid YAML: {problem}", file=file,
                          line=mark.line + 1 if mark is not None else None) from None
    if data is None:
        raise ConfigError("file is empty; a config needs at least 'version: 1'", file=file)
    if not isinstance(data, dict):
        raise ConfigError(f"top level must be a mapping, got {type(data).__name__}", file=file, line=1)
    return _Doc(file, data, node)


def _pydantic_error(exc: ValidationError, doc: _Doc, prefix: list[str | int]) -> ConfigError:
    err = exc.errors()[0]
    loc = [p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-after"))]
    path = prefix + list(loc)
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        msg = "unknown key"
    elif err["type"] not in ("value_error", "assertion_error") and "input" in err:
        shown = repr(err["input"])
        msg += f" (got {shown[:60]}{'...' if len(shown) > 60 else ''})"
    msg = msg.removeprefix("Value error, ")
    more = len(exc.errors()) - 1
    if more:
        msg += f" (and {more} more problem{'s' if more > 1 else ''})"
    return ConfigError(msg, file=doc.file, key=_key_text(path), line=_line_of(doc.node, path))


def _known_keys_hint(kind: str) -> str:
    return ", ".join(["check", "name", "enabled", *REGISTRY[kind].params_model.model_fields])


@dataclass
class _Entry:
    kind: str
    name: str
    params: dict[str, Any]
    origins: list[tuple[_Doc, int, set[str]]]


def _resolve(doc: _Doc, stack: tuple[str, ...]) -> tuple[_RawConfig, list[_Entry]]:
    try:
        raw = _RawConfig.model_validate(doc.data)
    except ValidationError as exc:
        raise _pydantic_error(exc, doc, []) from None
    entries: list[_Entry] = []
    input_cfg, gate_cfg = raw.input, raw.gate
    if raw.extends:
        parent_path = _locate(raw.extends, Path(doc.file).parent if doc.file != "<dict>" else None)
        if parent_path is None:
            raise ConfigError(f"extends {raw.extends!r}: no such pack or file (packs: {', '.join(pack_names())})",
                              file=doc.file, key="extends", line=_line_of(doc.node, ["extends"]))
        key = str(parent_path.resolve())
        if key in stack:
            raise ConfigError(f"extends forms a cycle: {' -> '.join([*stack, key])}", file=doc.file,
                              key="extends", line=_line_of(doc.node, ["extends"]))
        parent_raw, entries = _resolve(_read_yaml(parent_path), (*stack, key))
        input_cfg = _merge_model(parent_raw.input, raw.input, InputConfig)
        gate_cfg = _merge_model(parent_raw.gate, raw.gate, GateConditions)
        diversity_cfg = _merge_model(parent_raw.diversity, raw.diversity, DiversityConfig)
        repair_cfg = _merge_model(parent_raw.repair, raw.repair, RepairConfig)
    else:
        diversity_cfg, repair_cfg = raw.diversity, raw.repair
    raw = raw.model_copy(update={"input": input_cfg, "gate": gate_cfg, "diversity": diversity_cfg,
                                 "repair": repair_cfg})
    by_name = {e.name: e for e in entries}
    from_parent = set(by_name)
    for i, entry in enumerate(raw.checks):
        here: list[str | int] = ["checks", i]
        kind = entry.get("check")
        name = entry.get("name", kind)
        if ("name" in entry or name is not None) and not (isinstance(name, str) and _NAME.match(name)):
            raise ConfigError("name must be 1-64 letters, digits, '_' or '-'", file=doc.file,
                              key=_key_text([*here, "name"]), line=_line_of(doc.node, [*here, "name"]))
        params = {k: v for k, v in entry.items() if k not in ("check", "name", "enabled")}
        enabled = entry.get("enabled", True)
        if not isinstance(enabled, bool):
            raise ConfigError("enabled must be true or false", file=doc.file,
                              key=_key_text([*here, "enabled"]), line=_line_of(doc.node, [*here, "enabled"]))
        inherited = by_name.get(name) if isinstance(name, str) and name in from_parent else None
        if inherited is not None and (kind is None or kind == inherited.kind):
            if not enabled:
                entries.remove(inherited)
                del by_name[inherited.name]
                continue
            inherited.params.update(params)
            inherited.origins.append((doc, i, set(params)))
            from_parent.discard(name)
            continue
        if kind is None:
            raise ConfigError("missing 'check' (the check kind)" + (
                f"; no inherited check is named {name!r}" if name else ""), file=doc.file,
                key=_key_text(here), line=_line_of(doc.node, here))
        if not isinstance(kind, str) or kind not in REGISTRY:
            close = difflib.get_close_matches(str(kind), REGISTRY, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(sorted(REGISTRY))}"
            raise ConfigError(f"unknown check {kind!r}{hint}", file=doc.file, key=_key_text([*here, "check"]),
                              line=_line_of(doc.node, [*here, "check"]))
        assert isinstance(name, str)
        if name == MALFORMED or name in by_name:
            why = "is reserved" if name == MALFORMED else "is used twice"
            raise ConfigError(f"check name {name!r} {why}; give this entry its own 'name'", file=doc.file,
                              key=_key_text(here), line=_line_of(doc.node, here))
        if not enabled:
            continue
        new = _Entry(kind, name, params, [(doc, i, set(params))])
        entries.append(new)
        by_name[name] = new
    return raw, entries


def _merge_model(parent: Any, child: Any, model: type[BaseModel]) -> Any:
    if parent is None or child is None:
        return child if child is not None else parent
    return model.model_validate({**parent.model_dump(), **child.model_dump(exclude_unset=True)})


def _build_specs(entries: list[_Entry]) -> list[CheckSpec]:
    specs = []
    for e in entries:
        try:
            params = REGISTRY[e.kind].params_model.model_validate(e.params)
        except ValidationError as exc:
            err = exc.errors()[0]
            key = next((str(k) for k in err["loc"] if isinstance(k, str)), None)
            doc, idx, _ = next((o for o in reversed(e.origins) if key in o[2]), e.origins[-1])
            ce = _pydantic_error(exc, doc, ["checks", idx])
            if err["type"] == "extra_forbidden":
                ce = ConfigError(f"unknown key for check '{e.kind}'; allowed: {_known_keys_hint(e.kind)}",
                                 file=ce.file, key=ce.key, line=ce.line)
            raise ce from None
        specs.append(CheckSpec(e.kind, e.name, params))
    return specs


def _locate(ref: str, base: Path | None) -> Path | None:
    """A config reference: a bare name (no '/', no .yaml/.yml suffix) is always a shipped pack, never a file
    of that name in the working directory; anything else is a path (relative to ``base`` first)."""
    if is_bare_name(ref) and not ref.endswith((".yaml", ".yml")):
        return pack_path(ref)
    path = Path(ref).expanduser()
    candidates = [base / path] if base is not None and not path.is_absolute() else []
    candidates.append(path)
    return next((c for c in candidates if c.is_file()), None)


def load_config(source: str | Path | dict[str, Any] | GateConfig) -> GateConfig:
    """Load and validate a config from a pack name, a YAML path, a dict, or pass a GateConfig through."""
    if isinstance(source, GateConfig):
        return source
    label = "<dict>"
    if isinstance(source, dict):
        doc = _Doc("<dict>", source, None)
    else:
        path = _locate(str(source), None)
        if path is None:
            ref = str(source)
            hint = (f"; a bare name means a shipped pack: to use the file, write './{ref}'"
                    if is_bare_name(ref) and Path(ref).is_file() else "")
            raise ConfigError(f"no config file or shipped pack named {ref!r} (packs: {', '.join(pack_names())})"
                              f"{hint}", file=ref)
        doc = _read_yaml(path)
        label = f"pack {source}" if is_bare_name(str(source)) and path == pack_path(str(source)) else str(source)
    raw, entries = _resolve(doc, ())
    inp = raw.input or InputConfig()
    try:
        TextSpec(inp.text)
    except ConfigError as exc:
        raise ConfigError(exc.detail, file=doc.file, key="input.text",
                          line=_line_of(doc.node, ["input", "text"])) from None
    return GateConfig(inp, _build_specs(entries), raw.gate or GateConditions(), raw.description or "", doc.file,
                      raw.diversity, label, raw.repair)


def named_paths(node: Any, key: str = "") -> Iterator[tuple[str, str]]:
    """``(key, value)`` of every string in a config (raw or resolved) that names a file: ``extends``, ``*_file``
    lists and schemas, ``model`` files and folders."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield from named_paths(v, str(k))
    elif isinstance(node, list):
        for v in node:
            yield from named_paths(v, key)
    elif isinstance(node, str) and (key.endswith("_file") or key in ("extends", "model")):
        yield key, node


def referenced_files(config: Any) -> dict[str, str]:
    """A content hash of every file a (resolved) config names: ``*_file`` lists and schemas, ``model`` files and
    folders. The config holds only their paths; an edited phrase list changes what the config decides."""
    import os

    import xxhash

    from qualgate.models import model_fingerprint
    from qualgate.packs import data_file

    found: dict[str, str] = {}
    for key, node in named_paths(config):
        if key == "extends" or node in found:
            continue
        try:
            path = data_file(node) if key.endswith("_file") else Path(os.path.expanduser(node))
        except FileNotFoundError:
            path = Path(node)
        if path.is_dir():
            found[node] = model_fingerprint(path.resolve())
        elif path.is_file():
            digest = xxhash.xxh3_128()
            with open(path, "rb") as fh:
                while chunk := fh.read(1 << 22):
                    digest.update(chunk)
            found[node] = digest.hexdigest()
        else:
            found[node] = "missing"
    return found


def config_json_schema() -> dict[str, Any]:
    """A JSON Schema (draft 2020-12) for config files, so editors can validate and complete them.

    Each ``checks`` entry is one of: a new check (``check: KIND`` plus that kind's parameters), or, in a
    config that ``extends`` another, an update of an inherited check by ``name``.
    """
    defs: dict[str, Any] = {}
    entries: list[dict[str, Any]] = []
    for kind in sorted(REGISTRY):
        cls = REGISTRY[kind]
        schema = cls.params_model.model_json_schema(ref_template="#/$defs/{model}")
        defs.update(schema.pop("$defs", {}))
        props = {"check": {"const": kind, "description": cls.doc()},
                 "name": {"type": "string", "pattern": _NAME.pattern, "description": "unique name (default: kind)"},
                 "enabled": {"type": "boolean", "description": "false removes an inherited check"},
                 **schema.get("properties", {})}
        defs[f"check_{kind}"] = {"type": "object", "title": kind, "description": cls.doc(), "properties": props,
                                 "required": ["check", *schema.get("required", [])], "additionalProperties": False}
        entries.append({"$ref": f"#/$defs/check_{kind}"})
    entries.append({"type": "object", "title": "update of an inherited check", "required": ["name"],
                    "not": {"required": ["check"]},
                    "properties": {"name": {"type": "string"}, "enabled": {"type": "boolean"}}})
    for model in (InputConfig, GateConditions, DiversityConfig, RepairConfig):
        schema = model.model_json_schema(ref_template="#/$defs/{model}")
        defs.update(schema.pop("$defs", {}))
        defs[model.__name__] = schema
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "qualgate config",
        "type": "object",
        "required": ["version"],
        "additionalProperties": False,
        "properties": {
            "version": {"const": 1},
            "description": {"type": "string"},
            "extends": {"type": "string", "description": "a shipped pack name or a path relative to this file"},
            "input": {"$ref": "#/$defs/InputConfig"},
            "checks": {"type": "array", "items": {"anyOf": entries}},
            "gate": {"$ref": "#/$defs/GateConditions"},
            "diversity": {"$ref": "#/$defs/DiversityConfig"},
            "repair": {"$ref": "#/$defs/RepairConfig"},
        },
        "$defs": defs,
    }
