"""Evaluation of energies with a log Z in hand: log-likelihoods (held-out, with their error), bits per dimension,
ratios of densities, MMD.

It sits beside :mod:`ebmppl.logz` and above it (log Z estimates come from
there; ``grid_log_partition`` is re-exported from :mod:`ebmppl.logz.grid`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

from ebmppl.energy import Energy
from ebmppl.logz.estimate import LogZWarning
from ebmppl.logz.grid import GRID_OUTER_TOLERANCE, grid_log_partition  # noqa: F401  (re-exported)

__all__ = ["grid_log_partition", "log_likelihood", "held_out_log_likelihood", "HeldOutLogLikelihood",
           "bits_per_dim", "log_ratio", "more_likely", "mmd"]


def _log_z_value(log_z: Any, name: str = "log_z") -> tuple[float, float, Any]:
    """``(value, stderr, estimate or None)`` of a float or a :class:`~ebmppl.LogZEstimate`-like ``log_z``."""
    if hasattr(log_z, "log_z") and hasattr(log_z, "stderr"):
        return float(log_z.log_z), float(log_z.stderr), log_z
    try:
        return float(log_z), 0.0, None
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number or a LogZEstimate from ebmppl.log_partition, "
                        f"got {type(log_z).__name__}.") from None


def _warn_if_unreliable(estimate: Any, what: str) -> None:
    if estimate is not None and not getattr(estimate, "reliable", True):
        warnings.warn(f"{what} rests on an unreliable log Z ({estimate.log_z:.4g} ± {estimate.stderr:.2g}): "
                      f"{getattr(estimate, 'reason', '')}. To fix: {getattr(estimate, 'advice', '')}.",
                      LogZWarning, stacklevel=3)


def log_likelihood(energy: Energy, data: jax.Array, log_z: Any) -> jax.Array:
    """Per-example log-likelihood ``-E(x)/T - log Z`` (shape of ``data``'s batch axes).

    ``log_z`` is a number or a :class:`~ebmppl.LogZEstimate` (a
    :class:`~ebmppl.logz.LogZWarning` if its verdict is unreliable).

    Examples
    --------
    >>> from ebmppl.targets import gaussian
    >>> t = gaussian([0.0], [[1.0]])
    >>> round(float(log_likelihood(t.energy, jnp.zeros((1, 1)), t.log_z)[0]), 4)
    -0.9189
    """
    value, _, estimate = _log_z_value(log_z)
    _warn_if_unreliable(estimate, "log_likelihood")
    return energy.logdensity(data) - value


class HeldOutLogLikelihood(tuple):
    """A held-out log-likelihood: unpacks as ``(mean, stderr)`` and carries where its error comes from.

    It also carries the verdict of the log Z estimate behind it as ``.reliable``
    and ``.reason`` (``True`` and ``""`` for a number given by hand).

    Attributes
    ----------
    mean
        Mean per-example log-likelihood (nats).
    stderr
        Its standard error, ``√(data_stderr² + log_z_stderr²)``.
    data_stderr
        The part from the finite held-out set (``sd / √n``).
    log_z_stderr
        The part from the log Z estimate.
    log_z
        The log Z used.

    Examples
    --------
    >>> r = HeldOutLogLikelihood(-1.4, 0.1, 0.06, 0.08, 0.9, True, "")
    >>> ll, se = r
    >>> ll, r.log_z_stderr, r.reliable
    (-1.4, 0.08, True)
    """

    def __new__(cls, mean: float, stderr: float, data_stderr: float, log_z_stderr: float, log_z: float,
                reliable: bool, reason: str) -> HeldOutLogLikelihood:
        self = super().__new__(cls, (float(mean), float(stderr)))
        self.data_stderr, self.log_z_stderr, self.log_z = float(data_stderr), float(log_z_stderr), float(log_z)
        self.reliable, self.reason = bool(reliable), str(reason)
        return self

    def __getnewargs__(self) -> tuple:  # pickling and copying rebuild every attribute
        return (self[0], self[1], self.data_stderr, self.log_z_stderr, self.log_z, self.reliable, self.reason)

    @property
    def mean(self) -> float:
        return self[0]

    @property
    def stderr(self) -> float:
        return self[1]

    def __repr__(self) -> str:
        verdict = "" if self.reliable else ", UNRELIABLE log Z"
        return (f"HeldOutLogLikelihood(mean={self.mean:.4f}, stderr={self.stderr:.3g}: data {self.data_stderr:.3g}, "
                f"log Z {self.log_z_stderr:.3g}{verdict})")


def held_out_log_likelihood(energy: Energy, data: jax.Array, log_z: Any, log_z_stderr: float | None = None
                            ) -> HeldOutLogLikelihood:
    """Mean held-out log-likelihood and its standard error (data sampling and log Z error combined).

    Parameters
    ----------
    energy
        The energy.
    data
        Held-out examples ``(n, *event_shape)``.
    log_z
        A :class:`~ebmppl.LogZEstimate` (its ``stderr`` and verdict are carried
        along; an unreliable one raises a :class:`~ebmppl.logz.LogZWarning`),
        or a number.
    log_z_stderr
        The standard error of a number ``log_z`` (default 0); overrides the estimate's.

    Returns
    -------
    HeldOutLogLikelihood
        Unpacks as ``(mean, stderr)``; also ``data_stderr``, ``log_z_stderr``,
        ``log_z``, ``reliable`` and ``reason``.

    Examples
    --------
    >>> from ebmppl.targets import gaussian
    >>> t = gaussian([0.0], [[1.0]])
    >>> ll, se = held_out_log_likelihood(t.energy, t.sample(jax.random.key(0), 10000), t.log_z)
    >>> abs(ll + 0.5 * math.log(2 * math.pi * math.e)) < 3 * se
    True
    """
    value, est_se, estimate = _log_z_value(log_z)
    z_se = est_se if log_z_stderr is None else float(log_z_stderr)
    if not z_se >= 0:
        raise ValueError(f"log_z_stderr must be >= 0, got {log_z_stderr!r}.")
    _warn_if_unreliable(estimate, "held_out_log_likelihood")
    ll = energy.logdensity(data) - value
    n = ll.shape[0]
    data_se = math.sqrt(float(jnp.var(ll)) / n)
    reliable = True if estimate is None else bool(getattr(estimate, "reliable", True))
    reason = "" if estimate is None else str(getattr(estimate, "reason", ""))
    return HeldOutLogLikelihood(float(jnp.mean(ll)), math.hypot(data_se, z_se), data_se, z_se, value, reliable,
                                reason)


def bits_per_dim(log_likelihood_nats: float, dim: int, num_levels: int | None = None, value_range: float = 2.0) -> float:
    """Bits per dimension ``-ll / (D ln 2)``; for discrete data (``num_levels`` per pixel, scaled to an
    interval of width ``value_range``) the continuous density is converted to bin probabilities first:
    ``-(ll + D log(value_range / num_levels)) / (D ln 2)``.

    Examples
    --------
    >>> round(bits_per_dim(-64 * math.log(2), 64), 3)
    1.0
    """
    if dim < 1:
        raise ValueError(f"dim must be >= 1, got {dim}.")
    nats = -log_likelihood_nats
    if num_levels is not None:
        nats -= dim * math.log(value_range / num_levels)
    return nats / (dim * math.log(2))


def log_ratio(energy: Energy, x: jax.Array, x_prime: jax.Array) -> jax.Array:
    """``log q(x) / q(x') = (E(x') - E(x)) / T``: compares two points without ``Z`` (it cancels).

    Examples
    --------
    >>> from ebmppl.targets import gaussian
    >>> e = gaussian([0.0, 0.0], [[1.0, 0.0], [0.0, 1.0]]).energy
    >>> float(log_ratio(e, jnp.zeros(2), jnp.array([1.0, 0.0])))
    0.5
    """
    return (energy.energy(x_prime) - energy.energy(x)) / energy.temperature


def more_likely(energy: Energy, a: jax.Array, b: jax.Array) -> jax.Array:
    """Elementwise: is candidate ``a`` more likely than ``b`` under the energy (``E(a) < E(b)``)?

    The pairwise use of :func:`log_ratio`, e.g. which of two denoised images is more plausible.

    Examples
    --------
    >>> from ebmppl.targets import gaussian
    >>> e = gaussian([0.0, 0.0], [[1.0, 0.0], [0.0, 1.0]]).energy
    >>> more_likely(e, jnp.zeros((1, 2)), jnp.ones((1, 2))).tolist()
    [True]
    """
    return log_ratio(energy, b, a) < 0


def mmd(x: jax.Array, y: jax.Array, bandwidths: Sequence[float] = (0.1, 0.2, 0.5, 1.0, 2.0)) -> float:
    """Unbiased squared maximum mean discrepancy with a sum of Gaussian kernels.

    0 in expectation when ``x`` and ``y`` come from the same law (it can be slightly negative).

    Examples
    --------
    >>> k1, k2 = jax.random.split(jax.random.key(0))
    >>> same = mmd(jax.random.normal(k1, (500, 2)), jax.random.normal(k2, (500, 2)))
    >>> shifted = mmd(jax.random.normal(k1, (500, 2)), 1.0 + jax.random.normal(k2, (500, 2)))
    >>> abs(same) < 0.01 < shifted
    True
    """
    x = jnp.asarray(x).reshape(x.shape[0], -1)
    y = jnp.asarray(y).reshape(y.shape[0], -1)
    n, m = x.shape[0], y.shape[0]
    if n < 2 or m < 2:
        raise ValueError("mmd needs at least 2 samples on each side.")

    def kernel(a, b):
        d2 = jnp.sum(a**2, 1)[:, None] + jnp.sum(b**2, 1)[None, :] - 2 * a @ b.T
        return sum(jnp.exp(-0.5 * d2 / h**2) for h in bandwidths)

    kxx, kyy, kxy = kernel(x, x), kernel(y, y), kernel(x, y)
    term_x = (kxx.sum() - jnp.trace(kxx)) / (n * (n - 1))
    term_y = (kyy.sum() - jnp.trace(kyy)) / (m * (m - 1))
    return float(term_x + term_y - 2 * kxy.mean())
