"""2-D toy densities: exact samplers and, where one exists, the exact log-density.

Curve-shaped densities (two moons, two spirals) are a curve blurred by
isotropic Gaussian noise, ``x = c(t) + σ ξ`` with ``t`` drawn from a known
law, so ``p(x) = ∫ p(t) N(x; c(t), σ²I) dt``; ebmppl evaluates that integral
by quadrature on a fine grid of ``t`` (spacing far below ``σ``), which makes
the log-density exact to many digits. Eight Gaussians and rings are
mixtures with closed forms; the checkerboard is uniform on its squares.
The pinwheel has no tractable density (``log_prob is None``): use a
large-sample estimate for it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp
from jax.scipy.stats import norm

__all__ = ["ToyDensity", "two_moons", "eight_gaussians", "rings", "checkerboard", "two_spirals", "pinwheel", "TOY_DENSITIES", "toy"]

_LOG_2PI = math.log(2 * math.pi)


@dataclasses.dataclass(frozen=True)
class ToyDensity:
    """A 2-D density to train on.

    Attributes
    ----------
    name
        Its name, e.g. ``"two_moons"``.
    sample
        ``sample(key, n) -> (n, 2)`` exact draws.
    log_prob
        ``log_prob(x) -> (...)`` exact normalised log-density of points
        ``(..., 2)``, or ``None`` where none is tractable.
    limits
        ``(xmin, xmax, ymin, ymax)``: a box holding all but a negligible
        fraction of the mass (used for plots and grid quadrature).

    Examples
    --------
    >>> moons = two_moons()
    >>> x = moons.sample(jax.random.key(0), 1000)
    >>> moons.name, x.shape, bool(jnp.isfinite(moons.log_prob(x)).all())
    ('two_moons', (1000, 2), True)
    """

    name: str
    sample: Callable[[jax.Array, int], jax.Array]
    log_prob: Callable[[jax.Array], jax.Array] | None
    limits: tuple[float, float, float, float]

    def entropy(self, key: jax.Array, n: int = 200_000) -> tuple[float, float]:
        """Monte-Carlo estimate of the differential entropy ``-E[log p(x)]`` and its standard error.

        The best held-out log-likelihood any model can reach is ``-entropy``.

        Examples
        --------
        >>> import jax
        >>> h, se = eight_gaussians().entropy(jax.random.key(0), 20_000)
        >>> se < 0.02
        True
        """
        if self.log_prob is None:
            raise ValueError(f"{self.name} has no exact log-density; estimate its entropy another way.")
        lp = np.asarray(self.log_prob(self.sample(key, n)), np.float64)
        return float(-lp.mean()), float(lp.std(ddof=1) / math.sqrt(n))


def _blurred_curve_log_prob(nodes: np.ndarray, log_weights: np.ndarray, sigma: float):
    """log Σ_j w_j N(x; c_j, σ² I): the quadrature of a blurred curve (nodes (m, 2), Σ w_j = 1)."""
    nodes = jnp.asarray(nodes, jnp.float32)
    log_w = jnp.asarray(log_weights, jnp.float32)

    def one(x):
        d2 = jnp.sum((x - nodes) ** 2, axis=-1)
        return logsumexp(log_w - 0.5 * d2 / sigma**2) - _LOG_2PI - 2 * math.log(sigma)

    def log_prob(x):
        x = jnp.asarray(x, jnp.float32)
        flat = x.reshape(-1, 2)
        # batches bound the (points x nodes) distance matrix in memory
        out = jax.lax.map(one, flat, batch_size=min(flat.shape[0], 256))
        return out.reshape(x.shape[:-1])

    return log_prob


def two_moons(noise: float = 0.1) -> ToyDensity:
    """Two interleaved half circles (scikit-learn's ``make_moons`` geometry) with Gaussian noise.

    Examples
    --------
    >>> import jax
    >>> d = two_moons()
    >>> d.sample(jax.random.key(0), 5).shape
    (5, 2)
    """
    if noise <= 0:
        raise ValueError(f"noise must be > 0, got {noise}.")

    def curve(t, arm):
        upper = jnp.stack([jnp.cos(t), jnp.sin(t)], -1)
        lower = jnp.stack([1.0 - jnp.cos(t), 0.5 - jnp.sin(t)], -1)
        return jnp.where(arm[..., None] == 0, upper, lower)

    def sample(key, n):
        kt, ka, kn = jax.random.split(key, 3)
        t = jax.random.uniform(kt, (n,), maxval=math.pi)
        arm = jax.random.bernoulli(ka, 0.5, (n,)).astype(jnp.int32)
        return curve(t, arm) + noise * jax.random.normal(kn, (n, 2))

    m = 2048  # midpoint rule in t: spacing π/2048 ≈ 0.0015 << noise
    t = (np.arange(m) + 0.5) * math.pi / m
    nodes = np.concatenate([np.stack([np.cos(t), np.sin(t)], -1), np.stack([1 - np.cos(t), 0.5 - np.sin(t)], -1)])
    log_w = np.full(2 * m, -math.log(2 * m))
    return ToyDensity("two_moons", sample, _blurred_curve_log_prob(nodes, log_w, noise), (-1.8, 2.8, -1.3, 1.8))


def two_spirals(noise: float = 0.1, turns: float = 1.5) -> ToyDensity:
    """Two interleaved spirals: ``t = 2π·turns·√u``, arm ``±(t cos t, t sin t)/π``, Gaussian noise.

    Examples
    --------
    >>> two_spirals().limits
    (-3.6, 3.6, -3.6, 3.6)
    """
    if noise <= 0:
        raise ValueError(f"noise must be > 0, got {noise}.")
    t_max = 2 * math.pi * turns

    def sample(key, n):
        ku, ka, kn = jax.random.split(key, 3)
        t = t_max * jnp.sqrt(jax.random.uniform(ku, (n,)))
        sign = jnp.where(jax.random.bernoulli(ka, 0.5, (n,)), 1.0, -1.0)[:, None]
        return sign * jnp.stack([t * jnp.cos(t), t * jnp.sin(t)], -1) / math.pi + noise * jax.random.normal(kn, (n, 2))

    m = 8192  # quadrature in u (t = t_max √u has density 2t / t_max²)
    u = (np.arange(m) + 0.5) / m
    t = t_max * np.sqrt(u)
    arm = np.stack([t * np.cos(t), t * np.sin(t)], -1) / math.pi
    nodes = np.concatenate([arm, -arm])
    log_w = np.full(2 * m, -math.log(2 * m))
    return ToyDensity("two_spirals", sample, _blurred_curve_log_prob(nodes, log_w, noise), (-3.6, 3.6, -3.6, 3.6))


def eight_gaussians(radius: float = 2.0, std: float = 0.2) -> ToyDensity:
    """Eight Gaussians evenly spaced on a circle (an exact mixture).

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> d = eight_gaussians()
    >>> float(d.log_prob(jnp.array([2.0, 0.0]))) > float(d.log_prob(jnp.zeros(2)))
    True
    """
    angles = np.arange(8) * 2 * math.pi / 8
    centres = radius * np.stack([np.cos(angles), np.sin(angles)], -1)
    c = jnp.asarray(centres, jnp.float32)

    def sample(key, n):
        kc, kn = jax.random.split(key)
        return c[jax.random.randint(kc, (n,), 0, 8)] + std * jax.random.normal(kn, (n, 2))

    lim = radius + 5 * std
    return ToyDensity("eight_gaussians", sample, _blurred_curve_log_prob(centres, np.full(8, -math.log(8)), std),
                      (-lim, lim, -lim, lim))


def rings(radii: tuple[float, ...] = (0.5, 1.0, 1.5, 2.0), width: float = 0.08) -> ToyDensity:
    """Concentric rings, equal mass each; ring ``k`` has density ∝ ``exp(-(‖x‖ - r_k)² / 2w²)`` (exact).

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> d = rings()
    >>> float(d.log_prob(jnp.array([1.0, 0.0]))) > float(d.log_prob(jnp.array([0.75, 0.0])))
    True
    """
    r = np.asarray(radii, np.float64)
    # normaliser of exp(-(s - r)^2 / 2w^2) over the plane: 2π (w² e^{-r²/2w²} + r w √(2π) Φ(r/w))
    log_z = np.log(2 * math.pi * (width**2 * np.exp(-0.5 * (r / width) ** 2)
                                  + r * width * math.sqrt(2 * math.pi) * np.asarray(norm.cdf(r / width))))
    rj, log_zj = jnp.asarray(r, jnp.float32), jnp.asarray(log_z, jnp.float32)
    k = len(r)

    def log_prob(x):
        s = jnp.sqrt(jnp.sum(jnp.asarray(x, jnp.float32) ** 2, -1))[..., None]
        return logsumexp(-0.5 * ((s - rj) / width) ** 2 - log_zj, axis=-1) - math.log(k)

    def sample(key, n):
        kc, ka, kr = jax.random.split(key, 3)
        ring = jax.random.randint(kc, (n,), 0, k)
        # radial law ∝ s exp(-(s - r)²/2w²): for r >> w it is N(r, w²) to within e^{-r²/2w²};
        # sample it exactly by rejection from N(r, w²) truncated to s > 0 with acceptance s / (r + 6w)
        def draw(key):
            kz, ku = jax.random.split(key)
            s = rj[ring] + width * jax.random.normal(kz, (n,))
            accept = jax.random.uniform(ku, (n,)) * (rj[ring] + 6 * width) < s
            return s, accept

        def body(carry):
            key, s, done = carry
            key, sub = jax.random.split(key)
            s_new, acc = draw(sub)
            s = jnp.where(done, s, s_new)
            return key, s, done | acc

        _, s, _ = jax.lax.while_loop(lambda c: ~jnp.all(c[2]), body, (kr, jnp.zeros(n), jnp.zeros(n, bool)))
        angle = jax.random.uniform(ka, (n,), maxval=2 * math.pi)
        return jnp.stack([s * jnp.cos(angle), s * jnp.sin(angle)], -1)

    lim = float(r.max() + 6 * width)
    return ToyDensity("rings", sample, log_prob, (-lim, lim, -lim, lim))


def checkerboard(size: int = 4) -> ToyDensity:
    """Uniform on the dark squares of a ``size × size`` board on ``[-size/2, size/2]²`` (exact, piecewise constant).

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> d = checkerboard()
    >>> float(d.log_prob(jnp.array([-1.5, -1.5]))) == -float(jnp.log(8.0))
    True
    """
    half = size / 2
    n_dark = size * size // 2 + (size % 2)

    def dark(x):
        i = jnp.floor(x[..., 0] + half)
        j = jnp.floor(x[..., 1] + half)
        inside = (jnp.abs(x[..., 0]) < half) & (jnp.abs(x[..., 1]) < half)
        return inside & ((i + j) % 2 == 0)

    def log_prob(x):
        x = jnp.asarray(x, jnp.float32)
        return jnp.where(dark(x), -math.log(n_dark), -jnp.inf)

    def sample(key, n):
        kc, ku = jax.random.split(key)
        cells = np.array([(i, j) for i in range(size) for j in range(size) if (i + j) % 2 == 0], np.float32)
        cell = jnp.asarray(cells)[jax.random.randint(kc, (n,), 0, len(cells))]
        return cell - half + jax.random.uniform(ku, (n, 2))

    return ToyDensity("checkerboard", sample, log_prob, (-half - 0.3, half + 0.3, -half - 0.3, half + 0.3))


def pinwheel(num_arms: int = 5, radial_std: float = 0.3, tangential_std: float = 0.1, rate: float = 0.25) -> ToyDensity:
    """A pinwheel: Gaussian blobs sheared by a radius-dependent rotation (no tractable density).

    Examples
    --------
    >>> pinwheel().log_prob is None
    True
    """

    def sample(key, n):
        ka, kr, kt = jax.random.split(key, 3)
        arm = jax.random.randint(ka, (n,), 0, num_arms)
        r = 1.0 + radial_std * jax.random.normal(kr, (n,))
        t = tangential_std * jax.random.normal(kt, (n,))
        angle = 2 * math.pi * arm / num_arms + rate * jnp.exp(r)
        c, s = jnp.cos(angle), jnp.sin(angle)
        return 2.0 * jnp.stack([c * r - s * t, s * r + c * t], -1)

    return ToyDensity("pinwheel", sample, None, (-4.0, 4.0, -4.0, 4.0))


TOY_DENSITIES: dict[str, Callable[[], ToyDensity]] = {
    "two_moons": two_moons,
    "eight_gaussians": eight_gaussians,
    "rings": rings,
    "checkerboard": checkerboard,
    "two_spirals": two_spirals,
    "pinwheel": pinwheel,
}


def toy(name: str) -> ToyDensity:
    """A toy density by name.

    Examples
    --------
    >>> toy("two_moons").name
    'two_moons'
    """
    if name not in TOY_DENSITIES:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(sorted(TOY_DENSITIES))} (or 'digits').")
    return TOY_DENSITIES[name]()
