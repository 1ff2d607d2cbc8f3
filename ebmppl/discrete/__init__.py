"""Discrete energy-based models: Ising, Potts, restricted Boltzmann machines, and exact ground truth.

* :mod:`ebmppl.discrete.energies`: :func:`ising`, :func:`potts`, :func:`rbm`
  (:class:`RBM`, :func:`rbm_joint`), :func:`discrete_mlp`,
  :func:`lattice_couplings`: energies with a discrete
  :class:`~ebmppl.support.Support`.
* :mod:`ebmppl.discrete.exact`: exact ``log Z`` and expectations by enumeration
  (:func:`enumerate_log_partition`, :func:`exact_expectation`,
  :func:`exact_log_likelihood`), by the transfer matrix
  (:func:`ising_log_partition`), by Kaufman's formula
  (:func:`kaufman_log_partition`), and for RBMs by summing out the smaller
  layer (:func:`rbm_log_partition`).
"""

from ebmppl.discrete.energies import (RBM, IsingFn, PottsFn, discrete_mlp, ising, lattice_couplings, potts, rbm,
                                      rbm_joint)
from ebmppl.discrete.exact import (enumerate_log_partition, exact_expectation, exact_log_likelihood,
                                   ising_log_partition, kaufman_log_partition, rbm_log_partition)

__all__ = [
    "ising", "potts", "rbm", "rbm_joint", "RBM", "discrete_mlp", "lattice_couplings", "IsingFn", "PottsFn",
    "enumerate_log_partition", "exact_expectation", "exact_log_likelihood", "ising_log_partition",
    "kaufman_log_partition", "rbm_log_partition",
]
