"""Energy discrepancy and exact score matching against the closed-form Gaussian optimum."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ebmppl import Energy, fit
from ebmppl.objectives.mcmc_free import energy_discrepancy, score_matching, sm_loss, ssm_loss

pytestmark = pytest.mark.xla_optimized  # long-running programs: compiled with XLA's optimisations

MEAN = np.array([1.0, -0.5])
COV = np.array([[1.0, 0.6], [0.6, 0.8]])


def gaussian_data(n, seed=0):
    x = MEAN + np.random.default_rng(seed).normal(size=(n, 2)) @ np.linalg.cholesky(COV).T
    return jnp.asarray(x, jnp.float32)


def quadratic():
    """A Gaussian energy ``½ (x - m)ᵀ P (x - m)`` with ``P = L Lᵀ`` (L lower-triangular, positive diagonal)."""
    def fn(p, x):
        lower = jnp.tril(p["l"], -1) + jnp.diag(jnp.exp(jnp.diag(p["l"])))
        return 0.5 * jnp.sum((lower.T @ (x - p["m"])) ** 2)

    return Energy(fn, {"m": jnp.zeros(2), "l": jnp.zeros((2, 2))}, event_shape=(2,))


def moments(params):
    lower = np.tril(np.asarray(params["l"]), -1) + np.diag(np.exp(np.diag(np.asarray(params["l"]))))
    return np.asarray(params["m"], np.float64), np.linalg.inv(lower @ lower.T)


def mle_and_standard_errors(x):
    """The Gaussian MLE (mean, biased covariance) and the standard errors of its entries."""
    x = np.asarray(x, np.float64)
    n = x.shape[0]
    mean, cov = x.mean(0), np.cov(x.T, bias=True)
    se_mean = np.sqrt(np.diag(cov) / n)
    se_cov = np.sqrt((np.outer(np.diag(cov), np.diag(cov)) + cov**2) / n)  # var of a sample covariance entry
    return mean, cov, se_mean, se_cov


def test_exact_score_matching_reaches_the_gaussian_mle():
    # For a Gaussian energy, Hyvärinen's objective is ½ tr(P² (C + (x̄-m)(x̄-m)ᵀ)) - tr P on the sample: its
    # minimiser is m = x̄, P = C⁻¹, the MLE, exactly. Full-batch steps are deterministic, so the fit must land
    # on the MLE far inside its standard errors (0.1 se), not merely near the truth.
    x = gaussian_data(2048)
    energy = quadratic()
    objective = score_matching(energy, optax.adam(optax.exponential_decay(3e-2, 1500, 0.01)))

    def body(state, _):
        state, metrics = objective.step(state, x)
        return state, metrics["loss"]

    state, losses = jax.jit(lambda s: jax.lax.scan(body, s, None, length=1500))(
        objective.init(jax.random.key(0), energy.params))
    m, cov = moments(state.params)
    mean, c, se_mean, se_cov = mle_and_standard_errors(x)
    assert np.all(np.abs(m - mean) < 0.1 * se_mean), (m, mean, se_mean)
    assert np.all(np.abs(cov - c) < 0.1 * se_cov), (cov, c, se_cov)
    # and the loss reached the closed-form minimum, -tr P / 2 = -tr C⁻¹ / 2
    assert abs(float(losses[-1]) + 0.5 * np.trace(np.linalg.inv(c))) < 1e-3


def test_exact_trace_on_a_network_matches_the_full_hessian_and_the_sliced_estimate():
    # an MLP energy (no closed form) checks the trace code on a non-quadratic energy: against an independent
    # computation (the full Hessian, reverse-over-reverse) to float32 round-off, and against sliced score matching
    # (whose expectation over projections it is) within the Monte-Carlo error of 100 projections
    from ebmppl.nn import MLPEnergy

    energy = Energy.from_equinox(MLPEnergy(3, widths=(16, 16), key=jax.random.key(0)), event_shape=(3,))
    x = jax.random.normal(jax.random.key(1), (64, 3))
    exact = float(jax.jit(lambda p, x: sm_loss(energy, p, x))(energy.params, x))
    logp = energy.logdensity_fn
    grads, hessians = jax.jit(lambda x: (jax.vmap(jax.grad(logp))(x), jax.vmap(jax.hessian(logp))(x)))(x)
    grads, hessians = np.asarray(grads), np.asarray(hessians)
    reference = np.mean(0.5 * np.sum(grads**2, 1) + np.trace(hessians, axis1=1, axis2=2))
    assert abs(exact - reference) < 1e-4 * max(1.0, abs(reference)), (exact, reference)
    keys = jax.random.split(jax.random.key(2), 100)
    sliced = np.asarray(jax.jit(jax.vmap(lambda k: ssm_loss(energy, energy.params, x, k)))(keys))
    assert abs(sliced.mean() - exact) < 4 * sliced.std(ddof=1) / np.sqrt(len(sliced)), (sliced.mean(), exact)


def test_energy_discrepancy_recovers_the_gaussian():
    # ED with w = 1 is consistent (a cross-entropy over {x, x'_1..x'_M} minimised by U = -log p + c), so a
    # Gaussian energy fitted to n points lands where the MLE does up to ED's own (larger) estimation noise and
    # SGD noise. Measured over 4 seeds: |ED - MLE| <= 0.8 se of the MLE (0.013 on the mean, 0.007 on the
    # covariance). Stated: |ED - MLE| <= 2 se, and |ED - truth| <= 5 se (data noise + ED's own).
    n = 4096
    x = gaussian_data(n)
    energy = quadratic()
    objective = energy_discrepancy(energy, optax.adam(optax.piecewise_constant_schedule(3e-2, {1000: 0.1})),
                                   t=0.25, num_negatives=16)
    result = fit(energy, jax.random.key(0), x, num_steps=2000, batch_size=512, objective=objective,
                 progress_bar=False)
    m, cov = moments(result.energy.params)
    mean, c, se_mean, se_cov = mle_and_standard_errors(x)
    assert np.all(np.abs(m - mean) < 2 * se_mean), (m, mean, se_mean)
    assert np.all(np.abs(cov - c) < 2 * se_cov), (cov, c, se_cov)
    assert np.all(np.abs(m - MEAN) < 5 * se_mean) and np.all(np.abs(cov - COV) < 5 * se_cov)
    history = result.history
    assert np.all(history["energy_neg"][-100:] > history["energy_pos"][-100:])  # contrast points sit higher


def test_validation_names_the_fix():
    e = quadratic()
    with pytest.raises(ValueError, match="'ssm'"):
        score_matching(Energy(lambda p, x: jnp.sum(x**2), event_shape=(65,)), optax.adam(1e-2))
    assert score_matching(Energy(lambda p, x: jnp.sum(x**2), event_shape=(65,)), optax.adam(1e-2),
                          max_dim=65).name == "sm"
    with pytest.raises(ValueError, match="t must be"):
        energy_discrepancy(e, optax.adam(1e-2), t=-1.0)
    with pytest.raises(ValueError, match="num_negatives"):
        energy_discrepancy(e, optax.adam(1e-2), num_negatives=0)
    with pytest.raises(ValueError, match="w must be"):
        energy_discrepancy(e, optax.adam(1e-2), w=-0.5)
    # equal options, equal objectives: fit reuses one compiled step
    opt = optax.adam(1e-2)
    assert energy_discrepancy(e, opt, t=0.5) == energy_discrepancy(e, opt, t=0.5) != energy_discrepancy(e, opt)
