"""Which files of a Hub repository a causal language model needs, and whether loading it would run its code."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpi_desktop.core.hub.words import model_page
from gpi_desktop.core.vocabulary.errors import ModelError, Remedy
from gpi_desktop.core.vocabulary.hf_lock import TRANSFORMERS_LOCK

# What a causal language model needs from a repository, at its top level.
# Anything else (original/*.pth checkpoints, ONNX or GGUF exports, images) is left out.
CONFIG_FILES = ("config.json", "generation_config.json")
TOKENIZER_PATTERNS = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "tokenizer.model",
    "tokenizer.model.v*",
    "tekken.json",
    "vocab.json",
    "vocab.txt",
    "merges.txt",
    "spiece.model",
    "sentencepiece.bpe.model",
    "*.tiktoken",
    "chat_template.jinja",
    "chat_template.json",
)
SAFE_INDEX = "model.safetensors.index.json"
SAFE_SINGLE = "model.safetensors"
PICKLE_INDEX = "pytorch_model.bin.index.json"
PICKLE_SINGLE = "pytorch_model.bin"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
WEIGHT_SUFFIXES = (".safetensors", *PICKLE_SUFFIXES)


def model_needs_remote_code(config: dict[str, Any], tokenizer_config: dict[str, Any] | None = None) -> bool:
    """True when loading this model would run Python code from its repository.

    A repository with an `auto_map` whose `model_type` transformers knows
    (Phi-3 and others shipped code before transformers adopted them) loads
    with transformers' own classes, so that is not counted.
    """
    with TRANSFORMERS_LOCK:
        from transformers import CONFIG_MAPPING  # its lookups import config modules lazily: under the lock too

        model_type = config.get("model_type")
        known = isinstance(model_type, str) and model_type in CONFIG_MAPPING
        if config.get("auto_map") and not known:
            return True
        tokenizer_config = tokenizer_config or {}
        if tokenizer_config.get("auto_map"):
            tok_class = tokenizer_config.get("tokenizer_class")
            if not (isinstance(tok_class, str) and _transformers_has(tok_class)):
                return True
        return False


def _transformers_has(name: str) -> bool:
    with TRANSFORMERS_LOCK:
        import transformers

        for candidate in (name, name.removesuffix("Fast")):
            try:
                getattr(transformers, candidate)
                return True
            except (AttributeError, ImportError, RuntimeError):
                continue
        return False


def check_model_config(
    config: dict[str, Any], model_id: str | None, tokenizer_config: dict[str, Any] | None = None
) -> None:
    """Refuse, in plain words, a model that needs its own code or that transformers does not know."""
    with TRANSFORMERS_LOCK:
        from transformers import CONFIG_MAPPING

        where = model_page(model_id) if model_id and not Path(str(model_id)).exists() else str(model_id or "this model")
        if model_needs_remote_code(config, tokenizer_config):
            raise ModelError(
                f"{model_id or 'This model'} needs to run program code from its repository, which gpi-desktop never "
                f"does for safety; choose a model that transformers supports directly (see {where})."
            )
        model_type = config.get("model_type")
        if not isinstance(model_type, str) or model_type not in CONFIG_MAPPING:
            raise ModelError(
                f"This version of transformers does not know the model type '{model_type}' of "
                f"{model_id or 'this model'}: update gpi-desktop (or transformers), or choose another model."
            )


@dataclass(frozen=True)
class RemoteFile:
    path: str
    size: int
    etag: str | None = None  # git blob id, or the LFS sha256 for large files (the cache's blob name)


@dataclass(frozen=True)
class DownloadPlan:
    model_id: str
    revision: str  # what was asked for ("main" when nothing was)
    commit: str
    files: tuple[RemoteFile, ...]
    total_bytes: int
    bytes_on_disk: int  # already in the cache (whole blobs and partial downloads)

    @property
    def bytes_to_fetch(self) -> int:
        return max(0, self.total_bytes - self.bytes_on_disk)


def _matches(name: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def is_tokenizer_file(name: str) -> bool:
    return _matches(name, TOKENIZER_PATTERNS)


def pickle_weights_refused(name: str) -> ModelError:
    """The one refusal of a model whose only weights are pickle files, from the Hub or a folder alike."""
    return ModelError(
        f"The model '{name}' has only pickle weight files (.bin, .pt, .ckpt or .pkl), which can run "
        "hidden code when loaded",
        remedy=Remedy.SAFETENSORS_OR_ALLOW_PICKLE,
    )


def select_model_files(
    names: list[str], *, allow_pickle: bool = False, index: dict[str, Any] | None = None, model_id: str | None = None
) -> list[str]:
    """The files of a repository that loading a causal LM needs (top level only).

    `index` is the parsed weights index (model.safetensors.index.json, or the
    pickle one) when the repository is sharded: its weight_map names the shards,
    so a repository that also holds a consolidated copy is not fetched twice.
    """
    top = [n for n in names if "/" not in n]
    chosen = [n for n in top if n in CONFIG_FILES or _matches(n, TOKENIZER_PATTERNS)]
    if "config.json" not in top:
        raise ModelError(
            f"{model_id or 'This repository'} has no config.json, so it is not a transformers model; "
            f"see {model_page(model_id)}."
        )
    safe = [n for n in top if n.endswith(".safetensors")]
    if SAFE_INDEX in top:
        chosen.append(SAFE_INDEX)
        chosen.extend(sorted(set(index["weight_map"].values())) if index else [n for n in safe if n != SAFE_SINGLE])
    elif SAFE_SINGLE in top:
        chosen.append(SAFE_SINGLE)
    elif safe:
        chosen.extend(safe)
    else:
        pickles = [n for n in top if n.endswith(PICKLE_SUFFIXES)]
        if not pickles:
            raise ModelError(
                f"{model_id or 'This repository'} has no model weights that transformers can load; see "
                f"{model_page(model_id)}."
            )
        if not allow_pickle:
            raise pickle_weights_refused(model_id or "in this repository")
        if PICKLE_INDEX in top:
            chosen.append(PICKLE_INDEX)
            chosen.extend(
                sorted(set(index["weight_map"].values()))
                if index
                else [n for n in pickles if n.startswith("pytorch_model-")]
            )
        elif PICKLE_SINGLE in top:
            chosen.append(PICKLE_SINGLE)
        else:
            chosen.extend(pickles)
    missing = [n for n in chosen if n not in top]
    if missing:
        raise ModelError(
            f"{model_id or 'This repository'} lists weight files that it does not contain ({', '.join(missing[:3])}); "
            f"see {model_page(model_id)}."
        )
    return list(dict.fromkeys(chosen))
