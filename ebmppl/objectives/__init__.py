"""Training objectives: the one trainer (:class:`Objective`) and its configurations, which :func:`ebmppl.fit` drives.

An objective is a positive phase, a negative phase and loss terms
(:mod:`ebmppl.objectives.trainer`); the builders below configure it:
``contrastive_divergence`` (data + negative chains + CD), ``recovery_contrastive_divergence``
(recovery chains + negative chains + CD), ``denoising_score_matching``,
``sliced_score_matching`` and ``noise_contrastive_estimation`` (data + one
term, no chains); for discrete energies ``pseudo_likelihood`` and ``ratio_matching``
(data + one term, no chains; :mod:`ebmppl.objectives.discrete`), and ``contrastive_divergence``
with discrete negatives; :func:`ebmppl.jem.jem_hybrid` adds JEM's cross-entropy. A
trainer of your own is either an :class:`Objective` with your own
:class:`LossTerm`, or any :class:`Trainer` (``init``/``step`` functions).
"""

from ebmppl.objectives.base import METRICS, Trainer, TrainState, training_metrics
from ebmppl.objectives.cd import (
    ContrastiveDivergence,
    cd_loss,
    contrastive_divergence,
    kernel_parameters,
    sample_negatives,
)
from ebmppl.objectives.discrete import (
    PseudoLikelihood,
    RatioMatching,
    pseudo_likelihood,
    pseudo_likelihood_loss,
    ratio_matching,
    ratio_matching_loss,
)
from ebmppl.objectives.mcmc_free import (
    DenoisingScoreMatching,
    NoiseContrastive,
    SlicedScoreMatching,
    denoising_score_matching,
    dsm_loss,
    nce_loss,
    noise_contrastive_estimation,
    sliced_score_matching,
    ssm_loss,
)
from ebmppl.objectives.recovery import RecoveryPhase, recovery_contrastive_divergence
from ebmppl.objectives.trainer import (
    DataPhase,
    LossTerm,
    NegativeChains,
    Objective,
    Phases,
    PositivePhase,
    Scaled,
    negative_chains,
)

OBJECTIVES = {
    "cd": contrastive_divergence,
    "dsm": denoising_score_matching,
    "ssm": sliced_score_matching,
    "nce": noise_contrastive_estimation,
    "recovery_cd": recovery_contrastive_divergence,
    "pseudo_likelihood": pseudo_likelihood,
    "ratio_matching": ratio_matching,
}
"""Objectives by name, as ``fit(objective=...)`` and the command line refer to them."""

__all__ = ["Trainer", "TrainState", "Objective", "Phases", "LossTerm", "Scaled", "PositivePhase", "DataPhase",
           "RecoveryPhase", "NegativeChains", "negative_chains", "METRICS", "training_metrics",
           "ContrastiveDivergence", "DenoisingScoreMatching", "SlicedScoreMatching", "NoiseContrastive",
           "cd_loss", "contrastive_divergence", "kernel_parameters", "sample_negatives", "denoising_score_matching",
           "sliced_score_matching", "noise_contrastive_estimation", "recovery_contrastive_divergence", "dsm_loss",
           "ssm_loss", "nce_loss", "PseudoLikelihood", "RatioMatching", "pseudo_likelihood", "ratio_matching",
           "pseudo_likelihood_loss", "ratio_matching_loss", "OBJECTIVES"]
