"""What a stranger tripped over on discrete energies: each is now an error or a warning that says the fix."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ebmppl
from ebmppl import samplers
from ebmppl.discrete import exact_log_likelihood, ising, potts


def test_interacting_blocks_are_refused_before_sampling():
    model = ising(lattice=(2, 3), beta=0.3, periodic=False)
    bad = samplers.block_gibbs(blocks=((0, 1, 2), (3, 4, 5)))  # 0-1 and 1-2 are bonds
    with pytest.raises(ValueError, match="interact"):
        ebmppl.sample(model, jax.random.key(0), sampler=bad, num_chains=2, num_warmup=0, num_samples=5,
                      progress_bar=False)


def test_binary_data_for_a_continuous_energy_warn_of_a_forgotten_support():
    e = ebmppl.Energy(lambda p, x: 0.5 * jnp.sum((x - p) ** 2), jnp.zeros(3), event_shape=(3,))
    data = jnp.asarray(np.random.default_rng(0).integers(0, 2, (64, 3)), jnp.float32)
    with pytest.warns(UserWarning, match="support=ebmppl.support.BINARY"):
        ebmppl.fit(e, jax.random.key(0), data, num_steps=2, progress_bar=False, health=False, batch_size=16)


def test_labels_for_a_categorical_energy_and_nan_spins_say_the_fix():
    model = potts(3, lattice=(2, 3), beta=0.5)
    labels = jax.random.randint(jax.random.key(0), (20, 6), 0, 3)
    with pytest.raises(ValueError, match=r"one_hot\(data, 3\)"):
        exact_log_likelihood(model, labels)
    spins = jnp.ones((10, 9)).at[3, 4].set(jnp.nan)
    with pytest.raises(ValueError, match="NaN"):
        exact_log_likelihood(ising(lattice=(3, 3)), spins)
    # a concrete data set closed over inside jit is checked eagerly, not refused
    assert np.isfinite(jax.jit(lambda: exact_log_likelihood(ising(lattice=(3, 3)), jnp.ones((4, 9))))())


def test_exchange_binds_a_discrete_sites_support_and_refuses_a_continuous_kernel():
    numpyro = pytest.importorskip("numpyro")
    import numpyro.distributions as dist
    from numpyro.infer import MCMC

    from ebmppl.models import Exchange
    from ebmppl.numpyro import EnergyDistribution

    big = ising(lattice=(5, 5), periodic=False)  # 2**25 states: no exact auxiliary draws

    def model(x):
        beta = numpyro.sample("beta", dist.HalfNormal(1.0))
        site = big.with_params({**big.params, "couplings": beta * big.params["couplings"]})
        numpyro.sample("x", EnergyDistribution(site), obs=x)

    spins = jnp.where(jax.random.bernoulli(jax.random.key(0), 0.5, (8, 25)), 1.0, -1.0)
    for auxiliary, error, text in ((None, ValueError, "gibbs_with_gradients"), ("mala", TypeError, "discrete")):
        with pytest.raises(error, match=text):
            MCMC(Exchange(model, auxiliary=auxiliary), num_warmup=2, num_samples=2,
                 progress_bar=False).run(jax.random.key(1), spins)
    mcmc = MCMC(Exchange(model, auxiliary="gibbs_with_gradients", num_mcmc_steps=3), num_warmup=3, num_samples=3,
                progress_bar=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mcmc.run(jax.random.key(1), spins)
    assert np.all(np.isfinite(mcmc.get_samples()["beta"]))


def test_save_with_its_arguments_swapped_says_the_order(tmp_path):
    with pytest.raises(TypeError, match="the file comes first"):
        ebmppl.save(ising(lattice=(2, 2)), str(tmp_path / "x.ebm"))


def test_chains_start_where_they_should_discrete_on_the_support_and_a_given_init_kept():
    """A regression: a check inserted into sample() once cut its chain of starts, so discrete chains began
    uniform on [-2, 2] (off the support, silently) and every user init was replaced."""
    spins = ebmppl.sample(ising(lattice=(2, 2), beta=0.3), jax.random.key(0), sampler="gibbs", num_chains=2,
                          num_warmup=0, num_samples=3, progress_bar=False)
    assert set(np.unique(np.asarray(spins.positions)).tolist()) <= {-1.0, 1.0}
    far = ebmppl.Energy(lambda p, x: 0.5 * jnp.sum(x**2), event_shape=(2,))
    init = jnp.full((2, 2), 7.0)
    out = ebmppl.sample(far, jax.random.key(0), sampler=samplers.mala(step_size=1e-4), init=init, num_chains=2,
                        num_warmup=0, num_samples=1, progress_bar=False)
    np.testing.assert_allclose(np.asarray(out.positions)[:, 0], 7.0, atol=0.1)


def test_compare_keeps_a_refused_block_sampler_as_a_flagged_row():
    model = ising(lattice=(2, 3), beta=0.3, periodic=False)
    bad = samplers.block_gibbs(blocks=((0, 1, 2), (3, 4, 5)))
    table = ebmppl.compare(model, jax.random.key(0), {"gibbs": "gibbs", "bad blocks": bad}, num_chains=2,
                           num_warmup=50, num_samples=200, progress_bar=False).table.set_index("sampler")
    assert not table.loc["bad blocks", "converged"] and "interact" in table.loc["bad blocks", "flag"]
    assert table.loc["gibbs", "flag"] == "" or "refused" not in table.loc["gibbs", "flag"]


def test_an_upper_triangular_coupling_matrix_is_told_to_add_its_transpose():
    J = jnp.triu(jnp.ones((4, 4)), 1)
    with pytest.raises(ValueError, match=r"J \+ J.T"):
        ising(J)
