"""The probability-flow ODE log-likelihood of a noise-conditional energy: ``log p_σmin(x)`` without ``log Z``.

For the variance-exploding family ``p_σ = p_σmin * N(0, (σ² - σ_min²) I)`` the probability-flow ODE (Song et al.
2021) ``dx/dσ = -σ ∇ₓ log p_σ(x)`` carries ``p_σmin`` to ``p_σmax`` deterministically, and the instantaneous
change of variables gives ``d log p_σ(x(σ))/dσ = σ Δₓ log p_σ(x(σ))``. Integrating from ``x(σ_min) = x`` to
``σ_max`` and closing with a Gaussian ``π ≈ p_σmax`` at the top:

``log p_σmin(x) = log π(x(σ_max)) - ∫_{σmin}^{σmax} σ ∇ₓ·s(x(σ), σ) dσ``,  ``s = -∇ₓE(x, σ)/T``.

It is a check on AIS: both estimate the log-likelihood of the data-level density, from different errors. They
agree only if the model's levels are consistent (each ``exp(-E(·, σ)/T)`` is the data level smoothed by
``σ``), which training by multi-σ DSM with ``continuous=True`` aims at and nothing guarantees, and only if AIS
itself is right (it can miss mass). A family trained at discrete levels only (Diffusion Recovery Likelihood,
multi-σ DSM without ``continuous=True``) has no PF-ODE likelihood of its data level.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from tqdm.auto import tqdm

from ebmppl._validation import check_int, check_key, is_key

__all__ = ["pf_ode_log_likelihood", "PFODELogLikelihood"]

EXACT_TRACE_MAX_DIM = 10
"""``trace="auto"`` takes the exact divergence (``D`` Jacobian-vector products) up to this dimension."""


class PFODELogLikelihood(NamedTuple):
    """The result of :func:`pf_ode_log_likelihood`.

    Attributes
    ----------
    mean
        Mean of ``values`` (nats per example).
    stderr
        ``sd(values) / √n``: the data-sampling error of the mean, including the Hutchinson noise (each example
        has its own probes, so their noise is part of the spread of ``values``). It does NOT include
        ``ode_error`` or ``prior_bias``.
    values
        Per-example ``log p_σmin(x_i)`` estimates, shape of ``x``'s batch axes.
    ode_error
        Richardson estimate of the integration error of ``mean``: ``|mean_N - mean_{N/2}| / 15`` (RK4 is 4th
        order; same probes in both runs), ``nan`` when ``error_estimate=False``.
    prior_bias
        ``KL(N(μ̂, Ĉ + σ_max² I) ‖ π)`` from the sample mean ``μ̂`` and covariance ``Ĉ`` of ``x``: about how much
        ``mean`` is too LOW because the top prior ``π`` is not ``p_σmax`` (see Notes of
        :func:`pf_ode_log_likelihood`).
    num_steps, trace, num_probes
        The integration: RK4 steps in ``log σ``, the divergence (``"exact"`` or ``"hutchinson"``) and its probes.
    sigma_min, sigma_max
        The ends of the integration.

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> from ebmppl.noise import noise_conditional
    >>> e = noise_conditional(lambda p, x, s: 0.5 * jnp.sum(x**2) / (1.0 + s**2), None, (1,), (20.0, 0.1))
    >>> r = pf_ode_log_likelihood(e, jax.random.key(0), jnp.zeros((3, 1)), num_steps=16)
    >>> r.values.shape, r.trace, r.ode_error < 1e-3
    ((3,), 'exact', True)
    """

    mean: float
    stderr: float
    values: jax.Array
    ode_error: float
    prior_bias: float
    num_steps: int
    trace: str
    num_probes: int
    sigma_min: float
    sigma_max: float

    def __repr__(self) -> str:
        return (f"PFODELogLikelihood(mean={self.mean:.4f}, stderr={self.stderr:.3g}, ode_error={self.ode_error:.2g}, "
                f"prior_bias={self.prior_bias:.2g}, n={int(np.size(self.values))}, trace={self.trace!r})")


def _flow(energy, sigma, x, probes, exact):
    """``(dx/du, d(Δ)/du)`` at ``u = log σ`` for ONE flat example: ``(-σ² s, σ² ∇·s)``."""
    shape = energy.event_shape

    def score(flat):
        return jax.grad(lambda v: -energy.noise_energy_fn(energy.params, v.reshape(shape), sigma))(flat).reshape(-1) \
            / energy.temperature

    if exact:
        s, cols = jax.vmap(lambda v: jax.jvp(score, (x,), (v,)))(jnp.eye(x.shape[0], dtype=x.dtype))
        s, div = s[0], jnp.trace(cols)
    else:
        s, jz = jax.vmap(lambda z: jax.jvp(score, (x,), (z,)))(probes)
        s, div = s[0], jnp.mean(jnp.sum(jz * probes, axis=1))
    sig2 = sigma * sigma
    return -sig2 * s, sig2 * div


@eqx.filter_jit
def _integrate(energy, x, probes, u_lo, u_hi, num_steps, exact: bool, prior_mean, prior_var):
    """Per-example ``log p_σmin`` by RK4 in ``u = log σ`` (``x`` flat ``(n, D)``, probes ``(n, K, D)``).

    ``num_steps`` is traced (a ``fori_loop``): the Richardson run with half the steps reuses the compiled program.
    """
    h = (u_hi - u_lo) / num_steps

    def one(xi, zi):
        def rhs(state, u):
            return _flow(energy, jnp.exp(u), state[0], zi, exact)

        def step(k, state):
            u = u_lo + k * h
            k1 = rhs(state, u)
            k2 = rhs(jax.tree.map(lambda a, b: a + 0.5 * h * b, state, k1), u + 0.5 * h)
            k3 = rhs(jax.tree.map(lambda a, b: a + 0.5 * h * b, state, k2), u + 0.5 * h)
            k4 = rhs(jax.tree.map(lambda a, b: a + h * b, state, k3), u + h)
            return jax.tree.map(lambda a, b1, b2, b3, b4: a + h / 6.0 * (b1 + 2.0 * b2 + 2.0 * b3 + b4),
                                state, k1, k2, k3, k4)

        x_top, integral = lax.fori_loop(0, num_steps, step, (xi, jnp.zeros((), xi.dtype)))
        d = x_top.shape[0]
        log_prior = -0.5 * (d * jnp.log(2.0 * jnp.pi * prior_var) + jnp.sum((x_top - prior_mean) ** 2) / prior_var)
        return log_prior - integral, jnp.all(jnp.isfinite(x_top))

    return jax.vmap(one)(x, probes)


def _gaussian_kl_bias(flat: np.ndarray, sigma_max: float, prior_mean: np.ndarray, prior_var: float) -> float:
    """``KL(N(μ̂, Ĉ + σ_max² I) ‖ N(m, v I))`` from the rows of ``flat`` (float64)."""
    n, d = flat.shape
    mu = flat.mean(0)
    lam = np.linalg.eigvalsh(np.atleast_2d(np.cov(flat, rowvar=False))) if n > 1 else np.zeros(d)
    lam = np.clip(lam, 0.0, None) + sigma_max**2
    return float(0.5 * (np.sum(lam) / prior_var - d + np.sum((mu - prior_mean) ** 2) / prior_var
                        + d * math.log(prior_var) - np.sum(np.log(lam))))


def _warn_if_untrained_range(ladder: Any, lo: float, hi: float) -> None:
    """A :class:`~ebmppl.noise.NoiseLadderWarning` when the ODE runs where a trained family may never have been.

    The energy cannot know how it was trained; two cases are visible on the ladder: a clean ``σ = 0`` level (a
    family trained by Diffusion Recovery Likelihood, at its discrete levels only), and ends outside the ladder.
    """
    from ebmppl.noise import NoiseLadderWarning

    positive = [s for s in ladder.sigmas if s > 0]
    reasons = []
    if ladder.sigma_min == 0:
        reasons.append(f"the ladder {ladder.sigmas} has a clean σ = 0 level, as a family trained by Diffusion "
                       "Recovery Likelihood has, which is trained at its discrete levels only")
    if positive and lo < min(positive) * (1 - 1e-6):
        reasons.append(f"sigma_min = {lo:g} is below the ladder's smallest positive level {min(positive):g}")
    if hi > ladder.sigma_max * (1 + 1e-6):
        reasons.append(f"sigma_max = {hi:g} is above the ladder's largest level {ladder.sigma_max:g}")
    if reasons:
        import warnings

        warnings.warn(
            "pf_ode_log_likelihood integrates the model's score at EVERY σ in [sigma_min, sigma_max] = "
            f"[{lo:g}, {hi:g}], but " + "; and ".join(reasons) + ". The result is a log-likelihood of the "
            "data-level energy only for a family trained at every σ of that range and consistent across levels "
            "(multiscale_dsm(..., continuous=True)); otherwise the ODE runs through σ's the network never saw, and "
            "the number is not log p of exp(-E(·, σ_min)) (on a DRL-trained 2-D model it was 5.7 nats below grid "
            "quadrature of the same level). Check it: held_out_log_likelihood(energy.at_noise(sigma), x, log_z) "
            "with log_z from ebmppl.log_partition(..., method='grid') in 2-D, or from AIS/SMC "
            "(ebmppl.logz.compare_estimators). For an analytic family, meaningful at every σ, ignore this: "
            "warnings.filterwarnings('ignore', category=ebmppl.noise.NoiseLadderWarning).",
            NoiseLadderWarning, stacklevel=3)


def pf_ode_log_likelihood(energy: Any, key: jax.Array, x: Any, *, num_steps: int = 64, trace: str = "auto",
                          num_probes: int = 1, sigma_min: float | None = None, sigma_max: float | None = None,
                          prior_mean: Any = 0.0, prior_var: float | None = None, error_estimate: bool = True,
                          batch_size: int = 1024, progress_bar: bool = False) -> PFODELogLikelihood:
    """``log p_σmin(x)`` of a noise-conditional energy by its probability-flow ODE, with its errors.

    Each example is carried from ``σ_min`` up to ``σ_max`` along ``dx/dσ = -σ s(x, σ)`` (``s = -∇ₓE(x, σ)/T``,
    :meth:`~ebmppl.noise.NoiseConditionalEnergy.noise_score`'s convention) by fixed-step RK4 in ``u = log σ``
    (``dx/du = -σ² s``: smooth at both ends of a geometric ladder), in one ``lax.fori_loop`` vmapped over examples,
    while ``∫ σ² ∇ₓ·s du`` accumulates; ``log p_σmin(x) = log π(x(σ_max)) - ∫``. The density is the energy's own
    data level: what :func:`ebmppl.evaluation.held_out_log_likelihood` with an AIS ``log Z`` measures.

    Parameters
    ----------
    energy
        A :class:`~ebmppl.noise.NoiseConditionalEnergy` (VE family: ``E(x, σ)`` models the data smoothed by
        ``N(0, σ²I)``; a VP-scaled family, as Gao et al.'s DRL, needs another ODE).
    key
        PRNG key of the Hutchinson probes (2nd, the ebmppl convention; unused with the exact trace, but required:
        same key, same result).
    x
        Examples ``(n, *event_shape)`` (held-out data).
    num_steps
        RK4 steps over ``[log σ_min, log σ_max]`` (4 score evaluations each).
    trace
        The divergence ``∇ₓ·s``: ``"exact"`` (``D`` Jacobian-vector products), ``"hutchinson"`` (``zᵀ (∂s/∂x) z``
        with Rademacher ``z``, unbiased; one set of probes per example, fixed along its path), or ``"auto"``:
        exact for ``D ≤ 10`` (:data:`EXACT_TRACE_MAX_DIM`), Hutchinson above.
    num_probes
        Hutchinson probes per example (their mean is used).
    sigma_min, sigma_max
        Ends of the integration (default: the ladder's). ``sigma_min`` must be > 0 (the ODE in ``log σ`` starts
        there): a ladder with a clean ``σ = 0`` level has no PF-ODE likelihood at that level. Passing
        ``sigma_min`` > 0 then computes ``log p_σ`` at that ``σ`` — of a family trained at every σ of the range,
        which a DRL-trained one is not (warned: see Warns). Ends outside the ladder are warned too: a trained
        network is only trained within it (an analytic family is meaningful everywhere; silence the warning).
    prior_mean, prior_var
        The top prior ``π = N(prior_mean, prior_var · I)``; default ``N(0, σ_max² I)`` (Song et al. 2021). Pass
        the data's mean and ``σ_max² + (its variance)`` for a smaller ``prior_bias``.
    error_estimate
        Also integrate with ``num_steps // 2`` steps (same probes) for the Richardson ``ode_error`` (1.5× cost).
    batch_size
        Examples per compiled chunk (memory; a progress bar counts chunks).
    progress_bar
        Show a tqdm bar over the chunks.

    Returns
    -------
    PFODELogLikelihood
        ``mean``, ``stderr``, per-example ``values``, ``ode_error``, ``prior_bias`` and the settings.

    Raises
    ------
    TypeError
        ``energy`` is not noise-conditional.
    ValueError
        ``sigma_min ≤ 0`` or ``≥ sigma_max``, an unknown ``trace``, ``x`` of the wrong shape or not finite, a
        non-finite trajectory (the score blew up).

    Warns
    -----
    NoiseLadderWarning
        The ladder has a clean ``σ = 0`` level (a family trained by Diffusion Recovery Likelihood, at its
        discrete levels only), or ``sigma_min`` / ``sigma_max`` lie outside the ladder's positive range: the
        ODE then runs through σ's the network may never have been trained at, and the result is not a
        log-likelihood of the data-level energy (on a DRL model, 5.7 nats off). The energy cannot know how it
        was trained: a family trained by ``multiscale_dsm`` WITHOUT ``continuous=True`` is not flagged, and is
        equally untrained between its levels.

    Notes
    -----
    **Errors.** ``stderr`` is ``sd(values)/√n``: the spread of the data *and* the Hutchinson noise (independent per
    example), not the integration error (``ode_error``) nor the prior's bias (``prior_bias``).

    **The top prior.** ``p_σmax = p_σmin * N(0, (σ_max² - σ_min²) I)``, which ``π = N(0, σ_max² I)`` only
    approximates. The flow maps the data exactly onto ``p_σmax`` (for a consistent family), so
    ``E_data[estimate] = E_data[log p_σmin] - KL(p_σmax ‖ π)``: the mean is low by that KL. Approximating
    ``p_σmax`` by ``N(μ, C + σ_max² I)`` (data mean ``μ``, covariance ``C``, ``σ_max`` ≫ the data's spread), the
    KL is ``½[tr C/v + D(σ_max²/v - 1) + ‖μ - m‖²/v + D log v - log det(C + σ_max² I)]``, which for the default
    ``v = σ_max²``, ``m = 0`` is ``‖μ‖²/(2σ_max²) + tr(C²)/(4σ_max⁴) + O(σ_max⁻⁶)``; ``prior_bias`` reports it
    from the moments of ``x`` (the Gaussian approximation of ``p_σmax``; a non-Gaussian data law adds terms of
    higher order in ``1/σ_max``). Per example, ``log π(x(σ_max))`` errs by ``O(‖x(σ_max)‖·‖μ‖/σ_max²)``, which
    averages out in the mean as stated.

    **Consistency.** The ODE uses the model's scores at every level. If they are not the scores of one family
    ``p_σmin * N(0, σ²I)`` (a network trained by DSM only approximately is), the flow still defines a density,
    the push-back of ``π``, but not ``exp(-E(·, σ_min)/T)/Z``; AIS measures the latter. A gap between the two
    beyond their error bars measures that inconsistency — *or an error of AIS*: AIS can miss mass its pilot
    never found (a typical region or ``data=`` that does not cover the model, a step size too large for the
    data's scale) and still report itself reliable. Before blaming the model, check both against grid quadrature
    in 2-D, or against SMC (:func:`ebmppl.logz.compare_estimators`).

    Examples
    --------
    The Gaussian ``N(0, I)`` in 2-D, smoothed: ``E(x, σ) = ‖x‖²/(2(1 + σ²))``; exact ``log p_σmin`` is known.

    >>> import jax, jax.numpy as jnp
    >>> from ebmppl.noise import NoiseLadder, noise_conditional
    >>> fn = lambda p, x, s: 0.5 * jnp.sum(x**2) / (1.0 + s**2)
    >>> e = noise_conditional(fn, None, (2,), NoiseLadder.geometric(50.0, 0.01, 10))
    >>> x = jax.random.normal(jax.random.key(0), (100, 2))
    >>> est = pf_ode_log_likelihood(e, jax.random.key(1), x, num_steps=16)
    >>> exact = -0.5 * jnp.sum(x**2, 1) / (1 + 0.01**2) - jnp.log(2 * jnp.pi * (1 + 0.01**2))
    >>> bool(jnp.max(jnp.abs(est.values - exact)) < 0.01), est.prior_bias < 0.001
    (True, True)
    """
    from ebmppl.noise import NoiseConditionalEnergy

    if not isinstance(energy, NoiseConditionalEnergy):
        raise TypeError(f"energy must be an ebmppl.noise.NoiseConditionalEnergy (E(x, σ) over a noise ladder), got "
                        f"{type(energy).__name__}; build one with ebmppl.noise.noise_conditional or "
                        f"noise_conditional_mlp.")
    if not is_key(key) and is_key(x):
        raise TypeError("pf_ode_log_likelihood takes the key second (the ebmppl convention, as ebmppl.sample): "
                        "pf_ode_log_likelihood(energy, key, x).")
    key = check_key(key)
    num_steps = check_int("num_steps", num_steps, 2)
    num_probes = check_int("num_probes", num_probes, 1)
    batch_size = check_int("batch_size", batch_size, 1)
    lo = energy.ladder.sigma_min if sigma_min is None else float(sigma_min)
    hi = energy.ladder.sigma_max if sigma_max is None else float(sigma_max)
    if not (math.isfinite(lo) and lo > 0):
        raise ValueError(f"sigma_min must be > 0 (the ODE runs in log σ), got {lo!r}"
                         + ("; this ladder has a clean σ = 0 level: pass sigma_min=<its smallest positive level> to "
                            "get log p at that level." if sigma_min is None else "."))
    if not (math.isfinite(hi) and hi > lo):
        raise ValueError(f"sigma_max must be finite and > sigma_min = {lo}, got {hi!r}.")
    if trace not in ("auto", "exact", "hutchinson"):
        raise ValueError(f"trace must be 'auto', 'exact' or 'hutchinson', got {trace!r}.")
    _warn_if_untrained_range(energy.ladder, lo, hi)
    dim = energy.dim
    mode = ("exact" if dim <= EXACT_TRACE_MAX_DIM else "hutchinson") if trace == "auto" else trace
    x = energy._check_input(jnp.asarray(x))
    batch = x.shape[: x.ndim - len(energy.event_shape)]
    if len(batch) != 1 or batch[0] < 1:
        raise ValueError(f"x has shape {x.shape}; pass examples (n, *{energy.event_shape}).")
    if not bool(jnp.all(jnp.isfinite(x))):
        raise ValueError("x holds NaN or infinite values.")
    n = batch[0]
    flat = x.reshape(n, dim)
    dtype = flat.dtype
    var = hi**2 if prior_var is None else float(prior_var)
    if not (math.isfinite(var) and var > 0):
        raise ValueError(f"prior_var must be > 0, got {prior_var!r}.")
    mean_arr = np.broadcast_to(np.asarray(prior_mean, np.float64).reshape(-1), (dim,))
    probes = (jax.random.rademacher(key, (n, num_probes, dim), dtype=dtype) if mode == "hutchinson"
              else jnp.zeros((n, 1, dim), dtype))
    chunk = min(batch_size, n)
    pad = (-n) % chunk
    xs = jnp.concatenate([flat, jnp.broadcast_to(flat[:1], (pad, dim))]) if pad else flat
    ps = jnp.concatenate([probes, jnp.broadcast_to(probes[:1], (pad, *probes.shape[1:]))]) if pad else probes
    u_lo, u_hi = jnp.asarray(math.log(lo), dtype), jnp.asarray(math.log(hi), dtype)
    m_j, v_j = jnp.asarray(mean_arr, dtype), jnp.asarray(var, dtype)
    runs = [num_steps] + ([num_steps // 2] if error_estimate else [])
    results = {steps: [] for steps in runs}
    with tqdm(total=len(runs) * (n + pad) // chunk, desc="PF-ODE", disable=not progress_bar, leave=False) as bar:
        for steps in runs:
            for start in range(0, n + pad, chunk):
                vals, ok = _integrate(energy, xs[start:start + chunk], ps[start:start + chunk], u_lo, u_hi,
                                      jnp.asarray(steps, jnp.int32), mode == "exact", m_j, v_j)
                results[steps].append((vals, ok))
                bar.update(1)
    values = jnp.concatenate([v for v, _ in results[num_steps]])[:n]
    finite = bool(jnp.all(jnp.concatenate([ok for _, ok in results[num_steps]])[:n])) \
        and bool(jnp.all(jnp.isfinite(values)))
    if not finite:
        raise ValueError("the probability-flow ODE left the finite range for some examples (the score blew up); "
                         "raise num_steps, or check the energy at the large levels (energy.noise_score(x, sigma_max)).")
    mean = float(jnp.mean(values))
    stderr = float(jnp.std(values, ddof=1) / math.sqrt(n)) if n > 1 else float("nan")
    ode_error = float("nan")
    if error_estimate:
        coarse = float(jnp.mean(jnp.concatenate([v for v, _ in results[num_steps // 2]])[:n]))
        ode_error = abs(mean - coarse) / 15.0
    bias = _gaussian_kl_bias(np.asarray(flat, np.float64), hi, mean_arr, var)
    return PFODELogLikelihood(mean, stderr, values, ode_error, bias, num_steps, mode, num_probes if mode ==
                              "hutchinson" else 0, lo, hi)
