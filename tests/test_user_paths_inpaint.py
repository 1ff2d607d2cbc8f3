"""Issue 15, finding 4 (``inpaint``'s defaults must sample the conditional) and finding 7's mask error.

Everything goes through the public API (``ebmppl.conditional.inpaint``) with its defaults unless the test is
about an option. Tolerances come from Monte-Carlo error: the MCSE of each estimated moment, from the ESS of
the draws (ArviZ, via ``ebmppl.diagnostics``), with each example's chain as one chain.
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ebmppl import Energy, diagnostics, samplers
from ebmppl.conditional import inpaint
from ebmppl.samplers import ChainHealthWarning
from ebmppl.targets import gaussian

# A 5-D Gaussian used by no other test: scales from 0.5 to 3, strong correlations, non-zero mean.
MEAN = np.array([1.0, -2.0, 0.5, 3.0, -1.0])
_L = np.array([[0.5, 0.0, 0.0, 0.0, 0.0],
               [1.2, 0.8, 0.0, 0.0, 0.0],
               [-0.4, 0.6, 0.7, 0.0, 0.0],
               [2.0, -1.0, 0.5, 1.5, 0.0],
               [0.3, 0.9, -0.8, 0.4, 0.6]])
COV = _L @ _L.T
# two observation patterns in one batch: (observed coordinates, examples)
PATTERNS = {(0, 3): 8, (1, 2, 4): 8}
NUM_SAMPLES = 400


def _conditional(observed: tuple[int, ...], x_obs: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Exact conditional mean (per example) and covariance of the missing coordinates."""
    miss = [j for j in range(5) if j not in observed]
    s_mo, s_oo = COV[np.ix_(miss, observed)], COV[np.ix_(observed, observed)]
    gain = s_mo @ np.linalg.inv(s_oo)
    mean = MEAN[miss] + (x_obs - MEAN[list(observed)]) @ gain.T
    cov = COV[np.ix_(miss, miss)] - gain @ COV[np.ix_(observed, miss)]
    return mean, cov, miss


@pytest.fixture(scope="module")
def gaussian_batch():
    rng = np.random.default_rng(15)
    truth = rng.multivariate_normal(MEAN, COV, size=sum(PATTERNS.values()))
    mask = np.zeros(truth.shape, bool)
    start = 0
    for observed, n in PATTERNS.items():
        mask[start:start + n, list(observed)] = True
        start += n
    images = np.where(mask, truth, np.nan).astype(np.float32)  # missing entries given as NaN
    with warnings.catch_warnings():
        warnings.simplefilter("error", ChainHealthWarning)  # healthy defaults: no warning
        draws = np.asarray(inpaint(gaussian(MEAN, COV).energy, jax.random.key(4), images, mask,
                                   num_samples=NUM_SAMPLES), np.float64)
    return images, mask, draws


def test_finding4_defaults_sample_the_conditional_of_a_5d_gaussian(gaussian_batch):
    """Before: all-NaN completions without a warning. Now: conditional means and variances within 4 MCSE."""
    images, mask, draws = gaussian_batch
    assert draws.shape == (len(images), NUM_SAMPLES, 5)
    observed_values = np.broadcast_to(images[:, None], draws.shape)[np.broadcast_to(mask[:, None], draws.shape)]
    assert np.array_equal(draws[np.broadcast_to(mask[:, None], draws.shape)], observed_values)
    start = 0
    for observed, n in PATTERNS.items():
        rows = slice(start, start + n)
        start += n
        mean, cov, miss = _conditional(observed, images[rows][:, list(observed)].astype(np.float64))
        # residuals from each example's own conditional mean: (chain = example, draw, coordinate)
        resid = draws[rows][:, :, miss] - mean[:, None, :]
        z_mean = resid.mean((0, 1)) / diagnostics.mcse(resid)
        sq = resid**2  # E[(x - mean)^2] = the conditional variance
        z_var = (sq.mean((0, 1)) - np.diag(cov)) / diagnostics.mcse(sq)
        assert np.all(np.abs(z_mean) < 4), (observed, z_mean)
        assert np.all(np.abs(z_var) < 4), (observed, z_var)


def test_finding4_defaults_beat_mean_imputation_on_standardised_wine():
    """Before: all-NaN (or finite values 190 sd off: MSE 36,972 vs 0.99), no warning. Now: the mean of the
    default draws has a lower held-out MSE than imputing the training mean."""
    sklearn_datasets = pytest.importorskip("sklearn.datasets")
    x = sklearn_datasets.load_wine().data
    x = ((x - x.mean(0)) / x.std(0)).astype(np.float32)
    train, test = x[::2], x[1::2]
    energy = gaussian(train.mean(0), np.cov(train.T)).energy  # analytic energy: the training data's Gaussian
    rng = np.random.default_rng(7)
    mask = rng.random(test.shape) < 0.5
    mask[np.arange(len(test)), rng.integers(0, test.shape[1], len(test))] = False  # at least one missing
    with warnings.catch_warnings():
        warnings.simplefilter("error", ChainHealthWarning)
        draws = np.asarray(inpaint(energy, jax.random.key(1), test, mask, num_samples=100))
    assert draws.shape == (len(test), 100, test.shape[1]) and np.all(np.isfinite(draws))
    assert np.array_equal(draws[:, 0][mask], test[mask])
    mse_ebm = np.mean(((draws.mean(1) - test) ** 2)[~mask])
    mse_mean = np.mean(((train.mean(0) - test) ** 2)[~mask])
    assert mse_ebm < mse_mean, (mse_ebm, mse_mean)


def test_finding4_image_recipe_only_for_images_or_on_request():
    """Practical Langevin clamped to the observed range is the default for event rank >= 2, and on request
    for vectors (whose default, the exact sampler, is tested above: its draws have the conditional's sd)."""
    wide = gaussian(np.zeros(3), 4.0 * np.eye(3)).energy  # conditional sd 2, observed values in [-0.5, 0.5]
    x = jnp.array([[0.5, -0.5, 0.0]] * 4)
    m = jnp.array([True, True, False])  # one mask for every example (broadcast)
    on_request = np.asarray(inpaint(wide, jax.random.key(0), x, m, recipe="images"))
    assert np.all(np.abs(on_request[:, 2]) <= 0.5)
    images = Energy(lambda p, v: 0.5 * jnp.sum(v**2) / 4.0, None, event_shape=(2, 2))
    xi = jnp.array([[[0.5, -0.5], [0.0, 0.0]]] * 4)
    mi = jnp.array([[True, True], [False, False]])
    auto = np.asarray(inpaint(images, jax.random.key(0), xi, mi))
    assert np.all(np.abs(auto[:, 1]) <= 0.5)


def test_finding4_diverged_completions_raise_naming_the_examples():
    """Non-finite completions are never returned: an unstable explicit step size is an error naming them."""
    energy = gaussian(np.zeros(3), np.eye(3)).energy
    x = jnp.array([[0.5, 0.0, 0.0], [0.0, 0.0, 0.0]])
    with pytest.raises(FloatingPointError, match=r"non-finite completions for examples 0, 1 of 2.*step size"):
        inpaint(energy, jax.random.key(0), x, jnp.array([True, False, False]),
                sampler=samplers.ula(step_size=5.0), num_steps=200)


def test_finding4_stalled_chains_warn():
    """A Metropolis chain that rejects everything is reported, with the examples and the fix."""
    energy = gaussian(np.zeros(3), np.eye(3)).energy
    x = jnp.zeros((2, 3))
    with pytest.warns(ChainHealthWarning, match=r"2 of 2 examples accepted less than.*num_warmup"):
        inpaint(energy, jax.random.key(0), x, jnp.array([True, False, False]), num_warmup=0, num_steps=20,
                sampler_params={"step_size": 500.0})


@pytest.mark.parametrize("kwargs, error, match", [
    # finding 7: a mis-shaped mask names mask, its shape and the expected shape
    ({"mask": np.ones((4, 3), bool)}, ValueError,
     r"mask has shape \(4, 3\); expected the shape of images \(4, 5\) = \(n, \*event_shape\).*\(5,\)"),
    ({"mask": np.ones((4,), bool)}, ValueError, r"mask has shape \(4,\)"),
    ({"mask": np.full((4, 5), 0.5)}, TypeError, r"mask must be boolean"),
    ({"recipe": "image"}, ValueError, r"recipe must be one of 'auto', 'exact', 'images'"),
    ({"num_steps": 10, "num_samples": 10}, ValueError, r"give num_steps .* or num_samples"),
    ({"images": np.full((4, 5), np.nan)}, ValueError, r"NaN or inf at observed entries of examples 0, 1, 2, 3"),
])
def test_finding7_bad_inputs_are_named(kwargs, error, match):
    args = {"images": np.zeros((4, 5), np.float32), "mask": np.ones((4, 5), bool), **kwargs}
    with pytest.raises(error, match=match):
        inpaint(gaussian(MEAN, COV).energy, jax.random.key(0), args.pop("images"), args.pop("mask"), **args)
