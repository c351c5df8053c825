"""Getting a model from the Hugging Face Hub onto this machine, in plain words.

Files go into huggingface_hub's standard cache (HF_HOME / HF_HUB_CACHE), so a
model that `transformers` or `hf download` already fetched is not fetched
again, and one fetched here is found by them.

Why not `snapshot_download` alone: since huggingface_hub 1.x an interrupted
`hf_hub_download` throws its partial file away (it only resumes inside one
call, on a dropped connection). An 8B model is 16 GB; a researcher who
cancels, closes the laptop or loses the network must not start again from
zero. So each file's bytes are fetched here into the cache's
`blobs/<etag>.incomplete` (the name older huggingface_hub versions also resume
from) with an HTTP Range request, and once a blob is complete huggingface_hub
itself links it into the snapshot and records the revision, exactly as a
download of its own would.
"""

from __future__ import annotations

import errno
import fnmatch
import json
import logging
import os
import re
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from gpi_desktop.core.vocabulary.errors import (
    AccessError,
    Cancelled,
    DiskFullError,
    GpiError,
    ModelError,
)
from gpi_desktop.core.vocabulary.progress import NullState, Progress, ProgressKind, TaskState, check_cancel

log = logging.getLogger(__name__)

HUB_PAGE = "https://huggingface.co"
TOKENS_PAGE = "https://huggingface.co/settings/tokens"

# What a causal language model needs from a repository, at its top level.
# Anything else (original/*.pth checkpoints, ONNX or GGUF exports, images) is left out.
_CONFIG_FILES = ("config.json", "generation_config.json")
_TOKENIZER_PATTERNS = (
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
    "tokenizer.model", "tokenizer.model.v*", "tekken.json", "vocab.json", "vocab.txt", "merges.txt",
    "spiece.model", "sentencepiece.bpe.model", "*.tiktoken", "chat_template.jinja", "chat_template.json",
)
_SAFE_INDEX = "model.safetensors.index.json"
_SAFE_SINGLE = "model.safetensors"
_PICKLE_INDEX = "pytorch_model.bin.index.json"
_PICKLE_SINGLE = "pytorch_model.bin"
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")

# Leave this much free after a download, so the disk is not filled to the last byte.
_DISK_MARGIN = 200 * 1024**2
_PROGRESS_INTERVAL_S = 0.25


def model_page(model_id: str | None) -> str:
    return f"{HUB_PAGE}/{model_id}" if model_id else HUB_PAGE


def human_bytes(n: float) -> str:
    """1.2 GB style sizes (decimal units, as the Hub and file managers show them)."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit in ("B", "KB") else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"  # pragma: no cover - loop always returns


def _human_duration(seconds: float) -> str:
    if seconds < 60:
        return f"{max(1, round(seconds))} s"
    if seconds < 3600:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"


# --- plain errors ------------------------------------------------------------------------------------

_NETWORK_ERROR_NAMES = {
    "ConnectError", "ConnectTimeout", "ReadTimeout", "WriteTimeout", "PoolTimeout", "TimeoutException",
    "NetworkError", "ReadError", "WriteError", "RemoteProtocolError", "ProxyError", "ConnectionError",
    "Timeout", "SSLError",
}


def _chain(exc: BaseException):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _is_network_error(exc: BaseException) -> bool:
    for e in _chain(exc):
        if isinstance(e, (ConnectionError, TimeoutError)):
            return True
        if any(cls.__name__ in _NETWORK_ERROR_NAMES for cls in type(e).__mro__):
            return True
    return False


def _status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None)


def _offline_mode() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def plain_hub_error(exc: BaseException, model_id: str | None, *, token_sent: bool | None = None,
                    revision: str | None = None) -> GpiError | None:
    """Turn a huggingface_hub / network / disk exception into one plain sentence.

    Returns None for an exception that is not about the Hub (our bug: the caller
    re-raises it). `token_sent` says whether a token went with the request; it
    decides between "you need a token" and "your token is not enough".
    """
    from huggingface_hub import errors as hf

    if isinstance(exc, GpiError):
        return exc
    url = model_page(model_id)
    name = f"'{model_id}'" if model_id else "the Hub"

    if isinstance(exc, hf.HFValidationError):
        return ModelError(
            f"'{model_id}' is not a valid model id: write it as owner/name (for example "
            "meta-llama/Llama-3.1-8B-Instruct) or choose a model folder on this computer."
        )
    if isinstance(exc, hf.GatedRepoError):
        if _status(exc) == 401 or token_sent is False:
            return AccessError(
                f"{name} is a gated model and needs a Hugging Face token: accept its licence at {url}, create a "
                f"'Read' token at {TOKENS_PAGE}, save it under Hugging Face access (or run 'gpi-desktop token "
                "set'), and try again.",
                kind="no-token", url=url,
            )
        return AccessError(
            f"Your Hugging Face account has not been given access to {name} yet: open {url}, log in, accept the "
            "licence (the owners may take a while to approve it), then try again.",
            kind="gated", url=url,
        )
    if isinstance(exc, hf.RevisionNotFoundError):
        return ModelError(
            f"{name} has no revision '{revision or 'main'}': check the branch, tag or commit at {url}/tree/main "
            "and try again."
        )
    if isinstance(exc, hf.RepositoryNotFoundError):
        if token_sent:
            return AccessError(
                f"No model {name} can be seen with your token at {url}: check the spelling, and if it is a "
                "private model ask its owner to give your account access.",
                kind="not-found", url=url,
            )
        return AccessError(
            f"No model {name} was found at {url}: check the spelling; if it is a private model, save a Hugging "
            f"Face token that can read it ({TOKENS_PAGE}) and try again.",
            kind="not-found", url=url,
        )
    entry_not_found = getattr(hf, "RemoteEntryNotFoundError", None) or getattr(hf, "EntryNotFoundError")
    if isinstance(exc, entry_not_found):
        return ModelError(f"A file that {name} lists is missing on the Hub; try again later or see {url}.")
    offline_errors = tuple(
        c for c in (getattr(hf, "OfflineModeIsEnabled", None), getattr(hf, "LocalEntryNotFoundError", None),
                    getattr(hf, "IncompleteSnapshotError", None)) if c is not None
    )
    if isinstance(exc, offline_errors) and not _offline_mode():
        # hf_hub_download reports any failed HEAD as "cannot find it locally"; an HTTP answer behind it means the
        # Hub was reached and said no, which is not a connection problem.
        answered = next((e for e in _chain(exc) if e is not exc and isinstance(e, hf.HfHubHTTPError)
                         and _status(e) is not None), None)
        if answered is not None:
            return plain_hub_error(answered, model_id, token_sent=token_sent, revision=revision)
    if isinstance(exc, offline_errors) or _is_network_error(exc):
        if _offline_mode():
            return AccessError(
                f"Offline mode is on (HF_HUB_OFFLINE=1) and {name} is not fully downloaded on this computer: "
                f"turn offline mode off and connect to the internet to download it from {url}.",
                kind="offline", url=url,
            )
        return AccessError(
            f"Could not reach the Hugging Face Hub to get {name}: check the internet connection (and proxy "
            f"settings) and try again; the model page is {url}.",
            kind="offline", url=url,
        )
    if isinstance(exc, hf.HfHubHTTPError):
        status = _status(exc)
        if status == 401:
            if token_sent is False:
                return AccessError(
                    f"{name} needs a Hugging Face token: create a 'Read' token at {TOKENS_PAGE}, save it under "
                    f"Hugging Face access, and try again ({url}).",
                    kind="no-token", url=url,
                )
            return AccessError(
                f"The Hugging Face Hub refused your token (it is wrong, expired or was deleted): create a new one "
                f"at {TOKENS_PAGE}, save it under Hugging Face access, and try {url} again.",
                kind="invalid-token", url=url,
            )
        if status == 403:
            return AccessError(
                f"Your token does not have permission to read {name}: use a 'Read' token, or give your "
                "fine-grained token 'Read access to contents of all public gated repos you can access' at "
                f"{TOKENS_PAGE}, then try again ({url}).",
                kind="forbidden", url=url,
            )
        if status == 404:
            return AccessError(
                f"No model {name} was found at {url}: check the spelling, and if it is a private model, save a "
                "Hugging Face token that can read it.",
                kind="not-found", url=url,
            )
        if status == 429:
            return AccessError(
                f"The Hugging Face Hub is limiting requests right now: wait a few minutes and try {name} again.",
                kind="server", url=url,
            )
        return AccessError(
            f"The Hugging Face Hub answered with an error (HTTP {status}) for {name}: try again in a few minutes; "
            f"the model page is {url}.",
            kind="server", url=url,
        )
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return DiskFullError(
            f"The disk that holds the Hugging Face cache ({hub_cache_dir()}) is full: free some space and try "
            "again; the part already downloaded is kept."
        )
    return None


def _raise_plain(exc: BaseException, model_id: str | None, token: str | None, revision: str | None = None):
    error = plain_hub_error(exc, model_id, token_sent=bool(token), revision=revision)
    if error is None or error is exc:
        raise exc
    raise error from None  # the hub's own message may quote request headers; never chain it to the user


# --- remote code and file choice -------------------------------------------------------------------


def model_needs_remote_code(config: dict[str, Any], tokenizer_config: dict[str, Any] | None = None) -> bool:
    """True when loading this model would run Python code from its repository.

    A repository with an `auto_map` whose `model_type` transformers knows
    (Phi-3 and others shipped code before transformers adopted them) loads
    with transformers' own classes, so that is not counted.
    """
    from transformers import CONFIG_MAPPING

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
    import transformers

    for candidate in (name, name.removesuffix("Fast")):
        try:
            getattr(transformers, candidate)
            return True
        except (AttributeError, ImportError, RuntimeError):
            continue
    return False


def check_model_config(config: dict[str, Any], model_id: str | None,
                       tokenizer_config: dict[str, Any] | None = None) -> None:
    """Refuse, in plain words, a model that needs its own code or that transformers does not know."""
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


def fetch_config(model: str | Path, *, revision: str | None = None, token: str | None = None) -> dict[str, Any]:
    """The model's config.json as a dict, from a folder, the cache, or the Hub (a few kilobytes).

    For showing the hidden width and checking memory before a long download.
    """
    folder = Path(model)
    if not folder.is_dir():
        folder = cached_snapshot(str(model), revision)
    if folder is None and not _offline_mode():
        from huggingface_hub import hf_hub_download

        try:
            path = Path(hf_hub_download(str(model), "config.json", revision=revision, token=token or False,
                                        **_quiet(hf_hub_download)))
        except Exception as exc:
            _raise_plain(exc, str(model), token, revision)
    elif folder is None:
        raise _offline_miss_error(str(model))
    else:
        path = folder / "config.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise ModelError(f"The config.json of {model} cannot be read; is it a transformers model folder?") from None


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


def _matches(name: str, patterns) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def select_model_files(names: list[str], *, allow_pickle: bool = False, index: dict | None = None,
                       model_id: str | None = None) -> list[str]:
    """The files of a repository that loading a causal LM needs (top level only).

    `index` is the parsed weights index (model.safetensors.index.json, or the
    pickle one) when the repository is sharded: its weight_map names the shards,
    so a repository that also holds a consolidated copy is not fetched twice.
    """
    top = [n for n in names if "/" not in n]
    chosen = [n for n in top if n in _CONFIG_FILES or _matches(n, _TOKENIZER_PATTERNS)]
    if "config.json" not in top:
        raise ModelError(
            f"{model_id or 'This repository'} has no config.json, so it is not a transformers model; "
            f"see {model_page(model_id)}."
        )
    safe = [n for n in top if n.endswith(".safetensors")]
    if _SAFE_INDEX in top:
        chosen.append(_SAFE_INDEX)
        chosen.extend(sorted(set(index["weight_map"].values())) if index else [n for n in safe if n != _SAFE_SINGLE])
    elif _SAFE_SINGLE in top:
        chosen.append(_SAFE_SINGLE)
    elif safe:
        chosen.extend(safe)
    else:
        pickles = [n for n in top if n.endswith(_PICKLE_SUFFIXES)]
        if not pickles:
            raise ModelError(
                f"{model_id or 'This repository'} has no model weights that transformers can load; see "
                f"{model_page(model_id)}."
            )
        if not allow_pickle:
            raise ModelError(
                f"{model_id or 'This repository'} has its weights only in the older pickle format (.bin), which "
                "can run hidden code when loaded; choose a model with .safetensors weights, or allow pickle "
                "weights explicitly if you trust its authors."
            )
        if _PICKLE_INDEX in top:
            chosen.append(_PICKLE_INDEX)
            chosen.extend(sorted(set(index["weight_map"].values())) if index else
                          [n for n in pickles if n.startswith("pytorch_model-")])
        elif _PICKLE_SINGLE in top:
            chosen.append(_PICKLE_SINGLE)
        else:
            chosen.extend(pickles)
    missing = [n for n in chosen if n not in top]
    if missing:
        raise ModelError(
            f"{model_id or 'This repository'} lists weight files that it does not contain ({', '.join(missing[:3])}); "
            f"see {model_page(model_id)}."
        )
    return list(dict.fromkeys(chosen))


# --- cache --------------------------------------------------------------------------------------------


def hub_cache_dir() -> Path:
    """The huggingface_hub cache folder in effect (HF_HUB_CACHE, else HF_HOME/hub)."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def _storage_folder(model_id: str, cache_dir: Path) -> Path:
    return cache_dir / ("models--" + model_id.replace("/", "--"))


@dataclass(frozen=True)
class CachedModel:
    model_id: str
    size_bytes: int
    path: Path  # the snapshot folder transformers loads (that of "main" when there is one)

    def describe(self) -> str:
        return f"{self.model_id} ({human_bytes(self.size_bytes)})"


def cached_models(cache_dir: str | Path | None = None) -> list[CachedModel]:
    """Models already in this machine's Hugging Face cache, with the disk space each takes."""
    from huggingface_hub import scan_cache_dir

    folder = Path(cache_dir) if cache_dir else hub_cache_dir()
    if not folder.is_dir():
        return []
    try:
        info = scan_cache_dir(folder)
    except Exception:  # an unreadable or foreign folder: show nothing rather than fail the window
        log.warning("Could not read the Hugging Face cache at %s.", folder, exc_info=True)
        return []
    models = []
    for repo in info.repos:
        if repo.repo_type != "model" or not repo.revisions:
            continue
        revisions = sorted(repo.revisions, key=lambda r: ("main" in r.refs, r.last_modified), reverse=True)
        if not (Path(revisions[0].snapshot_path) / "config.json").exists():
            continue  # a tokenizer or something else fetched on its own, not a loadable model
        models.append(CachedModel(repo.repo_id, int(repo.size_on_disk), Path(revisions[0].snapshot_path)))
    return sorted(models, key=lambda m: m.model_id.lower())


def cached_snapshot(model_id: str, revision: str | None = None, cache_dir: str | Path | None = None) -> Path | None:
    """The cached folder of `model_id` at `revision` when its config and weights are all there, else None."""
    cache = Path(cache_dir) if cache_dir else hub_cache_dir()
    storage = _storage_folder(model_id, cache)
    revision = revision or "main"
    commit = revision
    ref = storage / "refs" / revision
    if ref.is_file():
        commit = ref.read_text(encoding="utf-8").strip()
    snapshot = storage / "snapshots" / commit
    if not (snapshot / "config.json").is_file():
        return None
    names = [p.name for p in snapshot.iterdir()]
    index = None
    for index_name in (_SAFE_INDEX, _PICKLE_INDEX):
        if index_name in names:
            try:
                index = json.loads((snapshot / index_name).read_text(encoding="utf-8"))
            except (OSError, ValueError):
                return None
            break
    try:
        wanted = select_model_files(names, allow_pickle=True, index=index, model_id=model_id)
    except ModelError:
        return None
    weights = [n for n in wanted if n.endswith((".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".pkl"))]
    if not weights or not all((snapshot / n).is_file() for n in weights):
        return None
    return snapshot


# --- progress -----------------------------------------------------------------------------------------


class _ByteCounter:
    """Adds up bytes from every file's progress bar and reports through the TaskState."""

    def __init__(self, state: TaskState, total: int, model_id: str) -> None:
        self.state = state
        self.total = total
        self.model_id = model_id
        self.done = 0
        self.fetched = 0  # bytes that came over the network in this call (for the speed)
        self.started = time.monotonic()
        self._last_report = 0.0
        self._lock = threading.Lock()
        self._aborted = threading.Event()

    def abort(self) -> None:
        self._aborted.set()

    def check(self) -> None:
        if self._aborted.is_set() or self.state.is_interruption_requested():
            raise Cancelled()

    def add(self, n: int, *, fetched: bool = True) -> None:
        with self._lock:
            self.done += n
            if fetched:
                self.fetched += n
            now = time.monotonic()
            due = now - self._last_report >= _PROGRESS_INTERVAL_S or self.done >= self.total
            if due:
                self._last_report = now
        if due:
            self.report()
        self.check()

    def report(self) -> None:
        with self._lock:
            done, fetched = self.done, self.fetched
        elapsed = time.monotonic() - self.started
        speed = fetched / elapsed if elapsed > 0 else 0.0
        parts = [f"{human_bytes(done)} of {human_bytes(self.total)}"]
        if speed > 0 and done < self.total:
            parts.append(f"{human_bytes(speed)}/s")
            parts.append(f"about {_human_duration((self.total - done) / speed)} left")
        self.state.set_progress(Progress(done=done, total=self.total, seconds_elapsed=elapsed,
                                         message=", ".join(parts), kind=ProgressKind.BYTES))


class _CountingFile:
    """The partial blob file, counting what huggingface_hub's http_get writes into it.

    Counting writes rather than relying on the `tqdm_class` hook keeps progress
    and cancel independent of how each huggingface_hub version drives its bars.
    """

    def __init__(self, raw, counter: "_ByteCounter") -> None:
        self._raw = raw
        self._counter = counter

    def write(self, data) -> int:
        n = self._raw.write(data)
        self._counter.add(len(data))  # raises Cancelled when asked to stop: the bytes so far stay on disk
        return n

    def truncate(self, size=None) -> int:
        # http_get truncates when a server ignores the Range header and sends the whole file again.
        position = self._raw.tell()
        before = self._raw.seek(0, os.SEEK_END)
        self._raw.seek(position)
        after = self._raw.truncate(size)
        self._counter.add(after - before, fetched=False)
        return after

    def __getattr__(self, name):
        return getattr(self._raw, name)


def _quiet(func) -> dict[str, Any]:
    """Keyword arguments that silence huggingface_hub's console progress bars, where the version has the hook."""
    return {"tqdm_class": _SilentBar} if _supports(func, "tqdm_class") else {}


def _supports(func, parameter: str) -> bool:
    import inspect

    try:
        return parameter in inspect.signature(func).parameters
    except (TypeError, ValueError):
        return False


class _SilentBar:
    """Shows nothing; wraps an iterable when given one, as tqdm does (thread_map iterates the bar)."""

    def __init__(self, iterable=None, *args, **kwargs) -> None:
        self.iterable = iterable
        self.n = 0
        self.total = kwargs.get("total")

    def update(self, n=1) -> None:
        pass

    def __getattr__(self, name):
        return lambda *a, **k: None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass

    def __iter__(self):
        return iter(self.iterable if self.iterable is not None else ())


# --- the download ------------------------------------------------------------------------------------


def _free_bytes(folder: Path) -> int:
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return shutil.disk_usage(probe).free


def _read_json_file(model_id: str, filename: str, commit: str, token: str | None, cache_dir: Path) -> dict:
    from huggingface_hub import hf_hub_download

    path = hf_hub_download(model_id, filename, revision=commit, token=token or False, cache_dir=cache_dir,
                           **_quiet(hf_hub_download))
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except ValueError:
        raise ModelError(f"The file {filename} of {model_id} is not valid JSON; see {model_page(model_id)}.") from None


def plan_download(model_id: str, *, revision: str | None = None, token: str | None = None,
                  allow_pickle: bool = False, cache_dir: str | Path | None = None) -> DownloadPlan:
    """Ask the Hub which files the model needs and how much of them is already here.

    Fetches config.json (and the weights index) first, so that a model that
    would need its own code is refused before gigabytes are downloaded.
    """
    from huggingface_hub import HfApi

    cache = Path(cache_dir) if cache_dir else hub_cache_dir()
    try:
        info = HfApi().model_info(model_id, revision=revision, files_metadata=True, token=token or False)
        commit = info.sha
        siblings = {s.rfilename: s for s in (info.siblings or [])}
        config = _read_json_file(model_id, "config.json", commit, token, cache) if "config.json" in siblings else {}
        tok_config = (_read_json_file(model_id, "tokenizer_config.json", commit, token, cache)
                      if "tokenizer_config.json" in siblings else None)
        index = None
        for index_name in (_SAFE_INDEX, _PICKLE_INDEX):
            if index_name in siblings:
                index = _read_json_file(model_id, index_name, commit, token, cache)
                break
    except GpiError:
        raise
    except Exception as exc:
        _raise_plain(exc, model_id, token, revision)
    wanted = select_model_files(list(siblings), allow_pickle=allow_pickle, index=index, model_id=model_id)
    check_model_config(config, model_id, tok_config)

    storage = _storage_folder(model_id, cache)
    files, on_disk = [], 0
    for name in wanted:
        s = siblings[name]
        etag = s.lfs.sha256 if s.lfs is not None else s.blob_id
        size = int(s.lfs.size if s.lfs is not None else (s.size or 0))
        files.append(RemoteFile(name, size, etag))
        if etag:
            blob = storage / "blobs" / etag
            if blob.is_file():
                on_disk += size
            elif (partial := blob.with_name(etag + ".incomplete")).is_file():
                on_disk += min(size, partial.stat().st_size)
    return DownloadPlan(model_id, revision or "main", commit, tuple(files), sum(f.size for f in files), on_disk)


def check_disk_space(plan: DownloadPlan, cache_dir: str | Path | None = None) -> None:
    """Refuse, before anything is fetched, a download that will not fit on the disk."""
    cache = Path(cache_dir) if cache_dir else hub_cache_dir()
    need = plan.bytes_to_fetch
    if need == 0:
        return
    free = _free_bytes(cache)
    if need + _DISK_MARGIN > free:
        raise DiskFullError(
            f"{plan.model_id} needs {human_bytes(need)} more, but only {human_bytes(free)} is free on the disk "
            f"that holds the Hugging Face cache ({cache}); free some space, or set HF_HOME to a folder on a "
            "larger disk, and try again."
        )


def _fetch_blob(plan: DownloadPlan, remote: RemoteFile, token: str | None, cache: Path,
                counter: "_ByteCounter") -> None:
    """Download one file's bytes into the cache's blob folder, continuing a partial download."""
    counter.check()
    from huggingface_hub import constants, get_hf_file_metadata, hf_hub_url
    from huggingface_hub.file_download import http_get
    from huggingface_hub.utils import build_hf_headers

    url = hf_hub_url(plan.model_id, remote.path, revision=plan.commit)
    meta = get_hf_file_metadata(url, token=token or False)
    etag = meta.etag or remote.etag
    blobs = _storage_folder(plan.model_id, cache) / "blobs"
    blob = blobs / etag
    if blob.is_file():
        return
    blobs.mkdir(parents=True, exist_ok=True)
    partial = blobs / (etag + ".incomplete")
    headers = build_hf_headers(token=token or False)
    # As huggingface_hub does without hf_xet: Xet-stored files are fetched through the Hub address
    # (which redirects; httpx drops the token on a redirect to another host), others from the signed
    # address the HEAD request pointed to, which must not receive the token.
    source = url if getattr(meta, "xet_file_data", None) is not None else (meta.location or url)
    if urlsplit(source).netloc != urlsplit(constants.ENDPOINT).netloc:
        headers.pop("authorization", None)
    from filelock import FileLock

    # The lock huggingface_hub takes for this blob, so that a `transformers` or `hf download`
    # fetching the same file at the same time waits instead of writing beside us.
    locks = cache / ".locks" / _storage_folder(plan.model_id, cache).name
    locks.mkdir(parents=True, exist_ok=True)
    with FileLock(str(locks / f"{etag}.lock")):
        if blob.is_file():
            return  # another process finished it while we waited
        quiet = _quiet(http_get)
        with open(partial, "ab") as f:
            resume = f.tell()
            if resume > (meta.size or remote.size):  # not a prefix of this file: start it again
                f.truncate(0)
                resume = 0
            counter.add(resume, fetched=False)
            http_get(source, _CountingFile(f, counter), resume_size=resume, headers=headers,
                     expected_size=meta.size or remote.size, **quiet)
        os.replace(partial, blob)


def is_commit(revision: str | None) -> bool:
    """A full commit hash (what a pinned job names), not a branch or tag that can move."""
    return bool(revision) and re.fullmatch(r"[0-9a-f]{40}", str(revision)) is not None


def pin_revision(model_id: str, revision: str | None = None, *, token: str | None = None) -> str | None:
    """The commit `revision` (None: main) stands for now, so that every cluster task runs the same files.

    This computer's complete copy wins (it is the version the user tried), else
    the Hub is asked. None when neither can say (offline, or the Hub refuses
    without a token); a model or revision that does not exist is refused in plain words.
    """
    if is_commit(revision):
        return revision
    cached = cached_snapshot(model_id, revision)
    if cached is not None:
        return cached.name
    if _offline_mode():
        return None
    from huggingface_hub import HfApi

    try:
        return HfApi().model_info(model_id, revision=revision, token=token or False).sha
    except Exception as exc:
        error = plain_hub_error(exc, model_id, token_sent=bool(token), revision=revision)
        if error is None:
            raise
        if not isinstance(error, AccessError) or error.kind == "not-found":
            raise error from exc
        log.info("Could not pin the revision of %s (%s).", model_id, error.kind)
        return None


def download_model(model_id: str, *, revision: str | None = None, token: str | None = None,
                   state: TaskState | None = None, allow_pickle: bool = False,
                   cache_dir: str | Path | None = None, max_workers: int = 4) -> Path:
    """Fetch what the model needs into the Hugging Face cache and return its snapshot folder.

    Reports bytes done/total, speed and time left through `state.set_progress`
    (Progress.message holds "1.2 GB of 16.1 GB, 40.0 MB/s, about 6 min left");
    cancelling raises Cancelled within one network chunk and keeps the bytes
    already fetched, so the next call continues from there. In offline mode
    (HF_HUB_OFFLINE=1) it returns the cached folder without using the network.
    `token` None means no token is sent (the caller passes find_token().token).
    """
    from huggingface_hub import hf_hub_download, snapshot_download

    state = state or NullState()
    cache = Path(cache_dir) if cache_dir else hub_cache_dir()
    if is_commit(revision):
        # A pinned commit never changes: a complete copy needs no network (nor a token, for a gated model).
        folder = cached_snapshot(model_id, revision, cache)
        if folder is not None:
            state.set_status(f"Using {model_id} at commit {revision[:12]} from this computer.")
            return folder
    if _offline_mode():
        folder = cached_snapshot(model_id, revision, cache)
        if folder is None:
            raise _offline_miss_error(model_id)
        state.set_status(f"Using {model_id} from this computer (offline mode).")
        return folder

    state.set_status(f"Checking {model_id} on the Hugging Face Hub…")
    try:
        plan = plan_download(model_id, revision=revision, token=token, allow_pickle=allow_pickle, cache_dir=cache)
    except AccessError as error:
        # A flaky network should not stop a model that is already complete on this machine.
        folder = cached_snapshot(model_id, revision, cache) if error.kind == "offline" else None
        if folder is None:
            raise
        log.info("The Hub could not be reached; using the cached copy of %s.", model_id)
        state.set_status(f"The Hugging Face Hub could not be reached; using the copy of {model_id} on this computer.")
        return folder
    check_disk_space(plan, cache)
    check_cancel(state)
    counter = _ByteCounter(state, plan.total_bytes, model_id)
    if plan.bytes_to_fetch:
        state.set_status(f"Downloading {model_id} ({human_bytes(plan.total_bytes)})…")
    else:
        state.set_status(f"{model_id} is already on this computer.")

    todo = []
    for remote in plan.files:
        if remote.etag and (_storage_folder(model_id, cache) / "blobs" / remote.etag).is_file():
            counter.add(remote.size, fetched=False)
        else:
            todo.append(remote)
    try:
        if todo:
            first_error: BaseException | None = None
            with ThreadPoolExecutor(max_workers=max(1, min(max_workers, len(todo))),
                                    thread_name_prefix="gpi-download") as pool:
                futures = [pool.submit(_fetch_blob, plan, r, token, cache, counter)
                           for r in sorted(todo, key=lambda r: -r.size)]
                for future in as_completed(futures):
                    exc = future.exception()
                    if exc is not None and first_error is None:
                        first_error = exc
                        counter.abort()  # the other files stop at their next chunk, keeping what they have
            if first_error is not None:
                raise first_error
        check_cancel(state)
        # Let huggingface_hub link the blobs into the snapshot and record the revision and file list,
        # so that transformers, `hf download` and offline mode all find the model.
        for remote in plan.files:
            hf_hub_download(model_id, remote.path, revision=plan.commit, token=token or False, cache_dir=cache,
                            **_quiet(hf_hub_download))
        folder = snapshot_download(model_id, revision=plan.revision, token=token or False, cache_dir=cache,
                                   allow_patterns=[r.path for r in plan.files], max_workers=1,
                                   **_quiet(snapshot_download))
    except (Cancelled, GpiError):
        raise
    except Exception as exc:
        _raise_plain(exc, model_id, token, revision)
    counter.report()
    state.set_status(f"{model_id} is on this computer.")
    return Path(folder)


def fetch_tokenizer_files(model_id: str, *, revision: str | None = None, token: str | None = None,
                          cache_dir: str | Path | None = None) -> Path:
    """A folder with the model's config.json and tokenizer files, without its weights (a few megabytes).

    For measuring prompts before the model is downloaded: a complete copy on
    this computer is used as it is; otherwise only the small files are fetched
    into the cache, where the model's later download finds them.
    """
    from huggingface_hub import snapshot_download

    cache = Path(cache_dir) if cache_dir else hub_cache_dir()
    folder = cached_snapshot(model_id, revision, cache)
    if folder is not None:
        return folder
    offline = _offline_mode()
    try:
        folder = Path(snapshot_download(model_id, revision=revision, token=token or False, cache_dir=cache,
                                        allow_patterns=[*_CONFIG_FILES, *_TOKENIZER_PATTERNS],
                                        local_files_only=offline, max_workers=1, **_quiet(snapshot_download)))
    except GpiError:
        raise
    except Exception as exc:
        if offline:
            raise _offline_miss_error(model_id) from None
        _raise_plain(exc, model_id, token, revision)
    names = [p.name for p in folder.iterdir()]
    if offline and not any(_matches(n, _TOKENIZER_PATTERNS) for n in names):
        raise _offline_miss_error(model_id)  # only the config.json a model check fetched is here
    return folder


def _offline_miss_error(model_id: str) -> AccessError:
    url = model_page(model_id)
    return AccessError(
        f"Offline mode is on (HF_HUB_OFFLINE=1) and {model_id} is not fully downloaded on this computer: turn "
        f"offline mode off and connect to the internet to download it from {url}.",
        kind="offline", url=url,
    )
