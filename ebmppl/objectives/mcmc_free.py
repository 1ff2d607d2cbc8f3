"""MCMC-free objectives: denoising and sliced score matching, and noise-contrastive estimation.

They fit the same energies as contrastive divergence through the same
:class:`~ebmppl.objectives.Objective` (``fit(..., objective="dsm")``), as its loss terms,
without sampling the model during training:

* **Denoising score matching** (Vincent 2011): match the model score
  ``s_θ = -∇ₓE/T`` at noisy points ``x̃ = x + σε`` to the score of the noise
  kernel, ``-(x̃ - x)/σ²``. Its optimum is the density of the *noise-smoothed*
  data, ``p_data * N(0, σ²I)``.
* **Sliced score matching** (Song et al. 2019): Hyvärinen's objective
  ``E[½‖s_θ‖² + tr ∇ₓs_θ]`` with the trace estimated by random projections,
  ``vᵀ∇ₓ(vᵀ s_θ)``; its optimum is the data density itself.
* **Noise-contrastive estimation** (Gutmann & Hyvärinen 2010): logistic
  classification of data against samples of a tractable noise density, with
  the model's log-normaliser ``c`` learned as a parameter, so that
  ``-E(x)/T - c`` becomes a normalised log-density.
* **Exact score matching** (Hyvärinen 2005): the same objective as sliced
  score matching with the Hessian trace computed exactly, one Jacobian-vector
  product per coordinate; for low dimension (at most :data:`SM_MAX_DIM`).
* **Energy discrepancy** (Schröder et al. 2023): contrasts the energy of each
  example with the energies of ``M`` points reached by a Gaussian
  perturbation and its reverse; needs neither scores nor samples of the model.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import optax

from ebmppl._validation import check_int
from ebmppl.energy import Energy
from ebmppl.objectives.trainer import LossTerm, Objective, freeze_arrays, thaw_arrays

__all__ = ["denoising_score_matching", "sliced_score_matching", "noise_contrastive_estimation", "dsm_loss",
           "ssm_loss", "nce_loss", "DenoisingScoreMatching", "SlicedScoreMatching", "NoiseContrastive",
           "score_matching", "sm_loss", "ScoreMatching", "SM_MAX_DIM", "energy_discrepancy", "ed_loss",
           "EnergyDiscrepancy"]

SM_MAX_DIM = 64
"""The largest dimension exact score matching accepts by default: its cost grows as ``d`` gradient passes per
example (use sliced score matching, ``"ssm"``, above it)."""


def _score_fn(energy: Energy, params: Any) -> Callable[[jax.Array], jax.Array]:
    return jax.grad(energy.with_params(params).logdensity_fn)


def dsm_loss(energy: Energy, params: Any, x: jax.Array, key: jax.Array, sigma: float) -> jax.Array:
    """Denoising score matching loss ``½ E ‖σ s_θ(x + σε) + ε‖²`` (scaled by σ² so it is O(1)).

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> from ebmppl import Energy
    >>> e = Energy(lambda p, x: 0.5 * jnp.sum(x**2) / p, jnp.float32(1.0), event_shape=(1,))
    >>> float(dsm_loss(e, e.params, jnp.zeros((4096, 1)), jax.random.key(0), 0.1)) < 0.6
    True
    """
    eps = jax.random.normal(key, x.shape)
    score = jax.vmap(_score_fn(energy, params))(x + sigma * eps)
    return 0.5 * jnp.mean(jnp.sum((sigma * score + eps).reshape(x.shape[0], -1) ** 2, axis=1))


def ssm_loss(energy: Energy, params: Any, x: jax.Array, key: jax.Array, num_projections: int = 1) -> jax.Array:
    """Sliced score matching (variance-reduced): ``E[½‖s_θ(x)‖² + vᵀ ∇ₓ(vᵀ s_θ(x))]``, ``v ~ N(0, I)``.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> from ebmppl import Energy
    >>> e = Energy(lambda p, x: 0.5 * jnp.sum(x**2), event_shape=(2,))
    >>> x = jax.random.normal(jax.random.key(0), (20000, 2))
    >>> round(float(ssm_loss(e, None, x, jax.random.key(1))), 1)   # = -d/2 at the optimum
    -1.0
    """
    score = _score_fn(energy, params)
    v = jax.random.normal(key, (num_projections, *x.shape))

    def one(xi, vi):
        s, jvp = jax.jvp(score, (xi,), (vi,))  # jvp = ∇ₓ s · v
        return 0.5 * jnp.sum(s**2) + jnp.sum(vi * jvp)

    per = jax.vmap(lambda vp: jax.vmap(one)(x, vp))(v)
    return jnp.mean(per)


def nce_loss(energy: Energy, params: Any, log_c: jax.Array, x: jax.Array, noise: jax.Array,
             noise_log_prob: Callable[[jax.Array], jax.Array]) -> jax.Array:
    """NCE logistic loss with model ``log p = -E/T - c`` and ``ν = len(noise)/len(x)`` noise samples per datum.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> from jax.scipy.stats import norm
    >>> from ebmppl import Energy
    >>> e = Energy(lambda p, x: 0.5 * jnp.sum(x**2), event_shape=(1,))
    >>> lp = lambda z: norm.logpdf(z).sum(-1)
    >>> x = jax.random.normal(jax.random.key(0), (1000, 1))
    >>> y = jax.random.normal(jax.random.key(1), (1000, 1))
    >>> round(float(nce_loss(e, None, jnp.float32(0.5 * jnp.log(2 * jnp.pi)), x, y, lp)), 3)  # model = noise
    1.386
    """
    model = energy.with_params(params)
    nu = noise.shape[0] / x.shape[0]

    def logit(z):  # log p_model(z) - log(ν q(z))
        return model.logdensity(z) - log_c - noise_log_prob(z) - math.log(nu)

    return jnp.mean(jax.nn.softplus(-logit(x))) + nu * jnp.mean(jax.nn.softplus(logit(noise)))


def sm_loss(energy: Energy, params: Any, x: jax.Array) -> jax.Array:
    """Hyvärinen's score matching loss ``E[½‖s_θ(x)‖² + tr ∇ₓs_θ(x)]`` with the exact Hessian trace.

    ``s_θ = -∇ₓE/T``; the trace is exact: forward-over-reverse, one
    Jacobian-vector product per coordinate (``d`` of them, vmapped), so the
    cost grows as ``d`` gradient passes per example. Its minimiser is the
    data density itself (up to the model family), like sliced score matching's.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> from ebmppl import Energy
    >>> e = Energy(lambda p, x: 0.5 * jnp.sum(x**2), event_shape=(2,))
    >>> x = jax.random.normal(jax.random.key(0), (20000, 2))
    >>> round(float(sm_loss(e, None, x)), 1)   # = -d/2 at the optimum
    -1.0
    """
    score = _score_fn(energy, params)
    shape = x.shape[1:]

    def one(xi):
        flat = xi.reshape(-1)
        s, jvp = jax.linearize(lambda z: score(z.reshape(shape)).reshape(-1), flat)
        columns = jax.vmap(jvp)(jnp.eye(flat.size, dtype=flat.dtype))  # row i = ∇ₓs · e_i
        return 0.5 * jnp.sum(s**2) + jnp.trace(columns)

    return jnp.mean(jax.vmap(one)(x))


def _ed_parts(energy: Energy, params: Any, x: jax.Array, key: jax.Array, t: float, num_negatives: int,
              w: float) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Energy discrepancy's loss and the mean potentials of the examples and of their contrast points."""
    model = energy.with_params(params)
    k_y, k_neg = jax.random.split(key)
    scale = math.sqrt(t)
    y = x + scale * jax.random.normal(k_y, x.shape, x.dtype)
    x_neg = y[None] + scale * jax.random.normal(k_neg, (num_negatives, *x.shape), x.dtype)
    u_pos = model.potential(x)  # E/T: (n,)
    u_neg = model.potential(x_neg)  # (M, n)
    diffs = u_pos[None] - u_neg
    if w > 0:  # the w/M term: log w joins the log-sum-exp as one more "difference"
        diffs = jnp.concatenate([jnp.full((1, x.shape[0]), math.log(w), diffs.dtype), diffs])
    per = jax.scipy.special.logsumexp(diffs, axis=0) - math.log(num_negatives)
    return jnp.mean(per), jnp.mean(u_pos), jnp.mean(u_neg)


def ed_loss(energy: Energy, params: Any, x: jax.Array, key: jax.Array, t: float = 0.25, num_negatives: int = 16,
            w: float = 1.0) -> jax.Array:
    """Energy discrepancy, w-stabilised: ``mean log(w/M + (1/M) Σⱼ exp(U(x) - U(x'ⱼ)))``, ``U = E/T``.

    For each example ``x``: ``y = x + √t ξ`` and ``M = num_negatives``
    contrast points ``x'ⱼ = y + √t ξ'ⱼ`` (all ``ξ`` standard normal); the sum
    is a log-sum-exp (no overflow). It estimates Schröder et al.'s (2023)
    energy discrepancy ``E_data[U(x)] + E_data E_{y|x}[log ∫ q(y|x') exp(-U(x')) dx']``
    up to a constant.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> from ebmppl import Energy
    >>> e = Energy(lambda p, x: 0.5 * jnp.sum(x**2), event_shape=(2,))
    >>> x = jnp.zeros((8, 2))   # U = 0 at the data, U > 0 at every contrast point: the loss is < log((1 + M)/M)
    >>> float(ed_loss(e, None, x, jax.random.key(0), t=1.0, num_negatives=4, w=1.0)) < float(jnp.log(5 / 4))
    True
    """
    return _ed_parts(energy, params, x, key, t, num_negatives, w)[0]


class DenoisingScoreMatching(LossTerm):
    """The denoising-score-matching term, :func:`dsm_loss` on ``x⁺`` with noise scale ``sigma``.

    Examples
    --------
    >>> from ebmppl.objectives import Phases
    >>> e = Energy(lambda p, x: 0.5 * jnp.sum(x**2) / p, jnp.float32(1.0), event_shape=(1,))
    >>> loss, _ = DenoisingScoreMatching(0.1)(e, Phases(None, jnp.zeros((4096, 1)), None, jax.random.key(0)), {})
    >>> float(loss) < 0.6
    True
    """

    sigma: float = eqx.field(static=True)
    needs_key = True

    def __call__(self, model, phases, extra):
        return dsm_loss(model, model.params, phases.positive, phases.key, self.sigma), {}


class SlicedScoreMatching(LossTerm):
    """The sliced-score-matching term, :func:`ssm_loss` on ``x⁺`` with ``num_projections`` directions.

    Examples
    --------
    >>> from ebmppl.objectives import Phases
    >>> e = Energy(lambda p, x: 0.5 * jnp.sum(x**2), event_shape=(2,))
    >>> x = jax.random.normal(jax.random.key(0), (20000, 2))
    >>> round(float(SlicedScoreMatching()(e, Phases(None, x, None, jax.random.key(1)), {})[0]), 1)
    -1.0
    """

    num_projections: int = eqx.field(static=True, default=1)
    needs_key = True

    def __call__(self, model, phases, extra):
        return ssm_loss(model, model.params, phases.positive, phases.key, self.num_projections), {}


class NoiseContrastive(LossTerm):
    """The NCE term against Gaussian noise ``N(mean, scale²)``, ``noise_ratio`` noise draws per example.

    It trains the model's log-normaliser ``log_c`` (starting at 0) with the energy.

    Examples
    --------
    >>> from ebmppl.objectives import Phases
    >>> e = Energy(lambda p, x: 0.5 * jnp.sum(x**2), event_shape=(1,))
    >>> term = NoiseContrastive.gaussian((1,), 0.0, 1.0)
    >>> x = jax.random.normal(jax.random.key(0), (4000, 1))
    >>> loss, _ = term(e, Phases(None, x, None, jax.random.key(1)), {"log_c": jnp.float32(0.919)})  # model = noise
    >>> round(float(loss), 2)
    1.39
    """

    mean: tuple = eqx.field(static=True)
    scale: tuple = eqx.field(static=True)
    noise_ratio: int = eqx.field(static=True, default=1)
    needs_key = True

    @classmethod
    def gaussian(cls, event_shape: tuple[int, ...], mean: Any = 0.0, scale: Any = 1.0,
                 noise_ratio: int = 1) -> NoiseContrastive:
        """The term for noise ``N(mean, scale²)`` (scalars or arrays broadcast to ``event_shape``), validated."""
        if int(noise_ratio) < 1:
            raise ValueError(f"noise_ratio must be >= 1, got {noise_ratio!r}.")
        mean = jnp.broadcast_to(jnp.asarray(mean, jnp.float32), event_shape)
        scale = jnp.broadcast_to(jnp.asarray(scale, jnp.float32), event_shape)
        if not bool(jnp.all(scale > 0)):
            raise ValueError("noise_scale must be > 0.")
        return cls(freeze_arrays({"mean": mean}), freeze_arrays({"scale": scale}), int(noise_ratio))

    def extra_params(self):
        return {"log_c": jnp.zeros(())}

    def __call__(self, model, phases, extra):
        mean, scale = thaw_arrays(self.mean, jnp.float32)["mean"], thaw_arrays(self.scale, jnp.float32)["scale"]
        d = math.prod(mean.shape)

        def noise_log_prob(z):
            zz = ((z - mean) / scale).reshape(z.shape[0], -1)
            return -0.5 * jnp.sum(zz**2, 1) - 0.5 * d * math.log(2 * math.pi) - jnp.sum(jnp.log(scale))

        x = phases.positive
        y = mean + scale * jax.random.normal(phases.key, (self.noise_ratio * x.shape[0], *x.shape[1:]))
        return nce_loss(model, model.params, extra["log_c"], x, y, noise_log_prob), {}


class ScoreMatching(LossTerm):
    """The exact score-matching term, :func:`sm_loss` on ``x⁺`` (draws nothing).

    Examples
    --------
    >>> from ebmppl.objectives import Phases
    >>> e = Energy(lambda p, x: 0.5 * jnp.sum(x**2), event_shape=(2,))
    >>> x = jax.random.normal(jax.random.key(0), (20000, 2))
    >>> round(float(ScoreMatching()(e, Phases(None, x, None, None), {})[0]), 1)
    -1.0
    """

    def __call__(self, model, phases, extra):
        return sm_loss(model, model.params, phases.positive), {}


class EnergyDiscrepancy(LossTerm):
    """The energy-discrepancy term, :func:`ed_loss` on ``x⁺``; reports ``energy_pos`` and ``energy_neg``.

    ``energy_pos`` is the mean ``E/T`` of the examples, ``energy_neg`` that of
    their contrast points (the points whose energy the term raises).

    Examples
    --------
    >>> from ebmppl.objectives import Phases
    >>> e = Energy(lambda p, x: 0.5 * jnp.sum(x**2), event_shape=(2,))
    >>> loss, aux = EnergyDiscrepancy(1.0, 4, 1.0)(e, Phases(None, jnp.zeros((8, 2)), None, jax.random.key(0)), {})
    >>> float(aux["energy_pos"]), bool(aux["energy_neg"] > 0)
    (0.0, True)
    """

    t: float = eqx.field(static=True, default=0.25)
    num_negatives: int = eqx.field(static=True, default=16)
    w: float = eqx.field(static=True, default=1.0)
    needs_key = True

    def __call__(self, model, phases, extra):
        loss, u_pos, u_neg = _ed_parts(model, model.params, phases.positive, phases.key, self.t,
                                       self.num_negatives, self.w)
        return loss, {"energy_pos": u_pos, "energy_neg": u_neg}


def denoising_score_matching(energy: Energy, optimizer: optax.GradientTransformation, *,
                             sigma: float = 0.1) -> Objective:
    """A denoising-score-matching trainer (noise scale ``sigma``); fits the σ-smoothed data density.

    Examples
    --------
    >>> import optax
    >>> from ebmppl import Energy
    >>> e = Energy(lambda p, x: 0.5 * jnp.sum((x - p) ** 2), jnp.zeros(2), event_shape=(2,))
    >>> denoising_score_matching(e, optax.adam(1e-2), sigma=0.1).name
    'dsm'
    """
    if not float(sigma) > 0:
        raise ValueError(f"sigma must be > 0, got {sigma!r}.")
    return Objective("dsm", energy, optimizer, DenoisingScoreMatching(float(sigma)))


def sliced_score_matching(energy: Energy, optimizer: optax.GradientTransformation, *,
                          num_projections: int = 1) -> Objective:
    """A sliced-score-matching trainer (``num_projections`` random directions per example).

    Examples
    --------
    >>> import optax
    >>> from ebmppl import Energy
    >>> e = Energy(lambda p, x: 0.5 * jnp.sum((x - p) ** 2), jnp.zeros(2), event_shape=(2,))
    >>> sliced_score_matching(e, optax.adam(1e-2)).name
    'ssm'
    """
    if int(num_projections) < 1:
        raise ValueError(f"num_projections must be >= 1, got {num_projections!r}.")
    return Objective("ssm", energy, optimizer, SlicedScoreMatching(int(num_projections)))


def noise_contrastive_estimation(
    energy: Energy,
    optimizer: optax.GradientTransformation,
    *,
    noise_mean: Any = 0.0,
    noise_scale: Any = 1.0,
    noise_ratio: int = 1,
) -> Objective:
    """A noise-contrastive-estimation trainer against Gaussian noise ``N(noise_mean, noise_scale²)``.

    The training parameters are ``{"energy": θ, "log_c": c}``; after
    training, ``-E_θ(x)/T - c`` is (approximately) a normalised
    log-density, so ``c`` estimates ``log Z``. Choose the noise close to the
    data (e.g. the data's mean and a scale a little wider than its spread).

    Examples
    --------
    >>> import optax
    >>> from ebmppl import Energy
    >>> e = Energy(lambda p, x: 0.5 * jnp.sum((x - p) ** 2), jnp.zeros(2), event_shape=(2,))
    >>> t = noise_contrastive_estimation(e, optax.adam(1e-2), noise_scale=2.0)
    >>> sorted(t.init(jax.random.key(0), e.params).params)
    ['energy', 'log_c']
    """
    return Objective("nce", energy, optimizer, NoiseContrastive.gaussian(energy.event_shape, noise_mean, noise_scale,
                                                                       noise_ratio))


def score_matching(energy: Energy, optimizer: optax.GradientTransformation, *,
                   max_dim: int = SM_MAX_DIM) -> Objective:
    """An exact score-matching trainer (Hyvärinen 2005), for low dimension.

    The loss is :func:`sm_loss`: ``E[½‖s_θ‖² + tr ∇ₓs_θ]`` with the Hessian
    trace computed exactly (one Jacobian-vector product per coordinate), so a
    step costs about ``d`` gradient passes per example; no noise, no
    projections. Like sliced score matching it fits the data density itself;
    for a Gaussian energy its minimiser is the Gaussian MLE (sample mean and
    inverse sample covariance) exactly.

    Parameters
    ----------
    energy, optimizer
        The energy trained and any Optax transformation.
    max_dim
        The largest ``energy.dim`` accepted (default :data:`SM_MAX_DIM` = 64). Raise it knowingly: the
        cost and the memory of the trace grow as ``d²`` per example.

    Raises
    ------
    ValueError
        If ``energy.dim > max_dim``: use sliced score matching (``"ssm"``), whose trace estimate costs one
        Jacobian-vector product per projection whatever ``d``.

    Examples
    --------
    >>> import optax
    >>> from ebmppl import Energy
    >>> e = Energy(lambda p, x: 0.5 * jnp.sum((x - p) ** 2), jnp.zeros(2), event_shape=(2,))
    >>> score_matching(e, optax.adam(1e-2)).name
    'sm'
    >>> score_matching(Energy(lambda p, x: jnp.sum(x**2), event_shape=(100,)), optax.adam(1e-2))
    Traceback (most recent call last):
    ...
    ValueError: exact score matching computes d = 100 Jacobian-vector products per example (max_dim=64); ...
    """
    max_dim = check_int("max_dim", max_dim, 1)
    if isinstance(energy, Energy) and energy.dim > max_dim:
        raise ValueError(f"exact score matching computes d = {energy.dim} Jacobian-vector products per example "
                         f"(max_dim={max_dim}); use sliced score matching, objective='ssm' "
                         "(ebmppl.objectives.sliced_score_matching), or pass a larger max_dim knowingly.")
    return Objective("sm", energy, optimizer, ScoreMatching())


def energy_discrepancy(energy: Energy, optimizer: optax.GradientTransformation, *, t: float = 0.25,
                       num_negatives: int = 16, w: float = 1.0) -> Objective:
    """An energy-discrepancy trainer (Schröder et al., NeurIPS 2023) with Gaussian perturbations.

    What is implemented is the paper's w-stabilised estimator for the
    Gaussian perturbation: for each example ``x`` draw ``y = x + √t ξ`` and
    ``M`` contrast points ``x'ⱼ = y + √t ξ'ⱼ``; the loss is
    ``mean log(w/M + (1/M) Σⱼ exp(U(x) - U(x'ⱼ)))`` with ``U = E/T``
    (:func:`ed_loss`, computed as a log-sum-exp). No model samples and no
    scores are needed: ``M + 1`` energy evaluations per example.

    With ``w = 1`` the loss is a cross-entropy for picking the data point out
    of ``{x, x'₁, …, x'_M}``, which is minimised by ``U = -log p_data + c``
    for every ``M``: the estimator is consistent. ``w = 0`` is the plain
    Monte-Carlo estimate of the discrepancy, biased for finite ``M`` and
    unstable (the loss is unbounded below when ``U`` runs off at the
    contrast points); the paper recommends ``w > 0``.

    Parameters
    ----------
    energy, optimizer
        The energy trained and any Optax transformation.
    t
        Variance of each Gaussian perturbation (contrast points lie about
        ``√(2t)`` from their example per coordinate). Small ``t`` makes the
        loss approach score matching (blind to how mass is shared between
        separated modes); large ``t`` approaches maximum likelihood but the
        contrast points land far from the data and the estimate gets noisy.
        The default 0.25 suits data of unit scale; scale it with the data's
        variance (``t ≈ 0.25 · std²``).
    num_negatives
        ``M``, contrast points per example.
    w
        The stabilisation weight (≥ 0; default 1).

    Examples
    --------
    >>> import optax
    >>> from ebmppl import Energy
    >>> e = Energy(lambda p, x: 0.5 * jnp.sum((x - p) ** 2), jnp.zeros(2), event_shape=(2,))
    >>> energy_discrepancy(e, optax.adam(1e-2)).name
    'ed'
    >>> energy_discrepancy(e, optax.adam(1e-2), t=0.0)
    Traceback (most recent call last):
    ...
    ValueError: t must be a finite number > 0 (the perturbation's variance; about 0.25 * the data's variance), got 0.0.
    """
    if not (math.isfinite(float(t)) and float(t) > 0):
        raise ValueError(f"t must be a finite number > 0 (the perturbation's variance; about 0.25 * the data's "
                         f"variance), got {t!r}.")
    num_negatives = check_int("num_negatives", num_negatives, 1)
    if not (math.isfinite(float(w)) and float(w) >= 0):
        raise ValueError(f"w must be a finite number >= 0 (default 1: the stabilised, consistent loss), got {w!r}.")
    return Objective("ed", energy, optimizer, EnergyDiscrepancy(float(t), int(num_negatives), float(w)))
