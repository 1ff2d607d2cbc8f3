"""Issue 14, findings 2 and 10: ``fit``'s defaults fit real-valued data of any scale, and say when they do not.

Before: ``fit(Energy.from_equinox(MLPEnergy(2, ...)), data, key=k)`` used the image
recipe (Langevin step 10, noise 0.005) on any data and learned a flat,
non-normalisable energy (held-out log-likelihood −8.2 against −2.1), silently;
a quadratic energy diverged at step 1. These tests use data sets the other
tests do not: a ring scaled ×100 and shifted by 50, a Gaussian mixture with
modes of different scales.
"""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ebmppl import Energy, buffer, fit
from ebmppl.data import rings
from ebmppl.evaluation import grid_log_partition, log_likelihood
from ebmppl.health import HealthWarning
from ebmppl.nn import MLPEnergy

pytestmark = pytest.mark.xla_optimized  # long-running programs: compiled with XLA's optimisations

SCALE, SHIFT = 100.0, 50.0
RING = rings((1.0,), 0.15)


def ring_sample(key, n):
    return SCALE * RING.sample(key, n) + SHIFT


def ring_log_prob(x):
    return RING.log_prob((x - SHIFT) / SCALE) - 2 * jnp.log(SCALE)  # change of variables: log-Jacobian 2 log 100


@pytest.fixture(scope="module")
def default_fit():
    k = jax.random.key(0)
    train = ring_sample(jax.random.key(1), 4000)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = fit(Energy.from_equinox(MLPEnergy(2, key=k), event_shape=(2,)), train, key=k, progress_bar=False)
    box = (SHIFT - 1.6 * SCALE, SHIFT + 1.6 * SCALE, SHIFT - 1.6 * SCALE, SHIFT + 1.6 * SCALE)
    return result, box, [w for w in caught if issubclass(w.category, HealthWarning)]


@pytest.mark.slow
def test_default_fit_on_rescaled_data_reaches_the_true_log_likelihood(default_fit):
    result, box, health_warnings = default_fit
    assert result.recipe == "density"
    test = ring_sample(jax.random.key(2), 4000)
    log_z = grid_log_partition(result.energy, box, 400)
    # paired per-example difference to the exact density: its standard error is the test's MC error
    diff = np.asarray(ring_log_prob(test) - log_likelihood(result.energy, test, log_z), np.float64)
    gap, se = diff.mean(), diff.std(ddof=1) / np.sqrt(diff.size)
    assert gap < 0.3, (gap, se)      # the bar: within 0.3 nats of the truth (measured 0.017 ± 0.002)
    assert gap > -3 * se, (gap, se)  # no model beats the truth: a log Z (or log-Jacobian) error would show here
    assert not health_warnings, [str(w.message) for w in health_warnings]


@pytest.mark.slow
def test_default_fit_is_normalisable_log_z_stable_as_the_box_widens(default_fit):
    result, box, _ = default_fit
    # the outer grid spans 10x, then 30x the box: a flat tail would add log(9) ≈ 2.2 nats or more
    narrow, wide = (grid_log_partition(result.energy, box, 400, outer_scale=s) for s in (10.0, 30.0))
    assert abs(wide - narrow) < 0.01, (narrow, wide)


def two_scales(key, n):
    """Modes of different scales: N((-2, 0), 0.15² I) and N((1.5, 1), I), equal weights."""
    k1, k2 = jax.random.split(key)
    means, stds = jnp.array([[-2.0, 0.0], [1.5, 1.0]]), jnp.array([0.15, 1.0])
    c = jax.random.bernoulli(k1, 0.5, (n,)).astype(int)
    return means[c] + stds[c][:, None] * jax.random.normal(k2, (n, 2))


def test_health_runs_by_default_and_warns_on_a_flat_energy():
    # an energy that cannot learn (constant in x): CD has nothing to fit, E(noise) = E(data)
    flat = Energy(lambda p, x: p + 0.0 * jnp.sum(x), jnp.float32(0.0), event_shape=(2,))
    data = two_scales(jax.random.key(3), 1000)
    with pytest.warns(HealthWarning, match="flat"):
        result = fit(flat, data, key=jax.random.key(4), num_steps=400, chunk_size=20, num_mcmc_steps=2,
                     progress_bar=False, recipe="none", sampler="mala", chain_init=buffer.replay_buffer(500))
    assert result.health is not None and any("flat" in msg for _, msg in result.health.warnings)
    # health=False turns it off
    with warnings.catch_warnings():
        warnings.simplefilter("error", HealthWarning)
        quiet = fit(flat, data, key=jax.random.key(4), num_steps=100, chunk_size=20, num_mcmc_steps=2,
                    progress_bar=False, recipe="none", sampler="mala", health=False)
    assert quiet.health is None


def test_default_fit_of_a_quadratic_energy_does_not_diverge():
    # before: the image recipe (gradient step 10) diverged at step 1 on a quadratic energy
    quad = Energy(lambda p, x: 0.5 * jnp.sum(((x - p["m"]) * jnp.exp(p["s"])) ** 2),
                  {"m": jnp.zeros(2), "s": jnp.zeros(2)}, event_shape=(2,))
    data = 40.0 + 5.0 * jax.random.normal(jax.random.key(5), (2000, 2))
    result = fit(quad, data, key=jax.random.key(6), num_steps=200, progress_bar=False, health=False)
    assert result.recipe == "density" and bool(np.all(result.history["finite"]))
    # the returned energy lives on the data's scale: its mode is near the data mean, not near 0
    grid = jnp.stack(jnp.meshgrid(jnp.linspace(20, 60, 81), jnp.linspace(20, 60, 81)), -1).reshape(-1, 2)
    mode = grid[jnp.argmin(result.energy.energy(grid))]
    assert float(jnp.max(jnp.abs(mode - data.mean(0)))) < 5.0 / 2


def test_recipe_choice_and_the_image_preset():
    energy = Energy(lambda p, x: jnp.sum((x - p) ** 2), jnp.float32(0.0), event_shape=(1, 4, 4))
    images = jax.random.uniform(jax.random.key(7), (64, 1, 4, 4))
    assert fit(energy, images, key=jax.random.key(8), num_steps=2, chunk_size=1, progress_bar=False,
               health=False).recipe == "images"
    flat2d = Energy(lambda p, x: jnp.sum((x - p) ** 2), jnp.float32(0.0), event_shape=(2,))
    data = jax.random.normal(jax.random.key(9), (64, 2))
    chosen = fit(flat2d, data, key=jax.random.key(8), num_steps=2, chunk_size=1, progress_bar=False, health=False,
                 sampler="mala")
    assert chosen.recipe == "none"
    assert fit(flat2d, data, key=jax.random.key(8), num_steps=2, chunk_size=1, progress_bar=False, health=False,
               recipe="images").recipe == "images"
    with pytest.raises(ValueError, match="recipe"):
        fit(flat2d, data, key=jax.random.key(8), num_steps=2, progress_bar=False, recipe="fast")


def test_the_density_recipe_keeps_log_likelihoods_on_the_original_scale():
    # standardisation + log-Jacobian: the returned energy of a fit that has not moved is the confined
    # Gaussian N(mean, 9 std²) per coordinate (network output constant), with the same log Z on both scales
    zero = Energy(lambda p, x: 0.0 * p + 0.0 * jnp.sum(x), jnp.float32(0.0), event_shape=(2,))
    data = jnp.array([10.0, -3.0]) + jnp.array([20.0, 0.5]) * jax.random.normal(jax.random.key(10), (5000, 2))
    result = fit(zero, data, key=jax.random.key(11), num_steps=1, chunk_size=1, progress_bar=False, health=False)
    mean, std = np.asarray(data.mean(0), np.float64), np.asarray(data.std(0), np.float64)
    x = jnp.array([[10.0, -3.0], [40.0, -2.0]])
    expected = -0.5 * np.sum(((np.asarray(x) - mean) / (3 * std)) ** 2, 1) - np.sum(np.log(3 * std)) - np.log(2 * np.pi)
    log_z = np.log(2 * np.pi * 9)  # Z of exp(-|z|²/18) on the standardised scale; the log-Jacobian keeps it
    np.testing.assert_allclose(np.asarray(log_likelihood(result.energy, x, log_z)), expected, rtol=1e-4)
