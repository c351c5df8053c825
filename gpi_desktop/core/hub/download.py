"""A model from the Hugging Face Hub onto this machine: what to fetch, fetching it resumably, the commit to pin.

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

import json
import logging
import os
import re
import shutil
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any, BinaryIO, TypeGuard, cast
from urllib.parse import urlsplit

from gpi_desktop.core.hub.cache import cached_snapshot, hub_cache_dir, storage_folder
from gpi_desktop.core.hub.download_progress import ByteCounter, CountingFile, quiet
from gpi_desktop.core.hub.model_files import (
    CONFIG_FILES,
    PICKLE_INDEX,
    SAFE_INDEX,
    TOKENIZER_PATTERNS,
    DownloadPlan,
    RemoteFile,
    check_model_config,
    is_tokenizer_file,
    select_model_files,
)
from gpi_desktop.core.hub.plain_errors import offline_miss_error, offline_mode, plain_hub_error, raise_plain
from gpi_desktop.core.hub.words import model_page
from gpi_desktop.core.vocabulary.errors import AccessError, Cancelled, DiskFullError, GpiError, ModelError
from gpi_desktop.core.vocabulary.formatting import human_bytes
from gpi_desktop.core.vocabulary.progress import NullState, TaskState, check_cancel

log = logging.getLogger(__name__)

# Leave this much free after a download, so the disk is not filled to the last byte.
_DISK_MARGIN = 200 * 1024**2


def fetch_config(model: str | Path, *, revision: str | None = None, token: str | None = None) -> dict[str, Any]:
    """The model's config.json as a dict, from a folder, the cache, or the Hub (a few kilobytes).

    For showing the hidden width and checking memory before a long download.
    """
    local = Path(model)
    folder = local if local.is_dir() else cached_snapshot(str(model), revision)
    if folder is None and not offline_mode():
        from huggingface_hub import hf_hub_download

        try:
            path = Path(
                hf_hub_download(
                    str(model), "config.json", revision=revision, token=token or False, **quiet(hf_hub_download)
                )
            )
        except Exception as exc:
            raise_plain(exc, str(model), token, revision)
    elif folder is None:
        raise offline_miss_error(str(model))
    else:
        path = folder / "config.json"
    try:
        return cast("dict[str, Any]", json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError):
        raise ModelError(f"The config.json of {model} cannot be read; is it a transformers model folder?") from None


def _free_bytes(folder: Path) -> int:
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return shutil.disk_usage(probe).free


def _read_json_file(model_id: str, filename: str, commit: str, token: str | None, cache_dir: Path) -> dict[str, Any]:
    from huggingface_hub import hf_hub_download

    path = hf_hub_download(
        model_id, filename, revision=commit, token=token or False, cache_dir=cache_dir, **quiet(hf_hub_download)
    )
    try:
        return cast("dict[str, Any]", json.loads(Path(path).read_text(encoding="utf-8")))
    except ValueError:
        raise ModelError(f"The file {filename} of {model_id} is not valid JSON; see {model_page(model_id)}.") from None


def plan_download(
    model_id: str,
    *,
    revision: str | None = None,
    token: str | None = None,
    allow_pickle: bool = False,
    cache_dir: str | Path | None = None,
) -> DownloadPlan:
    """Ask the Hub which files the model needs and how much of them is already here.

    Fetches config.json (and the weights index) first, so that a model that
    would need its own code is refused before gigabytes are downloaded.
    """
    from huggingface_hub import HfApi

    cache = Path(cache_dir) if cache_dir else hub_cache_dir()
    try:
        info = HfApi().model_info(model_id, revision=revision, files_metadata=True, token=token or False)
        commit = info.sha
        if commit is None:  # the Hub names the commit of every model it describes
            raise ModelError(f"The Hub did not say which version of {model_id} it has; try again later.")
        siblings = {s.rfilename: s for s in (info.siblings or [])}
        config = _read_json_file(model_id, "config.json", commit, token, cache) if "config.json" in siblings else {}
        tok_config = (
            _read_json_file(model_id, "tokenizer_config.json", commit, token, cache)
            if "tokenizer_config.json" in siblings
            else None
        )
        index = None
        for index_name in (SAFE_INDEX, PICKLE_INDEX):
            if index_name in siblings:
                index = _read_json_file(model_id, index_name, commit, token, cache)
                break
    except GpiError:
        raise
    except Exception as exc:
        raise_plain(exc, model_id, token, revision)
    wanted = select_model_files(list(siblings), allow_pickle=allow_pickle, index=index, model_id=model_id)
    check_model_config(config, model_id, tok_config)

    storage = storage_folder(model_id, cache)
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


def _fetch_blob(plan: DownloadPlan, remote: RemoteFile, token: str | None, cache: Path, counter: ByteCounter) -> None:
    """Download one file's bytes into the cache's blob folder, continuing a partial download."""
    counter.check()
    from huggingface_hub import constants, get_hf_file_metadata, hf_hub_url
    from huggingface_hub.file_download import http_get
    from huggingface_hub.utils import build_hf_headers

    url = hf_hub_url(plan.model_id, remote.path, revision=plan.commit)
    meta = get_hf_file_metadata(url, token=token or False)
    etag = meta.etag or remote.etag
    if not etag:  # the Hub names every file's blob; without it there is no place in the cache to put it
        raise ModelError(f"The Hub did not say which file {remote.path} of {plan.model_id} is; try again later.")
    blobs = storage_folder(plan.model_id, cache) / "blobs"
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
    locks = cache / ".locks" / storage_folder(plan.model_id, cache).name
    locks.mkdir(parents=True, exist_ok=True)
    with FileLock(str(locks / f"{etag}.lock")):
        if blob.is_file():
            return  # another process finished it while we waited
        silent = quiet(http_get)
        with open(partial, "ab") as f:
            resume = f.tell()
            if resume > (meta.size or remote.size):  # not a prefix of this file: start it again
                f.truncate(0)
                resume = 0
            counter.add(resume, fetched=False)
            # http_get only calls write() on its file, which CountingFile provides.
            http_get(
                source,
                cast(BinaryIO, CountingFile(f, counter)),
                resume_size=resume,
                headers=headers,
                expected_size=meta.size or remote.size,
                **silent,
            )
        os.replace(partial, blob)


def is_commit(revision: str | None) -> TypeGuard[str]:
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
    if offline_mode():
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


def download_model(
    model_id: str,
    *,
    revision: str | None = None,
    token: str | None = None,
    state: TaskState | None = None,
    allow_pickle: bool = False,
    cache_dir: str | Path | None = None,
    max_workers: int = 4,
) -> Path:
    """Fetch what the model needs into the Hugging Face cache and return its snapshot folder.

    Reports bytes done/total, speed and time left through `state.set_progress`
    (Progress.message holds "1.2 GB of 16.1 GB, 40.0 MB/s, about 6 min left");
    cancelling raises Cancelled within one network chunk and keeps the bytes
    already fetched, so the next call continues from there. In offline mode
    (HF_HUB_OFFLINE=1) it returns the cached folder without using the network.
    `token` None means no token is sent (the caller passes find_token().token).
    """
    state = state or NullState()
    cache = Path(cache_dir) if cache_dir else hub_cache_dir()
    folder = _copy_without_network(model_id, revision, cache, state)
    if folder is not None:
        return folder
    state.set_status(f"Checking {model_id} on the Hugging Face Hub…")
    try:
        plan = plan_download(model_id, revision=revision, token=token, allow_pickle=allow_pickle, cache_dir=cache)
    except AccessError as error:
        return _cached_copy_when_unreachable(error, model_id, revision, cache, state)
    check_disk_space(plan, cache)
    check_cancel(state)
    counter = ByteCounter(state, plan.total_bytes, model_id)
    if plan.bytes_to_fetch:
        state.set_status(f"Downloading {model_id} ({human_bytes(plan.total_bytes)})…")
    else:
        state.set_status(f"{model_id} is already on this computer.")
    try:
        _fetch_missing_blobs(plan, token, cache, counter, max_workers)
        check_cancel(state)
        folder = _link_snapshot(plan, token, cache)
    except (Cancelled, GpiError):
        raise
    except Exception as exc:
        raise_plain(exc, model_id, token, revision)
    counter.report()
    state.set_status(f"{model_id} is on this computer.")
    return folder


def _copy_without_network(model_id: str, revision: str | None, cache: Path, state: TaskState) -> Path | None:
    """The complete copy on this computer when the network is not needed (a pinned commit, offline mode), else None."""
    if is_commit(revision):
        # A pinned commit never changes: a complete copy needs no network (nor a token, for a gated model).
        folder = cached_snapshot(model_id, revision, cache)
        if folder is not None:
            state.set_status(f"Using {model_id} at commit {revision[:12]} from this computer.")
            return folder
    if offline_mode():
        folder = cached_snapshot(model_id, revision, cache)
        if folder is None:
            raise offline_miss_error(model_id)
        state.set_status(f"Using {model_id} from this computer (offline mode).")
        return folder
    return None


def _cached_copy_when_unreachable(
    error: AccessError, model_id: str, revision: str | None, cache: Path, state: TaskState
) -> Path:
    """A flaky network should not stop a model that is already complete on this machine; else `error` stands."""
    folder = cached_snapshot(model_id, revision, cache) if error.kind == "offline" else None
    if folder is None:
        raise error
    log.info("The Hub could not be reached; using the cached copy of %s.", model_id)
    state.set_status(f"The Hugging Face Hub could not be reached; using the copy of {model_id} on this computer.")
    return folder


def _fetch_missing_blobs(
    plan: DownloadPlan, token: str | None, cache: Path, counter: ByteCounter, max_workers: int
) -> None:
    """Fetch the blobs the cache lacks, largest first, in parallel; the first failure stops the others."""
    todo = []
    for remote in plan.files:
        if remote.etag and (storage_folder(plan.model_id, cache) / "blobs" / remote.etag).is_file():
            counter.add(remote.size, fetched=False)
        else:
            todo.append(remote)
    if not todo:
        return
    first_error: BaseException | None = None
    with ThreadPoolExecutor(max_workers=max(1, min(max_workers, len(todo))), thread_name_prefix="gpi-download") as pool:
        futures = [
            pool.submit(_fetch_blob, plan, r, token, cache, counter) for r in sorted(todo, key=lambda r: -r.size)
        ]
        for future in as_completed(futures):
            exc = future.exception()
            if exc is not None and first_error is None:
                first_error = exc
                counter.abort()  # the other files stop at their next chunk, keeping what they have
    if first_error is not None:
        raise first_error


def _link_snapshot(plan: DownloadPlan, token: str | None, cache: Path) -> Path:
    """Let huggingface_hub link the blobs into the snapshot and record the revision and file list,

    so that transformers, `hf download` and offline mode all find the model.
    """
    from huggingface_hub import hf_hub_download, snapshot_download

    for remote in plan.files:
        hf_hub_download(
            plan.model_id,
            remote.path,
            revision=plan.commit,
            token=token or False,
            cache_dir=cache,
            **quiet(hf_hub_download),
        )
    folder = snapshot_download(
        plan.model_id,
        revision=plan.revision,
        token=token or False,
        cache_dir=cache,
        allow_patterns=[r.path for r in plan.files],
        max_workers=1,
        **quiet(snapshot_download),
    )
    return Path(folder)


def fetch_tokenizer_files(
    model_id: str, *, revision: str | None = None, token: str | None = None, cache_dir: str | Path | None = None
) -> Path:
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
    offline = offline_mode()
    try:
        folder = Path(
            snapshot_download(
                model_id,
                revision=revision,
                token=token or False,
                cache_dir=cache,
                allow_patterns=[*CONFIG_FILES, *TOKENIZER_PATTERNS],
                local_files_only=offline,
                max_workers=1,
                **quiet(snapshot_download),
            )
        )
    except GpiError:
        raise
    except Exception as exc:
        if offline:
            raise offline_miss_error(model_id) from None
        raise_plain(exc, model_id, token, revision)
    names = [p.name for p in folder.iterdir()]
    if offline and not any(is_tokenizer_file(n) for n in names):
        raise offline_miss_error(model_id)  # only the config.json a model check fetched is here
    return folder
