"""The normalised base ``q`` of AIS and importance sampling: a Gaussian, Student-t or uniform box, placed by hand
or fitted to where the mass is."""

from __future__ import annotations

import math
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

class _Base(eqx.Module):
    """The normalised base ``q``: Gaussian, Student-t (``df``) or uniform box, diagonal or full (``tril``) scale."""

    kind: str = eqx.field(static=True)
    center: jax.Array
    scale: jax.Array
    tril: jax.Array | None = None
    df: float = eqx.field(static=True, default=5.0)
    tril_inv: jax.Array | None = None  # inverse of ``tril``: a matrix product is faster than a triangular solve

    def _standardise(self, x):
        r = (x - self.center).reshape(-1)
        if self.tril is None:
            return r / self.scale.reshape(-1), jnp.sum(jnp.log(self.scale) * jnp.ones_like(x))
        return self.tril_inv @ r, jnp.sum(jnp.log(jnp.diagonal(self.tril)))

    def log_prob(self, x):
        d = x.size
        if self.kind == "uniform":
            inside = jnp.all(jnp.abs(x - self.center) <= self.scale)
            return jnp.where(inside, -jnp.sum(jnp.log(2 * self.scale) * jnp.ones_like(x)), -jnp.inf)
        z, log_det = self._standardise(x)
        if self.kind == "gaussian":
            return -0.5 * jnp.sum(z**2) - d * 0.5 * math.log(2 * math.pi) - log_det
        nu = self.df  # multivariate Student-t
        const = (math.lgamma((nu + d) / 2) - math.lgamma(nu / 2) - 0.5 * d * math.log(nu * math.pi))
        return const - log_det - 0.5 * (nu + d) * jnp.log1p(jnp.sum(z**2) / nu)

    def sample(self, key, shape):
        if self.kind == "uniform":
            return self.center + self.scale * jax.random.uniform(key, shape, minval=-1.0, maxval=1.0)
        k_z, k_g = jax.random.split(key)
        batch = shape[: len(shape) - self.center.ndim]
        z = jax.random.normal(k_z, (*batch, self.center.size), self.center.dtype)
        if self.kind == "student_t":  # a Gaussian over the root of an independent χ²_ν / ν
            if float(self.df).is_integer() and self.df <= 30:  # χ²_ν as a sum of ν squares: cheap to compile
                g = jnp.sum(jax.random.normal(k_g, (*batch, int(self.df)), self.center.dtype) ** 2, -1,
                            keepdims=True) / self.df
            else:
                g = 2.0 * jax.random.gamma(k_g, self.df / 2, (*batch, 1), self.center.dtype) / self.df
            z = z / jnp.sqrt(g)
        step = z * self.scale.reshape(-1) if self.tril is None else z @ self.tril.T
        return self.center + step.reshape(shape)


_FIT_INFLATION = {"gaussian": 1.5, "student_t": 1.0}
"""Scale of a fitted base relative to the points' spread: a Gaussian is widened, a Student-t's tails cover."""


def _fit_base(points: jax.Array, kind: str, df: float, event_shape: tuple[int, ...], ftype) -> _Base:
    """A base fitted to ``points`` ``(n, *event_shape)``: their mean and covariance (full if n >= 5·dim, else diagonal).

    Coordinates with (almost) no spread get a floor of 1 % of the median variance
    (a model rarely collapses where its data happen to be constant). A Gaussian is
    widened by 1.5; a Student-t (``df`` degrees of freedom) is used at the points'
    covariance as its scale matrix (its covariance is then ``df/(df−2)`` times it).
    """
    x = np.asarray(points, np.float64).reshape(points.shape[0], -1)
    n, d = x.shape
    mean = x.mean(0)
    var = x.var(0, ddof=1) if n > 1 else np.ones(d)
    floor = 1e-2 * max(float(np.median(var)), 1e-12) if np.any(var > 0) else 1.0
    var = np.maximum(var, floor)
    inflate = _FIT_INFLATION[kind]
    center = jnp.asarray(mean.reshape(event_shape), ftype)
    scale = jnp.asarray((inflate * np.sqrt(var)).reshape(event_shape), ftype)
    if n >= 5 * d and d > 1:
        cov = np.cov(x, rowvar=False)
        sd = np.sqrt(np.maximum(np.diag(cov), 1e-300))
        corr = cov / np.outer(sd, sd)
        cov = np.outer(np.sqrt(var), np.sqrt(var)) * corr + 1e-6 * floor * np.eye(d)
        tril = np.linalg.cholesky(inflate**2 * cov)
        tril_inv = np.linalg.solve(tril, np.eye(d))
        return _Base(kind, center, scale, jnp.asarray(tril, ftype), float(df), jnp.asarray(tril_inv, ftype))
    return _Base(kind, center, scale, None, float(df))


def _flat_points(points: Any, event_shape: tuple[int, ...], name: str, ftype) -> jax.Array:
    """``points`` as ``(n, *event_shape)``; a :class:`~ebmppl.Samples`, ``(chains, draws, *event)`` or ``(n, *event)``."""
    arr = jnp.asarray(points.positions if hasattr(points, "positions") else points, ftype)
    ev = len(event_shape)
    if arr.ndim == 2 + ev and tuple(arr.shape[2:]) == tuple(event_shape):
        arr = arr.reshape(-1, *event_shape)
    if arr.ndim != 1 + ev or tuple(arr.shape[1:]) != tuple(event_shape) or arr.shape[0] < 1:
        raise ValueError(f"{name} must be (n, *event_shape) or (chains, draws, *event_shape) with event_shape "
                         f"{tuple(event_shape)}; got shape {tuple(arr.shape)}.")
    if not bool(jnp.all(jnp.isfinite(arr))):
        raise ValueError(f"{name} hold non-finite values (NaN or inf): drop those rows first.")
    return arr


_TAIL_ADVICE = ("a base with heavier tails: base='student_t' with a smaller base_df (> 2), or, for an energy on a "
                "bounded region, base='uniform' with base_center/base_scale covering it")


def _tail_notes(report, q: _Base) -> list[str]:
    """Whether the base's tails cover the energy's: the weights' second moment ``∫ p̃²/q`` must converge.

    Along the direction where the normalisability probe found the most mass far out, the integrand's shell
    bound ``2·max(-E/T) - log q + d·log r`` must fall over the outermost radii as the shell mass itself must
    (the same rule as :func:`~ebmppl.normalisability.assert_normalisable`). If it does not, the weights have
    infinite variance: the tail is under-sampled, the estimate low, and nothing in the weights shows it.
    """
    radii, m = np.asarray(report.radii, np.float64), np.asarray(report.max_log_density, np.float64)
    if m.shape[0] < 3 or not np.isfinite(m[-1]):
        return []
    shape = report.direction.shape
    points = (np.asarray(report.center).reshape(-1)[None] + radii[-3:, None] * np.asarray(report.scale).reshape(-1)[None]
              * np.asarray(report.direction).reshape(-1)[None])
    log_q = np.asarray(jax.vmap(q.log_prob)(jnp.asarray(points.reshape(-1, *shape), q.center.dtype)), np.float64)
    d = int(np.prod(shape))
    j = 2 * m[-3:] - log_q + d * np.log(radii[-3:])
    if not np.all(np.isfinite(j)) or j[-1] < j[0] - 1.0:
        return []
    slope = (m[-1] - m[-3]) / math.log(radii[-1] / radii[-3])
    return [f"the energy's tail is heavier than the base's: far out, exp(-E/T) falls like r^{slope:.2g} (d = {d}), "
            f"so the weights p̃/q have infinite variance; the tail is under-sampled and the estimate is likely too low "
            f"whatever its error bar"]


