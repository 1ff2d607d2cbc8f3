"""Evaluation of low-dimensional energies: exact log Z on a grid, log-likelihood, MMD."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

from ebmppl.energy import Energy
from ebmppl.normalisability import FIXES, NotNormalisableError, assert_normalisable

__all__ = ["grid_log_partition", "log_likelihood", "held_out_log_likelihood", "HeldOutLogLikelihood",
           "bits_per_dim", "log_ratio", "more_likely", "mmd"]


def grid_log_partition(
    energy: Energy, limits: Sequence[float], resolution: int = 400, outer_scale: float | None = 10.0, *,
    check_normalisable: bool = True,
) -> float:
    """``log Z = log ∫ exp(-E(x)/T) dx`` by the midpoint rule on a grid.

    A fine grid covers the box ``limits`` (``(low, high)`` in 1-D, ``(xmin,
    xmax, ymin, ymax)`` in 2-D), where the data and the detail are. A learned
    energy may leave mass far outside it, so by default a coarser grid also
    covers a box ``outer_scale`` times larger around it (the fine box cut
    out). A density that is not normalisable never gets a number: first
    :func:`ebmppl.normalisability.assert_normalisable` probes the energy far
    out along rays, then the grid checks that its outer region has converged —
    a third grid on the ring between ``outer_scale`` and ``2 · outer_scale``
    times the box must add less than :data:`GRID_OUTER_TOLERANCE` nats to
    log Z. Otherwise :class:`~ebmppl.normalisability.NotNormalisableError`
    says what was seen (a ``ValueError``; the fix may also be wider ``limits``
    or a larger ``outer_scale``, when a normalisable density has mass beyond
    the outer box).

    Parameters
    ----------
    energy
        A 1-D or 2-D :class:`~ebmppl.Energy`.
    limits
        The fine box: ``(low, high)`` or ``(xmin, xmax, ymin, ymax)``.
    resolution
        Cells per axis of each grid.
    outer_scale
        Size of the coarse outer box relative to the fine one (> 1). ``None``
        integrates the box only: the box is then taken as the support, and
        neither check runs (the result is ``log ∫_box exp(-E/T)``).
    check_normalisable
        Run both checks (default). ``False`` skips them, for an energy you
        know to be normalisable (or whose box-restricted integral you want).

    Raises
    ------
    NotNormalisableError
        The probe finds the energy falling (or flat) far out, or log Z still
        grows when the outer box doubles, or is infinite.

    Examples
    --------
    >>> from ebmppl.targets import gaussian
    >>> t = gaussian([0.0, 0.0], [[1.0, 0.3], [0.3, 0.5]])
    >>> abs(grid_log_partition(t.energy, (-8, 8, -8, 8), 400) - t.log_z) < 1e-4
    True
    >>> from ebmppl.compose import negation
    >>> a_not_b = negation(t.energy, gaussian([1.0, 0.0], [[1.0, 0.0], [0.0, 1.0]]).energy, 3.0)
    >>> grid_log_partition(a_not_b, (-8, 8, -8, 8), 400)
    Traceback (most recent call last):
    ...
    ebmppl.normalisability.NotNormalisableError: energy is not normalisable: E = ...
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
    if outer_scale is not None and not outer_scale > 1:
        raise ValueError(f"outer_scale must be > 1 (or None), got {outer_scale!r}.")
    check = bool(check_normalisable) and outer_scale is not None
    if check:
        assert_normalisable(energy)
    terms = [_grid_logsumexp(energy, box, resolution, exclude=None)]
    if outer_scale is None:
        return float(terms[0])

    def scaled(factor):
        return [((lo + hi) / 2 - factor * (hi - lo) / 2, (lo + hi) / 2 + factor * (hi - lo) / 2) for lo, hi in box]

    outer = scaled(outer_scale)
    terms.append(_grid_logsumexp(energy, outer, resolution, exclude=box))
    log_z = float(logsumexp(jnp.asarray(terms)))
    if not check:
        return log_z
    if math.isnan(log_z):
        raise ValueError("grid_log_partition: the energy is NaN somewhere on the grid; fix the energy (e.g. an "
                         "epsilon inside log/sqrt) or narrow limits to where it is defined.")
    # the outer region has converged only if doubling it adds (next to) nothing
    ring = float(_grid_logsumexp(energy, scaled(2 * outer_scale), resolution, exclude=outer))
    if log_z == -math.inf and ring == -math.inf:
        raise ValueError("grid_log_partition: exp(-E/T) is 0 (E = +inf) at every point of the grid, out to "
                         f"{2 * outer_scale:g} times limits; move limits to where the energy is finite.")
    growth = float(jnp.logaddexp(log_z, ring)) - log_z if math.isfinite(log_z) else math.inf
    if not growth <= GRID_OUTER_TOLERANCE:
        raise NotNormalisableError(
            f"energy is not normalisable, or not on this grid: log Z = {log_z:.6g} over the box {outer_scale:g} times "
            f"limits grows by {growth:.3g} nats when the outer box doubles to {2 * outer_scale:g} times (the ring "
            f"adds log-mass {ring:.6g}; allowed: {GRID_OUTER_TOLERANCE} nats), so the grid's number would be "
            f"truncated, not log Z. If the energy falls or is flat far out: {FIXES}. If the density is normalisable "
            "with mass beyond the outer box: widen limits or raise outer_scale. To integrate the box only, pass "
            "outer_scale=None.")
    return log_z


GRID_OUTER_TOLERANCE = 0.01
"""Nats that the ring between ``outer_scale`` and ``2·outer_scale`` times the box may add to the grid's log Z."""


def _grid_logsumexp(energy, box, resolution, exclude):
    """log Σ exp(log p) · cell over a midpoint grid on ``box``, skipping cells whose centre lies in ``exclude``."""
    return _grid_logsumexp_jit(energy, tuple(map(tuple, box)), int(resolution),
                               None if exclude is None else tuple(map(tuple, exclude)))


@eqx.filter_jit
def _grid_logsumexp_jit(energy, box, resolution, exclude):
    d = len(box)
    ftype = jnp.result_type(float)
    axes, cell = [], 1.0
    for lo, hi in box:
        h = (hi - lo) / resolution
        axes.append(lo + h * (jnp.arange(resolution, dtype=ftype) + 0.5))
        cell *= h
    points = jnp.stack(jnp.meshgrid(*axes, indexing="ij"), -1).reshape(-1, d)
    logp = jax.lax.map(jax.vmap(lambda x: -energy.energy_fn(energy.params, x) / energy.temperature),
                       points.reshape(-1, resolution, d)).reshape(-1)
    if exclude is not None:
        inside = jnp.all(jnp.stack([(points[:, i] >= lo) & (points[:, i] < hi) for i, (lo, hi) in enumerate(exclude)]), 0)
        logp = jnp.where(inside, -jnp.inf, logp)
    return logsumexp(logp) + math.log(cell)


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
        from ebmppl.logz import LogZWarning

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
