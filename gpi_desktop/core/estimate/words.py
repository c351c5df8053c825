"""The estimate in words: the overlap verdict and the paragraph for a paper's methods section."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from gpi_desktop.core.estimate.settings import EstimateRequest

if TYPE_CHECKING:
    from gpi_desktop.core.estimate.crossfit import Estimate
    from gpi_desktop.core.estimate.design import Design
    from gpi_desktop.core.estimate.vectors import Vectors

CITATIONS = (
    (
        "Imai, K. and Nakamura, K. (2026). Causal Inference with Generative Artificial Intelligence: Application to "
        "Texts as Treatments. Journal of the American Statistical Association."
    ),
    "Imai, K. and Nakamura, K. (2025). GenAI-Powered Inference. arXiv:2507.03897.",
    "gpi_pack 0.2.1 (the estimator's reference implementation): https://github.com/gpi-pack/gpi_pack",
)
EXTREME = (0.05, 0.95)  # scores beyond these leave one group with hardly any comparable rows
POOR_EXTREME_SHARE = 0.10
POOR_TRIMMED_SHARE = 0.05


def overlap_words(design: Design, estimate: Estimate, bounds: tuple[float, float]) -> tuple[bool, str]:
    """(poor, sentence): whether the propensity scores of the two groups overlap poorly, said in words."""
    e = estimate.propensity
    extreme = float(np.mean((e < EXTREME[0]) | (e > EXTREME[1])))
    trimmed = estimate.trimmed_share
    if trimmed > POOR_TRIMMED_SHARE or extreme > POOR_EXTREME_SHARE:
        return True, (
            f"The overlap looks poor: {extreme:.0%} of the propensity scores are below {EXTREME[0]} or above "
            f"{EXTREME[1]} and {trimmed:.0%} were trimmed to [{bounds[0]}, {bounds[1]}]. Some texts of one "
            "group have no comparable texts in the other, so the estimate leans on few rows and on the "
            "model; GPI assumes overlap. Read it with care."
        )
    return False, (
        f"The overlap looks adequate: {extreme:.0%} of the propensity scores are below {EXTREME[0]} or "
        f"above {EXTREME[1]}, and {trimmed:.0%} were trimmed to [{bounds[0]}, {bounds[1]}]."
    )


def methods_paragraph(
    request: EstimateRequest, vectors: Vectors, design: Design, estimate: Estimate, version: str
) -> str:
    s = request.settings
    source = vectors.source
    model = (
        (
            f"the last-layer hidden states of {source.model}, pooled over the generated tokens ('{source.pooling}' "
            f"pooling), {vectors.width} dimensions, produced with GPI Desktop"
        )
        if source.model
        else f"{vectors.width}-dimensional hidden states saved by gpi_pack"
    )
    confounders = (
        f" Confounders ({', '.join(request.confounders)}) were appended to the learned representation."
        if request.confounders
        else ""
    )
    se = (
        f"its standard error the cluster-robust standard error of that mean, clustered by {request.cluster} "
        f"({estimate.summary.n_clusters} clusters)"
        if request.cluster
        else "its standard error their standard deviation divided by the square root of N"
    )
    left = design.left_out
    summary = estimate.summary
    low, high = summary.ci95
    return (
        f"We estimated the average treatment effect of {request.treatment} ({design.treated_value} versus "
        f"{design.control_value}) on {request.outcome} with GenAI-Powered Inference (GPI; Imai and Nakamura 2025, "
        f"2026), using GPI Desktop {version}. The texts are represented by {model}. Following gpi_pack 0.2.1's "
        f"estimate_k_ate, we used {s.folds}-fold cross-fitting (folds stratified by treatment): in each fold a TarNet "
        f"(deconfounder layers {list(s.representation_layers)}, outcome layers {[s.representation_layers[-1], *s.outcome_layers]}, "
        f"dropout {s.dropout}, AdamW with learning rate {s.learning_rate:g}, batch size {s.batch_size}, at most "
        f"{s.epochs} epochs with early stopping on a {s.validation_share:.0%} validation share, patience "
        f"{s.patience}) was trained on the other folds and predicted both potential outcomes of the held-out texts; "
        f"a spectrally normalised neural network on the learned representation (layers {list(s.ps_layers)}), "
        f"cross-fitted within the fold, estimated the propensity score, trimmed to [{s.trim[0]}, {s.trim[1]}] "
        f"({estimate.trimmed_share:.1%} of the scores were trimmed).{confounders} The estimate is the mean of the "
        f"doubly robust (AIPW) scores, and {se}. All random choices were fixed by the seed {s.seed}. Of {design.n + left.rows} rows, "
        f"{design.n} were used ({design.arm_sizes[0]} treated, {design.arm_sizes[1]} control) and {left.rows} left "
        f"out ({left.words()}). The estimated effect is {summary.ate:.4g} (standard error {summary.se:.4g}; 95% "
        f"interval {low:.4g} to {high:.4g}).\n\nCite:\n" + "\n".join(f"- {c}" for c in CITATIONS) + "\n"
    )
