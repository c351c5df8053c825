"""The estimator's settings, with gpi_pack 0.2.1's `estimate_k_ate` defaults, and what the user asks for."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from gpi_desktop.core.vocabulary.errors import SettingsError

WARN_BELOW_PER_ARM = 50  # fewer rows than this in an arm: the estimate is given with a warning


@dataclass(frozen=True)
class EstimateSettings:
    """gpi_pack 0.2.1's defaults (TarNet.py's estimate_k_ate, TNutil.py's SpectralNormClassifier)."""

    folds: int = 2  # K
    seed: int = 0
    epochs: int = 200  # nepoch
    batch_size: int = 32
    learning_rate: float = 2e-5  # AdamW, eps 1e-8, weight decay 0.01, gradients clipped to norm 1
    validation_share: float = 0.2  # valid_perc
    dropout: float = 0.2
    representation_layers: tuple[int, ...] = (2048,)  # architecture_z: the deconfounder
    outcome_layers: tuple[int, ...] = (200, 1)  # architecture_y: after a first layer as wide as the representation
    patience: int = 5
    min_delta: float = 0.0
    trim: tuple[float, float] = (0.01, 0.99)
    # The propensity model: spectrally normalised network on the representation, cross-fitted in halves of the fold.
    ps_layers: tuple[int, ...] = (128, 64)
    ps_learning_rate: float = 2e-6  # Adam
    ps_epochs: int = 200
    ps_batch_size: int = 32
    ps_patience: int = 5
    ps_min_delta: float = 1e-4
    ps_validation_share: float = 0.2

    def __post_init__(self) -> None:
        if self.folds < 2:
            raise SettingsError("The number of folds must be 2 or more: cross-fitting needs at least two.")
        if self.epochs < 1 or self.batch_size < 1 or self.ps_epochs < 1 or self.ps_batch_size < 1:
            raise SettingsError("Epochs and batch sizes must be 1 or more.")
        if not 0 < self.validation_share < 1 or not 0 < self.ps_validation_share < 1:
            raise SettingsError("The validation share must lie between 0 and 1 (gpi_pack's default is 0.2).")
        if not 0 <= self.dropout < 1:
            raise SettingsError("The dropout rate must lie in [0, 1).")
        if self.learning_rate <= 0:
            raise SettingsError("The learning rate must be above 0.")
        low, high = self.trim
        if not 0 <= low < high <= 1:
            raise SettingsError("The trimming bounds must satisfy 0 <= low < high <= 1 (gpi_pack's are 0.01 and 0.99).")

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


@dataclass(frozen=True)
class EstimateRequest:
    """What to estimate: the vectors, the data and its columns, where the report goes."""

    vectors: Path
    treatment: str
    outcome: str
    data: Path | None = None  # None: the prompts file the export was made from
    treated: str | None = None  # the treatment value that means "treated"; needed unless the values are 0 and 1
    id_column: str | None = None
    confounders: tuple[str, ...] = ()
    cluster: str | None = None
    settings: EstimateSettings = field(default_factory=EstimateSettings)
