"""Find, describe and load a model: a local folder or a Hugging Face hub id.

The token is passed explicitly to every hub call and never logged.
Remote code never runs (trust_remote_code stays off); safetensors weights are
preferred. The device and precision are chosen in core/model/devices.py.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from gpi_desktop.core.hub.download import download_model, fetch_config, fetch_tokenizer_files
from gpi_desktop.core.hub.model_files import WEIGHT_SUFFIXES, check_model_config, pickle_weights_refused
from gpi_desktop.core.hub.plain_errors import plain_hub_error
from gpi_desktop.core.model.context import context_length
from gpi_desktop.core.model.devices import device_description, pick_device, pick_dtype
from gpi_desktop.core.model.memory import available_memory, quantization_config
from gpi_desktop.core.vocabulary.errors import Cancelled, GpiError, ModelError
from gpi_desktop.core.vocabulary.hf_lock import TRANSFORMERS_LOCK
from gpi_desktop.core.vocabulary.progress import NullState, TaskState
from gpi_desktop.core.vocabulary.settings import RunSettings

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*(/[\w.\-]+)?$")


@dataclass(frozen=True)
class ModelSource:
    name: str  # what the user gave
    local_path: Path | None  # a folder on disk, or None for a hub id

    @property
    def is_local(self) -> bool:
        return self.local_path is not None


@dataclass(frozen=True)
class ModelInfo:
    """What the manifest records about the model that made the numbers."""

    model_id: str
    revision: str  # hub commit hash, or a content fingerprint of a local folder
    source: str  # "folder" or "hub"
    dtype: str
    device: str
    hidden_size: int
    architecture: str
    eos_token_ids: tuple[int, ...]
    quantization: str | None = None
    device_map: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "model_id": self.model_id,
            "revision": self.revision,
            "source": self.source,
            "precision": self.dtype,
            "device": self.device,
            "hidden_size": self.hidden_size,
            "architecture": self.architecture,
            "eos_token_ids": list(self.eos_token_ids),
            "quantization": self.quantization,
            "device_map": self.device_map,
        }


@dataclass
class LoadedModel:
    model: Any
    tokenizer: Any
    info: ModelInfo
    extra: dict[str, Any] = field(default_factory=dict)


_DEVICE_WORDS = {"cuda": "GPU", "mps": "Apple GPU", "cpu": "CPU"}


def resolve_source(model: str) -> ModelSource:
    """A path that exists is a folder; otherwise it must look like a hub id (owner/name)."""
    text = str(model).strip()
    path = Path(os.path.expanduser(text))
    if path.exists():
        if not path.is_dir():
            raise ModelError(
                f"'{text}' is a file, not a model folder; choose the folder that holds config.json and the weights."
            )
        if not (path / "config.json").is_file():
            raise ModelError(
                f"The folder '{text}' does not hold a model (there is no config.json in it); "
                "choose the folder that holds config.json and the weight files."
            )
        return ModelSource(text, path.resolve())
    looks_like_path = (
        text.startswith((".", "/", "~", "\\")) or os.sep in text.replace("/", "") or re.match(r"^[A-Za-z]:", text)
    )
    if looks_like_path or not _HUB_ID.match(text) or text.count("/") > 1:
        raise ModelError(
            f"There is no model folder at '{text}', and it is not a Hugging Face model id (like "
            "meta-llama/Llama-3.1-8B-Instruct); check the spelling or choose the folder."
        )
    return ModelSource(text, None)


def dtype_name(dtype: object) -> str:
    return str(dtype).replace("torch.", "")


def folder_fingerprint(path: Path) -> str:
    """A content fingerprint of a local model folder, used where there is no hub commit.

    Small files are hashed whole; weight files by name, size and their first
    and last MiB, so that a 16 GB folder is fingerprinted in well under a
    second while a different model or a changed weight file still differs.
    """
    digest = hashlib.sha256()
    for file in sorted(p for p in path.iterdir() if p.is_file()):
        digest.update(file.name.encode())
        size = file.stat().st_size
        digest.update(str(size).encode())
        with file.open("rb") as fh:
            if file.suffix in WEIGHT_SUFFIXES and size > 2 << 20:
                digest.update(fh.read(1 << 20))
                fh.seek(size - (1 << 20))
                digest.update(fh.read(1 << 20))
            else:
                digest.update(fh.read())
    return "sha256:" + digest.hexdigest()


def read_config(source: ModelSource, token: str | None = None, revision: str | None = None) -> dict[str, Any]:
    """The model's config.json as a dict (for a hub id: from the cache, or only that small file from the hub)."""
    if source.local_path is not None:
        return cast("dict[str, Any]", json.loads((source.local_path / "config.json").read_text(encoding="utf-8")))
    try:
        return fetch_config(source.name, revision=revision, token=token)
    except Exception as exc:
        raise _hub_error(exc, source.name, token) from exc


def _hub_error(exc: Exception, model_id: str, token: str | None = None) -> Exception:
    """The plain-words version of a hub failure; anything that is not the hub's stays as it is (our bug)."""
    if isinstance(exc, (GpiError, Cancelled)):
        return exc
    return plain_hub_error(exc, model_id, token_sent=bool(token)) or exc


def hidden_size_of(config: dict[str, Any]) -> int:
    for key in ("hidden_size", "n_embd", "d_model"):
        if key in config:
            return int(config[key])
    text = config.get("text_config") or {}
    if "hidden_size" in text:
        return int(text["hidden_size"])
    raise ModelError("The model's config.json does not say its hidden size; this kind of model is not supported.")


def fetch_model_files(
    source: ModelSource, *, token: str | None, revision: str | None, state: TaskState, allow_pickle: bool = False
) -> Path:
    """The local folder holding the model: the folder itself, or the hub snapshot (downloaded with progress)."""
    if source.local_path is not None:
        return source.local_path
    try:
        return Path(download_model(source.name, revision=revision, token=token, state=state, allow_pickle=allow_pickle))
    except Exception as exc:
        raise _hub_error(exc, source.name, token) from exc


def local_model_revision(path: Path) -> str:
    """What the manifest names as a model folder's revision: its cache commit, else its content fingerprint."""
    return _snapshot_revision(path) or folder_fingerprint(path)


def _snapshot_revision(path: Path) -> str | None:
    # The hub cache keeps each download at .../snapshots/<commit hash>/
    if path.parent.name == "snapshots":
        return path.name
    return None


@contextmanager
def plain_load_errors(name: str, folder: Path | None = None) -> Iterator[None]:
    """Turn what transformers and safetensors raise for unusable model files into one plain ModelError.

    `folder`: the model's files, where the error may be a missing file that can be named.
    """
    from safetensors import SafetensorError

    try:
        yield
    except (GpiError, Cancelled):
        raise
    except SafetensorError as exc:
        # A download or copy that stopped early leaves a weight file whose header promises more than it holds.
        raise ModelError(
            f"A weight file (.safetensors) of the model '{name}' is damaged or incomplete, often from a "
            "download or copy that stopped early: download the model again."
        ) from exc
    except ValueError as exc:
        if "trust_remote_code" in str(exc):
            raise ModelError(
                f"The model '{name}' needs to run its own code, which this program never does; choose another model."
            ) from exc
        if folder is not None and _is_tokenizer_failure(folder, str(exc)):
            raise missing_tokenizer_error(folder, name) from exc
        raise ModelError(f"The model '{name}' could not be loaded: {exc}") from exc
    except OSError as exc:
        raise ModelError(f"The model files of '{name}' could not be read ({exc}); download the model again.") from exc


def _is_tokenizer_failure(folder: Path, text: str) -> bool:
    """transformers could not make the tokenizer: no tokenizer.json, and no package to convert another file."""
    if "backend tokenizer" in text:
        return True
    lowered = text.lower()
    return not (folder / "tokenizer.json").is_file() and ("sentencepiece" in lowered or "tiktoken" in lowered)


def missing_tokenizer_error(folder: Path, name: str) -> ModelError:
    """transformers' five lines for a model without a usable tokenizer file, as one sentence naming the file."""
    if (folder / "tokenizer.json").is_file():
        return ModelError(
            f"The tokenizer.json of the model '{name}' cannot be read; it may be damaged or "
            "incomplete: copy it again from where the model came from, or download the model again."
        )
    others = sorted(p.name for p in folder.glob("*") if p.name in _CONVERTIBLE_TOKENIZER_FILES)
    convertible = (
        f" (its {others[0]} could be converted only with the sentencepiece or tiktoken package installed)"
        if others
        else ""
    )
    if _snapshot_revision(folder) is not None:  # a hub model's files in the cache
        return ModelError(
            f"The model {name} has no tokenizer.json{convertible}, so its prompts cannot be turned into "
            "tokens: download the model again, or choose a model whose files include one."
        )
    return ModelError(
        f"The model folder '{folder}' has no tokenizer.json{convertible}, so its prompts cannot be turned "
        "into tokens: copy tokenizer.json into it from where the model came from (its Hugging Face "
        "page, or the folder it was copied from)."
    )


# Files transformers converts into a tokenizer.json, with sentencepiece or tiktoken.
_CONVERTIBLE_TOKENIZER_FILES = {"tokenizer.model", "spiece.model", "sentencepiece.bpe.model", "tekken.json"}


@dataclass(frozen=True)
class PromptTokenizer:
    """A model's tokenizer, and how many positions (prompt plus new tokens) the model can read."""

    tokenizer: Any
    context: int | None  # None: the config does not say
    folder: Path | None = None  # where its files are: a hub model's is a cache snapshot, named by its commit


@dataclass(frozen=True)
class ModelFiles:
    """A model's files on this computer, fetched for a run at the commit its tokenizer came from.

    The weights load from this folder; a hub snapshot's folder is named by its commit, the one
    the run pinned when it read the tokenizer (`pinned_settings`), so the two cannot differ.
    """

    source: ModelSource
    folder: Path
    config: dict[str, Any]


def fetch_model(settings: RunSettings, *, token: str | None = None, state: TaskState | None = None) -> ModelFiles:
    """The model's folder for a run's settings (downloaded first for a hub id), refused where it cannot be loaded."""
    state = state or NullState()
    source = resolve_source(settings.model)
    state.set_status(f"Fetching the model {source.name}…")
    folder = fetch_model_files(
        source,
        token=token,
        revision=settings.revision,
        state=state,
        allow_pickle=getattr(settings, "allow_pickle_weights", False),
    )
    config = _checked_config(folder, source.name)
    if not any(p.suffix in WEIGHT_SUFFIXES for p in folder.iterdir() if p.is_file()):
        raise ModelError(
            f"The model folder '{folder}' has no weight files (*.safetensors); it may be incomplete: download it again."
        )
    return ModelFiles(source, folder, config)


def pinned_settings(settings: RunSettings, folder: Path | None) -> RunSettings:
    """`settings` with a hub model's revision pinned to the commit whose files are in `folder` (a cache snapshot).

    A run reads the tokenizer first and fetches the weights after: pinned, the weights come from the
    tokenizer's commit, whatever is published on the Hub in between.
    """
    commit = _snapshot_revision(folder) if folder is not None else None
    if commit is None or resolve_source(settings.model).is_local:
        return settings
    return replace(settings, revision=commit)


def load_tokenizer_only(settings: RunSettings, *, token: str | None = None) -> PromptTokenizer:
    """The tokenizer and context length for a run's settings; a hub model not downloaded yet gets only those files.

    For measuring prompts ahead of a run (the window's step 3), never worth a whole model's download.
    """
    return _prompt_tokenizer(config_files_folder(settings, token=token), resolve_source(settings.model).name)


def config_files_folder(settings: RunSettings, *, token: str | None = None) -> Path:
    """A folder with the model's config and tokenizer files: the model folder, or those files of a hub model only."""
    source = resolve_source(settings.model)
    if source.local_path is not None:
        return source.local_path
    try:
        return fetch_tokenizer_files(source.name, revision=settings.revision, token=token)
    except GpiError:
        raise
    except Exception as exc:
        raise _hub_error(exc, source.name, token) from exc


def _checked_config(folder: Path, name: str) -> dict[str, Any]:
    """The model's config.json, refused in plain words where this program cannot load the model."""
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise ModelError(f"The config.json of {name} cannot be read; is it a transformers model folder?") from None
    tokenizer_config = None
    if (folder / "tokenizer_config.json").is_file():
        try:
            tokenizer_config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            tokenizer_config = None  # transformers says what is wrong with it when the tokenizer loads
    check_model_config(config, name, tokenizer_config)
    return cast("dict[str, Any]", config)


def _prompt_tokenizer(folder: Path, name: str) -> PromptTokenizer:
    config = _checked_config(folder, name)
    with plain_load_errors(name, folder), TRANSFORMERS_LOCK:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=False)
    return PromptTokenizer(tokenizer, context_length(config), folder)


def load_model(
    settings: RunSettings,
    files: ModelFiles | None = None,
    *,
    token: str | None = None,
    state: TaskState | None = None,
    tokenizer: Any = None,
) -> LoadedModel:
    """Load the model for a run's settings from `files` (fetched here when None).

    `tokenizer` reuses one already loaded from the same files.
    """
    state = state or NullState()
    with TRANSFORMERS_LOCK:
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

    device = pick_device(settings.device)
    dtype = pick_dtype(settings.dtype, device)
    if files is None:
        files = fetch_model(settings, token=token, state=state)
    source, folder, config = files.source, files.folder, files.config
    state.set_status(f"Loading the model on the {_DEVICE_WORDS[device]}…")
    quantization = getattr(settings, "quantization", None)
    kwargs = _from_pretrained_kwargs(
        folder, source, device, dtype, quantization, allow_pickle=getattr(settings, "allow_pickle_weights", False)
    )
    # Its own progress bar would write to a console the window does not have; we report progress ourselves.
    hf_logging.disable_progress_bar()
    with plain_load_errors(source.name, folder):
        with TRANSFORMERS_LOCK:
            if tokenizer is None:
                tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=False)
            _import_model_code(folder, quantization)
        # Outside the lock: the weights take long to load, and step 3's measuring of the prompts must not wait for
        # them. The load imports nothing more of transformers once its code is in (tests/test_thread_imports.py).
        # Any, as LoadedModel.model: the class depends on the architecture, and transformers' own annotations of
        # `to` (a decorated method) do not accept a device.
        model: Any = AutoModelForCausalLM.from_pretrained(folder, **kwargs)
    model.eval()
    if device == "cpu":
        model.to("cpu")
    eos_ids = _eos_token_ids(model, tokenizer, source.name)
    revision = (
        local_model_revision(folder)
        if source.is_local
        else (_snapshot_revision(folder) or settings.revision or "unknown")
    )
    info = ModelInfo(
        model_id=source.name if not source.is_local else str(source.local_path),
        revision=revision,
        source="folder" if source.is_local else "hub",
        dtype=dtype_name(dtype),
        device=device_description(device),
        hidden_size=hidden_size_of(config),
        architecture=(config.get("architectures") or [config.get("model_type", "unknown")])[0],
        eos_token_ids=eos_ids,
        quantization=quantization,
        device_map=kwargs.get("device_map"),
    )
    log.info("Loaded %s (%s, %s, hidden size %d)", info.model_id, info.dtype, info.device, info.hidden_size)
    return LoadedModel(model=model, tokenizer=tokenizer, info=info)


def _import_model_code(folder: Path, quantization: str | None) -> None:
    """Import the parts of transformers that loading this model's weights uses; call it under TRANSFORMERS_LOCK.

    transformers imports the modeling module of an architecture on first use (and the bitsandbytes layers for an
    8-bit or 4-bit load); done here, under the lock, the weight load itself needs no lock.
    """
    from transformers import MODEL_FOR_CAUSAL_LM_MAPPING, AutoConfig

    config = AutoConfig.from_pretrained(folder, trust_remote_code=False)
    try:
        MODEL_FOR_CAUSAL_LM_MAPPING[type(config)]
    except KeyError:
        pass  # not a causal language model: from_pretrained says so in its own words
    if quantization:
        import transformers.integrations.bitsandbytes  # noqa: F401


def _from_pretrained_kwargs(
    folder: Path, source: ModelSource, device: str, dtype: torch.dtype, quantization: str | None, *, allow_pickle: bool
) -> dict[str, Any]:
    """How transformers is to load the weights: precision, placement, quantization, and safetensors only
    unless pickle weights are allowed (refused in plain words otherwise)."""
    import torch

    kwargs: dict[str, Any] = {"dtype": dtype, "trust_remote_code": False}
    if device == "cuda":
        kwargs["device_map"] = "auto" if torch.cuda.device_count() > 1 else "cuda"
    elif device == "mps":
        # Straight onto the GPU: loading on the CPU first would hold the weights twice in the Mac's shared memory.
        kwargs["device_map"] = "mps"
    if quantization:
        kwargs["quantization_config"] = quantization_config(quantization)
    if any(p.suffix == ".safetensors" for p in folder.iterdir()):
        kwargs["use_safetensors"] = True
    elif not allow_pickle:
        raise pickle_weights_refused(source.name)
    return kwargs


def _eos_token_ids(model: Any, tokenizer: Any, name: str) -> tuple[int, ...]:
    """The ids that end generation: the model's generation config's, else the tokenizer's; refused when none."""
    eos = model.generation_config.eos_token_id
    if eos is None:
        eos = tokenizer.eos_token_id
    eos_ids = tuple(int(e) for e in (eos if isinstance(eos, (list, tuple)) else [eos]) if e is not None)
    if not eos_ids:
        raise ModelError(f"The model '{name}' defines no end-of-text token, so generation could never stop early.")
    return eos_ids


@dataclass(frozen=True)
class TargetInfo:
    """What a run will use, shown before it starts."""

    device_name: str
    free_bytes: int | None
    on_cpu: bool
    hidden_size: int | None
    warning: str
    kind: str = "cpu"  # "cuda" | "mps" | "cpu"
    problem: str = ""  # why the model cannot be used at all (a folder without a model)

    @property
    def where(self) -> str:
        """The device as its owner knows it: 'the GPU NVIDIA A100', 'the Apple M2 Pro GPU, 32 GB shared memory'."""
        if self.on_cpu:
            return "the CPU"
        return f"the {self.device_name}" if self.kind == "mps" else f"the GPU {self.device_name}"


def describe_target(model: str, device: str = "auto", token: str | None = None) -> TargetInfo:
    """The device a run would use and the model's hidden width (reads config.json only)."""
    import torch

    dev = pick_device(device)
    if dev == "cuda":
        free, _total = torch.cuda.mem_get_info(0)
        name = torch.cuda.get_device_name(0)
        warning = ""
    elif dev == "mps":
        (gpu,) = available_memory("mps")
        free, name, warning = gpu.free_bytes, gpu.name, ""
    else:
        free, name = None, "CPU"
        warning = "No NVIDIA GPU is in use: the run will use the CPU and will be slow for a large model."
    hidden, problem = None, ""
    source = resolve_source(model)
    try:
        hidden = hidden_size_of(read_config(source, token=token))
    except GpiError as exc:
        if source.is_local:  # this folder cannot be run, ever
            problem = str(exc)
        else:  # the Hub may answer later (a network, a token): said, not refused
            warning = (warning + " " if warning else "") + str(exc)
    return TargetInfo(
        device_name=name,
        free_bytes=free,
        on_cpu=dev == "cpu",
        hidden_size=hidden,
        warning=warning,
        kind=dev,
        problem=problem,
    )
