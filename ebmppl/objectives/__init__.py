"""Training objectives, each a pure :class:`Trainer` (``init``/``step``) that :func:`ebmppl.fit` drives."""

from ebmppl.objectives.base import Trainer, TrainState
from ebmppl.objectives.cd import cd_loss, contrastive_divergence, kernel_parameters, sample_negatives
from ebmppl.objectives.mcmc_free import (
    denoising_score_matching,
    dsm_loss,
    nce_loss,
    noise_contrastive_estimation,
    sliced_score_matching,
    ssm_loss,
)

from ebmppl.objectives.recovery import recovery_contrastive_divergence

OBJECTIVES = {
    "cd": contrastive_divergence,
    "dsm": denoising_score_matching,
    "ssm": sliced_score_matching,
    "nce": noise_contrastive_estimation,
    "recovery_cd": recovery_contrastive_divergence,
}
"""Objectives by name, as ``fit(objective=...)`` and the command line refer to them."""

__all__ = ["Trainer", "TrainState", "cd_loss", "contrastive_divergence", "kernel_parameters", "sample_negatives", "denoising_score_matching",
           "sliced_score_matching", "noise_contrastive_estimation", "recovery_contrastive_divergence", "dsm_loss", "ssm_loss", "nce_loss", "OBJECTIVES"]
