"""What this machine's Hugging Face cache holds: its folder, the models in it, a model's complete snapshot."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from gpi_desktop.core.hub.model_files import PICKLE_INDEX, SAFE_INDEX, WEIGHT_SUFFIXES, select_model_files
from gpi_desktop.core.vocabulary.errors import ModelError
from gpi_desktop.core.vocabulary.formatting import human_bytes

log = logging.getLogger(__name__)


def hub_cache_dir() -> Path:
    """The huggingface_hub cache folder in effect (HF_HUB_CACHE, else HF_HOME/hub)."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def storage_folder(model_id: str, cache_dir: Path) -> Path:
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
    storage = storage_folder(model_id, cache)
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
    for index_name in (SAFE_INDEX, PICKLE_INDEX):
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
    weights = [n for n in wanted if n.endswith(WEIGHT_SUFFIXES)]
    if not weights or not all((snapshot / n).is_file() for n in weights):
        return None
    return snapshot
