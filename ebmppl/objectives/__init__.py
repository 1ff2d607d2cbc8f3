"""Training objectives: the one trainer (:class:`Objective`) and its configurations, which :func:`ebmppl.fit` drives.

An objective is a positive phase, a negative phase and loss terms
(:mod:`ebmppl.objectives.trainer`); the builders below configure it:
``contrastive_divergence`` (data + negative chains + CD), ``recovery_contrastive_divergence``
(recovery chains + negative chains + CD), ``denoising_score_matching``,
``sliced_score_matching``, ``score_matching`` (exact, low dimension), ``energy_discrepancy`` and
``noise_contrastive_estimation`` (data + one term, no chains); over a noise ladder
(:mod:`ebmppl.noise`) ``multiscale_dsm`` and ``diffusion_recovery_likelihood`` (recovery chains at
every level); for discrete energies ``pseudo_likelihood`` and ``ratio_matching``
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
    EnergyDiscrepancy,
    ScoreMatching,
    ed_loss,
    energy_discrepancy,
    noise_contrastive_estimation,
    score_matching,
    sliced_score_matching,
    sm_loss,
    ssm_loss,
)
from ebmppl.objectives.multiscale import MultiscaleDSM, multiscale_dsm, multiscale_dsm_loss
from ebmppl.objectives.recovery_likelihood import (
    RecoveryLikelihood,
    diffusion_recovery_likelihood,
    recovery_conditional_sample,
    recovery_sample,
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
    "sm": score_matching,
    "ed": energy_discrepancy,
    "multiscale_dsm": multiscale_dsm,
    "drl": diffusion_recovery_likelihood,
}
"""Objectives by name, as ``fit(objective=...)`` and the command line refer to them."""

__all__ = ["Trainer", "TrainState", "Objective", "Phases", "LossTerm", "Scaled", "PositivePhase", "DataPhase",
           "RecoveryPhase", "NegativeChains", "negative_chains", "METRICS", "training_metrics",
           "ContrastiveDivergence", "DenoisingScoreMatching", "SlicedScoreMatching", "NoiseContrastive",
           "cd_loss", "contrastive_divergence", "kernel_parameters", "sample_negatives", "denoising_score_matching",
           "sliced_score_matching", "noise_contrastive_estimation", "recovery_contrastive_divergence", "dsm_loss",
           "ssm_loss", "nce_loss", "PseudoLikelihood", "RatioMatching", "pseudo_likelihood", "ratio_matching",
           "pseudo_likelihood_loss", "ratio_matching_loss", "OBJECTIVES",
           "ScoreMatching", "EnergyDiscrepancy", "MultiscaleDSM", "RecoveryLikelihood", "score_matching", "sm_loss",
           "energy_discrepancy", "ed_loss", "multiscale_dsm", "multiscale_dsm_loss", "diffusion_recovery_likelihood",
           "recovery_sample", "recovery_conditional_sample"]
