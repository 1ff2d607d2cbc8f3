"""Short-run MCMC as a latent generator, and out-of-distribution scoring by energy.

Nijkamp et al. (2019) observe that a fixed K-step Langevin chain from noise,
``x = g(z)``, is itself a generator with latent ``z`` (the starting noise):
interpolating ``z`` interpolates images, and an observed example can be
reconstructed by optimising ``z`` through the chain. The same energies score
inputs (:func:`ood_scores`): by energy ``E(x)``, by the gradient norm
``‖∇ₓE(x)‖`` (``method="grad_norm"``), or by how typical either is of held-out
in-distribution examples (``reference=``).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ebmppl._deprecation import UNSET, renamed
from ebmppl.energy import Energy

__all__ = ["short_run_generator", "ShortRunGenerator", "FALLBACK_STEP", "FALLBACK_NUM_MCMC_STEPS", "interpolate", "reconstruct", "ood_scores", "auroc"]


FALLBACK_STEP = 0.01
"""Gradient step of :func:`short_run_generator` without stored settings, in units of ``typical_region``'s scale²."""
FALLBACK_NUM_MCMC_STEPS = 20
"""Steps of :func:`short_run_generator` without stored settings."""


def __getattr__(name: str):
    if name == "FALLBACK_NUM_STEPS":  # the old name, for one release
        return renamed("ebmppl.latent", "FALLBACK_NUM_STEPS", FALLBACK_NUM_MCMC_STEPS, "FALLBACK_NUM_MCMC_STEPS", UNSET)
    raise AttributeError(f"module 'ebmppl.latent' has no attribute {name!r}")
_AUTO = "auto"


class ShortRunGenerator:
    """``g(z)``: a fixed number of noise-free Langevin (gradient) steps on an energy from ``x₀ = z``.

    Built by :func:`short_run_generator`, which documents where its settings
    come from. Deterministic and differentiable in ``z``; ``z`` and ``g(z)``
    are in the data's units, shaped ``(n, *event_shape)``.

    Attributes
    ----------
    num_mcmc_steps, step_size, clamp
        The chain's settings, in the generator's coordinates ``u = (x - center) / unit``.
    center, unit
        The coordinates: the data's units (``0``, ``1``) or the standardised
        coordinates of a ``"density"`` fit or of ``typical_region``.
    noise_box
        ``(low, high)`` in the generator's coordinates: where :meth:`latent`
        draws starting noise.
    monotone
        ``True`` for the cautious default without stored settings: a step is
        kept only where it lowers the energy, else that chain's step is halved.
    source
        ``"training"`` (the stored settings of the run that trained the
        energy), ``"fallback"`` (none stored) or ``"given"`` (all passed).

    Examples
    --------
    >>> from ebmppl.targets import gaussian
    >>> g = short_run_generator(gaussian([0.5, 0.5], [[1.0, 0.0], [0.0, 1.0]]).energy, num_mcmc_steps=50,
    ...                         step_size=0.2, clamp=None)
    >>> g.source, g.latent(jax.random.key(0), 3).shape
    ('given', (3, 2))
    """

    def __init__(self, energy: Energy, num_mcmc_steps: int, step_size: float, clamp: tuple[float, float] | None,
                 center: jax.Array, unit: jax.Array, noise_box: tuple[float, float], monotone: bool, source: str):
        self.energy, self.num_mcmc_steps, self.step_size, self.clamp = energy, int(num_mcmc_steps), float(step_size), clamp
        self.center, self.unit, self.noise_box, self.monotone, self.source = center, unit, noise_box, monotone, source

    @property
    def num_steps(self) -> int:
        """Deprecated: use :attr:`num_mcmc_steps`."""
        return renamed("ShortRunGenerator (attribute)", "num_steps", self.num_mcmc_steps, "num_mcmc_steps", UNSET)

    def __repr__(self) -> str:
        return (f"ShortRunGenerator(num_mcmc_steps={self.num_mcmc_steps}, step_size={self.step_size}, clamp={self.clamp}, "
                f"noise_box={self.noise_box}, monotone={self.monotone}, source={self.source!r})")

    def latent(self, key: jax.Array, num: int) -> jax.Array:
        """``num`` starting points ``z``, uniform on :attr:`noise_box` (in the data's units).

        Examples
        --------
        >>> from ebmppl.targets import gaussian
        >>> g = short_run_generator(gaussian([0.0], [[1.0]]).energy)
        >>> float(g.latent(jax.random.key(0), 1000).max()) <= 2.0
        True
        """
        shape = (int(num), *self.energy.event_shape)
        u = jax.random.uniform(key, shape, minval=self.noise_box[0], maxval=self.noise_box[1])
        return self.center + self.unit * u

    def __call__(self, z: jax.Array) -> jax.Array:
        energy, h = self.energy, self.step_size

        def e_and_score(u):  # energy / T and its gradient in the generator's coordinates u
            e, g = jax.value_and_grad(lambda v: energy.potential_fn(self.center + self.unit * v))(u)
            return e, -g

        batched = jax.vmap(e_and_score)
        u0 = (jnp.asarray(z) - self.center) / self.unit

        def body(carry, _):
            u, e, s, step = carry
            u_new = u + step.reshape((-1,) + (1,) * (u.ndim - 1)) * s
            if self.clamp is not None:
                u_new = jnp.clip(u_new, *self.clamp)
            if not self.monotone:
                return (u_new, e, s, step), None
            e_new, s_new = batched(u_new)
            better = jnp.isfinite(e_new) & (e_new <= e)
            keep = lambda a, b: jnp.where(better.reshape((-1,) + (1,) * (a.ndim - 1)), a, b)  # noqa: E731
            return (keep(u_new, u), keep(e_new, e), keep(s_new, s), jnp.where(better, step, 0.5 * step)), None

        if self.monotone:
            e0, s0 = batched(u0)
            carry = (u0, e0, s0, jnp.full(u0.shape[:1], h, u0.dtype))
            (u, *_), _ = jax.lax.scan(body, carry, None, length=self.num_mcmc_steps)
        else:
            def plain(u, _):
                u = u + h * jax.vmap(lambda v: e_and_score(v)[1])(u)
                return (jnp.clip(u, *self.clamp) if self.clamp is not None else u), None

            u, _ = jax.lax.scan(plain, u0, None, length=self.num_mcmc_steps)
        return self.center + self.unit * u


def short_run_generator(
    energy: Energy,
    *,
    num_mcmc_steps: int | None = None,
    step_size: float | None = None,
    clamp: tuple[float, float] | None | str = _AUTO,
    num_steps: int | None = UNSET,
) -> ShortRunGenerator:
    """``g(z)``: ``num_mcmc_steps`` noise-free Langevin (gradient) steps on ``E`` from ``x₀ = z``; deterministic and differentiable.

    By default the chain is the one that trained the energy: :func:`ebmppl.fit`
    stores the settings of its negative-phase sampler with the energy
    (:attr:`Energy.sampler_settings <ebmppl.Energy>`, kept by
    :func:`ebmppl.save` / :func:`ebmppl.load`), and the generator takes from
    them the gradient step (MALA, ULA, practical Langevin), the number of
    steps per update, the clamp and the starting-noise box, in the coordinates
    the sampler ran in (standardised ``z`` for the ``"density"`` recipe, so the
    step is ``scale² · step_size`` per coordinate in the data's units). For an
    energy trained by practical Langevin with short-run chains from noise
    (Nijkamp et al. 2019) this reproduces the training's negatives. The step of
    an exact sampler (MALA, ULA) is safeguarded as below, since a noise-free
    descent with it can overshoot a narrow mode.

    Without stored settings the default is cautious and scale-aware: steps of
    :data:`FALLBACK_STEP` in the standardised coordinates of
    :meth:`Energy.typical_region <ebmppl.Energy.typical_region>` (``(0, 1)``
    unless the energy declares one), :data:`FALLBACK_NUM_MCMC_STEPS` of them, no
    clamp, and each step kept only where it lowers the energy (else that
    chain's step is halved): the output never has a higher energy than the
    starting noise, whatever the data's scale.

    Parameters
    ----------
    energy
        The energy to descend.
    num_mcmc_steps
        Steps ``K``; default: the training's steps per update, else :data:`FALLBACK_NUM_MCMC_STEPS`.
    step_size
        Gradient step ``s`` in ``x ← x + s ∇log p(x)``, in the generator's
        coordinates (standardised for a ``"density"`` fit); default: the
        training sampler's, else :data:`FALLBACK_STEP`. Passing it turns the
        energy-decrease safeguard off.
    clamp
        ``(low, high)`` box (generator's coordinates) after each step, ``None``
        for none; default: the training's clamp where it is known, else none.
    num_steps
        Deprecated name of ``num_mcmc_steps`` (works for one more release, with a warning).

    Returns
    -------
    ShortRunGenerator
        Callable ``g(z)`` with ``z`` of shape ``(n, *event_shape)``;
        ``g.latent(key, n)`` draws ``z`` from the training's noise box (else
        ``typical_region``'s ``center ± 2·scale``).

    Examples
    --------
    >>> from ebmppl.targets import gaussian
    >>> g = short_run_generator(gaussian([0.5, 0.5], [[1.0, 0.0], [0.0, 1.0]]).energy, num_mcmc_steps=50,
    ...                         step_size=0.2, clamp=None)
    >>> [round(float(v), 3) for v in g(jnp.zeros((1, 2)))[0]]
    [0.5, 0.5]
    """
    num_mcmc_steps = renamed("short_run_generator", "num_steps", num_steps, "num_mcmc_steps",
                             UNSET if num_mcmc_steps is None else num_mcmc_steps)
    if num_mcmc_steps is not None and (isinstance(num_mcmc_steps, bool) or int(num_mcmc_steps) < 1):
        raise ValueError(f"num_mcmc_steps must be an int >= 1, got {num_mcmc_steps!r}.")
    if step_size is not None and not float(step_size) > 0:
        raise ValueError(f"step_size must be > 0, got {step_size!r}.")
    if clamp is not None and not isinstance(clamp, str):
        lo, hi = (float(c) for c in clamp)
        if not lo < hi:
            raise ValueError(f"clamp must be (low, high) with low < high, or None, got {clamp!r}.")
        clamp = (lo, hi)
    elif isinstance(clamp, str) and clamp != _AUTO:
        raise ValueError(f"clamp must be (low, high), None or 'auto', got {clamp!r}.")
    settings = energy.sampler_settings
    ftype = jnp.result_type(float)
    if settings is not None and not settings.standardized:  # the training sampler ran in the data's units
        center, unit = jnp.zeros(energy.event_shape, ftype), jnp.ones(energy.event_shape, ftype)
    else:  # standardised coordinates: the "density" recipe's, or typical_region's
        center, unit = (jnp.asarray(v, ftype) for v in energy.typical_region())
    trained_step = settings.gradient_step if settings is not None else None
    everything_given = num_mcmc_steps is not None and step_size is not None and clamp != _AUTO
    # a descent with the step of an exact sampler (MALA, ULA) can overshoot a narrow mode, so it is safeguarded;
    # the chain of practical Langevin is what trained the energy (short-run), so it is reproduced as it ran
    monotone = step_size is None and (settings is None or settings.sampler != "langevin")
    if step_size is None:
        step_size = trained_step if trained_step is not None else FALLBACK_STEP
    if num_mcmc_steps is None:
        num_mcmc_steps = settings.num_mcmc_steps if settings is not None else FALLBACK_NUM_MCMC_STEPS
    if clamp == _AUTO:
        clamp = settings.clamp if settings is not None else None
    noise_box = (settings.noise_box if settings is not None and settings.noise_box is not None else
                 clamp if clamp is not None else (-2.0, 2.0))
    source = "given" if everything_given else "training" if settings is not None else "fallback"
    return ShortRunGenerator(energy, num_mcmc_steps, step_size, clamp, center, unit, noise_box, monotone, source)


def interpolate(z1: jax.Array, z2: jax.Array, num: int = 8) -> jax.Array:
    """Latents ``z_p = p z₁ + sqrt(1 - p²) z₂`` for ``p`` from 0 to 1 (variance-preserving for Gaussian z).

    Examples
    --------
    >>> interpolate(jnp.ones(2), jnp.zeros(2), num=3)[:, 0].round(3).tolist()
    [0.0, 0.5, 1.0]
    """
    p = jnp.linspace(0.0, 1.0, int(num)).reshape((-1,) + (1,) * jnp.ndim(z1))
    return p * z1 + jnp.sqrt(1.0 - p**2) * z2


def reconstruct(
    generator: Callable[[jax.Array], jax.Array],
    x_observed: jax.Array,
    z0: jax.Array,
    *,
    optimizer: optax.GradientTransformation | None = None,
    num_steps: int = 200,
) -> tuple[jax.Array, jax.Array]:
    """Find latents ``z`` with ``g(z) ≈ x`` by minimising ``‖g(z) - x‖²`` through the chain; returns ``(z, g(z))``.

    Examples
    --------
    >>> from ebmppl.targets import gaussian
    >>> g = short_run_generator(gaussian([0.0, 0.0], [[1.0, 0.0], [0.0, 1.0]]).energy, num_mcmc_steps=5,
    ...                         step_size=0.1, clamp=None)
    >>> z, x = reconstruct(g, jnp.array([[0.59, -0.59]]), jnp.zeros((1, 2)), num_steps=300)
    >>> [round(float(v), 2) for v in x[0]]
    [0.59, -0.59]
    """
    optimizer = optimizer or optax.adam(0.05)
    x_observed = jnp.asarray(x_observed)
    loss = lambda z: jnp.sum((generator(z) - x_observed) ** 2)  # noqa: E731

    @jax.jit
    def run(z):
        def body(carry, _):
            z, state = carry
            updates, state = optimizer.update(jax.grad(loss)(z), state, z)
            return (optax.apply_updates(z, updates), state), None

        (z, _), _ = jax.lax.scan(body, (z, optimizer.init(z)), None, length=int(num_steps))
        return z, generator(z)

    return run(jnp.asarray(z0))


def ood_scores(
    energy: Energy, x: jax.Array, method: str = "energy", *, reference: jax.Array | None = None
) -> jax.Array:
    """Out-of-distribution scores, higher = more unusual: ``E(x)/T`` or the gradient norm ``‖∇ₓE(x)‖/T``.

    ``"grad_norm"`` is the norm of the score ``∇ₓ log p(x)``: how steeply the
    log-density changes at ``x``. Its negative is Grathwohl et al.'s (2020)
    "approximate mass" in-distribution score: where ``log p`` is flat, a
    neighbourhood of ``x`` holds much probability; on a steep slope it does not.
    For a density that rises away from its data in every direction (a
    Gaussian, a confined or normalisable energy) a larger norm means further
    out, and the one-sided score works.

    A trained JEM or CD energy is not like that: training carves steep wells
    around the data and leaves a nearly flat plateau wherever the negatives
    never went, so inputs off the data (noise in the data's box, or far away
    where a ReLU/SiLU network is almost linear) often have *smaller* gradient
    norms than the data, and the one-sided score ranks them as ordinary
    (measured on a small digits JEM, ``benchmarks/bench_jem_ood.py``: AUROC
    0.03 and 0.11 for uniform and clipped Gaussian noise in the pixel box,
    0.00 for negated digits; 0.97, 0.90 and 1.00 with ``reference``).
    Pass ``reference`` (held-out in-distribution examples) to score by
    *typicality* instead: ``|t(x) - median t(reference)| / (1.4826 MAD t(reference))``
    with ``t = log ‖∇ₓE‖`` for ``"grad_norm"`` and ``t = E/T`` for
    ``"energy"``: both atypically flat and atypically steep (or low and high
    energy) count as unusual. This is the variant to use with a trained
    classifier-energy; the one-sided score suits analytic or confined densities.

    Which method, as measured: on a JEM trained on standardised wine (two
    seeds, ``benchmarks/bench_jem_wine_scale.py``) ``"energy"`` with
    ``reference`` scored AUROC 0.86/0.91 for N(0, 9) inputs and 0.67/0.78 for
    scrambled features, ``"grad_norm"`` with ``reference`` 0.73/0.48 and
    0.72/0.63 (0.33–0.57 when the JEM's negatives did not cover the data's
    range, and 0.33–0.41 on a wider wine JEM in ``benchmarks/bench_jem_ood.py``,
    where ``"energy"`` with ``reference`` scored 0.66–0.88), and a Gaussian
    fitted to the data 1.00/1.00 and 0.80/0.93. Start
    with ``"energy"`` and ``reference``; use ``"grad_norm"`` where it is
    measured to work (digits, above); check on held-out data and compare with
    a simple baseline.

    Parameters
    ----------
    energy
        The energy (for a JEM, ``joint.energy.with_params(params)``).
    x
        Inputs ``(n, *event_shape)``.
    method
        ``"energy"`` or ``"grad_norm"``.
    reference
        Optional in-distribution examples ``(m, *event_shape)``, ``m >= 2``, not
        the training set (its energies are lower than those of new data).

    Returns
    -------
    jax.Array
        ``(n,)`` scores; higher = more unusual (use with :func:`auroc`).

    Examples
    --------
    >>> from ebmppl.targets import gaussian
    >>> e = gaussian([0.0, 0.0], [[1.0, 0.0], [0.0, 1.0]]).energy
    >>> ood_scores(e, jnp.array([[0.0, 0.0], [5.0, 5.0]])).tolist()
    [0.0, 25.0]
    >>> ref = jax.random.normal(jax.random.key(0), (500, 2))
    >>> [round(float(v), 1) for v in ood_scores(e, jnp.array([[0.0, 0.0], [1.0, 0.5], [5.0, 5.0]]), reference=ref)]
    [1.0, 0.1, 36.5]
    """
    if method not in ("energy", "grad_norm"):
        raise ValueError(f"method must be 'energy' or 'grad_norm', got {method!r}.")

    def raw(v):
        if method == "energy":
            return energy.potential(v)
        s = energy.score(v)
        return jnp.sqrt(jnp.sum(s.reshape(s.shape[0], -1) ** 2, axis=1))

    scores = raw(x)
    if reference is None:
        return scores
    reference = jnp.asarray(reference)
    if reference.shape[1:] != tuple(energy.event_shape) or reference.ndim < 1 or reference.shape[0] < 2:
        raise ValueError(f"reference must be in-distribution examples (m >= 2, *event_shape={energy.event_shape}), "
                         f"got shape {reference.shape}.")

    def transform(v):
        return v if method == "energy" else jnp.log(jnp.maximum(v, jnp.finfo(v.dtype).tiny))

    t_ref = transform(raw(reference))
    center = jnp.median(t_ref)
    spread = 1.4826 * jnp.median(jnp.abs(t_ref - center))
    spread = jnp.where(spread > 0, spread, jnp.std(t_ref) + 1e-12)
    return jnp.abs(transform(scores) - center) / spread


def auroc(scores_in: np.ndarray, scores_out: np.ndarray) -> float:
    """Area under the ROC curve for telling out-of-distribution (higher scores) from in-distribution.

    Examples
    --------
    >>> auroc(np.array([0.1, 0.2]), np.array([0.3, 0.4]))
    1.0
    """
    a, b = np.asarray(scores_in, np.float64), np.asarray(scores_out, np.float64)
    # probability that a random outlier scores above a random inlier (ties count half)
    greater = (b[:, None] > a[None, :]).mean()
    ties = (b[:, None] == a[None, :]).mean()
    return float(greater + 0.5 * ties)
