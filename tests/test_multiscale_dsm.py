"""Multi-σ denoising score matching (ebmppl.objectives.multiscale) on closed-form families and on two moons.

On the σ-smoothed Gaussian family ``E(x, σ) = ‖x - μ‖² / (2 (s² + σ²))`` the λ(σ) = σ² weighted loss has
a closed form at the true parameters, ``½ d s² / (s² + σ²)`` per level, and its gradient there is zero in
expectation (the objective is consistent); both are checked within Monte-Carlo standard errors. The trainer
then fits a noise-conditional MLP to two moons through ``ebmppl.fit``, judged by the held-out log-likelihood
of its data level against the exact σ_min-smoothed density.
"""

import importlib
import math
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy import integrate

import ebmppl
from ebmppl.noise import NoiseConditionalEnergy, NoiseLadder, noise_conditional, noise_conditional_mlp
from ebmppl.objectives.multiscale import draw_sigmas, multiscale_dsm, multiscale_dsm_loss

toy = importlib.import_module("ebmppl.data.toy")

Z = 4.0  # tolerance in standard errors (fixed keys)
D, MU, S = 2, np.array([0.5, -1.0]), 0.7
LADDER = NoiseLadder.geometric(3.0, 0.05, 6)


def _gauss_fn(p, x, s):
    return 0.5 * jnp.sum((x - p["mu"]) ** 2) / (jnp.exp(2 * p["log_s"]) + s**2)


@pytest.fixture(scope="module")
def family():
    return noise_conditional(_gauss_fn, {"mu": jnp.asarray(MU, jnp.float32), "log_s": jnp.float32(math.log(S))},
                             (D,), LADDER)


@pytest.fixture(scope="module")
def batches():
    x = MU + S * jax.random.normal(jax.random.key(0), (40, 2000, D))
    return x, jax.random.split(jax.random.key(1), 40)


def _batch_stats(fn, x, keys):
    values = np.asarray(jax.vmap(fn)(x, keys), np.float64)  # one value (or gradient) per batch
    return values.mean(0), values.std(0, ddof=1) / math.sqrt(values.shape[0])


@pytest.mark.parametrize("continuous", [False, True])
def test_loss_at_the_truth_is_closed_form(family, batches, continuous):
    x, keys = batches
    mean, se = _batch_stats(jax.jit(lambda xb, k: multiscale_dsm_loss(family, family.params, xb, k,
                                                                       continuous=continuous)), x, keys)
    per_level = lambda sg: 0.5 * D * S**2 / (S**2 + sg**2)  # noqa: E731
    if continuous:  # log σ uniform on [log σ_min, log σ_max]
        lo, hi = math.log(LADDER.sigma_min), math.log(LADDER.sigma_max)
        expected = integrate.quad(lambda u: per_level(math.exp(u)), lo, hi)[0] / (hi - lo)
    else:
        expected = np.mean([per_level(sg) for sg in LADDER.sigmas])
    assert abs(mean - expected) < Z * se, (mean, expected, se)


def test_gradient_vanishes_at_the_truth_only(family, batches):
    x, keys = batches

    def grad_at(params):
        g = jax.grad(lambda p, xb, k: multiscale_dsm_loss(family, p, xb, k))
        flat = lambda xb, k: jnp.concatenate([v.reshape(-1) for v in jax.tree.leaves(g(params, xb, k))])  # noqa: E731
        return _batch_stats(jax.jit(flat), x, keys)

    mean, se = grad_at(family.params)
    assert np.all(np.abs(mean) < Z * se), (mean, se)
    wrong = {"mu": family.params["mu"] + 0.3, "log_s": family.params["log_s"] + 0.3}
    mean, se = grad_at(wrong)
    assert np.all(np.abs(mean) > Z * se), (mean, se)  # the loss tells the wrong mean and scale apart


def test_sigma_draws():
    n = 60_000
    levels = np.asarray(draw_sigmas(noise_conditional(_gauss_fn, None, (D,), LADDER, validate=False),
                                    jax.random.key(2), n))
    counts = np.array([(np.isclose(levels, sg, rtol=1e-6)).sum() for sg in LADDER.sigmas])
    assert counts.sum() == n
    p = 1 / LADDER.num_levels
    assert np.all(np.abs(counts - n * p) < Z * math.sqrt(n * p * (1 - p))), counts
    cont = np.log(np.asarray(draw_sigmas(noise_conditional(_gauss_fn, None, (D,), LADDER, validate=False),
                                         jax.random.key(3), n, continuous=True), np.float64))
    lo, hi = math.log(LADDER.sigma_min), math.log(LADDER.sigma_max)
    assert cont.min() >= lo - 1e-6 and cont.max() <= hi + 1e-6
    width = hi - lo  # uniform: mean (lo + hi)/2, sd width/√12
    assert abs(cont.mean() - (lo + hi) / 2) < Z * width / math.sqrt(12 * n)
    assert abs(cont.var() - width**2 / 12) < Z * width**2 / math.sqrt(180 * n)  # Var(U²)-based: w⁴/180


def test_bad_inputs():
    plain = ebmppl.Energy(lambda p, x: jnp.sum(x**2), None, event_shape=(2,))
    with pytest.raises(TypeError, match=r"ebmppl\.noise\.noise_conditional_mlp"):
        multiscale_dsm(plain, optax.adam(1e-3))
    with pytest.raises(TypeError, match="NoiseConditionalEnergy"):
        multiscale_dsm("energy", optax.adam(1e-3))
    clean = noise_conditional_mlp(jax.random.key(0), (2,), (1.0, 0.1, 0.0), hidden=(8,), scale_by_sigma=False)
    with pytest.raises(ValueError, match="sigma_min > 0"):
        multiscale_dsm(clean, optax.adam(1e-3))
    with pytest.raises(TypeError, match="continuous"):
        multiscale_dsm(noise_conditional_mlp(jax.random.key(0), (2,), LADDER, hidden=(8,)), optax.adam(1e-3),
                       continuous="yes")


@pytest.mark.slow
def test_fit_two_moons_held_out_likelihood(tmp_path: pathlib.Path):
    """A noise-conditional MLP trained by multi-σ DSM through fit: its data level is p_{σ_min}'s model.

    Quality stated: the held-out log-likelihood of the σ_min level within 0.15 nats per example of the
    exact σ_min-smoothed two moons (measured: 0.05 nats short at 1500 steps), the margin widened by Z
    standard errors of the paired difference; and, as any density must, not above the data's own density.
    """
    moons, sigma_min = toy.two_moons(noise=0.1), 0.1
    x, x_test = moons.sample(jax.random.key(0), 4000), moons.sample(jax.random.key(1), 4000)
    ladder = NoiseLadder.geometric(3.0, sigma_min, 8)
    energy = noise_conditional_mlp(jax.random.key(2), (2,), ladder, hidden=(64, 64, 64), confinement_scale=3.0)
    steps = 1500
    schedule = optax.join_schedules([optax.constant_schedule(2e-3),
                                     optax.cosine_decay_schedule(2e-3, steps // 2, alpha=0.05)], [steps // 2])
    trainer = multiscale_dsm(energy, optax.adam(schedule))
    result = ebmppl.fit(energy, jax.random.key(3), x, objective=trainer, num_steps=steps, batch_size=256,
                        checkpoint_dir=tmp_path, progress_bar=False)
    model = result.energy
    assert isinstance(model, NoiseConditionalEnergy) and model.ladder == ladder
    assert np.isfinite(result.history["loss"]).all()
    # the checkpoint holds the whole noise-conditional energy
    restored = ebmppl.load(tmp_path)
    assert isinstance(restored, NoiseConditionalEnergy)
    np.testing.assert_array_equal(restored.noise_energy(x_test[:8], 0.5), model.noise_energy(x_test[:8], 0.5))

    log_z = ebmppl.log_partition(model, jax.random.key(4), method="grid", limits=moons.limits)
    ll_model = np.asarray(model.logdensity(x_test) - log_z.log_z, np.float64)
    smoothed = toy.two_moons(noise=math.sqrt(0.1**2 + sigma_min**2))  # p_data * N(0, σ_min²): exact
    gap = ll_model - np.asarray(smoothed.log_prob(x_test), np.float64)
    se = gap.std(ddof=1) / math.sqrt(gap.size)
    assert gap.mean() > -(0.15 + Z * se), (gap.mean(), se)
    above = ll_model - np.asarray(moons.log_prob(x_test), np.float64)  # E[log q - log p_data] = -KL <= 0
    assert above.mean() < Z * above.std(ddof=1) / math.sqrt(above.size), above.mean()
