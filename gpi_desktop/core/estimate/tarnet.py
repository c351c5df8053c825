"""The outcome model: gpi_pack 0.2.1's TarNet, trained with less overhead per step and seeded throughout.

The network (TNutil.TarNetBase): the deconfounder, linear layers of `representation_layers` with ReLU and dropout
between them and a ReLU after the last, gives the representation; the confounders (if any) and the treatment are
appended to it, and the outcome network (a layer as wide as the representation, then `outcome_layers`) predicts the
outcome. Training (TarNet.fit): AdamW, mean squared error, gradients clipped to norm 1, the validation loss after
each epoch, the best epoch's weights kept, stopping once `patience` epochs bring no improvement (from epoch 5 on).

What differs is how, not what: rows are taken from one tensor by a seeded permutation instead of a DataLoader that
collates 32 rows one by one, the optimiser steps in one fused pass, and every random draw (initial weights,
order of rows, dropout) comes from generators seeded from the run's seed, never from torch's global generator.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from gpi_desktop.core.estimate.settings import EstimateSettings

_CHUNK = 2048  # rows per forward pass when predicting


def seeded_linear(n_in: int, n_out: int, generator: torch.Generator) -> nn.Linear:
    """nn.Linear with PyTorch's own initialisation (kaiming uniform, a=sqrt(5)), drawn from `generator`."""
    layer = nn.Linear(n_in, n_out)
    with torch.no_grad():
        nn.init.kaiming_uniform_(layer.weight, a=math.sqrt(5), generator=generator)
        bound = 1 / math.sqrt(n_in) if n_in > 0 else 0.0
        layer.bias.uniform_(-bound, bound, generator=generator)
    return layer


def dropout(x: torch.Tensor, p: float, generator: torch.Generator, training: bool) -> torch.Tensor:
    if not training or p <= 0:
        return x
    keep = torch.empty_like(x).bernoulli_(1 - p, generator=generator)
    return x * keep / (1 - p)


class TarNetModule(nn.Module):
    def __init__(self, width: int, n_confounders: int, settings: EstimateSettings, generator: torch.Generator) -> None:
        super().__init__()
        self.p = settings.dropout
        self.generator = generator
        rep = list(settings.representation_layers)
        self.deconfounder = nn.ModuleList(seeded_linear(a, b, generator) for a, b in zip([width] + rep[:-1], rep))
        head = [rep[-1]] + list(settings.outcome_layers)
        self.outcome = nn.ModuleList(
            seeded_linear(a, b, generator) for a, b in zip([rep[-1] + n_confounders + 1] + head[:-1], head)
        )

    def _stack(self, layers: nn.ModuleList, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(layers):
            x = layer(x)
            if i < len(layers) - 1:
                x = dropout(torch.relu(x), self.p, self.generator, self.training)
        return x

    def representation(self, r: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
        fr = torch.relu(self._stack(self.deconfounder, r))
        return fr if c is None else torch.cat((fr, c), dim=1)

    def predict_outcome(self, fr: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self._stack(self.outcome, torch.cat((fr, t), dim=1))

    def forward(self, r: torch.Tensor, t: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        return self.predict_outcome(self.representation(r, c), t)


@dataclass
class LossTrace:
    """One fold's training: the loss after each epoch and the epoch whose weights were kept."""

    train: list[float] = field(default_factory=list)
    valid: list[float] = field(default_factory=list)
    best_epoch: int = -1
    stopped_early: bool = False


@dataclass(frozen=True)
class Rows:
    """Rows as tensors: vectors, treatment (column), outcome (column), confounders (or None)."""

    r: torch.Tensor
    t: torch.Tensor
    y: torch.Tensor
    c: torch.Tensor | None

    @classmethod
    def of(cls, r: np.ndarray, t: np.ndarray, y: np.ndarray | None, c: np.ndarray | None) -> Rows:
        return cls(
            r=torch.from_numpy(np.ascontiguousarray(r, dtype=np.float32)),
            t=_column(t),
            y=_column(y if y is not None else np.zeros(len(t))),
            c=None if c is None else torch.from_numpy(np.ascontiguousarray(c, dtype=np.float32)),
        )

    def __len__(self) -> int:
        return int(self.r.shape[0])

    def take(self, index: torch.Tensor) -> Rows:
        return Rows(self.r[index], self.t[index], self.y[index], None if self.c is None else self.c[index])


def _column(values: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32)).reshape(-1, 1)


EpochReport = Callable[[int, float], None]  # (epoch, validation loss), after each epoch; may raise Cancelled


def _optimizer(model: nn.Module, lr: float) -> torch.optim.Optimizer:
    try:  # one pass over the parameters per step instead of several (same update)
        return torch.optim.AdamW(model.parameters(), lr=lr, eps=1e-8, fused=True)
    except (RuntimeError, TypeError):  # pragma: no cover - a PyTorch without the fused CPU kernel
        return torch.optim.AdamW(model.parameters(), lr=lr, eps=1e-8)


def _mean_loss(model: TarNetModule, rows: Rows) -> float:
    model.eval()
    total = 0.0
    with torch.no_grad():
        for start in range(0, len(rows), _CHUNK):
            part = rows.take(torch.arange(start, min(start + _CHUNK, len(rows))))
            total += float(torch.sum((model(part.r, part.t, part.c) - part.y) ** 2))
    return total / max(len(rows), 1)


def fit_tarnet(
    train: Rows, valid: Rows, settings: EstimateSettings, seed: int, report: EpochReport, check: Callable[[], None]
) -> tuple[TarNetModule, LossTrace]:
    """Train on `train`, stop early on `valid`; `check` is called between steps and raises to stop."""
    init = torch.Generator().manual_seed(seed)
    model = TarNetModule(train.r.shape[1], 0 if train.c is None else train.c.shape[1], settings, init)
    optimizer = _optimizer(model, settings.learning_rate)
    order = torch.Generator().manual_seed(seed + 1)
    trace, best_state, since_best = LossTrace(), None, 0
    best = math.inf
    for epoch in range(settings.epochs):
        model.train()
        loss_sum = 0.0
        for index in torch.split(torch.randperm(len(train), generator=order), settings.batch_size):
            check()
            batch = train.take(index)
            optimizer.zero_grad(set_to_none=True)
            loss = torch.mean((model(batch.r, batch.t, batch.c) - batch.y) ** 2)
            torch.autograd.backward(loss)
            nn.utils.clip_grad_norm_(model.parameters(), 1.0, foreach=True)
            optimizer.step()
            loss_sum += loss.item() * len(index)
        trace.train.append(loss_sum / len(train))
        trace.valid.append(_mean_loss(model, valid))
        if trace.valid[-1] + settings.min_delta < best:
            best, trace.best_epoch, since_best = trace.valid[-1], epoch, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            since_best += 1
        report(epoch, trace.valid[-1])
        if epoch >= 5 and since_best >= settings.patience:
            trace.stopped_early = True
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    return model, trace


@dataclass(frozen=True)
class Predictions:
    y0: np.ndarray
    y1: np.ndarray
    representation: np.ndarray  # what the propensity model sees: the representation, confounders appended


def predict(model: TarNetModule, rows: Rows) -> Predictions:
    model.eval()
    y0, y1, fr = [], [], []
    with torch.no_grad():
        for start in range(0, len(rows), _CHUNK):
            part = rows.take(torch.arange(start, min(start + _CHUNK, len(rows))))
            rep = model.representation(part.r, part.c)
            y0.append(model.predict_outcome(rep, torch.zeros_like(part.t)))
            y1.append(model.predict_outcome(rep, torch.ones_like(part.t)))
            fr.append(rep)
    return Predictions(
        y0=torch.cat(y0).numpy().astype(np.float64).reshape(-1),
        y1=torch.cat(y1).numpy().astype(np.float64).reshape(-1),
        representation=torch.cat(fr).numpy(),
    )
