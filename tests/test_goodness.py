"""Goodness of fit without log Z (issue 20): the KSD test's size and power, the classifier two-sample test, and the
digits feature distance.

Tolerances are binomial: a rejection rate over R independent replicate tests at level α has standard error
sqrt(α(1-α)/R), and the size is accepted within 3 of them.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ebmppl
from ebmppl import goodness
from ebmppl.targets import gaussian, gaussian_mixture

ALPHA = 0.05


def _binomial_band(rate: float, reps: int) -> float:
    return 3.0 * math.sqrt(rate * (1.0 - rate) / reps)


@pytest.fixture(scope="module")
def mixture():
    return gaussian_mixture([0.4, 0.6], [[-1.0, 0.0], [1.0, 0.5]], [0.5 * np.eye(2), np.array([[0.6, 0.2],
                                                                                               [0.2, 0.4]])])


@pytest.fixture(scope="module")
def standard():
    return gaussian([0.0, 0.0], np.eye(2))


def test_ksd_matches_a_brute_force_stein_kernel(mixture):
    """The vectorised U-statistic equals the Stein kernel written with autodiff, pair by pair."""
    e = mixture.energy
    x = mixture.sample(jax.random.key(0), 8)
    ell = 0.7

    def k(a, b):
        return (1.0 + jnp.sum((a - b) ** 2) / ell**2) ** -0.5

    def stein(a, b):
        sa, sb = e.score(a), e.score(b)
        tr = jnp.trace(jax.jacfwd(jax.grad(k, 0), 1)(a, b))
        return sa @ sb * k(a, b) + sa @ jax.grad(k, 1)(a, b) + sb @ jax.grad(k, 0)(a, b) + tr

    h = np.asarray(jax.jit(lambda x: jax.vmap(lambda a: jax.vmap(lambda b: stein(a, b))(x))(x))(x))
    brute = (h.sum() - np.trace(h)) / (8 * 7)
    fast = goodness.kernel_stein_discrepancy(e, x, bandwidth=ell, block_size=3)  # 3 blocks, the last padded
    assert fast == pytest.approx(float(brute), rel=1e-4, abs=1e-5)


def test_ksd_uses_the_temperature_of_the_energy(standard):
    """exp(-E/2) for E = ‖x‖²/2 is N(0, 2I): draws √2·x of it have, with the median bandwidth (which scales with
    the draws), exactly KSD²(N(0, I), x) / 2 (the Stein kernel scales as 1/c² under x → c·x)."""
    x = standard.sample(jax.random.key(3), 300)
    cold = goodness.kernel_stein_discrepancy(standard.energy, x)
    warm = goodness.kernel_stein_discrepancy(standard.energy.with_temperature(2.0), math.sqrt(2.0) * x)
    assert warm == pytest.approx(cold / 2, rel=1e-3, abs=1e-6)


def test_ksd_test_size_on_exact_samples(mixture):
    """SIZE: 400 replicate tests of n = 200 exact draws of the mixture reject at rate α within the binomial band."""
    reps, n = 400, 200
    x = mixture.sample(jax.random.key(1), reps * n).reshape(reps, n, 2)
    keys = jax.random.split(jax.random.key(2), reps)
    rejected = np.array([goodness.ksd_test(mixture.energy, keys[i], x[i], num_bootstrap=500).reject
                         for i in range(reps)])
    rate = rejected.mean()
    assert abs(rate - ALPHA) <= _binomial_band(ALPHA, reps), f"size {rate:.3f} (R={reps})"


@pytest.mark.slow
def test_ksd_test_size_on_correlated_chains_is_kept_by_ess_thinning(standard):
    """Chains of an exact sampler (MALA with a small step: strongly autocorrelated) given as (chain, draw, 2) are
    thinned by their ESS and keep the size within the binomial band; the same draws flattened, i.e. wrongly declared
    independent, are rejected far more often than α (why the chain layout matters)."""
    reps = 100
    mala = ebmppl.sample(standard.energy, jax.random.key(7), sampler="mala", sampler_params={"step_size": 0.1},
                         adapt=False, num_warmup=200, num_samples=200, num_chains=4 * reps, progress_bar=False)
    chains = mala.positions.reshape(reps, 4, 200, 2)
    keys = jax.random.split(jax.random.key(8), reps)
    thinned = [goodness.ksd_test(standard.energy, keys[i], chains[i], num_bootstrap=500) for i in range(reps)]
    assert min(r.thinning for r in thinned) > 5  # the chains are strongly correlated
    rate = np.mean([r.reject for r in thinned])
    assert abs(rate - ALPHA) <= _binomial_band(ALPHA, reps), f"size {rate:.3f} on thinned chains"
    few = 20  # 800 draws each: the n² cost is 800 times that of the thinned ones
    flat = np.mean([goodness.ksd_test(standard.energy, keys[i], chains[i].reshape(-1, 2), num_bootstrap=200).reject
                    for i in range(few)])
    assert flat > ALPHA + _binomial_band(ALPHA, few), f"flattened chains rejected at {flat:.3f} only"


@pytest.mark.slow
def test_ksd_test_power_on_ula_bias_and_misfits(standard):
    """POWER: ULA with a large step (h = 0.8 on N(0, I): stationary variance 1/(1 - h/2) = 5/3) and an energy with
    the wrong mean are rejected at a high rate: the rate's lower 3-sigma binomial bound is above 1/2."""
    reps = 60
    ula = ebmppl.sample(standard.energy, jax.random.key(3), sampler="ula", sampler_params={"step_size": 0.8},
                        adapt=False, num_warmup=50, num_samples=100, num_chains=4 * reps, progress_bar=False)
    chains = ula.positions.reshape(reps, 4, 100, 2)  # each replicate: 4 chains, thinned by their ESS
    keys = jax.random.split(jax.random.key(4), reps)
    results = [goodness.ksd_test(standard.energy, keys[i], chains[i], num_bootstrap=500) for i in range(reps)]
    assert results[0].thinning >= 1 and results[0].ess is not None
    power_ula = np.mean([r.reject for r in results])

    exact = standard.sample(jax.random.key(5), reps * 200).reshape(reps, 200, 2)
    shifted = gaussian([0.3, 0.0], np.eye(2)).energy  # misfit: mean off by 0.3 sd
    power_shift = np.mean([goodness.ksd_test(shifted, keys[i], exact[i], num_bootstrap=500).reject
                           for i in range(reps)])
    for name, power in (("ULA h=0.8", power_ula), ("shifted energy", power_shift)):
        assert power - _binomial_band(power, reps) > 0.5, f"{name}: power {power:.2f}"


def test_ksd_test_result_and_errors(standard, mixture):
    r = goodness.ksd_test(standard.energy, jax.random.key(1), standard.sample(jax.random.key(0), 100),
                          num_bootstrap=200)
    assert str(r) == r.verdict and "does not show" in r.verdict and r.thinning == 1 and r.ess is None
    assert 1 / 201 <= r.p_value <= 1.0 and r.num_samples == 100
    with pytest.raises(ValueError, match="event shape"):
        goodness.ksd_test(standard.energy, jax.random.key(0), jnp.zeros((10, 3)))
    with pytest.raises(ValueError, match="alpha"):
        goodness.ksd_test(standard.energy, jax.random.key(0), jnp.zeros((10, 2)), alpha=1.5)
    with pytest.raises(ValueError, match="NaN"):
        goodness.ksd_test(standard.energy, jax.random.key(0), jnp.full((10, 2), jnp.nan))
    with pytest.raises(TypeError, match="key second"):  # the ebmppl convention: (energy, key, samples)
        goodness.ksd_test(standard.energy, jnp.zeros((10, 2)), jax.random.key(0))
    from ebmppl.support import SPINS

    spins = ebmppl.Energy(lambda p, x: -jnp.sum(x[:-1] * x[1:]), event_shape=(3,), support=SPINS)
    with pytest.raises(ValueError, match="discrete"):
        goodness.kernel_stein_discrepancy(spins, jnp.ones((10, 3)))


def test_c2st_size_and_power():
    """C2ST: over 10 pairs of samples of one law, no more rejections than Binomial(10, α) gives with probability
    0.999 (≤ 3), mean accuracy 1/2 within 3 standard errors; a shift of 1 sd is always found."""
    reps, n = 10, 400
    keys = jax.random.split(jax.random.key(6), reps)
    null = []
    for k in keys:
        k1, k2, k3 = jax.random.split(k, 3)
        null.append(goodness.classifier_two_sample_test(jax.random.normal(k1, (n, 2)), jax.random.normal(k2, (n, 2)),
                                                        k3, num_steps=500))
    assert sum(r.reject for r in null) <= 3
    mean_acc = np.mean([r.accuracy for r in null])
    assert abs(mean_acc - 0.5) <= 3 * null[0].accuracy_stderr / math.sqrt(reps)
    assert null[0].num_test == n and "does not show" in str(null[0])
    for k in keys[:3]:
        k1, k2, k3 = jax.random.split(jax.random.fold_in(k, 1), 3)
        r = goodness.classifier_two_sample_test(jax.random.normal(k1, (n, 2)),
                                                jnp.array([1.0, 0.0]) + jax.random.normal(k2, (n, 2)), k3,
                                                num_steps=500)
        assert r.reject and r.accuracy > 0.6  # Bayes accuracy Φ(1/2) = 0.69
    with pytest.raises(ValueError, match="same shape"):
        goodness.classifier_two_sample_test(jnp.zeros((50, 3)), jnp.zeros((50, 2)), keys[0])


def test_digits_feature_distance():
    """The digits "FID": held-out accuracy of the classifier; random halves of the data are close (the floor),
    blurred and noisy digits are far beyond the spread of that floor."""
    pytest.importorskip("sklearn")
    from scipy.ndimage import gaussian_filter

    clf = goodness.digit_classifier()
    assert clf.test_accuracy > 0.95, clf.test_accuracy
    assert goodness.digit_classifier() is clf  # trained once per process
    x, _ = ebmppl.data.load_digits("all")
    rng = np.random.default_rng(0)
    floor = []
    for _ in range(4):
        p = rng.permutation(len(x))
        floor.append(goodness.digits_feature_distance(x[p[:898]], x[p[898:1796]]))
    top = np.mean(floor) + 10 * np.std(floor, ddof=1)
    blurred = gaussian_filter(x[::2], sigma=(0, 0, 1, 1))
    noisy = np.clip(x[::2] + 0.5 * rng.normal(size=x[::2].shape), -1, 1).astype(np.float32)
    assert goodness.digits_feature_distance(blurred, x[1::2]) > top
    assert goodness.digits_feature_distance(noisy, x[1::2]) > top
    assert goodness.digits_feature_distance(x[:200], x[:200]) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="8x8"):
        goodness.digits_feature_distance(np.zeros((10, 7)), x)
