"""The rows an estimate uses, as arrays in data order, and the seeded folds and splits over them."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class LeftOut:
    """Rows not used, counted by the first reason that applies."""

    treatment: int = 0  # no treatment value
    outcome: int = 0  # no outcome value
    confounders: int = 0  # a confounder missing
    cluster: int = 0  # no cluster label
    unmatched_vectors: int = 0  # vectors with no data row (matched by ID); not data rows

    @property
    def rows(self) -> int:
        return self.treatment + self.outcome + self.confounders + self.cluster

    def words(self) -> str:
        parts = [
            (self.treatment, "no treatment"),
            (self.outcome, "no outcome"),
            (self.confounders, "a confounder missing"),
            (self.cluster, "no cluster"),
        ]
        return ", ".join(f"{n} with {why}" for n, why in parts if n) or "none"


@dataclass(frozen=True, eq=False)
class Design:
    """The rows used: vectors R, treatment t (1 treated, 0 control), outcome y, confounders C, clusters."""

    r: np.ndarray  # float32 (n, H)
    t: np.ndarray  # int8 (n,)
    y: np.ndarray  # float64 (n,)
    c: np.ndarray | None = None  # float32 (n, k)
    clusters: np.ndarray | None = None  # str (n,)
    data_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # each row's data row number
    treated_value: str = "1"
    control_value: str = "0"
    confounder_names: tuple[str, ...] = ()  # the columns of C (a text column becomes one column per other value)
    left_out: LeftOut = field(default_factory=LeftOut)

    @property
    def n(self) -> int:
        return int(self.t.size)

    @property
    def arm_sizes(self) -> tuple[int, int]:
        """(treated, control)."""
        treated = int(np.sum(self.t == 1))
        return treated, self.n - treated


def stratified_parts(t: np.ndarray, parts: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Row indices cut into `parts` near-equal random parts, each arm spread evenly over them; each part sorted."""
    chosen: list[list[np.ndarray]] = [[] for _ in range(parts)]
    for arm in (1, 0):
        rows = rng.permutation(np.flatnonzero(t == arm))
        offset = int(rng.integers(parts))  # which parts take the arm's remainder rows
        for i, piece in enumerate(np.array_split(rows, parts)):
            chosen[(i + offset) % parts].append(piece)
    return [np.sort(np.concatenate(p)) for p in chosen]


def validation_split(n: int, share: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(train, valid) positions: ceil(share * n) random rows for validation, as sklearn's train_test_split takes."""
    n_valid = min(max(int(np.ceil(share * n)), 1), n - 1)
    order = rng.permutation(n)
    return np.sort(order[n_valid:]), np.sort(order[:n_valid])
