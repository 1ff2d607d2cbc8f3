"""log Z on a grid: the midpoint rule in dimension 1 or 2, with a coarser outer grid and a convergence check."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

from ebmppl.energy import Energy
from ebmppl.logz.estimate import LogZEstimate, LogZWarning
from ebmppl.normalisability import FIXES, NotNormalisableError, assert_normalisable

__all__ = ["grid_log_partition", "GRID_TOLERANCE", "GRID_OUTER_TOLERANCE"]

GRID_TOLERANCE = 0.01
"""Grid discretisation error (nats) above which :func:`~ebmppl.log_partition` warns."""


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
    if len(limits) == 2 and d == 2:  # (low, high): the same range in both dimensions
        limits = (*limits, *limits)
    if len(limits) != 2 * d:
        raise ValueError(f"limits must hold (low, high) or {2 * d} numbers (low/high per dimension), got "
                         f"{len(limits)}.")
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
    logp = jax.lax.map(jax.vmap(energy.logdensity_fn),
                       points.reshape(-1, resolution, d)).reshape(-1)
    if exclude is not None:
        inside = jnp.all(jnp.stack([(points[:, i] >= lo) & (points[:, i] < hi) for i, (lo, hi) in enumerate(exclude)]), 0)
        logp = jnp.where(inside, -jnp.inf, logp)
    return logsumexp(logp) + math.log(cell)


def _grid(energy: Energy, limits: Sequence[float] | None, resolution: int, check_normalisable: bool) -> LogZEstimate:
    """The grid estimator: log Z on ``limits`` at ``resolution`` and at half of it; their gap is the error."""
    if limits is None:
        raise ValueError("method='grid' needs limits=(low, high) (the same range in every dimension) or, in 2-D, "
                         "(xmin, xmax, ymin, ymax).")
    fine = grid_log_partition(energy, limits, resolution, check_normalisable=check_normalisable)
    coarse = grid_log_partition(energy, limits, max(resolution // 2, 2), check_normalisable=check_normalisable)
    error = abs(fine - coarse) / 3.0
    if error > GRID_TOLERANCE:
        est = LogZEstimate(fine, error, float("nan"), "grid", 0, reliable=False,
                           reason=f"log Z = {fine:.4g} changes by {abs(fine - coarse):.3g} when the resolution "
                                  "is halved: the grid is too coarse for the detail of this energy",
                           advice=f"raise resolution (now {resolution}) or narrow limits to where the mass is")
        warnings.warn(f"grid: {est.reason}. To fix: {est.advice}.", LogZWarning, stacklevel=3)
        return est
    return LogZEstimate(fine, error, float("nan"), "grid", 0)
