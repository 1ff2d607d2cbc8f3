"""log Z of discrete energies: exact sums, AIS from an independent base, and the RBM AIS (Salakhutdinov & Murray).

Every AIS check is against the exact value (enumeration, or the RBM's smaller layer summed out), with
tolerances from the estimate's own standard error; fixed keys.
"""

import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ebmppl import log_partition
from ebmppl.data import binarized_digits
from ebmppl.discrete import enumerate_log_partition, ising, lattice_couplings, potts, rbm, rbm_log_partition
from ebmppl.logz.discrete import independent_base, rbm_ais, sm_schedule
from ebmppl.objectives import contrastive_divergence
from ebmppl.support import BINARY, SPINS, Categorical

pytestmark = pytest.mark.xla_optimized  # long-running programs: compiled with XLA's optimisations


def _random_couplings(n=16, scale=0.5, seed=42):
    k_j, k_h = jax.random.split(jax.random.key(seed))
    J = jnp.triu(scale * jax.random.normal(k_j, (n, n)), 1)
    return ising(J + J.T, field=0.1 * jax.random.normal(k_h, (n,)))


AIS_OPTIONS = {"num_chains": 512, "num_temperatures": 300}  # one compiled program for every 16-spin model below


@pytest.mark.parametrize("name", ["torus", "random"])
def test_ais_matches_enumeration_on_16_spins(name):
    """Must-show: on a 4x4 Ising torus (β = 0.4, near the critical 0.44) and a 16-spin random-coupling model,
    AIS (Gibbs sweeps, uniform base) lies within 2 standard errors and 0.05 nats of the enumerated log Z."""
    energy = ising(0.4 * lattice_couplings((4, 4)), field=0.0) if name == "torus" else _random_couplings()
    exact = float(enumerate_log_partition(energy))
    est = log_partition(energy, jax.random.key(0), **AIS_OPTIONS)
    assert est.method == "ais" and est.reliable, est
    assert est.stderr < 0.025, est  # the must-show's 0.05 nats is then a 2-standard-error statement
    assert abs(est.log_z - exact) < 2 * est.stderr, (est, exact)
    assert abs(est.log_z - exact) < 0.05, (est, exact)


def test_gwg_transitions_and_a_data_fitted_base():
    """Any exact discrete sampler drives the path (Gibbs-with-Gradients here), and a base fitted to samples'
    marginals is used when data are given; both agree with enumeration within 4 standard errors."""
    energy = _random_couplings()
    exact = float(enumerate_log_partition(energy))
    est = log_partition(energy, jax.random.key(1), num_chains=64, num_temperatures=100, num_mcmc_steps=8,
                        sampler="gibbs_with_gradients")
    assert abs(est.log_z - exact) < 4 * est.stderr, (est, exact)
    data = SPINS.uniform(jax.random.key(2), (64,), (16,))
    est = log_partition(energy, jax.random.key(3), data=data, **AIS_OPTIONS)
    assert abs(est.log_z - exact) < 4 * est.stderr, (est, exact)


def test_categorical_ais_on_potts():
    """A 3-state Potts model on a 2x3 lattice: AIS from the uniform categorical base within 4 standard errors."""
    energy = potts(3, lattice=(2, 3), coupling=0.8, field=0.0)
    exact = float(enumerate_log_partition(energy))
    est = log_partition(energy, jax.random.key(4), num_chains=64, num_temperatures=50)
    assert est.reliable and abs(est.log_z - exact) < 4 * est.stderr, (est, exact)


@pytest.fixture(scope="module")
def digits_rbm():
    """An RBM with 12 hidden units trained briefly by PCD (block Gibbs) on binarised 8x8 digits."""
    x, _ = binarized_digits("train")
    energy = rbm(64, 12, key=jax.random.key(0))
    trainer = contrastive_divergence(energy, optax.adam(0.01), sampler="block_gibbs", num_mcmc_steps=1)
    data = jnp.asarray(x)
    batches = jax.random.randint(jax.random.key(2), (300, 128), 0, x.shape[0])

    @jax.jit
    def train(state):
        return jax.lax.scan(lambda s, i: (trainer.step(s, data[i])[0], None), state, batches)[0]

    state = train(trainer.init(jax.random.key(1), energy.params))
    return energy.with_params(state.params), x


def test_rbm_ais_log_likelihood_on_digits(digits_rbm):
    """Must-show: for a 12-hidden-unit RBM on binarised digits, the AIS log-likelihood (Salakhutdinov & Murray,
    base-rate base) is within 0.1 nats (and 3 standard errors) of the exact one."""
    model, x = digits_rbm
    exact_log_z = float(rbm_log_partition(model))
    est = log_partition(model, jax.random.key(5), num_chains=256, num_temperatures=2000, data=x)
    assert est.method == "ais-rbm" and est.reliable, est
    mean_log_density = float(jnp.mean(model.logdensity(jnp.asarray(x))))
    ll_ais, ll_exact = mean_log_density - est.log_z, mean_log_density - exact_log_z
    assert abs(ll_ais - ll_exact) < 0.1, (ll_ais, ll_exact, est)
    assert abs(ll_ais - ll_exact) < 3 * est.stderr + 1e-3, (ll_ais, ll_exact, est)


def test_rbm_ais_from_a_uniform_base(digits_rbm):
    """The RBM path from a uniform base (no data) is unbiased too: within 4 standard errors of the exact value."""
    model, _ = digits_rbm
    exact_log_z = float(rbm_log_partition(model))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # from a uniform base the weights are wider; the check is the error bar's
        est = rbm_ais(model, jax.random.key(6), num_chains=256, num_temperatures=2000)
    assert abs(est.log_z - exact_log_z) < 4 * est.stderr, (est, exact_log_z)


def test_exact_method_and_errors():
    energy = _random_couplings(n=8, seed=1)
    est = log_partition(energy, method="exact")
    assert est.method == "exact" and est.stderr == 0.0
    assert est.log_z == pytest.approx(float(enumerate_log_partition(energy)), abs=1e-5)
    small = rbm(6, 3, key=jax.random.key(0), scale=1.0)
    assert log_partition(small, method="exact").log_z == pytest.approx(float(rbm_log_partition(small)), abs=1e-5)
    with pytest.raises(ValueError, match="'ais' or 'exact'"):
        log_partition(energy, jax.random.key(0), method="smc")
    with pytest.raises(ValueError, match="pass a key"):
        log_partition(energy, method="ais")
    with pytest.raises(ValueError, match="reverse AIS"):
        log_partition(energy, jax.random.key(0), samples=jnp.ones((4, 8)))
    with pytest.raises(ValueError, match="outside the support"):
        log_partition(energy, jax.random.key(0), data=jnp.zeros((4, 8)))  # 0/1 data for spins
    from ebmppl.targets import gaussian

    with pytest.raises(ValueError, match="discrete energy"):
        log_partition(gaussian([0.0], [[1.0]]).energy, method="exact")


def test_independent_base_and_schedule():
    data = jnp.array([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0]])
    q = independent_base(BINARY, (3,), data)
    np.testing.assert_allclose(jax.nn.sigmoid(q.logits), [0.75, 0.5, 0.25], rtol=1e-6)  # (count + 1) / (2 + 2)
    total = jax.nn.logsumexp(jax.vmap(q.log_prob)(BINARY.enumerate(3)))
    assert abs(float(total)) < 1e-6  # normalised
    cat = independent_base(Categorical(3), (2, 3))
    assert float(jax.nn.logsumexp(jax.vmap(cat.log_prob)(Categorical(3).enumerate((2, 3))))) == pytest.approx(0.0,
                                                                                                              abs=1e-6)
    betas = sm_schedule(14500)
    assert betas.shape == (14501,) and math.isclose(float(betas[500]), 0.5, abs_tol=1e-6)
    assert bool(jnp.all(jnp.diff(betas) > 0))
