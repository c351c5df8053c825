"""The propensity model: gpi_pack 0.2.1's SpectralNormClassifier on the learned representation, seeded.

A network of spectrally normalised linear layers (`ps_layers`, ReLU between, two logits out), trained with Adam
and cross-entropy on a random 80/20 split, stopping once `ps_patience` epochs bring no improvement of at least
`ps_min_delta` (the last epoch's weights are used, as gpi_pack does). Spectral normalisation divides each weight by
its largest singular value, estimated by one power iteration per training step (torch.nn.utils.spectral_norm's
method, written out so that its starting vectors come from the run's seed).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from gpi_desktop.core.estimate.settings import EstimateSettings
from gpi_desktop.core.estimate.tarnet import seeded_linear

_EPS = 1e-12


class SpectralLinear(nn.Module):
    u: torch.Tensor  # the power iteration's vectors (buffers)
    v: torch.Tensor

    def __init__(self, n_in: int, n_out: int, generator: torch.Generator) -> None:
        super().__init__()
        base = seeded_linear(n_in, n_out, generator)
        self.weight, self.bias = base.weight, base.bias
        self.register_buffer("u", nn.functional.normalize(torch.randn(n_out, generator=generator), dim=0, eps=_EPS))
        self.register_buffer("v", nn.functional.normalize(torch.randn(n_in, generator=generator), dim=0, eps=_EPS))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            with torch.no_grad():
                self.v = nn.functional.normalize(self.weight.t() @ self.u, dim=0, eps=_EPS)
                self.u = nn.functional.normalize(self.weight @ self.v, dim=0, eps=_EPS)
        sigma = torch.dot(self.u, self.weight @ self.v)
        return nn.functional.linear(x, self.weight / sigma, self.bias)


class SpectralClassifier(nn.Module):
    def __init__(self, n_in: int, hidden: tuple[int, ...], generator: torch.Generator) -> None:
        super().__init__()
        sizes = [n_in, *hidden, 2]
        self.layers = nn.ModuleList(SpectralLinear(a, b, generator) for a, b in itertools.pairwise(sizes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = torch.relu(x)
        return x


@dataclass(frozen=True)
class PropensityFit:
    e: np.ndarray  # P(treated | representation) of each row, untrimmed, predicted by the model of the other half
    accuracy: float  # of the rounded predictions on the halves the models did not see


def fit_classifier(x: np.ndarray, t: np.ndarray, settings: EstimateSettings, seed: int) -> SpectralClassifier:
    generator = torch.Generator().manual_seed(seed)
    model = SpectralClassifier(x.shape[1], settings.ps_layers, generator)
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.ps_learning_rate)
    xs, ts = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), torch.from_numpy(t.astype(np.int64))
    n = len(ts)
    # gpi_pack's random_split takes floor(n * share) for validation; at least one row so tiny folds still run.
    n_valid = max(int(n * settings.ps_validation_share), 1 if n >= 2 else 0)
    shuffled = torch.randperm(n, generator=generator)
    valid, train = shuffled[:n_valid], shuffled[n_valid:]
    best, since_best = math.inf, 0
    for _ in range(settings.ps_epochs):
        model.train()
        for index in torch.split(train[torch.randperm(len(train), generator=generator)], settings.ps_batch_size):
            optimizer.zero_grad(set_to_none=True)
            torch.autograd.backward(nn.functional.cross_entropy(model(xs[index]), ts[index]))
            optimizer.step()
        if not n_valid:
            continue
        model.eval()
        with torch.no_grad():
            loss = float(nn.functional.cross_entropy(model(xs[valid]), ts[valid]))
        if loss < best - settings.ps_min_delta:
            best, since_best = loss, 0
        else:
            since_best += 1
        if since_best >= settings.ps_patience:
            break
    return model


def predict_proba(model: SpectralClassifier, x: np.ndarray) -> np.ndarray:
    model.eval()
    with torch.no_grad():
        logits = model(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)))
        return torch.softmax(logits, dim=1)[:, 1].numpy().astype(np.float64)


def cross_fitted_propensity(
    x: np.ndarray,
    t: np.ndarray,
    halves: tuple[np.ndarray, np.ndarray],
    settings: EstimateSettings,
    seeds: tuple[int, int],
) -> PropensityFit:
    """Each half's scores from a model fitted on the other half (gpi_pack's estimate_psi_split)."""
    e = np.zeros(len(t))
    first, second = halves
    for fit_on, predict_on, seed in ((first, second, seeds[0]), (second, first, seeds[1])):
        e[predict_on] = predict_proba(fit_classifier(x[fit_on], t[fit_on], settings, seed), x[predict_on])
    accuracy = float(np.mean((e >= 0.5) == (t == 1))) if len(t) else 0.0
    return PropensityFit(e=e, accuracy=accuracy)
