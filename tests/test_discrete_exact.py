"""Exact ground truth for discrete energies (issue 19): enumeration, transfer matrix, Kaufman, RBM log Z, NumPyro sites.

Every value is checked against an independent float64 numpy reference (all states listed by itertools) or
against a second exact method.
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ebmppl import Energy
from ebmppl.discrete import (RBM, enumerate_log_partition, exact_expectation, exact_log_likelihood, ising,
                             ising_log_partition, kaufman_log_partition, lattice_couplings, potts, rbm,
                             rbm_log_partition)
from ebmppl.support import BINARY, SPINS, Categorical


def _all_spins(n):
    return np.array(list(itertools.product([-1.0, 1.0], repeat=n)))


def _logsumexp(v):
    m = v.max()
    return m + np.log(np.exp(v - m).sum())


# ------------------------------------------------------- Ising: three methods
@pytest.fixture(scope="module")
def torus4():
    return ising(lattice=(4, 4), beta=0.4)


def test_4x4_torus_enumeration_transfer_matrix_kaufman(torus4):
    by_enumeration = float(enumerate_log_partition(torus4))
    by_transfer = ising_log_partition(4, 4, beta=0.4)
    by_kaufman = kaufman_log_partition(4, 4, beta=0.4)
    assert abs(by_transfer - by_kaufman) < 1e-10  # both float64
    assert abs(by_enumeration - by_transfer) < 2e-5  # float32 enumeration (see the exact module's precision note)
    # a chunk size that does not divide 2**16 masks the padding states
    assert abs(float(enumerate_log_partition(torus4, chunk_size=5000)) - by_transfer) < 2e-5


@pytest.mark.parametrize("L1,L2,field,periodic", [(3, 4, 0.3, False), (4, 3, -0.2, True), (2, 5, 0.1, True),
                                                  (1, 6, 0.5, True), (3, 1, 0.0, False)])
def test_transfer_matrix_against_numpy_enumeration(L1, L2, field, periodic):
    x = _all_spins(L1 * L2)
    J = 0.9 * np.asarray(lattice_couplings((L1, L2), 1.0, periodic), np.float64)  # bond counts: exact
    logp = 0.7 * (0.5 * np.einsum("si,ij,sj->s", x, J, x) + field * x.sum(1))
    assert abs(ising_log_partition(L1, L2, coupling=0.9, field=field, beta=0.7, periodic=periodic)
               - _logsumexp(logp)) < 1e-9


def test_kaufman_large_torus_approaches_onsager():
    # Onsager's free energy per spin of the infinite lattice at K = 0.44 (closed form, float64 quadrature)
    K = 0.44
    kappa = 2 * np.sinh(2 * K) / np.cosh(2 * K) ** 2
    theta = (np.arange(200000) + 0.5) * np.pi / 200000
    onsager = np.log(2 * np.cosh(2 * K)) + np.mean(np.log(0.5 * (1 + np.sqrt(1 - kappa**2 * np.sin(theta) ** 2)))) / 2
    per_spin = [kaufman_log_partition(L, L, beta=K) / L**2 for L in (16, 64, 256)]
    gaps = [abs(p - onsager) for p in per_spin]
    assert gaps[0] > gaps[1] > gaps[2] and gaps[2] < 2e-5
    assert abs(kaufman_log_partition(8, 12, beta=0.44) - ising_log_partition(8, 12, beta=0.44)) < 1e-9


# --------------------------------------------------- random couplings, moments
@pytest.fixture(scope="module")
def random16():
    rng = np.random.default_rng(0)
    J = rng.normal(scale=0.3, size=(16, 16))
    J = np.triu(J, 1) + np.triu(J, 1).T
    h = rng.normal(scale=0.2, size=16)
    x = _all_spins(16)
    logp = 0.5 * np.einsum("si,ij,sj->s", x, J, x) + x @ h
    p = np.exp(logp - _logsumexp(logp))
    return ising(jnp.asarray(J, jnp.float32), field=jnp.asarray(h, jnp.float32)), _logsumexp(logp), p @ x, \
        np.einsum("s,si,sj->ij", p, x, x)


def _moments(x):
    return {"m": x, "xx": jnp.outer(x, x)}


def test_random_coupling_16_spins_log_z_and_moments(random16):
    energy, log_z, mean, corr = random16
    assert abs(float(enumerate_log_partition(energy)) - log_z) < 2e-5
    moments = exact_expectation(energy, _moments)
    np.testing.assert_allclose(np.asarray(moments["m"]), mean, atol=2e-5)
    np.testing.assert_allclose(np.asarray(moments["xx"]), corr, atol=2e-5)


def test_exact_log_likelihood_and_temperature(random16):
    energy, log_z, _, _ = random16
    data = SPINS.uniform(jax.random.key(0), (7,), (16,))
    expected = float(jnp.mean(energy.logdensity(data))) - log_z
    assert abs(float(exact_log_likelihood(energy, data)) - expected) < 2e-5
    assert float(exact_log_likelihood(energy, data, log_z=log_z)) == pytest.approx(expected, abs=1e-5)
    # T = 2 halves every log-density: log Z of exp(-E/2)
    hot = energy.with_temperature(2.0)
    x = _all_spins(16)
    ref = _logsumexp(-np.asarray(energy.energy(jnp.asarray(x, jnp.float32)), np.float64) / 2.0)
    assert abs(float(enumerate_log_partition(hot)) - ref) < 2e-5
    with pytest.raises(ValueError, match="outside the support"):
        exact_log_likelihood(energy, jnp.zeros((2, 16)))


def test_potts_log_z_against_numpy():
    e = potts(3, lattice=5, beta=0.8, field=jnp.array([0.3, 0.0, -0.2]))
    labels = np.array(list(itertools.product(range(3), repeat=5)))
    agree = sum((labels[:, i] == labels[:, (i + 1) % 5]) for i in range(5))
    logp = 0.8 * (agree + np.array([0.3, 0.0, -0.2])[labels].sum(1))
    assert abs(float(enumerate_log_partition(e)) - _logsumexp(logp)) < 2e-5
    assert e.support == Categorical(3)


# ---------------------------------------------------------------------- RBM
@pytest.mark.parametrize("nv,nh", [(5, 3), (3, 6)])
def test_rbm_log_z_sum_out_against_enumeration_and_joint(nv, nh):
    rng = np.random.default_rng(nv)
    W, b, c = rng.normal(size=(nv, nh)), rng.normal(size=nv), rng.normal(size=nh)
    r = RBM(jnp.asarray(W, jnp.float32), jnp.asarray(b, jnp.float32), jnp.asarray(c, jnp.float32))
    v, h = (np.array(list(itertools.product([0.0, 1.0], repeat=k))) for k in (nv, nh))
    joint = v @ W @ h.T + (v @ b)[:, None] + (h @ c)[None, :]  # -E(v, h) for every pair
    ref = _logsumexp(joint.ravel())
    assert abs(float(rbm_log_partition(r)) - ref) < 2e-5
    assert abs(float(enumerate_log_partition(rbm(r))) - ref) < 2e-5  # enumerating v under the free energy
    assert abs(float(rbm_log_partition(rbm(r))) - ref) < 2e-5


def test_rbm_log_z_large_visible_layer():
    rng = np.random.default_rng(3)
    nv, nh = 64, 4
    W, b, c = rng.normal(scale=0.3, size=(nv, nh)), rng.normal(scale=0.5, size=nv), rng.normal(size=nh)
    h = np.array(list(itertools.product([0.0, 1.0], repeat=nh)))
    ref = _logsumexp(h @ c + np.logaddexp(0.0, b[None, :] + h @ W.T).sum(1))  # v summed out by hand
    r = RBM(jnp.asarray(W, jnp.float32), jnp.asarray(b, jnp.float32), jnp.asarray(c, jnp.float32))
    assert abs(float(rbm_log_partition(r)) - ref) < 1e-4
    data = BINARY.uniform(jax.random.key(0), (5,), (nv,))
    expected = float(jnp.mean(-r.free_energy(data))) - ref
    assert abs(float(exact_log_likelihood(rbm(r), data)) - expected) < 1e-4


# ----------------------------------------------------------------- bad input
def test_exact_bad_input(torus4):
    continuous = Energy(lambda p, x: 0.5 * jnp.sum(x**2), event_shape=(2,))
    with pytest.raises(ValueError, match="discrete energy"):
        enumerate_log_partition(continuous)
    with pytest.raises(ValueError, match="AIS"):
        enumerate_log_partition(ising(lattice=(5, 5)))
    with pytest.raises(ValueError, match="chunk_size"):
        enumerate_log_partition(torus4, chunk_size=0)
    with pytest.raises(TypeError, match="function"):
        exact_expectation(torus4, 3)
    with pytest.raises(ValueError, match="2\\*\\*14 rows|at most 2\\*\\*13"):
        ising_log_partition(14, 20)
    with pytest.raises(ValueError, match="sides ≥ 3"):
        kaufman_log_partition(2, 4)
    with pytest.raises(TypeError, match="enumerate_log_partition"):
        rbm_log_partition(torus4)
    with pytest.raises(ValueError, match="temperature"):
        rbm_log_partition(rbm(4, 2, key=jax.random.key(0)).with_temperature(2.0))
    with pytest.raises(ValueError, match="AIS"):
        rbm_log_partition(RBM(jnp.zeros((30, 25))))


# ------------------------------------------------------------- NumPyro sites
def test_numpyro_observed_ising_site_uses_exact_log_z():
    import numpyro
    import numpyro.distributions as dist
    from numpyro.infer.util import log_density

    from ebmppl.numpyro import EnergyDistribution

    base = ising(lattice=(3, 3))
    data = EnergyDistribution(base.with_params({**base.params, "couplings": 0.3 * base.params["couplings"]})) \
        .sample(jax.random.key(0), (10,))

    def model(x):
        beta = numpyro.sample("beta", dist.HalfNormal(1.0))
        params = {"couplings": beta * base.params["couplings"], "field": base.params["field"]}
        numpyro.sample("x", EnergyDistribution(base.with_params(params), normalized=True), obs=x)

    sufficient = float(jnp.sum(0.5 * jnp.einsum("ni,ij,nj->n", data, base.params["couplings"], data)))
    joint = jax.jit(jax.value_and_grad(lambda b: log_density(model, (data,), {}, {"beta": b})[0]))
    for beta in (0.2, 0.45):
        value = float(joint(beta)[0])
        expected = (float(dist.HalfNormal(1.0).log_prob(beta)) + beta * sufficient
                    - 10 * ising_log_partition(3, 3, beta=beta))
        assert abs(value - expected) < 1e-3 * (1 + abs(expected)) / 10
    # the gradient in beta flows through the enumerated log Z
    grad = joint(0.3)[1]
    eps = 1e-3
    fd = (ising_log_partition(3, 3, beta=0.3 + eps) - ising_log_partition(3, 3, beta=0.3 - eps)) / (2 * eps)
    expected_grad = float(jax.grad(lambda b: dist.HalfNormal(1.0).log_prob(b))(0.3)) + sufficient - 10 * fd
    assert abs(float(grad) - expected_grad) < 1e-2 * (1 + abs(expected_grad))


def test_numpyro_latent_discrete_site_exact_draws_and_enumeration():
    import numpyro
    from numpyro.infer import Predictive

    from ebmppl.numpyro import EnergyDistribution

    energy = ising(lattice=(2, 2), beta=0.3, field=0.2)  # 16 states
    d = EnergyDistribution(energy)
    assert d.support.is_discrete and d.has_enumerate_support and d.has_exact_sampler
    states = d.enumerate_support()
    assert states.shape == (16, 4) and bool(jnp.all(d.support(states)))
    assert float(d.log_prob(jnp.zeros(4))) == -np.inf  # outside the support
    p = np.asarray(jax.nn.softmax(energy.logdensity(states)))

    def model():
        numpyro.sample("x", EnergyDistribution(energy))

    n = 20000
    draws = Predictive(model, num_samples=n)(jax.random.key(1))["x"]
    freq = np.bincount(np.asarray(SPINS.to_index(draws, (4,))), minlength=16) / n
    assert np.all(np.abs(freq - p) < 4 * np.sqrt(p * (1 - p) / n))  # every state within 4 exact standard errors
    assert abs(float(d.log_partition()) - ising_log_partition(2, 2, beta=0.3, field=0.2)) < 2e-5


def test_numpyro_discrete_site_limits():
    from ebmppl.numpyro import EnergyDistribution

    big = EnergyDistribution(ising(lattice=(4, 5)))  # 2**20 states > max_enumerate
    assert not big.has_enumerate_support and big.states is None
    with pytest.raises(NotImplementedError, match="ebmppl.samplers.discrete"):
        big.sample(jax.random.key(0))
    assert EnergyDistribution(ising(lattice=(4, 5)), max_enumerate=2**20).has_exact_sampler
    with pytest.raises(ValueError, match="normalized=True needs the exact log Z"):
        EnergyDistribution(Energy(lambda p, x: jnp.sum(x**2), event_shape=(2,)), normalized=True)
    with pytest.raises(ValueError, match="max_enumerate"):
        EnergyDistribution(ising(lattice=3), max_enumerate=0)


def test_enumeration_gibbs_fn_draws_the_exact_full_conditional():
    import numpyro
    import numpyro.distributions as dist

    from ebmppl.numpyro import EnergyDistribution, enumeration_gibbs_fn

    prior = ising(lattice=3, beta=0.5)

    def model(y):
        x = numpyro.sample("x", EnergyDistribution(prior))
        mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
        numpyro.sample("y", dist.Normal(mu + x.sum(), 1.0), obs=y)

    gibbs_fn = enumeration_gibbs_fn(model, 2.5)
    n = 8000
    keys = jax.random.split(jax.random.key(0), n)
    draws = jax.jit(jax.vmap(lambda k: gibbs_fn(k, {"x": -jnp.ones(3)}, {"mu": jnp.asarray(0.3)})["x"]))(keys)
    states = SPINS.enumerate(3)
    logp = prior.logdensity(states) + dist.Normal(0.3 + states.sum(1), 1.0).log_prob(2.5)
    p = np.asarray(jax.nn.softmax(logp))
    freq = np.bincount(np.asarray(SPINS.to_index(draws, 3)), minlength=8) / n
    assert np.all(np.abs(freq - p) < 4 * np.sqrt(p * (1 - p) / n))

    def plated(y):
        with numpyro.plate("n", 2):
            numpyro.sample("x", EnergyDistribution(prior))

    with pytest.raises(ValueError, match="not an EnergyDistribution"):
        enumeration_gibbs_fn(plated, 0.0)(jax.random.key(0), {"x": -jnp.ones((2, 3))}, {})
