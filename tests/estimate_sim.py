"""Simulated studies with a known effect whose confounding only the vectors carry (tests and the benchmark)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gpi_desktop.core.estimate.design import Design
from gpi_desktop.core.estimate.settings import EstimateSettings

EFFECT = 1.0
# Small networks and a larger learning rate than gpi_pack's: the tests' studies are small and CI time is short.
SMALL = {
    "epochs": 60,
    "learning_rate": 1e-3,
    "representation_layers": (32,),
    "outcome_layers": (16, 1),
    "ps_learning_rate": 1e-3,
}


@dataclass(frozen=True)
class Study:
    r: np.ndarray
    t: np.ndarray
    y: np.ndarray
    effect: float

    def design(self, **kwargs) -> Design:
        return Design(r=self.r, t=self.t, y=self.y, data_rows=np.arange(self.t.size), **kwargs)

    @property
    def naive(self) -> float:
        return float(self.y[self.t == 1].mean() - self.y[self.t == 0].mean())


def simulate(n: int, width: int, seed: int, effect: float = EFFECT) -> Study:
    """u = a direction of the vectors drives both the treatment (logistic) and the outcome; nothing else does."""
    rng = np.random.default_rng(seed)
    r = rng.normal(size=(n, width)).astype(np.float32)
    u = r @ (rng.normal(size=width) / np.sqrt(width))
    t = (rng.random(n) < 1 / (1 + np.exp(-1.5 * u))).astype(np.int8)
    y = effect * t + 2.0 * u + 0.5 * rng.normal(size=n)
    return Study(r=r, t=t, y=y, effect=effect)


def small_settings(**changes) -> EstimateSettings:
    return EstimateSettings(**{**SMALL, **changes})
