"""Samplers for energies, on BlackJAX kernels, behind one interface.

>>> from ebmppl import samplers
>>> samplers.available()
['barker', 'ghmc', 'hmc', 'langevin', 'mala', 'mclmc', 'nuts', 'sghmc', 'ula']
"""

from ebmppl.samplers.adaptation import reinit_schedule, warmup, warmup_with_health, window_schedule
from ebmppl.samplers.base import Sampler, StepStats
from ebmppl.samplers.kernels import barker, ghmc, hmc, langevin, mala, mclmc, nuts, sghmc, ula
from ebmppl.samplers.registry import SAMPLERS, available, get_sampler
from ebmppl.samplers.sample import ChainHealth, ChainHealthWarning, Samples, init_chains, run_chains, sample

__all__ = [
    "Sampler", "StepStats", "Samples", "sample", "run_chains", "init_chains", "warmup", "window_schedule",
    "warmup_with_health", "reinit_schedule", "ChainHealth", "ChainHealthWarning",
    "available", "get_sampler", "SAMPLERS",
    "barker", "ghmc", "hmc", "langevin", "mala", "mclmc", "nuts", "sghmc", "ula",
]
