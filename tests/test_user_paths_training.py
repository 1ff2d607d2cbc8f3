"""Issue 15, findings 5 and 6: what `fit` learns with its defaults, and the sampler settings stored with it.

Finding 5: the α penalty is a regulariser that biases the fit. The "density" recipe (whose confinement keeps
Z finite) now trains with α = 0 and fits a Gaussian's variance at its maximum-likelihood value; where nothing
keeps Z finite (recipe "none", CD's α = 0.1) the bias remains, is documented, and is tested here.
Finding 6: `short_run_generator` takes its defaults from the training run (stored on the energy and kept by
save/load and checkpoints); without stored settings its default is scale-aware and never ends above the
starting noise's energy.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import ebmppl
from ebmppl import Energy, buffer, fit, samplers
from ebmppl.energy import SamplerSettings
from ebmppl.evaluation import mmd
from ebmppl.latent import short_run_generator
from ebmppl.nn import MLPEnergy
from ebmppl.objectives import contrastive_divergence
from ebmppl.objectives.cd import kernel_parameters, sample_negatives
from ebmppl.recipes import standard_coordinates

DIM = 2


def _quadratic(p, x):
    return 0.5 * jnp.sum(((x - p["m"]) * jnp.exp(p["s"])) ** 2)


def _fitted_variance(energy: Energy) -> np.ndarray:
    """Per-coordinate variance of a Gaussian energy: the diagonal of the inverse Hessian (exact, no sampling)."""
    hessian = jax.hessian(lambda x: energy.energy(x))(jnp.ones(DIM))
    return np.diag(np.linalg.inv(np.asarray(hessian, np.float64)))


@pytest.fixture(scope="module")
def gaussian_data():
    # N(1, 0.5 I) in 2-D, the case; the MLE of the variance is the sample variance (1/n)
    return 1.0 + np.sqrt(0.5) * jax.random.normal(jax.random.key(100), (2000, DIM))


@pytest.fixture(scope="module")
def default_quadratic_fit(gaussian_data):
    quad = Energy(_quadratic, {"m": jnp.zeros(DIM), "s": jnp.zeros(DIM)}, event_shape=(DIM,))
    return fit(quad, gaussian_data, key=jax.random.key(0), num_steps=1000, progress_bar=False, health=False)


def test_default_fit_of_a_gaussian_gets_the_mle_variance(default_quadratic_fit, gaussian_data):
    # before: alpha 0.1 gave variance 0.88 against the MLE 0.51 (ratio 1.72) after 1000 steps (0.93-0.98 at 3000)
    result = default_quadratic_fit
    assert result.recipe == "density" and result.energy.sampler_settings.recipe == "density"
    ratio = _fitted_variance(result.energy) / np.asarray(gaussian_data).var(0)
    # Tolerance 10 %, from two measured sources (benchmarks/bench_alpha_bias.py --quadratic, 5 seeds): training
    # noise (minibatch, finite chains) gives the ratio a spread of 0.009 (sd); chains freshly re-initialised
    # from the noise box and used before they reach the model bias it by about -4 % at this length. 4 % + 6 sd.
    assert np.all(np.abs(ratio - 1.0) < 0.10), ratio


def test_the_alpha_penalty_biases_the_fit_where_nothing_keeps_z_finite(gaussian_data):
    # recipe "none" (you chose the sampler): CD's default alpha 0.1 stays, as the regulariser it is; the bias
    # it causes is documented where alpha is, and here measured: a flatter density than the MLE
    quad = Energy(_quadratic, {"m": jnp.zeros(DIM), "s": jnp.zeros(DIM)}, event_shape=(DIM,))
    result = fit(quad, gaussian_data, key=jax.random.key(0), num_steps=1000, progress_bar=False, health=False,
                 sampler=samplers.mala(step_size=0.05))
    assert result.recipe == "none"
    ratio = _fitted_variance(result.energy) / np.asarray(gaussian_data).var(0)
    assert np.all(ratio > 1.2), ratio  # the unbiased fit above is within 10 % of 1
    assert "BIASES" in contrastive_divergence.__doc__ and "regulariser" in contrastive_divergence.__doc__


def test_the_training_sampler_is_stored_with_the_energy_and_survives_save_load(default_quadratic_fit, tmp_path):
    settings = default_quadratic_fit.energy.sampler_settings
    assert settings.sampler == "mala" and settings.standardized and settings.noise_box == (-3.0, 3.0)
    assert settings.params["step_size"] == ebmppl.recipes.DENSITY_STEP and settings.num_steps == 20
    # a custom energy function is saved as parameters only; like= gives its structure, the file the settings
    template = default_quadratic_fit.energy.with_sampler_settings(None)
    loaded = ebmppl.load(ebmppl.save(tmp_path / "quad.ebm", default_quadratic_fit), like=template)
    assert loaded.sampler_settings == settings
    # a described architecture (an ebmppl network) restores them without like=
    net = Energy.from_equinox(MLPEnergy(DIM, (4,), key=jax.random.key(0)), event_shape=(DIM,))
    assert ebmppl.load(ebmppl.save(tmp_path / "net.ebm", net.with_sampler_settings(settings))).sampler_settings == settings


def test_checkpoints_record_the_training_sampler(tmp_path):
    energy = Energy.from_equinox(MLPEnergy(DIM, (8,), key=jax.random.key(1)), event_shape=(DIM,))
    data = 3.0 + jax.random.normal(jax.random.key(2), (256, DIM))
    sampler = samplers.langevin(step_size=0.5, noise_scale=0.05, clamp=(-2.0, 2.0))
    result = fit(energy, data, key=jax.random.key(3), num_steps=4, chunk_size=2, progress_bar=False, health=False,
                 sampler=sampler, num_mcmc_steps=3, checkpoint_dir=tmp_path)
    settings = result.energy.sampler_settings
    # the clamp of a sampler you built is read from the sampler itself
    assert (settings.sampler, settings.num_steps, settings.clamp) == ("langevin", 3, (-2.0, 2.0))
    assert settings.params == {"step_size": 0.5, "noise_scale": 0.05} and not settings.standardized
    assert ebmppl.load(tmp_path).sampler_settings == settings


def _jackknife_se(x: np.ndarray, y: np.ndarray) -> float:
    """Delete-one jackknife standard error of ``mmd(x, y)`` (x resampled, y fixed)."""
    n = x.shape[0]
    loo = np.array([mmd(np.delete(x, i, 0), y) for i in range(0, n, n // 50)])  # 50 leave-one-out values
    return float(np.sqrt((n - 1) / n * ((loo - loo.mean()) ** 2).sum() * (n / len(loo))))


@pytest.fixture(scope="module")
def short_run_blobs():
    # four blobs at (100, -50) ± 25, sd 4: a scale no other test uses. Short-run training (Nijkamp et al.):
    # practical Langevin from noise, K = 30 steps, in the standardised coordinates of the "density" recipe
    centers = jnp.array([[100.0, -50.0]]) + 25.0 * jnp.array([[1, 1], [1, -1], [-1, 1], [-1, -1.0]])

    def blobs(key, n):
        k1, k2 = jax.random.split(key)
        return centers[jax.random.randint(k1, (n,), 0, 4)] + 4.0 * jax.random.normal(k2, (n, DIM))

    train, test = blobs(jax.random.key(1), 2000), blobs(jax.random.key(2), 500)
    k = jax.random.key(0)
    result = fit(Energy.from_equinox(MLPEnergy(DIM, (32, 32), key=k), event_shape=(DIM,)), train, key=k,
                 num_steps=400, progress_bar=False, health=False, recipe="density", alpha=0.0,
                 sampler=samplers.langevin(step_size=0.01, noise_scale=0.01), num_mcmc_steps=30,
                 chain_init=buffer.short_run(buffer.uniform_noise(-3.0, 3.0)), optimizer=optax.adam(1e-3, b1=0.5))
    return result, np.asarray(train), np.asarray(test)


def test_short_run_generator_defaults_come_from_the_training_run(short_run_blobs):
    result, train, test = short_run_blobs
    mean, std = train.mean(0), train.std(0)
    standardise = lambda x: (np.asarray(x) - mean) / std  # noqa: E731  MMD's bandwidths are for unit scale
    u = jax.random.uniform(jax.random.key(3), (500, DIM), minval=-3.0, maxval=3.0)  # the training's noise
    z = mean + std * np.asarray(u)
    noise = mmd(standardise(z), standardise(test))
    g = short_run_generator(result.energy)
    assert g.source == "training" and (g.num_steps, g.step_size, g.clamp) == (30, 0.01, None)
    generated = standardise(g(jnp.asarray(z)))
    with_defaults = mmd(generated, standardise(test))
    # the training run's own chains from the same starting noise (with their noise term)
    z_energy, _, _ = standard_coordinates(result.energy)
    langevin = samplers.langevin(step_size=0.01, noise_scale=0.01)
    negatives, _ = sample_negatives(z_energy, langevin, kernel_parameters(langevin, DIM, None), 30,
                                    jax.random.key(4), result.energy.params, u)
    training = mmd(np.asarray(negatives), standardise(test))
    # before: clamp [-1, 1] and step 1 in the data's units sent every point to the clamp box's corner
    before = mmd(standardise(short_run_generator(result.energy, num_steps=60, step_size=1.0, clamp=(-1.0, 1.0))(z)),
                 standardise(test))
    assert before > noise  # the finding: worse than its own starting noise
    se = _jackknife_se(generated, standardise(test))
    assert with_defaults < noise - 3 * se, (with_defaults, noise, se)
    assert abs(with_defaults - training) < 3 * se, (with_defaults, training, se)


def test_short_run_generator_without_settings_is_never_above_its_starting_energy():
    # no training run recorded: a Gaussian at a tiny scale, centred far from 0, declaring no typical region
    scale, center = 1e-3, 5e3
    energy = Energy(lambda p, x: 0.5 * jnp.sum(((x - center) / scale) ** 2), None, event_shape=(DIM,),
                    probe=jnp.full(DIM, center))
    assert energy.sampler_settings is None
    g = short_run_generator(energy)
    assert g.source == "fallback" and g.monotone and g.clamp is None
    z = center + 3 * scale * jax.random.normal(jax.random.key(5), (200, DIM))
    out = g(z)
    assert bool(jnp.all(jnp.isfinite(out)))
    assert bool(jnp.all(energy.energy(out) <= energy.energy(z)))
    # with the old defaults (step 1, clamp [-1, 1]) every point left the data for the clamp box
    old = short_run_generator(energy, num_steps=60, step_size=1.0, clamp=(-1.0, 1.0))(z)
    assert float(jnp.abs(old).max()) <= 1.0


def test_sampler_settings_validation():
    with pytest.raises(TypeError, match="sampler_settings"):
        Energy(lambda p, x: jnp.sum(x), None, event_shape=(1,), sampler_settings={"sampler": "mala"})
    with pytest.raises(ValueError, match="malformed"):
        SamplerSettings.from_json({"sampler": "mala"})
    with pytest.raises(ValueError, match="clamp"):
        short_run_generator(Energy(lambda p, x: jnp.sum(x**2), None, event_shape=(1,)), clamp=(1.0, -1.0))
