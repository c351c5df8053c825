"""GPI's estimator: K-fold cross-fitted TarNet and propensity model, doubly robust scores (gpi_pack's estimate_k_ate).

    estimate = cross_fit(design, settings, state)   # reports (fold, epoch, validation loss); Stop raises Cancelled

For each fold: a TarNet is trained on the other folds (early stopping on a validation share of them), predicts
both potential outcomes and the representation of the fold's rows; a propensity model on that representation is
cross-fitted in two halves of the fold; each row's score is computed with the propensity trimmed. Every random
choice comes from `settings.seed`: the folds, the splits, the networks' weights, row orders and dropout.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from gpi_desktop.core.estimate.design import Design, stratified_parts, validation_split
from gpi_desktop.core.estimate.scores import (
    Summary,
    dml_scores,
    summarise,
    trim,
    trimmed_share,
)
from gpi_desktop.core.estimate.settings import EstimateSettings
from gpi_desktop.core.vocabulary.progress import (
    Progress,
    ProgressKind,
    TaskState,
    check_cancel,
)

if TYPE_CHECKING:  # torch is imported when the estimate runs, not when this module is
    from gpi_desktop.core.estimate.tarnet import LossTrace, Rows


@dataclass(frozen=True)
class FoldProgress:
    """Sent as a partial result after each epoch, for a live plot of the validation loss."""

    fold: int  # from 0
    epoch: int  # from 0
    valid_loss: float


@dataclass(frozen=True, eq=False)
class Estimate:
    summary: Summary
    fold: np.ndarray  # each row's fold (data order, as in the design)
    y0: np.ndarray
    y1: np.ndarray
    propensity: np.ndarray  # untrimmed
    scores: np.ndarray
    trimmed_share: float
    ps_accuracy: float
    losses: tuple[LossTrace, ...] = field(default_factory=tuple)  # one per fold


@dataclass(frozen=True)
class _Seeds:
    split: int
    tarnet: int
    halves: int
    ps: tuple[int, int]


def _fold_seeds(seed: int, folds: int) -> tuple[int, list[_Seeds]]:
    root = np.random.SeedSequence(seed)
    fold_seq, *per_fold = root.spawn(folds + 1)
    out = []
    for seq in per_fold:
        words = seq.generate_state(5, dtype=np.uint32).tolist()
        out.append(_Seeds(split=words[0], tarnet=words[1], halves=words[2], ps=(words[3], words[4])))
    return int(fold_seq.generate_state(1)[0]), out


def _rows(design: Design, index: np.ndarray) -> Rows:
    from gpi_desktop.core.estimate.tarnet import Rows

    return Rows.of(design.r[index], design.t[index], design.y[index], None if design.c is None else design.c[index])


def cross_fit(design: Design, settings: EstimateSettings, state: TaskState) -> Estimate:
    from gpi_desktop.core.estimate.propensity import cross_fitted_propensity
    from gpi_desktop.core.estimate.tarnet import fit_tarnet, predict

    fold_seed, seeds = _fold_seeds(settings.seed, settings.folds)
    parts = stratified_parts(design.t, settings.folds, np.random.default_rng(fold_seed))
    n = design.n
    fold, y0, y1, e = np.zeros(n, np.int64), np.zeros(n), np.zeros(n), np.zeros(n)
    losses, correct = [], 0.0
    total_epochs = settings.folds * settings.epochs
    for k, held_out in enumerate(parts):
        check_cancel(state)
        train_rows = np.setdiff1d(np.arange(n), held_out, assume_unique=True)
        fit_pos, valid_pos = validation_split(
            train_rows.size, settings.validation_share, np.random.default_rng(seeds[k].split)
        )

        def report(epoch: int, valid_loss: float, k: int = k) -> None:
            state.set_progress(
                Progress(
                    k * settings.epochs + epoch + 1,
                    total_epochs,
                    kind=ProgressKind.STEPS,
                    message=f"Fold {k + 1} of {settings.folds}, epoch {epoch + 1} (of at most "
                    f"{settings.epochs}): validation loss {valid_loss:.4g}",
                )
            )
            state.set_partial_result(FoldProgress(k, epoch, valid_loss))

        state.set_status(f"Fold {k + 1} of {settings.folds}: training the outcome model on {train_rows.size} rows…")
        model, trace = fit_tarnet(
            _rows(design, train_rows[fit_pos]),
            _rows(design, train_rows[valid_pos]),
            settings,
            seeds[k].tarnet,
            report,
            lambda: check_cancel(state),
        )
        losses.append(trace)
        state.set_progress(
            Progress(
                (k + 1) * settings.epochs,
                total_epochs,
                kind=ProgressKind.STEPS,
                message=f"Fold {k + 1} of {settings.folds}: the propensity model",
            )
        )
        state.set_status(f"Fold {k + 1} of {settings.folds}: the propensity model on {held_out.size} rows…")
        predicted = predict(model, _rows(design, held_out))
        halves = stratified_parts(design.t[held_out], 2, np.random.default_rng(seeds[k].halves))
        ps = cross_fitted_propensity(
            predicted.representation, design.t[held_out], (halves[0], halves[1]), settings, seeds[k].ps
        )
        fold[held_out], y0[held_out], y1[held_out], e[held_out] = k, predicted.y0, predicted.y1, ps.e
        correct += ps.accuracy * held_out.size
    scores = dml_scores(design.t, design.y, trim(e, settings.trim), y1, y0)
    return Estimate(
        summary=summarise(scores, design.clusters),
        fold=fold,
        y0=y0,
        y1=y1,
        propensity=e,
        scores=scores,
        trimmed_share=trimmed_share(e, settings.trim),
        ps_accuracy=correct / n,
        losses=tuple(losses),
    )
