"""ebmppl: energy-based models in the JAX probabilistic-programming stack.

An energy ``E(x)`` defines ``p(x) ∝ exp(-E(x)/T)``. ebmppl registers it as a
potential that NumPyro and BlackJAX both understand, samples it with many
vectorised chains, and reports diagnostics through ArviZ.
"""

# one JAX CPU device per usable core, before any submodule can start JAX's backend (EBMPPL_CPU_DEVICES=1 opts out)
from ebmppl.sharding import configure_cpu_devices as _configure_cpu_devices

_configure_cpu_devices()

# every documented module is an attribute of the package after ``import ebmppl`` (ebmppl.conditional.inpaint, ...)
from ebmppl import (buffer, compose, conditional, data, diagnostics, discrete, distributed, ema, evaluation, goodness,
                    jem, latent, nn, noise, numpyro, objectives, samplers, structured, support, targets)
from ebmppl.ema import with_ema
from ebmppl._version import __version__
from ebmppl.compare import Comparison, compare
from ebmppl.energy import Energy
from ebmppl.fit import FitResult, TrainingDiverged, fit
from ebmppl.io import load, save
from ebmppl.logz import LogZBracket, LogZEstimate, LogZWarning, ais_bracket, log_partition
from ebmppl.normalisability import NotNormalisableError, assert_normalisable
from ebmppl.samplers import ChainHealthWarning, Samples, sample

__all__ = [
    "Energy", "sample", "Samples", "fit", "save", "load", "FitResult", "TrainingDiverged", "log_partition", "LogZEstimate",
    "samplers", "objectives", "buffer", "data", "nn", "targets", "diagnostics", "compose", "conditional",
    "evaluation", "jem", "latent", "numpyro", "structured", "support", "discrete", "__version__", "ChainHealthWarning",
    "assert_normalisable", "NotNormalisableError",
    "ais_bracket", "LogZBracket", "LogZWarning", "compare", "Comparison", "noise", "ema", "with_ema", "goodness",
    "distributed",
]
