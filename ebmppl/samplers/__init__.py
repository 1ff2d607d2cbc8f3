"""Samplers for energies, on BlackJAX kernels, behind one interface.

A sampler is a value (:class:`Sampler`, an Equinox module hashing by its
options); its warm-up strategy is an object (:class:`WindowAdaptation`,
:class:`StepSizeAdaptation`, :class:`MCLMCTuning`, :class:`NoAdaptation`).
A new sampler subclasses :class:`Sampler` and is made a name with :func:`register`.
Discrete energies (binary, categorical: :mod:`ebmppl.support`) have their own
samplers (:mod:`ebmppl.samplers.discrete`): Gibbs, random-scan Metropolis,
Gibbs-with-Gradients, DMALA/DULA and block Gibbs.

>>> from ebmppl import samplers
>>> samplers.available()
['barker', 'block_gibbs', 'discrete_metropolis', 'dmala', 'dula', 'ghmc', 'gibbs', 'gibbs_with_gradients', 'hmc', 'langevin', 'mala', 'mclmc', 'nuts', 'parallel_tempering', 'sghmc', 'ula']
"""

from ebmppl.samplers.adaptation import (
    MCLMCTuning,
    NoAdaptation,
    StepSizeAdaptation,
    Warmup,
    WindowAdaptation,
    reinit_schedule,
    warmup,
    warmup_with_health,
    window_schedule,
)
from ebmppl.samplers.base import Sampler, StepStats
from ebmppl.samplers.kernels import (
    GHMC, HMC, MALA, MCLMC, NUTS, SGHMC, ULA, Barker, Langevin, PositionState,
    barker, ghmc, hmc, langevin, mala, mclmc, nuts, sghmc, ula,
)
from ebmppl.samplers.discrete import (
    DMALA, DULA, BlockGibbs, DiscreteMetropolis, DiscreteSampler, DiscreteState, DiscreteStats, Gibbs,
    GibbsWithGradients, GradientState, bind_support, block_gibbs, check_blocks, discrete_metropolis, dmala, dula,
    gibbs, gibbs_with_gradients,
)
from ebmppl.samplers.annealed import AnnealedSamples, annealed_langevin, predictor_corrector
from ebmppl.samplers.negatives import kernel_parameters, sample_masked, sample_negatives
from ebmppl.samplers.tempering import (
    LadderAdaptation, ParallelTempering, TemperingState, TemperingStats, TemperingSummary, parallel_tempering,
    tempering_summary,
)
from ebmppl.samplers.registry import SAMPLERS, available, get_sampler, register, as_sampler
from ebmppl.samplers.sample import ChainHealth, ChainHealthWarning, Samples, init_chains, run_chains, sample

__all__ = [
    "Sampler", "StepStats", "PositionState", "Samples", "sample", "run_chains", "init_chains",
    "Warmup", "WindowAdaptation", "StepSizeAdaptation", "MCLMCTuning", "NoAdaptation",
    "warmup", "window_schedule", "warmup_with_health", "reinit_schedule", "ChainHealth", "ChainHealthWarning",
    "available", "get_sampler", "register", "as_sampler", "SAMPLERS", "kernel_parameters", "sample_negatives", "sample_masked",
    "barker", "ghmc", "hmc", "langevin", "mala", "mclmc", "nuts", "sghmc", "ula",
    "MALA", "HMC", "NUTS", "Barker", "GHMC", "MCLMC", "ULA", "Langevin", "SGHMC",
    "parallel_tempering", "ParallelTempering", "LadderAdaptation", "TemperingState", "TemperingStats",
    "TemperingSummary", "tempering_summary",
    "gibbs", "discrete_metropolis", "gibbs_with_gradients", "dmala", "dula", "block_gibbs",
    "Gibbs", "DiscreteMetropolis", "GibbsWithGradients", "DMALA", "DULA", "BlockGibbs",
    "DiscreteSampler", "DiscreteState", "GradientState", "DiscreteStats", "bind_support", "check_blocks",
    "annealed_langevin", "predictor_corrector", "AnnealedSamples",
]
