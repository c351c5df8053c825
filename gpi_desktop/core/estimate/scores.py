"""The doubly robust (DML/AIPW) scores and what is made of them: the ATE, its standard error, clustered or not.

Every array here is in data order: score i, propensity i and cluster i belong to the same row. gpi_pack 0.2.1
concatenates its scores in fold order (and within a fold in its inner split's order) and then pairs them with the
cluster labels in data order, so its clustered standard error sums other rows' scores per cluster; here each
score stays at its row (docs/estimator.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Z_95 = 1.959963984540054  # the normal quantile of a two-sided 95% interval


@dataclass(frozen=True)
class Summary:
    ate: float
    se: float
    n: int
    n_clusters: int | None = None  # None: the rows are independent

    @property
    def ci95(self) -> tuple[float, float]:
        return self.ate - Z_95 * self.se, self.ate + Z_95 * self.se


def dml_scores(t: np.ndarray, y: np.ndarray, e: np.ndarray, y1: np.ndarray, y0: np.ndarray) -> np.ndarray:
    """Each row's score: y1 - y0 + t (y - y1) / e - (1 - t) (y - y0) / (1 - e); e already trimmed."""
    t = t.astype(np.float64)
    scores: np.ndarray = y1 - y0 + t * (y - y1) / e - (1 - t) * (y - y0) / (1 - e)
    return scores


def trim(e: np.ndarray, bounds: tuple[float, float]) -> np.ndarray:
    trimmed: np.ndarray = np.clip(e, min(bounds), max(bounds))
    return trimmed


def trimmed_share(e: np.ndarray, bounds: tuple[float, float]) -> float:
    """The share of propensity scores outside the bounds (set to the nearest bound)."""
    return float(np.mean((e < min(bounds)) | (e > max(bounds)))) if e.size else 0.0


def summarise(scores: np.ndarray, clusters: np.ndarray | None = None) -> Summary:
    """ATE = the scores' mean; SE = their standard deviation over sqrt(N), as gpi_pack does (np.std, ddof 0)."""
    n = int(scores.size)
    ate = float(np.mean(scores))
    if clusters is None:
        return Summary(ate=ate, se=float(np.std(scores) / np.sqrt(n)), n=n)
    return Summary(ate=ate, se=clustered_se(scores, clusters, ate), n=n, n_clusters=int(np.unique(clusters).size))


def clustered_se(scores: np.ndarray, clusters: np.ndarray, ate: float) -> float:
    """sqrt(m / (m - 1) * sum over clusters of (sum of the cluster's scores - ate)^2) / N, gpi_pack's formula.

    `clusters[i]` is row i's cluster, `scores[i]` row i's score.
    """
    if scores.shape != clusters.shape:
        raise ValueError("one cluster label per score")
    labels, inverse = np.unique(clusters, return_inverse=True)
    m = labels.size
    if m < 2:
        raise ValueError("clustered standard errors need two clusters or more")
    sums = np.bincount(inverse, weights=scores - ate, minlength=m)
    return float(np.sqrt(m / (m - 1) * np.sum(sums**2)) / scores.size)
