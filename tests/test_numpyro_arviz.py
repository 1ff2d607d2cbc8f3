"""NumPyro bridge in both directions, and the ArviZ conversion."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.infer import MCMC, NUTS
from numpyro.infer.util import log_density

from ebmppl import Energy, diagnostics, sample
from ebmppl.numpyro import EnergyDistribution, energy_factor, model_energy, potential_fn


def double_well_energy():
    # non-Gaussian prior: two wells at x0 = ±1, Gaussian in x1
    return Energy(lambda p, x: p * (x[0] ** 2 - 1.0) ** 2 + 0.5 * x[1] ** 2, jnp.float32(1.0), event_shape=(2,))


def model(y):
    x = numpyro.sample("x", EnergyDistribution(double_well_energy()))
    numpyro.sample("y", dist.Normal(x, 0.7).to_event(1), obs=y)


Y = jnp.array([0.8, -0.5])


def test_factor_and_distribution_add_the_same_log_density():
    e = double_well_energy()
    x = jnp.array([0.3, -0.2])

    def with_factor():
        v = numpyro.sample("x", dist.ImproperUniform(dist.constraints.real_vector, (), (2,)))
        energy_factor("ebm", e, v)

    lp_factor, _ = log_density(with_factor, (), {}, {"x": x})
    lp_dist, _ = log_density(lambda: numpyro.sample("x", EnergyDistribution(e)), (), {}, {"x": x})
    np.testing.assert_allclose(lp_factor, -e.energy(x), rtol=1e-6)
    np.testing.assert_allclose(lp_dist, -e.energy(x), rtol=1e-6)
    with pytest.raises(NotImplementedError, match="ebmppl.sample"):
        EnergyDistribution(e).sample(jax.random.key(0))


def test_numpyro_nuts_agrees_with_ebmppl_nuts_on_extracted_logdensity():
    """NumPyro's own NUTS and ebmppl's BlackJAX NUTS on model_energy(model): means within MC error."""
    mcmc = MCMC(NUTS(model), num_warmup=1000, num_samples=4000, num_chains=4,
                chain_method="vectorized", progress_bar=False)
    mcmc.run(jax.random.key(0), y=Y)
    ref = np.asarray(mcmc.get_samples(group_by_chain=True)["x"], np.float64)

    me = model_energy(model, jax.random.key(1), y=Y)
    out = sample(me.energy, jax.random.key(2), sampler="nuts", num_chains=4, num_warmup=1000,
                 num_samples=4000, progress_bar=False)
    ours = np.asarray(me.postprocess(out.positions)["x"], np.float64)

    diff = np.abs(ref.mean((0, 1)) - ours.mean((0, 1)))
    se = np.sqrt(diagnostics.mcse(ref) ** 2 + diagnostics.mcse(ours) ** 2)
    assert np.all(diff < 4 * se), (diff, se)
    assert np.all(diagnostics.rhat(ours) < 1.01)


def test_potential_fn_for_numpyro_nuts():
    e = Energy(lambda p, x: 0.5 * jnp.sum((x - p) ** 2 / jnp.array([1.0, 4.0])), jnp.array([2.0, -1.0]), event_shape=(2,))
    mcmc = MCMC(NUTS(potential_fn=potential_fn(e)), num_warmup=500, num_samples=2000, num_chains=4,
                chain_method="vectorized", progress_bar=False)
    mcmc.run(jax.random.key(3), init_params=jnp.zeros((4, 2)))
    draws = np.asarray(mcmc.get_samples(group_by_chain=True), np.float64)
    z = np.abs(draws.mean((0, 1)) - [2.0, -1.0]) / diagnostics.mcse(draws)
    assert np.all(z < 4)


def test_model_energy_postprocess_maps_to_constrained_space():
    def m():
        numpyro.sample("s", dist.LogNormal(0.0, 0.5))
        numpyro.sample("z", dist.Normal(0.0, 1.0).expand([3]))

    me = model_energy(m, jax.random.key(0))
    assert me.energy.event_shape == (4,)
    out = me.postprocess(jnp.zeros((2, 5, 4)))
    assert out["s"].shape == (2, 5) and out["z"].shape == (2, 5, 3)
    np.testing.assert_allclose(out["s"], 1.0)


def test_inference_data_works_with_arviz_functions():
    import arviz as az
    import matplotlib

    matplotlib.use("Agg")
    e = double_well_energy()
    out = sample(e, jax.random.key(4), sampler="nuts", num_chains=4, num_warmup=200, num_samples=300,
                 progress_bar=False)
    idata = out.to_arviz()
    assert idata.posterior["x"].shape == (4, 300, 2)
    table = diagnostics.summary(idata)
    assert {"mean", "sd", "ess_bulk", "r_hat"} <= set(table.columns)
    # our R-hat / ESS wrappers equal ArviZ's own functions on the same draws
    np.testing.assert_allclose(diagnostics.rhat(out.positions), az.rhat(idata)["x"].values, rtol=1e-6)
    np.testing.assert_allclose(diagnostics.ess(out.positions), az.ess(idata)["x"].values, rtol=1e-6)
    diagnostics.plot_trace(idata)
    diagnostics.plot_rank(idata)
    matplotlib.pyplot.close("all")


def test_scalar_diagnostics_equal_arviz_on_a_dataset():
    """One value per draw (fit's health probe) takes ArviZ's array path: the numbers of its Dataset path."""
    import arviz as az

    rng = np.random.default_rng(0)
    draws = np.cumsum(rng.normal(size=(64, 4, 1)), axis=1) + rng.normal(size=(64, 4, 1))  # more chains than draws
    dataset = az.convert_to_dataset(draws)
    for ours, theirs, kw in ((diagnostics.rhat, az.rhat, {}), (diagnostics.ess, az.ess, {}),
                             (diagnostics.ess, az.ess, {"method": "tail"}), (diagnostics.mcse, az.mcse, {})):
        expected = theirs(dataset, **({"method": "rank"} if theirs is az.rhat else kw))["x"].values
        got = ours(draws, **kw)
        assert got.shape == (1,)
        np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_from_numpyro_drops_factor_log_likelihood():
    e = double_well_energy()

    def m():
        x = numpyro.sample("x", dist.ImproperUniform(dist.constraints.real_vector, (), (2,)))
        energy_factor("ebm", e, x)

    mcmc = MCMC(NUTS(m), num_warmup=100, num_samples=100, progress_bar=False)
    mcmc.run(jax.random.key(5), init_params={"x": jnp.zeros(2)})
    idata = diagnostics.from_numpyro(mcmc)
    assert "posterior" in idata.groups() and "log_likelihood" not in idata.groups()
    import matplotlib

    matplotlib.use("Agg")
    diagnostics.plot_trace(idata)  # the converted model plots like any NumPyro run
    matplotlib.pyplot.close("all")


def test_ebm_prior_model_converts_and_plots_with_from_numpyro():
    import matplotlib

    matplotlib.use("Agg")
    mcmc = MCMC(NUTS(model), num_warmup=200, num_samples=200, num_chains=2, chain_method="vectorized",
                progress_bar=False)
    mcmc.run(jax.random.key(6), y=Y)
    idata = diagnostics.from_numpyro(mcmc)
    assert idata.posterior["x"].shape == (2, 200, 2)
    assert "sample_stats" in idata.groups()
    diagnostics.plot_trace(idata)
    diagnostics.plot_rank(idata)
    matplotlib.pyplot.close("all")


def test_model_energy_to_arviz_has_named_constrained_and_deterministic_sites():
    def m():
        s = numpyro.sample("s", dist.LogNormal(0.0, 0.5))
        z = numpyro.sample("z", dist.Normal(0.0, 1.0).expand([3]))
        numpyro.deterministic("scaled", s * z)

    me = model_energy(m, jax.random.key(0))
    out = sample(me, jax.random.key(1), sampler="mala", num_chains=2, num_warmup=100, num_samples=50,
                 progress_bar=False)
    post = out.to_arviz().posterior
    assert set(post.data_vars) == {"s", "z", "scaled"}
    assert post["s"].shape == (2, 50) and post["z"].shape == (2, 50, 3)
    assert float(post["s"].min()) > 0
    np.testing.assert_allclose(post["scaled"].values, post["s"].values[..., None] * post["z"].values, rtol=1e-5)
