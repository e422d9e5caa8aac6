"""Perplexity: a language model scores each sample; too high reads as gibberish, too low as a loop.

Backends (``backend``): ``ngram`` (built in; trained on the ``--reference`` set, or cross-fitted on the
input itself when there is none, or loaded from an ARPA file), ``kenlm`` (any KenLM ARPA/binary model)
and ``hf`` (any local causal LM folder or GGUF file). Scores are per token of the backend's ``unit``
(normalised words for n-gram models, model subwords for ``hf``), on the first ``max_tokens`` tokens.

Thresholds are numbers or ``reference_pNN`` (optionally ``*FACTOR``): the NN-th percentile of the
reference set's own scores, cross-fitted for a model trained on that set (each fold scored by a model
that never saw it), so the check works without hand-tuning per model or domain.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import xxhash
from pydantic import Field, field_validator

from qualgate.checks.base import Features, Measurement, Params, SetCheck, field_texts, register
from qualgate.errors import ConfigError
from qualgate.findings import Finding
from qualgate.index import pack_strings, unpack_strings
from qualgate.lm.ngram import NgramModel
from qualgate.lm.scorers import (
    HF_EXTRA,
    KENLM_EXTRA,
    KenlmScorer,
    NgramScorer,
    Scored,
    Scorer,
    cache_mix,
    hf_model_path,
    ppl,
)
from qualgate.lm.text import tokenizer
from qualgate.sample import FieldProblem, Sample

VERSION = 1  # bump when what cached states hold changes
_RELATIVE = re.compile(r"^reference_p(\d{1,2}(?:\.\d+)?|100)(?:\s*\*\s*(\d+(?:\.\d+)?))?$")
#: the thresholds, and the score each one limits
_LIMITED = {"max": "perplexity", "min": "perplexity", "max_context_ratio": "context_ratio"}
_MIN_RELIABLE_SET = 200  # fewer set samples than this: percentiles are rough (said in the report)
_LOOPING_SHARE = 0.2  # from this share of repeated two-token contexts on, a low score is called a loop


def parse_threshold(value: float | str | None) -> tuple[float, float] | float | None:
    """A number, or ``(percentile, factor)`` for ``reference_pNN[*F]``."""
    if value is None or isinstance(value, (int, float)):
        return value
    m = _RELATIVE.match(value.strip())
    if not m:
        raise ValueError(f"{value!r} is neither a number nor reference_pNN (e.g. reference_p99, reference_p1*0.5)")
    return float(m.group(1)), float(m.group(2) or 1.0)


_GRID_STEP = 0.5
_GRID = np.linspace(0, 100, int(100 / _GRID_STEP) + 1)  # percentiles stored for `qualgate tune`


class PerplexityParams(Params):
    field: str | None = Field(None, description="record field to score; unset = the configured text view")
    backend: Literal["ngram", "kenlm", "hf"] = Field("ngram", description="ngram (built in), kenlm or hf")
    model: str | None = Field(None, description="ngram: ARPA file (unset: train on the reference or the input); "
                              "kenlm: ARPA/binary file; hf: local folder or .gguf (unset: packaged SmolLM2-135M)")
    order: int = Field(3, ge=1, le=6, description="n-gram order when training")
    normalize: Literal["v1", "none"] = Field("v1", description="tokenisation for n-gram models without a header")
    folds: int = Field(5, ge=2, le=20, description="cross-fitting folds for a model trained on the set it scores")
    max: float | str | None = Field("reference_p99", description="reject above: a number or reference_pNN[*F]")
    min: float | str | None = Field("reference_p1", description="reject below: a number or reference_pNN[*F]")
    max_context_ratio: float | str | None = Field(
        "reference_p99", description="reject word salad: perplexity with context / without (n-gram backends)")
    min_tokens: int = Field(20, ge=1, description="shorter samples are not scored (their perplexity says little)")
    max_tokens: int = Field(1024, ge=8, description="score only the first N tokens (noted in the evidence)")
    cache: bool = Field(True, description="mix in a per-sample cache model so self-repeating samples score low")
    cache_prior: float = Field(1.0, gt=0, description="weight of the static model against the sample's own counts")
    device: str = Field("auto", description="hf: auto (CUDA when present), cpu, cuda, ...")
    batch_size: int | None = Field(None, ge=1, le=4096, description="hf: texts per forward pass; unset = 128 on "
                                   "CUDA, 8 on CPU")
    reference_limit: int = Field(5000, ge=10, description="fixed models: most set samples scored for percentiles")

    @field_validator("max", "min", "max_context_ratio")
    @classmethod
    def _threshold(cls, v: float | str | None) -> float | str | None:
        parse_threshold(v)
        return v


_MODELS: dict[tuple[str, str, float, str, str, int | None], Scorer] = {}


def _model_file(params: PerplexityParams, name: str) -> Path | None:
    if params.backend == "hf":
        return hf_model_path(params.model)
    if params.model is None:
        if params.backend == "kenlm":
            raise ConfigError(f"check '{name}' (perplexity, backend kenlm) needs 'model': the path of a KenLM "
                              "ARPA or binary file")
        return None
    path = Path(os.path.expanduser(params.model))
    if not path.is_file():
        raise ConfigError(f"check '{name}' (perplexity): model file {params.model!r} not found. qualgate never "
                          "downloads models: pass a local ARPA file (`qualgate lm train REFERENCE -o model.arpa`) "
                          "or leave 'model' unset to train on --reference")
    return path


def _fixed_scorer(params: PerplexityParams, path: Path) -> Scorer:
    """Load a model once per process (keyed by path, modification time and device)."""
    key = (params.backend, str(path.resolve()), path.stat().st_mtime, params.device, params.normalize,
           params.batch_size)
    if key not in _MODELS:
        if params.backend == "hf":
            from qualgate.lm.scorers import HfScorer

            _MODELS[key] = HfScorer(path, params.device, params.batch_size)
        elif params.backend == "kenlm":
            _MODELS[key] = KenlmScorer(path, params.normalize)
        else:
            try:
                _MODELS[key] = NgramScorer(NgramModel.read_arpa(path, params.normalize))
            except (ValueError, UnicodeDecodeError) as exc:
                raise ConfigError(f"cannot read ARPA model {str(path)!r}: {exc}") from None
    return _MODELS[key]


def _ordinal(q: float) -> str:
    if q != int(q):
        return f"{q:g}th"
    n = int(q)
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


class ScoredFeatures(Features):
    """Measurements an engine's worker made with the language model, one per sample (None: field missing),
    and the worker's description of the model (its device, size), so the report need not load it here."""

    def __init__(self, measured: list[Measurement | None], model: dict[str, Any]) -> None:
        self.measured, self.model = measured, model

    def take(self, rows: Sequence[int]) -> ScoredFeatures:
        return ScoredFeatures([self.measured[r] for r in rows], self.model)


@register
class Perplexity(SetCheck[PerplexityParams]):
    """Language-model perplexity per token: too high reads as gibberish, too low as degenerate repetition."""

    kind = "perplexity"
    decision_params = frozenset({"max", "min", "max_context_ratio"})
    params_model = PerplexityParams
    score_names = ("perplexity", "static_perplexity", "context_ratio", "tokens")
    compares_with = "reference"
    fits_on_input = True
    min_set_size = 10
    cost = 60

    def __init__(self, name: str, params: PerplexityParams) -> None:
        super().__init__(name, params)
        from qualgate.models import require_modules

        if params.backend == "kenlm":
            require_modules("kenlm", extra=KENLM_EXTRA, who=f"check '{name}' (kenlm backend)")
        if params.backend == "hf":  # fail before any work, not at the first batch
            require_modules("torch", "transformers", extra=HF_EXTRA, who=f"check '{name}' (hf backend)")
        self.path = _model_file(params, name)
        if params.backend == "hf":
            self.cost = 80
            # the language model runs where an engine's workers are (the Ray engine's actors, on GPUs): its
            # scores depend on nothing but the text, so they are features; the reference is scored here
            self.model_features = True
        self.specs = {"max": parse_threshold(params.max), "min": parse_threshold(params.min),
                      "max_context_ratio": parse_threshold(params.max_context_ratio)}
        self.set_role: str | None = None
        self.n_set = 0
        #: the set's own (cross-fitted) scores, per score name, for relative thresholds and the report
        self.set_values: dict[str, np.ndarray[Any, np.dtype[np.float64]]] | None = None
        self._texts: list[str] = []
        self._fold_models: list[NgramModel] = []
        self._full_model: NgramModel | None = None
        self._tokenize = tokenizer(params.normalize)
        self._limits: dict[str, tuple[float, str]] = {}  # resolved thresholds; cleared with set_values
        self._worker_model: dict[str, Any] | None = None  # describe() of the model an engine's workers ran

    # -------------------------------------------------------------------------------- set handling
    @property
    def trains(self) -> bool:
        """True when the model is trained here (built-in n-gram without a model file)."""
        return self.params.backend == "ngram" and self.path is None

    def needs_set(self) -> bool:
        relative = any(isinstance(t, tuple) for k, t in self.specs.items() if k in self.applicable)
        return self.trains or relative

    @property
    def applicable(self) -> tuple[str, ...]:
        """The thresholds this backend can apply: ``hf`` has no context-free probabilities, so no context ratio."""
        return ("max", "min") if self.params.backend == "hf" else tuple(_LIMITED)

    @property
    def n_baseline(self) -> int:
        return self.n_set

    def add_baseline(self, samples: Sequence[Sample]) -> int:
        """Collect reference (or input) texts; the models are trained when first needed."""
        texts, problems = field_texts(samples, self.params.field)
        kept = [t for t, p in zip(texts, problems, strict=True) if p is None]
        self._texts.extend(kept)
        self.n_set += len(kept)
        self.set_values = None
        self._limits = {}
        return len(samples) - len(kept)

    def _fold(self, texts: Sequence[str]) -> list[int]:
        """Fold by the normalised tokens, so texts the model cannot tell apart (case, spacing, digits) share a
        fold and no text is scored by a model trained on its twin."""
        return [xxhash.xxh64_intdigest(" ".join(self._tokenize(t)).encode("utf-8", "surrogatepass")) % self.params.folds
                for t in texts]

    def _ensure_ready(self) -> None:
        if self.set_values is not None or not self._texts:
            return
        p = self.params
        if self.trains:
            toks = [self._tokenize(t) for t in self._texts]
            folds = self._fold(self._texts)
            self._fold_models = [NgramModel.train([t for t, f in zip(toks, folds, strict=True) if f != k], p.order,
                                                  p.normalize) for k in range(p.folds)]
            self._full_model = NgramModel.train(toks, p.order, p.normalize) if self.set_role != "input" else None
            texts = self._texts
        else:
            texts = self._texts
            if len(texts) > p.reference_limit:  # a fixed, deterministic subset: the smallest text hashes
                h = np.asarray([xxhash.xxh64_intdigest(t.encode("utf-8", "surrogatepass")) for t in texts],
                               dtype=np.uint64)
                texts = [texts[i] for i in sorted(np.argsort(h, kind="stable")[:p.reference_limit].tolist())]
        measured = self._measure(texts, cross_fit=True)
        self._limits = {}
        self.set_values = {k: np.asarray([v for m in measured if (v := m.values[k]) is not None], dtype=np.float64)
                           for k in set(_LIMITED.values())}
        self._texts = []

    # ------------------------------------------------------------------------------------- scoring
    def _scored(self, texts: Sequence[str], cross_fit: bool) -> list[Scored]:
        p = self.params
        if not self.trains:
            assert self.path is not None
            return _fixed_scorer(p, self.path).score(texts, p.max_tokens)
        if not cross_fit and self._full_model is not None:
            return NgramScorer(self._full_model).score(texts, p.max_tokens)
        folds = self._fold(texts)
        out: list[Scored | None] = [None] * len(texts)
        for k, model in enumerate(self._fold_models):
            idx = [i for i, f in enumerate(folds) if f == k]
            if idx:
                for i, s in zip(idx, NgramScorer(model).score([texts[i] for i in idx], p.max_tokens), strict=True):
                    out[i] = s
        return [s for s in out if s is not None]

    @property
    def unit(self) -> str:
        return "token" if self.params.backend == "hf" else "word"

    def _measure(self, texts: Sequence[str], cross_fit: bool) -> list[Measurement]:
        if not texts:
            return []
        p = self.params
        scored = self._scored(texts, cross_fit)
        mixed = cache_mix(scored, p.cache_prior) if p.cache else [None] * len(scored)
        out = []
        for s, mx in zip(scored, mixed, strict=True):
            n = len(s.ids) - s.offset - (0 if s.truncated or self.params.backend == "hf" else 1)
            if n < p.min_tokens:
                out.append(Measurement({"perplexity": None, "static_perplexity": None, "context_ratio": None,
                                        "tokens": float(n)},
                                       {"tokens": n, "unit": self.unit,
                                        "note": f"fewer than {p.min_tokens} {self.unit}s: not scored"}))
                continue
            static = round(ppl(s.logprobs), 4)
            score = round(ppl(mx.logprobs), 4) if mx is not None else static
            ev: dict[str, Any] = {"unit": self.unit, "tokens": n, "static_perplexity": static}
            if mx is not None:
                ev["repeated_context_share"] = round(mx.repeated, 4)
            if s.truncated:
                ev["truncated"] = f"scored the first {n} of {s.total_tokens} {self.unit}s"
            ratio = None
            if s.unigram is not None:  # how much the context helps: ~0.1-0.4 for prose, ~1 for word salad
                ratio = round(float(np.exp((s.unigram - s.logprobs).mean())), 4)
                ev["context_ratio"] = ratio
            out.append(Measurement({"perplexity": score, "static_perplexity": static, "context_ratio": ratio,
                                    "tokens": float(n)}, ev))
        return out

    @property
    def abstains(self) -> bool:
        """Fitted on an input too small to learn from: no sample is judged (the report says so)."""
        return self.set_role == "input" and self.needs_set() and self.n_set < self.min_set_size

    def feature_input(self, samples: Sequence[Sample]) -> Any | None:
        """The texts to score, only where an engine asked for model work in its workers (``hf``, Ray engine)."""
        if not (self.features_in_workers and self.model_features):
            return None
        texts, problems = field_texts(samples, self.params.field)
        return [t for t, pr in zip(texts, problems, strict=True) if pr is None], [pr is None for pr in problems]

    def features_from(self, data: Any) -> Features:
        texts, ok = data
        measured = iter(self._measure(texts, cross_fit=False))
        if self._worker_model is None:  # once per worker, not per batch (it counts the model's parameters)
            self._worker_model = self.describe()
        return ScoredFeatures([next(measured) if good else None for good in ok], self._worker_model)

    def score_batch(self, samples: Sequence[Sample], eligible: Sequence[bool],
                    features: Any = None) -> list[Measurement | FieldProblem]:
        texts, problems = field_texts(samples, self.params.field)
        if self.abstains:
            note = (f"not scored: the input has {self.n_set} usable records, fewer than the {self.min_set_size} "
                    "needed to fit on it; pass --reference")
            return [pr if pr is not None else Measurement(dict.fromkeys(self.score_names), {"note": note})
                    for pr in problems]
        self._ensure_ready()
        ok = [i for i, pr in enumerate(problems) if pr is None]
        if isinstance(features, ScoredFeatures):
            measured = [m for i in ok if (m := features.measured[i]) is not None]
            self._worker_model = features.model
        else:
            measured = self._measure([texts[i] for i in ok], cross_fit=self.set_role == "input")
        out: list[Measurement | FieldProblem] = []
        by_pos = dict(zip(ok, measured, strict=True))
        for i, pr in enumerate(problems):
            out.append(pr if pr is not None else by_pos[i])
        return out

    # ------------------------------------------------------------------------------------ deciding
    def limit(self, which: str) -> tuple[float | None, str]:
        """The resolved threshold ``max``, ``min`` or ``max_context_ratio`` and where it came from."""
        spec = self.specs[which]
        if spec is None or not isinstance(spec, tuple):
            return spec, "absolute"
        self._ensure_ready()
        values = self.set_values.get(_LIMITED[which]) if self.set_values is not None else None
        if values is None or not len(values):
            raise ConfigError(f"check '{self.name}': {which} {getattr(self.params, which)!r} is relative to a "
                              "reference set, and none was scored with this backend: pass --reference (or give "
                              "a number)")
        key = which
        if key not in self._limits:  # decide() asks per sample: compute each percentile once
            q, factor = spec
            set_name = "the input's own" if self.set_role == "input" else "the reference's"
            what = f"{set_name} {_ordinal(q)} percentile" + (f" x {factor:g}" if factor != 1 else "")
            self._limits[key] = (round(float(np.percentile(values, q)) * factor, 4), what)
        return self._limits[key]

    def tuned_section(self, section: dict[str, Any]) -> dict[str, Any]:
        """The resolved thresholds after tuning (the model and set are as they were)."""
        out = dict(section)
        for which in _LIMITED:
            if which in self.applicable:
                try:
                    value, what = self.limit(which)
                except ConfigError:
                    continue
                out[which] = {"value": value, "from": what}
        return out

    def restore_for_decide(self, section: dict[str, Any] | None) -> str | None:
        """Thresholds from the stored percentile grid of the set's scores (every 0.5 percentile; exact at
        those, interpolated between), so nothing is re-scored and no model is loaded."""
        relative = [w for w in self.applicable if isinstance(self.specs[w], tuple)]
        if not relative:
            return None
        grid = (section or {}).get("set_percentiles")
        if not grid:
            return "the original run stored no percentiles of its set's scores (run it again with this version)"
        self.set_role = (section or {}).get("set")
        self.set_values = {k: np.asarray(v, dtype=np.float64) for k, v in grid["values"].items()}
        self._texts, self._limits = [], {}
        return None

    def score_limits(self) -> dict[str, list[float]]:
        """Resolved limits (a relative one needs the set's scores: only once they exist)."""
        out: dict[str, list[float]] = {}
        for which, score in (("max", "perplexity"), ("min", "perplexity"), ("max_context_ratio", "context_ratio")):
            spec = self.specs.get(which)
            if isinstance(spec, (int, float)):
                out.setdefault(score, []).append(float(spec))
            elif spec is not None and self.set_values is not None and which in self.applicable:
                try:
                    value = self.limit(which)[0]
                except ConfigError:  # the set had nothing scorable: the report section says so
                    continue
                if value is not None:
                    out.setdefault(score, []).append(float(value))
        return out

    def decide(self, m: Measurement) -> list[Finding]:
        score, ratio = m.values["perplexity"], m.values["context_ratio"]
        if score is None:
            return []
        against = "the rest of the input" if self.set_role == "input" else "the reference text"
        hi, hi_what = self.limit("max")
        if hi is not None and score > hi:
            return [self.finding("high_perplexity", score, hi,
                                 f"reads unlike {against}: perplexity {score:,.1f} per {self.unit} is above "
                                 f"{hi:,.1f} ({hi_what}); gibberish, noisy or off-domain text scores this high",
                                 **m.evidence, limit_from=hi_what)]
        lo, lo_what = self.limit("min")
        if lo is not None and score < lo:
            share = m.evidence.get("repeated_context_share")
            what = f"perplexity {score:,.1f} per {self.unit} is below {lo:,.1f} ({lo_what})"
            if share is None or share >= _LOOPING_SHARE:
                why = f"; {share:.0%} of its {self.unit}s continue a phrase it already used" if share else ""
                message = f"degenerate repetition: {what}{why}"
            else:
                message = (f"unusually predictable text: {what}, yet only {share:.0%} of it repeats itself, so it "
                           "is formulaic or memorised rather than looping")
            return [self.finding("low_perplexity", score, lo, message, **m.evidence, limit_from=lo_what)]
        if ratio is not None and self.specs["max_context_ratio"] is not None:
            top, top_what = self.limit("max_context_ratio")
            if top is not None and ratio > top:
                return [self.finding("incoherent", ratio, top,
                                     f"word salad: its word order barely helps predict it (perplexity with context "
                                     f"is {ratio:.0%} of that without; limit {top:.0%}, {top_what}); shuffled or "
                                     "stitched-together text looks like this", **m.evidence,
                                     limit_from=top_what)]
        return []

    # ------------------------------------------------------------------------------ state and report
    def cache_token(self) -> str:
        fp = ""
        if self.path is not None:
            st = self.path.stat()
            fp = f"{self.path.resolve()}:{st.st_size}:{st.st_mtime_ns}"
        return f"{self.kind}-v{VERSION}:{self.set_role}:{fp}:{self.params.model_dump_json()}"

    def export_state(self) -> dict[str, Any]:
        self._ensure_ready()
        state: dict[str, Any] = {
            "role": np.asarray(self.set_role or ""), "n_set": np.asarray(self.n_set, dtype=np.int64),
            **{f"set_{k}": (self.set_values or {}).get(k, np.zeros(0, dtype=np.float64))
               for k in set(_LIMITED.values())},
            "n_models": np.asarray(len(self._fold_models), dtype=np.int64),
            "has_full": np.asarray(self._full_model is not None)}
        models = [*self._fold_models, *([self._full_model] if self._full_model is not None else [])]
        for j, m in enumerate(models):
            words, offsets = pack_strings(m.words)
            state[f"m{j}_words"], state[f"m{j}_offsets"] = words, offsets
            for n in range(m.order):
                state[f"m{j}_k{n}"], state[f"m{j}_p{n}"] = m.keys[n], m.logp[n]
                if n < m.order - 1:
                    state[f"m{j}_b{n}"] = m.bow[n]
        return state

    def import_state(self, arrays: Mapping[str, Any]) -> None:
        self.set_role = str(arrays["role"]) or None
        self.n_set = int(arrays["n_set"])
        self._limits = {}
        self.set_values = {k: np.asarray(arrays[f"set_{k}"], dtype=np.float64) for k in set(_LIMITED.values())}
        models = []
        for j in range(int(arrays["n_models"]) + int(bool(arrays["has_full"]))):
            words = unpack_strings(arrays[f"m{j}_words"], arrays[f"m{j}_offsets"])
            order = sum(1 for k in arrays if k.startswith(f"m{j}_k"))
            models.append(NgramModel(words, [np.asarray(arrays[f"m{j}_k{n}"]) for n in range(order)],
                                     [np.asarray(arrays[f"m{j}_p{n}"]) for n in range(order)],
                                     [np.asarray(arrays[f"m{j}_b{n}"]) for n in range(order - 1)],
                                     self.params.normalize))
        n_folds = int(arrays["n_models"])
        self._fold_models = models[:n_folds]
        self._full_model = models[n_folds] if bool(arrays["has_full"]) else None
        self._texts = []

    def describe(self) -> dict[str, Any]:
        p = self.params
        if self.trains:
            model = self._full_model or (self._fold_models[0] if self._fold_models else None)
            info: dict[str, Any] = NgramScorer(model).describe() if model is not None else {"backend": "ngram"}
            info["trained_on"] = {"reference": "the reference set", "input": "the input, cross-fitted"}.get(
                self.set_role or "", "nothing yet")
            info["folds"] = p.folds
        elif self._worker_model is not None:  # loaded and run by an engine's workers only
            info = dict(self._worker_model)
        else:
            assert self.path is not None
            info = _fixed_scorer(p, self.path).describe()
        info.update(unit=self.unit, max_tokens=p.max_tokens, cache=p.cache, cache_prior=p.cache_prior)
        return info

    def report_section(self) -> dict[str, Any]:
        warnings = []
        if self.set_role == "input":
            warnings.append("no reference set: the model was cross-fitted on the input itself, so relative "
                            "thresholds reject the input's own tails; pass --reference with human text")
        if self.abstains:
            warnings.append(f"perplexity judged nothing: the input has only {self.n_set} usable records to fit "
                            f"on (at least {self.min_set_size} needed); pass --reference with human text")
        elif 0 < self.n_set < _MIN_RELIABLE_SET and self.needs_set():
            warnings.append(f"the {self.set_role or 'reference'} set has only {self.n_set} samples: "
                            "its percentiles and any model trained on it are rough")
        section: dict[str, Any] = {**self.describe(), "set": self.set_role, "set_records": self.n_set,
                                   "warnings": warnings}
        qs = (1, 5, 50, 95, 99)
        grid: dict[str, list[float]] = {}
        for key, values in (self.set_values or {}).items():
            if len(values):
                section[f"set_{key}"] = {f"p{q}": round(float(np.percentile(values, q)), 4) for q in qs}
                grid[key] = [round(float(v), 6) for v in np.percentile(values, _GRID)]
        if grid:  # lets `qualgate tune` resolve other reference_pNN thresholds without the model
            section["set_percentiles"] = {"step": _GRID_STEP, "values": grid}
        for which in _LIMITED:
            if which not in self.applicable:
                section[which] = {"value": None, "from": f"not available with the {self.params.backend} backend"}
                continue
            try:
                value, what = self.limit(which)
            except ConfigError:
                value, what = None, "no reference set"
            section[which] = {"value": value, "from": what}
        return section
