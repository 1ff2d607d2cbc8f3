"""Evaluation of low-dimensional energies: exact log Z on a grid, log-likelihood, MMD."""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

from ebmppl.energy import Energy

__all__ = ["grid_log_partition", "log_likelihood", "held_out_log_likelihood", "bits_per_dim", "log_ratio",
           "more_likely", "mmd"]


def grid_log_partition(
    energy: Energy, limits: Sequence[float], resolution: int = 400, outer_scale: float | None = 10.0
) -> float:
    """``log Z = log ∫ exp(-E(x)/T) dx`` by the midpoint rule on a grid.

    A fine grid covers the box ``limits`` (``(low, high)`` in 1-D, ``(xmin,
    xmax, ymin, ymax)`` in 2-D), where the data and the detail are. A learned
    energy may leave mass far outside it, so by default a coarser grid also
    covers a box ``outer_scale`` times larger around it (the fine box cut
    out): a density that is not normalisable shows up as a log Z that grows
    with ``outer_scale`` instead of being silently truncated. ``outer_scale=None``
    integrates the box only.

    Examples
    --------
    >>> from ebmppl.targets import gaussian
    >>> t = gaussian([0.0, 0.0], [[1.0, 0.3], [0.3, 0.5]])
    >>> abs(grid_log_partition(t.energy, (-8, 8, -8, 8), 400) - t.log_z) < 1e-4
    True
    """
    if energy.event_shape not in ((1,), (2,)):
        raise ValueError(f"grid_log_partition needs a 1-D or 2-D energy, got event_shape {energy.event_shape}.")
    d = energy.event_shape[0]
    if len(limits) != 2 * d:
        raise ValueError(f"limits must hold {2 * d} numbers (low/high per dimension), got {len(limits)}.")
    if resolution < 2:
        raise ValueError(f"resolution must be >= 2, got {resolution}.")
    box = [(float(limits[2 * i]), float(limits[2 * i + 1])) for i in range(d)]
    for i, (lo, hi) in enumerate(box):
        if not lo < hi:
            raise ValueError(f"limits: low must be < high in dimension {i}, got {lo}, {hi}.")
    terms = [_grid_logsumexp(energy, box, resolution, exclude=None)]
    if outer_scale is not None:
        if not outer_scale > 1:
            raise ValueError(f"outer_scale must be > 1 (or None), got {outer_scale!r}.")
        outer = [((lo + hi) / 2 - outer_scale * (hi - lo) / 2, (lo + hi) / 2 + outer_scale * (hi - lo) / 2) for lo, hi in box]
        terms.append(_grid_logsumexp(energy, outer, resolution, exclude=box))
    return float(logsumexp(jnp.asarray(terms)))


def _grid_logsumexp(energy, box, resolution, exclude):
    """log Σ exp(log p) · cell over a midpoint grid on ``box``, skipping cells whose centre lies in ``exclude``."""
    d = len(box)
    axes, cell = [], 1.0
    for lo, hi in box:
        h = (hi - lo) / resolution
        axes.append(lo + h * (jnp.arange(resolution) + 0.5))
        cell *= h
    points = jnp.stack(jnp.meshgrid(*axes, indexing="ij"), -1).reshape(-1, d)
    logp = jax.lax.map(energy.logdensity, points.reshape(-1, resolution, d)).reshape(-1)
    if exclude is not None:
        inside = jnp.all(jnp.stack([(points[:, i] >= lo) & (points[:, i] < hi) for i, (lo, hi) in enumerate(exclude)]), 0)
        logp = jnp.where(inside, -jnp.inf, logp)
    return logsumexp(logp) + math.log(cell)


def log_likelihood(energy: Energy, data: jax.Array, log_z: float) -> jax.Array:
    """Per-example log-likelihood ``-E(x)/T - log Z`` (shape of ``data``'s batch axes).

    Examples
    --------
    >>> from ebmppl.targets import gaussian
    >>> t = gaussian([0.0], [[1.0]])
    >>> round(float(log_likelihood(t.energy, jnp.zeros((1, 1)), t.log_z)[0]), 4)
    -0.9189
    """
    return energy.logdensity(data) - log_z


def held_out_log_likelihood(energy: Energy, data: jax.Array, log_z: float, log_z_stderr: float = 0.0
                            ) -> tuple[float, float]:
    """Mean held-out log-likelihood and its standard error (data sampling and log Z error combined).

    Examples
    --------
    >>> from ebmppl.targets import gaussian
    >>> t = gaussian([0.0], [[1.0]])
    >>> ll, se = held_out_log_likelihood(t.energy, t.sample(jax.random.key(0), 10000), t.log_z)
    >>> abs(ll + 0.5 * math.log(2 * math.pi * math.e)) < 3 * se
    True
    """
    ll = log_likelihood(energy, data, log_z)
    n = ll.shape[0]
    se = math.sqrt(float(jnp.var(ll)) / n + log_z_stderr**2)
    return float(jnp.mean(ll)), se


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
