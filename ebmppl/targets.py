"""Analytic energies for tests and teaching, with exact log Z and moments.

Each constructor returns a :class:`Target`: an :class:`~ebmppl.Energy` plus
what is known about its density in closed form (``log_z``, ``mean``, ``cov``
and, where one exists, an exact sampler). They are the ground truth that
samplers, AIS and diagnostics are tested against.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp

from ebmppl.energy import Energy

__all__ = [
    "Target",
    "Modes",
    "gaussian",
    "ill_conditioned_gaussian",
    "gaussian_mixture",
    "four_modes",
    "double_well",
    "banana",
    "neals_funnel",
    "ring",
    "TARGETS",
]

_LOG_2PI = math.log(2.0 * math.pi)


@dataclasses.dataclass(frozen=True, eq=False)
class Modes:
    """The components of a Gaussian mixture ``Σ_k w_k N(μ_k, Σ_k)``: the truth for its mode weights.

    A :class:`Target` built by :func:`gaussian_mixture` carries one
    (``target.modes``); :func:`ebmppl.compare` uses it to judge how much of a
    run's mass lies in each mode. Arrays are float64; the weights are
    normalised to sum to 1.

    Attributes
    ----------
    weights
        ``(k,)`` mixture weights.
    means
        ``(k, d)`` component means.
    covs
        ``(k, d, d)`` component covariances.

    Examples
    --------
    >>> m = Modes([1.0, 3.0], [[-4.0, 0.0], [4.0, 0.0]], [np.eye(2)] * 2)
    >>> m.weights.tolist(), m.num_modes
    ([0.25, 0.75], 2)
    >>> m.assign(np.array([[-3.0, 1.0], [5.0, 0.0], [0.0, 0.0]])).tolist()   # the origin: the heavier mode
    [0, 1, 1]
    """

    weights: np.ndarray
    means: np.ndarray
    covs: np.ndarray

    def __post_init__(self):
        w = np.asarray(self.weights, np.float64)
        mu = np.asarray(self.means, np.float64)
        covs = np.asarray(self.covs, np.float64)
        if mu.ndim != 2 or w.shape != mu.shape[:1] or covs.shape != (mu.shape[0], mu.shape[1], mu.shape[1]):
            raise ValueError(f"weights must be (k,), means (k, d) and covs (k, d, d); got {w.shape}, {mu.shape} "
                             f"and {covs.shape}.")
        if not np.all(np.isfinite(w)) or np.any(w <= 0):
            raise ValueError(f"weights must be positive and finite, got {w.tolist()}.")
        if not np.all(np.isfinite(mu)) or not np.allclose(covs, np.swapaxes(covs, 1, 2)) \
                or np.linalg.eigvalsh(covs).min() <= 0:
            raise ValueError("means must be finite and every cov symmetric positive definite.")
        object.__setattr__(self, "weights", w / w.sum())
        object.__setattr__(self, "means", mu)
        object.__setattr__(self, "covs", covs)

    @property
    def num_modes(self) -> int:
        """The number of components ``k``."""
        return int(self.weights.shape[0])

    def _log_scores(self, x: np.ndarray | jax.Array) -> tuple[np.ndarray, np.ndarray]:
        """``log w_k N(x; μ_k, Σ_k)`` up to a constant, ``(..., k)`` (0 for non-finite draws), and finiteness ``(...)``."""
        x = np.asarray(x, np.float64)
        d = self.means.shape[1]
        if x.ndim < 1 or x.shape[-1] != d:
            raise ValueError(f"x must be draws (..., {d}) of the mixture's {d}-D event, got shape {x.shape}.")
        finite = np.all(np.isfinite(x), axis=-1)
        diff = np.where(finite[..., None], x, 0.0)[..., None, :] - self.means  # (..., k, d)
        maha = np.einsum("...ki,kij,...kj->...k", diff, np.linalg.inv(self.covs), diff)
        return np.log(self.weights) - 0.5 * (np.linalg.slogdet(self.covs)[1] + maha), finite

    def assign(self, x: np.ndarray | jax.Array) -> np.ndarray:
        """The most probable component of each draw: ``argmax_k w_k N(x; μ_k, Σ_k)``.

        The Bayes classifier of the mixture; with well-separated modes it is
        the mode the draw sits in.

        Parameters
        ----------
        x
            Draws ``(..., d)`` (e.g. ``(chain, draw, d)``).

        Returns
        -------
        numpy.ndarray
            Integer mode indices ``(...)`` in ``0 .. k-1``; ``-1`` for a draw
            that is not finite.

        Examples
        --------
        >>> four_modes().modes.assign(np.array([[-4.0, -4.0], [4.0, 4.0], [np.nan, 0.0]])).tolist()
        [0, 3, -1]
        """
        score, finite = self._log_scores(x)
        return np.where(finite, np.argmax(score, axis=-1), -1)

    def responsibilities(self, x: np.ndarray | jax.Array) -> np.ndarray:
        """The probability of each component given the draw: ``w_k N(x; μ_k, Σ_k) / Σ_j w_j N(x; μ_j, Σ_j)``.

        Their mean over exact draws is exactly ``w_k``, however much the
        components overlap (``E_p[r_k(X)] = ∫ w_k N_k = w_k``), whereas the
        fraction of draws :meth:`assign` puts in mode k is ``w_k`` only for
        well-separated modes: this is the estimator of mode weights that
        :func:`ebmppl.compare` uses.

        Parameters
        ----------
        x
            Draws ``(..., d)``.

        Returns
        -------
        numpy.ndarray
            ``(..., k)``, each row summing to 1 (all zero for a draw that is not finite).

        Examples
        --------
        >>> m = Modes([0.5, 0.5], [[-1.0], [1.0]], [[[1.0]], [[1.0]]])
        >>> m.responsibilities(np.array([[0.0], [1.0]])).round(3).tolist()   # 1/(1+e^-2) at x = 1
        [[0.5, 0.5], [0.119, 0.881]]
        """
        score, finite = self._log_scores(x)
        r = np.exp(score - score.max(axis=-1, keepdims=True))
        return np.where(finite[..., None], r / r.sum(axis=-1, keepdims=True), 0.0)


@dataclasses.dataclass(frozen=True)
class Target:
    """An energy with known facts about ``p(x) = exp(-E(x)) / Z``.

    Attributes
    ----------
    name
        Short name, e.g. ``"banana"``.
    energy
        The :class:`~ebmppl.Energy` (temperature 1).
    log_z
        ``log ∫ exp(-E(x)) dx``.
    mean, cov
        Exact first and second moments (``None`` where none exist).
    sample
        ``sample(key, n) -> (n, *event_shape)`` exact draws, or ``None``.
    modes
        The components of a Gaussian mixture (:class:`Modes`: weights, means,
        covariances), which :func:`ebmppl.compare` judges mode weights against;
        ``None`` where the density is not a known mixture.

    Examples
    --------
    >>> t = gaussian([1.0, 2.0], [[4.0, 0.0], [0.0, 1.0]])
    >>> t.name, t.std.tolist(), round(t.log_z, 4)   # log(2π · 2)
    ('gaussian', [2.0, 1.0], 2.531)
    """

    name: str
    energy: Energy
    log_z: float
    mean: np.ndarray | None
    cov: np.ndarray | None
    sample: Callable[[jax.Array, int], jax.Array] | None = None
    modes: Modes | None = None

    @property
    def std(self) -> np.ndarray | None:
        """Marginal standard deviations ``sqrt(diag(cov))``."""
        return None if self.cov is None else np.sqrt(np.diag(self.cov))


class _WithRegion:
    """An ``energy_fn`` that declares where its mass lies (:meth:`ebmppl.Energy.typical_region`): the
    target's exact mean and marginal standard deviations. Equal (and hashed alike) for equal functions and
    regions, so equal targets share compiled code."""

    def __init__(self, fn: Callable, center: np.ndarray, scale: np.ndarray):
        self.fn = fn
        self.center = np.asarray(center, np.float64)
        self.scale = np.asarray(scale, np.float64)
        self.__name__ = getattr(fn, "__name__", "energy_fn")

    def __call__(self, params, x):
        return self.fn(params, x)

    def typical_region(self) -> tuple[np.ndarray, np.ndarray]:
        return self.center, self.scale

    def _key(self):
        return (self.fn, self.center.tobytes(), self.scale.tobytes())

    def __eq__(self, other):
        return isinstance(other, _WithRegion) and self._key() == other._key()

    def __hash__(self):
        return hash(self._key())


def _gaussian_energy(params, x):
    diff = x - params["mean"]
    return 0.5 * diff @ params["precision"] @ diff


def gaussian(mean: Sequence[float] | np.ndarray, cov: Sequence[Sequence[float]] | np.ndarray) -> Target:
    """A Gaussian ``N(mean, cov)`` with energy ``½ (x-μ)ᵀ Σ⁻¹ (x-μ)``.

    ``log Z = ½ log det(2π Σ)``; ``params = {"mean", "precision"}`` so the
    same energy can be fitted.

    Examples
    --------
    >>> from ebmppl.targets import gaussian
    >>> t = gaussian([1.0, -1.0], [[1.0, 0.5], [0.5, 2.0]])
    >>> round(t.log_z, 4)
    2.1177

    Its energy declares where its mass lies (the mean and marginal standard deviations):

    >>> [[round(float(c), 3) for c in v] for v in t.energy.typical_region()]
    [[1.0, -1.0], [1.0, 1.414]]
    """
    mean = np.asarray(mean, dtype=np.float64)
    cov = np.asarray(cov, dtype=np.float64)
    d = mean.shape[0]
    if mean.ndim != 1 or cov.shape != (d, d):
        raise ValueError(f"mean must be (d,) and cov (d, d); got {mean.shape} and {cov.shape}.")
    if not np.allclose(cov, cov.T) or np.linalg.eigvalsh(cov).min() <= 0:
        raise ValueError("cov must be symmetric positive definite.")
    precision = np.linalg.inv(cov)
    params = {"mean": jnp.asarray(mean, jnp.float32), "precision": jnp.asarray(precision, jnp.float32)}
    log_z = 0.5 * (d * _LOG_2PI + np.linalg.slogdet(cov)[1])
    chol = jnp.asarray(np.linalg.cholesky(cov), jnp.float32)

    def sample(key, n):
        return params["mean"] + jax.random.normal(key, (n, d)) @ chol.T

    energy_fn = _WithRegion(_gaussian_energy, mean, np.sqrt(np.diag(cov)))  # typical_region: mean, marginal sd
    return Target("gaussian", Energy(energy_fn, params, event_shape=(d,)), float(log_z), mean, cov, sample)


def ill_conditioned_gaussian(dim: int = 100, condition: float = 100.0, seed: int = 0) -> Target:
    """A correlated Gaussian with log-spaced covariance eigenvalues (condition number ``condition``)
    in a random orthogonal basis, and a random mean: hard for samplers with a diagonal metric.

    Examples
    --------
    >>> t = ill_conditioned_gaussian(10, 100.0)
    >>> round(float(np.linalg.cond(t.cov)), 1)
    100.0
    """
    if dim < 2 or condition < 1:
        raise ValueError(f"dim must be >= 2 and condition >= 1, got {dim}, {condition}.")
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(dim, dim)))
    eig = np.logspace(-0.5, 0.5, dim) ** np.log10(condition)  # from 1/sqrt(c) to sqrt(c)
    cov = q @ np.diag(eig) @ q.T
    return gaussian(rng.normal(size=dim), 0.5 * (cov + cov.T))


def _mixture_energy(params, x):
    diff = x[None, :] - params["means"]
    maha = jnp.einsum("ki,kij,kj->k", diff, params["precisions"], diff)
    return -logsumexp(params["log_norm"] - 0.5 * maha)


def gaussian_mixture(
    weights: Sequence[float] | np.ndarray,
    means: Sequence[Sequence[float]] | np.ndarray,
    covs: Sequence | np.ndarray,
) -> Target:
    """A normalised Gaussian mixture, ``E(x) = -log Σ_k w_k N(x; μ_k, Σ_k)`` (so ``log Z = 0``).

    Examples
    --------
    >>> from ebmppl.targets import gaussian_mixture
    >>> t = gaussian_mixture([0.3, 0.7], [[-2.0, 0.0], [2.0, 0.0]], [0.25 * np.eye(2)] * 2)
    >>> t.log_z, t.mean.round(2).tolist()
    (0.0, [0.8, 0.0])

    Its components are known (:class:`Modes`), so :func:`ebmppl.compare` can judge mode weights:

    >>> t.modes.weights.tolist(), t.modes.assign(np.array([[-2.1, 0.3]])).tolist()
    ([0.3, 0.7], [0])
    """
    w = np.asarray(weights, dtype=np.float64)
    mu = np.asarray(means, dtype=np.float64)
    covs = np.asarray(covs, dtype=np.float64)
    k, d = mu.shape
    if w.shape != (k,) or covs.shape != (k, d, d):
        raise ValueError(f"weights must be (k,), means (k, d), covs (k, d, d); got {w.shape}, {mu.shape}, {covs.shape}.")
    if np.any(w <= 0):
        raise ValueError("weights must be positive.")
    w = w / w.sum()
    modes = Modes(w, mu, covs)
    prec = np.linalg.inv(covs)
    log_norm = np.log(w) - 0.5 * (d * _LOG_2PI + np.linalg.slogdet(covs)[1])
    params = {
        "means": jnp.asarray(mu, jnp.float32),
        "precisions": jnp.asarray(prec, jnp.float32),
        "log_norm": jnp.asarray(log_norm, jnp.float32),
    }
    mean = w @ mu
    second = np.einsum("k,kij->ij", w, covs + np.einsum("ki,kj->kij", mu, mu))
    chols = jnp.asarray(np.linalg.cholesky(covs), jnp.float32)

    def sample(key, n):
        kc, kz = jax.random.split(key)
        comp = jax.random.categorical(kc, jnp.log(jnp.asarray(w, jnp.float32)), shape=(n,))
        z = jax.random.normal(kz, (n, d))
        return params["means"][comp] + jnp.einsum("nij,nj->ni", chols[comp], z)

    cov = second - np.outer(mean, mean)
    energy = Energy(_WithRegion(_mixture_energy, mean, np.sqrt(np.diag(cov))), params, event_shape=(d,))
    return Target("gaussian_mixture", energy, 0.0, mean, cov, sample, modes)


def four_modes(separation: float = 8.0, weights: Sequence[float] = (0.1, 0.2, 0.3, 0.4), scale: float = 1.0) -> Target:
    """Four Gaussians ``N(μ_k, scale² I)`` on the corners of a square, ``separation`` standard deviations apart.

    The means are ``(∓s/2, ∓s/2)`` with ``s = separation · scale``, in the order
    (−,−), (+,−), (−,+), (+,+), with the given (unequal) weights. At the
    default 8 standard deviations the density between two neighbouring modes
    is ``e⁻⁸`` of its peak: local samplers (MALA, HMC, NUTS) keep to the mode
    they start in, so a comparison sees wrong mode weights unless the sampler
    crosses barriers (parallel tempering). The exact components are in
    ``target.modes``.

    Parameters
    ----------
    separation
        Side of the square in standard deviations (> 0).
    weights
        Four positive weights (normalised to sum to 1).
    scale
        Standard deviation of each component (> 0).

    Returns
    -------
    Target
        Named ``"four_modes"``, with ``log_z = 0``, exact moments, an exact sampler and ``modes``.

    Examples
    --------
    >>> t = four_modes()
    >>> t.modes.means.tolist(), t.modes.weights.round(2).tolist()
    ([[-4.0, -4.0], [4.0, -4.0], [-4.0, 4.0], [4.0, 4.0]], [0.1, 0.2, 0.3, 0.4])
    >>> t.mean.round(2).tolist()
    [0.8, 1.6]
    """
    if not 0.0 < float(separation) < float("inf") or not 0.0 < float(scale) < float("inf"):
        raise ValueError(f"separation and scale must be positive, got {separation!r} and {scale!r}.")
    w = np.asarray(weights, np.float64)
    if w.shape != (4,):
        raise ValueError(f"weights must be 4 numbers, one per mode, got shape {w.shape}.")
    half = 0.5 * float(separation) * float(scale)
    means = half * np.array([[-1.0, -1.0], [1.0, -1.0], [-1.0, 1.0], [1.0, 1.0]])
    target = gaussian_mixture(w, means, np.broadcast_to(float(scale) ** 2 * np.eye(2), (4, 2, 2)))
    return dataclasses.replace(target, name="four_modes")


def _quad_1d(log_f: Callable[[np.ndarray], np.ndarray], lo: float, hi: float, n: int = 400_001):
    """log ∫ f and the first two moments of f/∫f on [lo, hi] by the trapezoid rule (float64)."""
    s = np.linspace(lo, hi, n)
    lf = log_f(s)
    m = lf.max()
    f = np.exp(lf - m)
    z = np.trapezoid(f, s)
    return m + math.log(z), np.trapezoid(s * f, s) / z, np.trapezoid(s * s * f, s) / z


def double_well(dim: int = 2, barrier: float = 2.0) -> Target:
    """A double well: ``E(x) = h (x₁² - 1)² + ½ Σ_{i>1} xᵢ²`` with barrier height ``h``.

    Two modes at ``x₁ = ±1``; ``log Z`` and moments by 1-D quadrature in float64.

    Examples
    --------
    >>> from ebmppl.targets import double_well
    >>> t = double_well(2, barrier=2.0)
    >>> t.mean.tolist()
    [0.0, 0.0]
    """
    if dim < 1:
        raise ValueError(f"dim must be >= 1, got {dim}.")
    h = float(barrier)

    def fn(params, x):
        return params * (x[0] ** 2 - 1.0) ** 2 + 0.5 * jnp.sum(x[1:] ** 2)

    log_z1, _, m2 = _quad_1d(lambda s: -h * (s**2 - 1.0) ** 2, -6.0, 6.0)
    log_z = log_z1 + 0.5 * (dim - 1) * _LOG_2PI
    cov = np.eye(dim)
    cov[0, 0] = m2
    energy = Energy(fn, jnp.asarray(h, jnp.float32), event_shape=(dim,))
    return Target("double_well", energy, float(log_z), np.zeros(dim), cov)


def banana(scale: float = 1.0, curvature: float = 1.0) -> Target:
    """A banana (twisted Gaussian, Rosenbrock-type): ``x₁ ~ N(0, a²)``, ``x₂ | x₁ ~ N(b(x₁² - a²), 1)``.

    ``E(x) = x₁²/(2a²) + (x₂ - b(x₁² - a²))²/2``, ``log Z = log(2π a)``,
    mean 0, ``Var x₁ = a²``, ``Var x₂ = 1 + 2 b² a⁴``, uncorrelated.

    Examples
    --------
    >>> from ebmppl.targets import banana
    >>> banana(1.0, 1.0).cov.tolist()
    [[1.0, 0.0], [0.0, 3.0]]
    """
    a, b = float(scale), float(curvature)
    if a <= 0:
        raise ValueError(f"scale must be > 0, got {scale}.")

    def fn(params, x):
        a, b = params
        return 0.5 * (x[0] / a) ** 2 + 0.5 * (x[1] - b * (x[0] ** 2 - a**2)) ** 2

    def sample(key, n):
        k1, k2 = jax.random.split(key)
        x1 = a * jax.random.normal(k1, (n,))
        x2 = b * (x1**2 - a**2) + jax.random.normal(k2, (n,))
        return jnp.stack([x1, x2], axis=-1)

    energy = Energy(fn, (jnp.float32(a), jnp.float32(b)), event_shape=(2,))
    cov = np.diag([a**2, 1.0 + 2.0 * b**2 * a**4])
    return Target("banana", energy, math.log(2 * math.pi * a), np.zeros(2), cov, sample)


def neals_funnel(dim: int = 10, scale: float = 3.0) -> Target:
    """Neal's funnel: ``v ~ N(0, σ²)``, ``xᵢ | v ~ N(0, eᵛ)`` for ``i = 2..dim`` (normalised: ``log Z = 0``).

    The neck (small ``v``) defeats samplers with one global step size: the
    standard stress test for HMC/NUTS divergences. ``Var xᵢ = exp(σ²/2)``.

    Examples
    --------
    >>> from ebmppl.targets import neals_funnel
    >>> t = neals_funnel(3)
    >>> t.log_z, round(float(t.cov[0, 0]), 1)
    (0.0, 9.0)
    """
    if dim < 2:
        raise ValueError(f"dim must be >= 2, got {dim}.")
    s = float(scale)

    def fn(params, x):
        v, rest = x[0], x[1:]
        log_pv = -0.5 * (v / params) ** 2 - jnp.log(params) - 0.5 * _LOG_2PI
        log_px = -0.5 * jnp.sum(rest**2) * jnp.exp(-v) - 0.5 * (dim - 1) * (v + _LOG_2PI)
        return -(log_pv + log_px)

    def sample(key, n):
        kv, kx = jax.random.split(key)
        v = s * jax.random.normal(kv, (n, 1))
        return jnp.concatenate([v, jnp.exp(v / 2) * jax.random.normal(kx, (n, dim - 1))], axis=-1)

    cov = np.diag([s**2] + [math.exp(s**2 / 2)] * (dim - 1))
    return Target("neals_funnel", Energy(fn, jnp.float32(s), event_shape=(dim,)), 0.0, np.zeros(dim), cov, sample)


def ring(radius: float = 2.0, width: float = 0.25) -> Target:
    """A ring in the plane: ``E(x) = (‖x‖ - r)² / (2 w²)``.

    ``Z = 2π (w² e^{-r²/2w²} + r w √(2π) Φ(r/w))``; mean 0, covariance
    ``E‖x‖²/2 · I`` (by quadrature).

    Examples
    --------
    >>> from ebmppl.targets import ring
    >>> t = ring(2.0, 0.25)
    >>> round(t.log_z, 3)
    2.064
    """
    r, w = float(radius), float(width)
    if r < 0 or w <= 0:
        raise ValueError(f"radius must be >= 0 and width > 0, got {radius}, {width}.")

    def fn(params, x):
        r, w = params
        norm = jnp.sqrt(jnp.sum(x**2) + 1e-12)  # smooth at the origin
        return 0.5 * ((norm - r) / w) ** 2

    # radial density ∝ s exp(-(s - r)² / 2w²); its second moment is E‖x‖²
    log_radial, _, norm_sq = _quad_1d(
        lambda s: np.log(np.maximum(s, 1e-300)) - 0.5 * ((s - r) / w) ** 2, 0.0, r + 12 * w
    )
    cov = 0.5 * norm_sq * np.eye(2)
    return Target("ring", Energy(fn, (jnp.float32(r), jnp.float32(w)), event_shape=(2,)), float(_LOG_2PI + log_radial), np.zeros(2), cov)


TARGETS: dict[str, Callable[[], Target]] = {
    "gaussian": lambda: gaussian([1.0, -1.0], [[1.0, 0.5], [0.5, 2.0]]),
    "mixture": lambda: gaussian_mixture(
        [0.25] * 4,
        [[-2.5, -2.5], [-2.5, 2.5], [2.5, -2.5], [2.5, 2.5]],
        [0.5 * np.eye(2)] * 4,
    ),
    "double_well": double_well,
    "banana": banana,
    "four_modes": four_modes,
    "funnel": lambda: neals_funnel(10),
    "ring": ring,
    "gaussian_100d": ill_conditioned_gaussian,
}
"""Built-in targets by name, as the command line and ``compare`` refer to them."""
