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


def _by_chain(draws: np.ndarray, num_chains: int = 4) -> np.ndarray:
    """``(n, k, d)`` draws of ``inpaint(num_samples=k)`` as ``(n · num_chains, k / num_chains, d)`` chains."""
    n, k, d = draws.shape
    return draws.reshape(n, k // num_chains, num_chains, d).swapaxes(1, 2).reshape(n * num_chains, -1, d)


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
        # residuals from each example's own conditional mean, as (chain, draw, coordinate): draw j of an
        # example comes from its chain j % 4 (interleaved), so de-interleave before computing MCSEs
        resid = _by_chain(draws[rows][:, :, miss] - mean[:, None, :])
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


# ---------------------------------------------------------------- issue 15, second trial (inpaint2)
# A 30-D AR(1) Gaussian used by no other test: correlation 0.95 between neighbours, scales from 0.2 to 5
# (log-spaced, shuffled), a non-zero mean. Its conditionals are strongly correlated and badly scaled: a
# sampler with one step size for every coordinate (MALA) does not mix on them.
DIM30 = 30
_rng30 = np.random.default_rng(30)
_S30 = _rng30.permutation(np.logspace(np.log10(0.2), np.log10(5.0), DIM30))
MEAN30 = _rng30.normal(0.0, 2.0, DIM30)
COV30 = np.outer(_S30, _S30) * 0.95 ** np.abs(np.subtract.outer(np.arange(DIM30), np.arange(DIM30)))
N30, DRAWS30 = 8, 400


def _conditional30(x: np.ndarray, observed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    o, m = observed, ~observed
    gain = COV30[np.ix_(m, o)] @ np.linalg.inv(COV30[np.ix_(o, o)])
    return MEAN30[m] + gain @ (x[o] - MEAN30[o]), np.diag(COV30[np.ix_(m, m)] - gain @ COV30[np.ix_(o, m)])


@pytest.fixture(scope="module")
def ar1_batch():
    rng = np.random.default_rng(31)
    truth = rng.multivariate_normal(MEAN30, COV30, size=N30)
    mask = rng.random(truth.shape) > 0.3  # 30 % hidden, a different pattern in every example
    images = np.where(mask, truth, np.nan).astype(np.float32)
    return gaussian(MEAN30, COV30).energy, images, mask


def test_inpaint2_finding1_defaults_mix_on_a_correlated_30d_conditional(ar1_batch):
    """Before: MALA (the default) returned draws whose means were off by up to 2.2 conditional sd on a 30-D
    correlated conditional, with no warning. Now (HMC, dense mass matrix adapted per example over 4 chains):
    every missing coordinate's conditional mean and variance within a Bonferroni bound of MCSE z-scores
    (the draws de-interleaved into their chains: draw j comes from chain j % 4), and no warning."""
    scipy_stats = pytest.importorskip("scipy.stats")
    energy, images, mask = ar1_batch
    with warnings.catch_warnings():
        warnings.simplefilter("error", ChainHealthWarning)
        draws = np.asarray(inpaint(energy, jax.random.key(5), images, mask, num_samples=DRAWS30), np.float64)
    assert draws.shape == (N30, DRAWS30, DIM30)
    assert np.array_equal(draws[:, 0][mask], images[mask].astype(np.float64))
    chains = _by_chain(draws).reshape(N30, 4, DRAWS30 // 4, DIM30)  # (example, chain, draw, coordinate)
    z_means, z_vars = [], []
    for i in range(N30):
        mean, var = _conditional30(images[i].astype(np.float64), mask[i])
        resid = chains[i][:, :, ~mask[i]] - mean
        z_means.append(resid.mean((0, 1)) / diagnostics.mcse(resid))
        sq = resid**2
        z_vars.append((sq.mean((0, 1)) - var) / diagnostics.mcse(sq))
    z = np.abs(np.concatenate(z_means + z_vars))
    bound = scipy_stats.norm.ppf(1 - 0.01 / (2 * z.size))  # family-wise 1 %: about 3.9 for ~170 z-scores
    assert z.max() < bound, (z.max(), bound, np.argmax(z))


def test_inpaint2_finding1_a_sampler_that_does_not_mix_is_named(ar1_batch):
    """Before: MALA's non-mixing draws came back silently. Now: the ESS check over each example's chains
    names the examples, the worst coordinate and its ESS, and the fix."""
    energy, images, mask = ar1_batch
    with pytest.warns(ChainHealthWarning, match=r"\d of 8 examples did not mix: .* effective sample size is "
                                                r"below 20: \d \(coordinate \d+: ESS \d+\).*default sampler"):
        inpaint(energy, jax.random.key(5), images, mask, num_samples=DRAWS30, sampler="mala", num_warmup=100)


def test_inpaint2_finding2_analytic_targets_declare_their_typical_region():
    """Before: gaussian(mean, cov).energy.typical_region() was (0, 1) whatever mean and cov."""
    from ebmppl.targets import gaussian_mixture

    center, scale = gaussian(MEAN30, COV30).energy.typical_region()
    np.testing.assert_allclose(np.asarray(center), MEAN30, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(scale), _S30, rtol=1e-5)
    t = gaussian_mixture([0.5, 0.5], [[-3.0, 0.0], [3.0, 1.0]], [np.eye(2)] * 2)
    center, scale = t.energy.typical_region()
    np.testing.assert_allclose(np.asarray(center), t.mean, atol=1e-6)
    np.testing.assert_allclose(np.asarray(scale), t.std, rtol=1e-6)  # sqrt(1 + 9) and sqrt(1 + 0.25)


def test_inpaint2_finding3_fractional_mask_error_says_boolean_or_01():
    """Before: a 0.3/0.7 mask gave "mask must be boolean", though 0/1 floats are accepted."""
    energy = gaussian(np.zeros(3), np.eye(3)).energy
    with pytest.raises(TypeError, match=r"mask must be boolean or 0/1 .*0\.3.*mask > 0\.5"):
        inpaint(energy, jax.random.key(0), np.zeros((2, 3)), np.array([[0.3, 0.7, 0.7]] * 2))


def test_inpaint2_finding4_raw_scale_data_with_a_standardised_energy_warn():
    """Before: raw-scale rows (~1000 sd out) imputed with an energy of standardised data, silently. Now a
    UserWarning names the examples, the coordinate, how far out, and the likely cause."""
    energy = gaussian(np.zeros(3), np.eye(3)).energy  # declares (0, 1)
    raw = np.array([[0.5, 0.1, np.nan], [1200.0, 15.0, np.nan]], np.float32)
    with pytest.warns(UserWarning, match=r"1 of 2 examples .* 1 \(coordinate 0: 1\.2e\+03 scales out\).*"
                                         r"another scale than the energy was fitted on"):
        inpaint(energy, jax.random.key(0), raw, ~np.isnan(raw), num_steps=10, num_warmup=10)
